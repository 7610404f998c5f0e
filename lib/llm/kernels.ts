/**
 * The kernel interface: the two hot loops of the forward pass, the matrix-vector product and
 * one query head's attention, behind one small interface with two implementations.
 *
 * - `js`: the reference implementation, the kernels of lib/llm/math.ts (matmul, softmax,
 *   weightedRowSum) on ordinary Float32Arrays.
 * - `wasm-simd`: the same computations in WebAssembly SIMD (lib/llm/wasm/kernels.wat,
 *   assembled at build time into dist/lib/llm/wasm/kernels.wasm). Every result is
 *   bit-identical to `js`: each dot product is summed in the same order in double precision
 *   and rounded to float32 once; the SIMD lanes run across independent sums (docs/PERFORMANCE.md).
 *
 * A Kernels object is an arena: the Gateway, each head group's weights (HeadWeights) and each
 * of its sessions (HeadSession) create their own. Weights are copied into it once, when loaded
 * (`matrix`), and key/value caches live in it (`kvCache`), so no weights are copied per call. Vectors the kernels read and write (`vector`) live there too,
 * so passing them costs nothing; any other Float32Array works as well and is copied in or out.
 * The wasm arena is a WebAssembly.Memory with a bump allocator. Growing it would detach the
 * views `vector` hands out, so an owner allocates its matrices and caches first, then its
 * vectors (the arena throws otherwise).
 *
 * The wasm kernels are used when WebAssembly SIMD is available and the assembled module is
 * present; otherwise, or with MESH_LLM_KERNELS=js in the environment, the js kernels.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXP_FRACTION, matmul, softmax, swiglu, weightedRowSum } from './math';
import { Int8Matrix, matmulInt8 } from './quant';

/** A float32 matrix [rows, cols] resident where its kernels read it. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
}

/**
 * One layer's key/value cache of a head group: for each of `kvHeads` key/value heads, keys
 * and values [context, headSize].
 */
export interface KvCache {
  /** Stores kv head j's key k[kOffset, +headSize) and value v[vOffset, +headSize) at position pos. */
  append(j: number, pos: number, k: Float32Array, kOffset: number, v: Float32Array, vOffset: number): void;
  /**
   * Causal attention of one query head q [headSize] over positions 0..n-1 of kv head j:
   * out[outOffset, +headSize) = softmax(K_j q / scale)^T V_j.
   */
  attend(out: Float32Array, outOffset: number, q: Float32Array, j: number, n: number, scale: number): void;
  /** Forgets every key and value. */
  reset(): void;
  /** Bytes of keys and values. */
  readonly bytes: number;
}

export interface Kernels {
  readonly kind: 'wasm-simd' | 'js';
  /** Copies W [rows, cols] (row-major, from element `offset` of w) into the arena. */
  matrix(w: Float32Array, rows: number, cols: number, offset?: number): Matrix;
  /** out[outOffset + r] = W[r, :] . x for r < rows: math.ts matmul. x [cols]. */
  matvec(out: Float32Array, x: Float32Array, m: Matrix, outOffset?: number): void;
  /** Copies a group-wise int8 matrix (quant.ts) into the arena. */
  int8Matrix(m: Int8Matrix): Matrix;
  /** out[outOffset + r] = row r of the int8 matrix . x: quant.ts matmulInt8. x [cols]. */
  matvecInt8(out: Float32Array, x: Float32Array, m: Matrix, outOffset?: number): void;
  kvCache(kvHeads: number, context: number, headSize: number): KvCache;
  /** SwiGLU gate in place: h1[i] = silu(h1[i]) * h3[i]: math.ts swiglu. h1, h3 [n], arena vectors or not. */
  swiglu(h1: Float32Array, h3: Float32Array): void;
  /** A zeroed vector [n] the kernels read and write in place. */
  vector(n: number): Float32Array;
  /**
   * Bytes the arena holds: its matrices, caches, vectors and scratch. The wasm arena counts
   * what its allocator has handed out; the js arena the arrays it keeps (its matrices are the
   * caller's arrays, not copies).
   */
  readonly allocatedBytes: number;
}

// ---- js: the reference kernels ------------------------------------------------------------

class JsMatrix implements Matrix {
  constructor(readonly w: Float32Array, readonly rows: number, readonly cols: number, readonly offset: number) {}
}

class JsInt8Matrix implements Matrix {
  readonly rows: number;
  readonly cols: number;
  constructor(readonly m: Int8Matrix) {
    this.rows = m.rows;
    this.cols = m.cols;
  }
}

/** Keys and values per kv head [kvHeads, context, headSize]: the keys one query head attends over are rows of one matrix. */
class JsKvCache implements KvCache {
  private readonly keys: Float32Array;
  private readonly values: Float32Array;
  private readonly att: Float32Array;

  constructor(private readonly kvHeads: number, private readonly context: number, private readonly headSize: number) {
    this.keys = new Float32Array(kvHeads * context * headSize);
    this.values = new Float32Array(kvHeads * context * headSize);
    this.att = new Float32Array(context);
  }

  get bytes(): number {
    return this.keys.byteLength + this.values.byteLength;
  }

  append(j: number, pos: number, k: Float32Array, kOffset: number, v: Float32Array, vOffset: number): void {
    const row = (j * this.context + pos) * this.headSize;
    for (let d = 0; d < this.headSize; d++) {
      this.keys[row + d] = k[kOffset + d];
      this.values[row + d] = v[vOffset + d];
    }
  }

  attend(out: Float32Array, outOffset: number, q: Float32Array, j: number, n: number, scale: number): void {
    const hs = this.headSize;
    const att = this.att;
    const base = j * this.context * hs; // K_j, V_j [n, headSize] start here
    matmul(att, q, this.keys, n, hs, base);
    for (let t = 0; t < n; t++) att[t] = att[t] / scale;
    softmax(att, n);
    weightedRowSum(out, outOffset, att, n, this.values, base, hs, hs);
  }

  reset(): void {
    this.keys.fill(0);
    this.values.fill(0);
  }
}

class JsKernels implements Kernels {
  readonly kind = 'js';
  allocatedBytes = 0;

  matrix(w: Float32Array, rows: number, cols: number, offset = 0): Matrix {
    this.allocatedBytes += 4 * rows * cols;
    return new JsMatrix(w, rows, cols, offset);
  }

  matvec(out: Float32Array, x: Float32Array, m: Matrix, outOffset = 0): void {
    const { w, rows, cols, offset } = m as JsMatrix;
    matmul(out, x, w, rows, cols, offset, outOffset);
  }

  int8Matrix(m: Int8Matrix): Matrix {
    this.allocatedBytes += m.q.byteLength + m.scales.byteLength;
    return new JsInt8Matrix(m);
  }

  matvecInt8(out: Float32Array, x: Float32Array, m: Matrix, outOffset = 0): void {
    matmulInt8(out, x, (m as JsInt8Matrix).m, outOffset);
  }

  kvCache(kvHeads: number, context: number, headSize: number): KvCache {
    this.allocatedBytes += 4 * (2 * kvHeads * context * headSize + context); // keys, values, scores
    return new JsKvCache(kvHeads, context, headSize);
  }

  swiglu(h1: Float32Array, h3: Float32Array): void {
    swiglu(h1, h3);
  }

  vector(n: number): Float32Array {
    this.allocatedBytes += 4 * n;
    return new Float32Array(n);
  }
}

// ---- wasm-simd ---------------------------------------------------------------------------

/** The exports of kernels.wat. Pointers are byte addresses; lengths count float32 elements. */
interface WasmExports {
  matvec(w: number, x: number, out: number, rows: number, cols: number): void;
  matvec_int8(q: number, scales: number, x: number, out: number, rows: number, cols: number, gs: number): void;
  weighted_rows(out: number, a: number, n: number, v: number, stride: number, len: number): void;
  expf(x: number): number;
  scaled_softmax(x: number, n: number, scale: number): void;
  attend_head(keys: number, values: number, q: number, att: number, out: number, n: number, hs: number, scale: number): void;
  swiglu(h1: number, h3: number, n: number): void;
}

/** Rows per block of the row-block layout (kernels.wat). */
const BLOCK = 8;
/** Byte address of the 2^(j/32) table; the heap starts at HEAP_START. */
const EXP_TABLE = 64;
const HEAP_START = 512;
const PAGE = 65536;

let wasmModule: WebAssembly.Module | null | undefined;

/** The compiled kernels module, or null when it is missing or WebAssembly SIMD is unavailable. */
function kernelsModule(): WebAssembly.Module | null {
  if (wasmModule !== undefined) return wasmModule;
  wasmModule = null;
  if (process.env.MESH_LLM_KERNELS === 'js' || typeof WebAssembly !== 'object') return null;
  try {
    const bytes = fs.readFileSync(path.join(__dirname, 'wasm', 'kernels.wasm'));
    if (WebAssembly.validate(bytes)) wasmModule = new WebAssembly.Module(bytes);
  } catch {
    // not assembled (no wabt at build time): the js kernels
  }
  return wasmModule;
}

/** Which kernels createKernels() gives in this process. */
export function kernelsKind(): Kernels['kind'] {
  return kernelsModule() ? 'wasm-simd' : 'js';
}

class WasmMatrix implements Matrix {
  /** ptr: byte address of W in row-block layout (float64). */
  constructor(readonly ptr: number, readonly rows: number, readonly cols: number) {}
}

class WasmInt8Matrix implements Matrix {
  /** q, scales: byte addresses of the int8 values and the group scales, both in row-block layout. */
  constructor(readonly q: number, readonly scales: number, readonly rows: number, readonly cols: number, readonly groupSize: number) {}
}

/** A WebAssembly.Memory with a bump allocator and the kernels instantiated over it. */
class WasmArena {
  readonly memory: WebAssembly.Memory;
  readonly k: WasmExports;
  private top = HEAP_START;
  private viewsTaken = false;
  /** memory.buffer as of the last growth (reading memory.buffer itself is slow). */
  private buffer: ArrayBuffer;
  private heapView: Float32Array;
  private heap64View: Float64Array;

  constructor(module: WebAssembly.Module) {
    this.memory = new WebAssembly.Memory({ initial: 1 });
    const instance = new WebAssembly.Instance(module, { env: { memory: this.memory, exp: Math.exp } });
    this.k = instance.exports as unknown as WasmExports;
    this.buffer = this.memory.buffer;
    this.heapView = new Float32Array(this.buffer);
    this.heap64View = new Float64Array(this.buffer);
    new Float64Array(this.memory.buffer, EXP_TABLE, EXP_FRACTION.length).set(EXP_FRACTION);
  }

  /** Reserves `bytes` (16-byte aligned, zeroed); returns its byte address. */
  alloc(bytes: number): number {
    const ptr = this.top;
    this.top += Math.ceil(bytes / 16) * 16;
    const missing = this.top - this.memory.buffer.byteLength;
    if (missing > 0) {
      if (this.viewsTaken) throw new Error('kernel arena: allocate matrices and caches before taking vectors (growing the memory detaches them)');
      this.memory.grow(Math.ceil(missing / PAGE));
      this.buffer = this.memory.buffer;
      this.heapView = new Float32Array(this.buffer);
      this.heap64View = new Float64Array(this.buffer);
    }
    return ptr;
  }

  /** Bytes handed out so far. */
  get allocated(): number {
    return this.top - HEAP_START;
  }

  /** All of the memory as float32. */
  heap(): Float32Array {
    return this.heapView;
  }

  /** All of the memory as float64. */
  heap64(): Float64Array {
    return this.heap64View;
  }

  view(ptr: number, n: number): Float32Array {
    this.viewsTaken = true;
    return new Float32Array(this.buffer, ptr, n);
  }

  /** True when a is a view into this arena (so its byteOffset is its address). */
  holds(a: Float32Array): boolean {
    return a.buffer === this.buffer;
  }
}

/**
 * Keys in row-block layout per kv head (rows are positions), values row-major [context, headSize],
 * both as float64 (float32 values promoted exactly; kernels.wat).
 */
class WasmKvCache implements KvCache {
  private readonly blocks: number;
  private readonly keys: number;
  private readonly values: number;
  private readonly att: number;
  private readonly keyStride: number;
  private readonly valueStride: number;
  private readonly qScratch: number;
  private readonly outScratch: number;

  constructor(private readonly arena: WasmArena, private readonly kvHeads: number, context: number, private readonly headSize: number) {
    this.blocks = Math.ceil(context / BLOCK);
    this.keyStride = this.blocks * BLOCK * headSize; // elements per kv head
    this.valueStride = context * headSize;
    this.keys = arena.alloc(8 * kvHeads * this.keyStride);
    this.values = arena.alloc(8 * kvHeads * this.valueStride);
    this.att = arena.alloc(4 * this.blocks * BLOCK);
    this.qScratch = arena.alloc(4 * headSize);
    this.outScratch = arena.alloc(4 * headSize);
  }

  get bytes(): number {
    return 8 * this.kvHeads * (this.keyStride + this.valueStride);
  }

  append(j: number, pos: number, k: Float32Array, kOffset: number, v: Float32Array, vOffset: number): void {
    const heap = this.arena.heap64();
    const hs = this.headSize;
    // key element d of position pos: block pos / 8, column d, lane pos % 8
    const key = this.keys / 8 + j * this.keyStride + Math.floor(pos / BLOCK) * BLOCK * hs + (pos % BLOCK);
    const value = this.values / 8 + j * this.valueStride + pos * hs;
    for (let d = 0; d < hs; d++) {
      heap[key + d * BLOCK] = k[kOffset + d];
      heap[value + d] = v[vOffset + d];
    }
  }

  attend(out: Float32Array, outOffset: number, q: Float32Array, j: number, n: number, scale: number): void {
    const { arena, headSize: hs } = this;
    let qPtr = q.byteOffset;
    if (!arena.holds(q)) {
      qPtr = this.qScratch;
      arena.heap().set(q.subarray(0, hs), qPtr >> 2);
    }
    const direct = arena.holds(out);
    const outPtr = direct ? out.byteOffset + 4 * outOffset : this.outScratch;
    const keys = this.keys + 8 * j * this.keyStride;
    const values = this.values + 8 * j * this.valueStride;
    arena.k.attend_head(keys, values, qPtr, this.att, outPtr, n, hs, scale);
    if (!direct) out.set(arena.heap().subarray(outPtr >> 2, (outPtr >> 2) + hs), outOffset);
  }

  reset(): void {
    const heap = this.arena.heap64();
    heap.fill(0, this.keys / 8, this.keys / 8 + this.kvHeads * this.keyStride);
    heap.fill(0, this.values / 8, this.values / 8 + this.kvHeads * this.valueStride);
  }
}

class WasmKernels implements Kernels {
  readonly kind = 'wasm-simd';
  private readonly arena: WasmArena;
  /** Scratch for inputs and outputs that are not arena vectors: the largest cols and rows seen. */
  private input = { ptr: 0, n: 0 };
  private output = { ptr: 0, n: 0 };

  constructor(module: WebAssembly.Module) {
    this.arena = new WasmArena(module);
  }

  matrix(w: Float32Array, rows: number, cols: number, offset = 0): Matrix {
    const blocks = Math.ceil(rows / BLOCK);
    const ptr = this.arena.alloc(8 * blocks * BLOCK * cols);
    const heap = this.arena.heap64();
    const base = ptr / 8;
    // row-block layout, float64: W[8b + k, c] at base + (b * cols + c) * 8 + k
    for (let r = 0; r < rows; r++) {
      const block = base + Math.floor(r / BLOCK) * cols * BLOCK + (r % BLOCK);
      for (let c = 0; c < cols; c++) heap[block + c * BLOCK] = w[offset + r * cols + c];
    }
    this.reserveScratch(rows, cols);
    return new WasmMatrix(ptr, rows, cols);
  }

  int8Matrix(m: Int8Matrix): Matrix {
    const { rows, cols, groupSize } = m;
    const groups = cols / groupSize;
    const blocks = Math.ceil(rows / BLOCK);
    const q = this.arena.alloc(blocks * BLOCK * cols);
    const scales = this.arena.alloc(4 * blocks * BLOCK * groups);
    const bytes = new Int8Array(this.arena.memory.buffer);
    const heap = this.arena.heap();
    // row-block layout: q[8b + k, c] at q + (b * cols + c) * 8 + k; scale[8b + k, g] at scales + 4 ((b * groups + g) * 8 + k)
    for (let r = 0; r < rows; r++) {
      const b = Math.floor(r / BLOCK);
      const k = r % BLOCK;
      for (let c = 0; c < cols; c++) bytes[q + (b * cols + c) * BLOCK + k] = m.q[r * cols + c];
      for (let g = 0; g < groups; g++) heap[(scales >> 2) + (b * groups + g) * BLOCK + k] = m.scales[r * groups + g];
    }
    this.reserveScratch(rows, cols);
    return new WasmInt8Matrix(q, scales, rows, cols, groupSize);
  }

  matvec(out: Float32Array, x: Float32Array, m: Matrix, outOffset = 0): void {
    const { ptr, rows, cols } = m as WasmMatrix;
    const xPtr = this.input_(x, cols);
    const direct = this.arena.holds(out);
    this.arena.k.matvec(ptr, xPtr, direct ? out.byteOffset + 4 * outOffset : this.output.ptr, rows, cols);
    if (!direct) this.output_(out, outOffset, rows);
  }

  matvecInt8(out: Float32Array, x: Float32Array, m: Matrix, outOffset = 0): void {
    const { q, scales, rows, cols, groupSize } = m as WasmInt8Matrix;
    const xPtr = this.input_(x, cols);
    const direct = this.arena.holds(out);
    this.arena.k.matvec_int8(q, scales, xPtr, direct ? out.byteOffset + 4 * outOffset : this.output.ptr, rows, cols, groupSize);
    if (!direct) this.output_(out, outOffset, rows);
  }

  private reserveScratch(rows: number, cols: number): void {
    if (cols > this.input.n) this.input = { ptr: this.arena.alloc(4 * cols), n: cols };
    if (rows > this.output.n) this.output = { ptr: this.arena.alloc(4 * rows), n: rows };
  }

  /** The address of x [cols]: its own when it is an arena vector, else the input scratch it is copied to. */
  private input_(x: Float32Array, cols: number): number {
    if (this.arena.holds(x)) return x.byteOffset;
    this.arena.heap().set(x.length === cols ? x : x.subarray(0, cols), this.input.ptr >> 2);
    return this.input.ptr;
  }

  /** Copies `rows` results from the output scratch to out[outOffset...]. */
  private output_(out: Float32Array, outOffset: number, rows: number): void {
    const from = this.output.ptr >> 2;
    out.set(this.arena.heap().subarray(from, from + rows), outOffset);
  }

  kvCache(kvHeads: number, context: number, headSize: number): KvCache {
    return new WasmKvCache(this.arena, kvHeads, context, headSize);
  }

  swiglu(h1: Float32Array, h3: Float32Array): void {
    const { arena } = this;
    if (arena.holds(h1) && arena.holds(h3)) arena.k.swiglu(h1.byteOffset, h3.byteOffset, h1.length);
    else swiglu(h1, h3); // the reference gives the same bits
  }

  vector(n: number): Float32Array {
    return this.arena.view(this.arena.alloc(4 * n), n);
  }

  get allocatedBytes(): number {
    return this.arena.allocated;
  }

  /** The kernels' own exports, for tests (expf, weighted_rows, ...) over this arena's memory. */
  get exports(): WasmExports {
    return this.arena.k;
  }
}

/**
 * A new kernel arena: WebAssembly SIMD when available (and not turned off with
 * MESH_LLM_KERNELS=js), else the js reference kernels. `kind` forces one.
 */
export function createKernels(kind: Kernels['kind'] = kernelsKind()): Kernels {
  if (kind === 'js') return new JsKernels();
  const module = kernelsModule();
  if (!module) throw new Error('the WebAssembly SIMD kernels are not available (dist/lib/llm/wasm/kernels.wasm missing, or no WebAssembly SIMD)');
  return new WasmKernels(module);
}

export type { WasmExports };
export { WasmKernels };

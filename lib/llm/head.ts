/**
 * The head step: what one head node computes. A head group is a set of query heads plus the
 * key/value heads they need under grouped-query attention; it holds only its own rows of
 * W_Q, W_K and W_V (HeadWeights, loaded once), keeps a KV cache per session (HeadSession), and
 * turns the broadcast attention input of a layer into its heads' attention outputs. HeadGroup
 * is the two together, for one session.
 */
import { Geometry } from './config';
import { Checkpoint } from './checkpoint';
import { InputError, MeshLlmError } from './errors';
import { Kernels, KvCache, Matrix, createKernels } from './kernels';
import { addInPlace, rope, ropeTable } from './math';
import { gptqQuantizeMatrix } from './gptq';
import { FORMAT_SPECS, Int8Matrix, WeightFormat, addGroupOffsets, quantizeMatrix, storageBytes } from './quant';

/** Default int8 group size for weight rows and broadcast vectors. */
export const INT8_GROUP_SIZE = 32;

/**
 * One layer's projection weights for a group: float32, or group-wise codes (int8, int4 or
 * int2, quant.ts) held one a byte for the int8 kernel.
 */
export type Projection = { kind: 'f32'; w: Float32Array; rows: number; cols: number } | { kind: 'int8' | 'int4' | 'int2'; m: Int8Matrix };

export interface HeadSlices {
  /** Query heads of the group (global ids, ascending). */
  heads: number[];
  /** Key/value heads the group needs (global ids, ascending). */
  kvHeads: number[];
  /** Per layer: rows of W_Q for `heads` [heads.length * headSize, dim]. */
  wq: Projection[];
  /** Per layer: rows of W_K and W_V for `kvHeads` [kvHeads.length * headSize, dim]. */
  wk: Projection[];
  wv: Projection[];
}

/** The key/value heads that the query heads need: kv head of query head h is floor(h / kvMul). */
export function kvHeadsFor(heads: readonly number[], kvMul: number): number[] {
  return [...new Set(heads.map((h) => Math.floor(h / kvMul)))].sort((a, b) => a - b);
}

/** A projection as the head group computes it: float32 or int8-kernel codes resident in its kernel arena (int2: with its offsets). */
type ResidentProjection = { kind: 'f32'; m: Matrix } | { kind: 'codes'; m: Matrix; affine: Int8Matrix | null };

/** Bytes of a projection in its storage format (packed codes and float32 group parameters). */
function projectionBytes(p: Projection): number {
  return p.kind === 'f32' ? p.w.byteLength : storageBytes(p.m.q.length, p.kind, p.m.groupSize);
}

/** Reads the rows of a per-head tensor for some heads, each head being headSize consecutive rows. */
function readHeadRows(ckpt: Checkpoint, name: 'wq' | 'wk' | 'wv', layer: number, heads: number[], headSize: number, dim: number): Float32Array {
  const out = new Float32Array(heads.length * headSize * dim);
  heads.forEach((h, i) => out.set(ckpt.readRows(name, layer, h * headSize, headSize), i * headSize * dim));
  return out;
}

/** The group size of a format's weight rows of length dim (FORMAT_SPECS; int2 at most the row). */
export function weightGroupSize(format: WeightFormat, dim: number): number {
  return Math.min(FORMAT_SPECS[format].groupSize, dim);
}

/** Loads a group's weight slices from a checkpoint, quantising them to a weight format when asked. */
export function loadHeadSlices(
  ckpt: Checkpoint,
  g: Geometry,
  heads: number[],
  quant: WeightFormat,
  groupSize = quant === 'f32' ? 0 : weightGroupSize(quant, g.dim),
  /** Per layer, GPTQ's factor U of H^-1 (gptqInverseFactor): round with GPTQ instead of to nearest. */
  gptq?: readonly Float64Array[],
): HeadSlices {
  const sorted = [...heads].sort((a, b) => a - b);
  if (sorted.length === 0 || new Set(sorted).size !== sorted.length || sorted.some((h) => !Number.isInteger(h) || h < 0 || h >= g.nHeads)) {
    throw new MeshLlmError(`head group [${heads.join(', ')}] must be distinct head ids in 0..${g.nHeads - 1}`);
  }
  const kvHeads = kvHeadsFor(sorted, g.kvMul);
  const make = (w: Float32Array, rows: number, l: number): Projection =>
    quant === 'f32' ? { kind: 'f32', w, rows, cols: g.dim } : { kind: quant, m: gptq ? gptqQuantizeMatrix(w, rows, g.dim, groupSize, quant, gptq[l]) : quantizeMatrix(w, rows, g.dim, groupSize, quant) };
  const slices: HeadSlices = { heads: sorted, kvHeads, wq: [], wk: [], wv: [] };
  for (let l = 0; l < g.nLayers; l++) {
    slices.wq.push(make(readHeadRows(ckpt, 'wq', l, sorted, g.headSize, g.dim), sorted.length * g.headSize, l));
    slices.wk.push(make(readHeadRows(ckpt, 'wk', l, kvHeads, g.headSize, g.dim), kvHeads.length * g.headSize, l));
    slices.wv.push(make(readHeadRows(ckpt, 'wv', l, kvHeads, g.headSize, g.dim), kvHeads.length * g.headSize, l));
  }
  return slices;
}

/**
 * A vector added to a group's head outputs at one layer, after attention (the seed's
 * head_output = attention + alpha * steering): [heads.length * headSize], in `heads` order.
 */
export interface HeadSteering {
  layer: number;
  vector: Float32Array;
}

/** One layer's projections at one position, RoPE applied, as HeadWeights.project leaves them. */
export interface Projected {
  /** q of each local query head [headSize]. */
  readonly qOfHead: readonly Float32Array[];
  /** k and v of every local kv head [kvHeads.length * headSize]. */
  readonly k: Float32Array;
  readonly v: Float32Array;
}

/**
 * A head group's resident weights, loaded once (on a head node, once per assignment): its rows
 * of W_Q, W_K and W_V copied into its own kernel arena, with the working vectors a step
 * projects into. It holds no per-generation state: each session (`session()`) keeps its own
 * KV cache, so any number of sessions share one copy of the weights. Steps are synchronous,
 * so sessions can share the working vectors too.
 */
export class HeadWeights {
  readonly g: Geometry;
  readonly heads: number[];
  readonly kvHeads: number[];
  /** For each local query head, the local index of its key/value head. */
  readonly kvOfHead: number[];
  /** The attention scale sqrt(headSize), in float32. */
  readonly sqrtHeadSize: number;
  private readonly slices: HeadSlices;
  /** The weights' kernel arena: W_Q/W_K/W_V rows first, then the working vectors (kernels.ts). */
  private readonly kernels: Kernels;
  /** Per layer: W_Q, W_K, W_V as the kernels read them. */
  private readonly wq: ResidentProjection[];
  private readonly wk: ResidentProjection[];
  private readonly wv: ResidentProjection[];
  /** Projections at the current position: q [heads.length * headSize], k and v [kvHeads.length * headSize]. */
  private readonly q: Float32Array;
  private readonly projected: Projected;
  private rope: { pos: number; cos: Float32Array; sin: Float32Array } = { pos: -1, cos: new Float32Array(0), sin: new Float32Array(0) };

  constructor(g: Geometry, slices: HeadSlices) {
    this.g = g;
    this.slices = slices;
    this.heads = slices.heads;
    this.kvHeads = slices.kvHeads;
    this.kvOfHead = this.heads.map((h) => this.kvHeads.indexOf(Math.floor(h / g.kvMul)));
    this.sqrtHeadSize = Math.fround(Math.sqrt(g.headSize));
    const kernels = (this.kernels = createKernels());
    const resident = (p: Projection): ResidentProjection =>
      p.kind === 'f32' ? { kind: 'f32', m: kernels.matrix(p.w, p.rows, p.cols) } : { kind: 'codes', m: kernels.int8Matrix(p.m), affine: p.m.offsets ? p.m : null };
    this.wq = slices.wq.map(resident);
    this.wk = slices.wk.map(resident);
    this.wv = slices.wv.map(resident);
    const kvWidth = this.kvHeads.length * g.headSize;
    const q = (this.q = kernels.vector(this.heads.length * g.headSize));
    const qOfHead = this.heads.map((_, i) => q.subarray(i * g.headSize, (i + 1) * g.headSize));
    this.projected = { qOfHead, k: kernels.vector(kvWidth), v: kernels.vector(kvWidth) };
  }

  /** Bytes of the group's W_Q/W_K/W_V rows in their storage format (packed codes plus group parameters); the wire's weightBytes. */
  get weightBytes(): number {
    const s = this.slices;
    return [...s.wq, ...s.wk, ...s.wv].reduce((n, p) => n + projectionBytes(p), 0);
  }

  /** Bytes the weights' kernel arena holds: the resident rows in the kernels' layout, and the working vectors. */
  get arenaBytes(): number {
    return this.kernels.allocatedBytes;
  }

  /** A new session over these weights: an empty KV cache of `contextLength` positions. */
  session(contextLength = this.g.seqLen): HeadSession {
    return new HeadSession(this, contextLength);
  }

  /**
   * q, k and v of one layer at one position from the broadcast attention input xb [dim], with
   * RoPE applied to q and k. The vectors are reused by the next call.
   */
  project(xb: Float32Array, pos: number, layer: number): Projected {
    const { k, v } = this.projected;
    this.matvec(this.wq[layer], xb, this.q);
    this.matvec(this.wk[layer], xb, k);
    this.matvec(this.wv[layer], xb, v);
    this.applyRope(pos, k);
    return this.projected;
  }

  /** out = W x: x [cols] -> out [rows]. */
  private matvec(p: ResidentProjection, x: Float32Array, out: Float32Array): void {
    if (p.kind === 'f32') this.kernels.matvec(out, x, p.m);
    else {
      this.kernels.matvecInt8(out, x, p.m);
      if (p.affine) addGroupOffsets(out, x, p.affine);
    }
  }

  /** RoPE on every query head and on the new key of every kv head. */
  private applyRope(pos: number, k: Float32Array): void {
    if (this.rope.pos !== pos) this.rope = { pos, ...ropeTable(pos, this.g.headSize) };
    const { cos, sin } = this.rope;
    for (let i = 0; i < this.heads.length; i++) rope(this.q, i * this.g.headSize, cos, sin);
    for (let i = 0; i < this.kvHeads.length; i++) rope(k, i * this.g.headSize, cos, sin);
  }
}

/**
 * One session of a head group (one generation): the KV cache and the head outputs, in a small
 * kernel arena of its own, over weights it shares with every other session of the group.
 */
export class HeadSession {
  readonly weights: HeadWeights;
  readonly heads: number[];
  readonly kvHeads: number[];
  /** Context length of the KV cache (positions). */
  readonly contextLength: number;
  /** Steering added to the head outputs (lib/steering computes it); null: none. */
  steering: HeadSteering | null = null;
  /** The session's kernel arena: the KV cache first, then the output vector. */
  private readonly kernels: Kernels;
  /**
   * KV cache per layer: keys and values [kvHeads.length, contextLength, headSize], so the keys
   * (or values) one query head attends over are rows of one matrix: attention scores are one
   * matrix-vector product (kernels.ts KvCache).
   */
  private readonly cache: KvCache[];
  /** The head outputs [heads.length * headSize]. */
  private readonly out: Float32Array;

  constructor(weights: HeadWeights, contextLength = weights.g.seqLen) {
    const { g } = weights;
    this.weights = weights;
    this.heads = weights.heads;
    this.kvHeads = weights.kvHeads;
    this.contextLength = contextLength;
    const kernels = (this.kernels = createKernels());
    this.cache = Array.from({ length: g.nLayers }, () => kernels.kvCache(this.kvHeads.length, contextLength, g.headSize));
    this.out = kernels.vector(this.heads.length * g.headSize);
  }

  /** Bytes of the KV cache. */
  get cacheBytes(): number {
    return this.cache.reduce((n, c) => n + c.bytes, 0);
  }

  /** Forgets every cached key and value (a new session). */
  reset(): void {
    for (const c of this.cache) c.reset();
  }

  /**
   * One layer at one position: xb [dim] is the broadcast attention input. Returns the
   * attention outputs of the group's heads, concatenated in `heads` order
   * [heads.length * headSize]; the array is reused by the session's next call.
   */
  forward(xb: Float32Array, pos: number, layer: number): Float32Array {
    const { headSize } = this.weights.g;
    if (pos < 0 || pos >= this.contextLength) throw new RangeError(`position ${pos} is outside the context of ${this.contextLength}`);
    const p = this.weights.project(xb, pos, layer);
    const cache = this.cache[layer];
    // append k and v of each kv head j at row (j, pos) of the cache
    for (let j = 0; j < this.kvHeads.length; j++) cache.append(j, pos, p.k, j * headSize, p.v, j * headSize);
    this.attend(p, pos, cache);
    if (this.steering?.layer === layer) addInPlace(this.out, this.steering.vector);
    return this.out;
  }

  /** Causal scaled dot-product attention of each query head over positions 0..pos. */
  private attend(p: Projected, pos: number, cache: KvCache): void {
    const { g, kvOfHead, sqrtHeadSize } = this.weights;
    const hs = g.headSize;
    // query head i over rows 0..pos of its kv head j's keys and values K_j, V_j [pos + 1, headSize]:
    // out_i = softmax(K_j q_i / sqrt(headSize))^T V_j [headSize]
    for (let i = 0; i < this.heads.length; i++) cache.attend(this.out, i * hs, p.qOfHead[i], kvOfHead[i], pos + 1, sqrtHeadSize);
  }
}

/**
 * A head group as one session over weights of its own: the convenience where one group is one
 * generation (the engine, steering, tests). A head node serving several sessions keeps one
 * HeadWeights and makes a HeadSession per session instead.
 */
export class HeadGroup extends HeadSession {
  constructor(g: Geometry, slices: HeadSlices, contextLength = g.seqLen) {
    super(new HeadWeights(g, slices), contextLength);
  }

  /** Bytes of resident weights (the group's W_Q/W_K/W_V rows). */
  get weightBytes(): number {
    return this.weights.weightBytes;
  }
}

/**
 * Splits heads 0..nHeads-1 into groups of consecutive heads. `spec` is a group count
 * ("3": sizes differ by at most one, larger groups first) or explicit sizes ("2+3+3").
 */
export function partitionHeads(nHeads: number, spec: string | number): number[][] {
  const text = String(spec).trim();
  let sizes: number[];
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n < 1 || n > nHeads) throw new InputError(`--groups ${text}: a group count must be between 1 and the model's ${nHeads} heads`);
    sizes = Array.from({ length: n }, (_, i) => Math.floor(nHeads / n) + (i < nHeads % n ? 1 : 0));
  } else if (/^\d+(\+\d+)+$/.test(text)) {
    sizes = text.split('+').map(Number);
    const total = sizes.reduce((a, b) => a + b, 0);
    if (sizes.some((s) => s < 1) || total !== nHeads) {
      throw new InputError(`--groups ${text}: group sizes must be positive and add up to the model's ${nHeads} heads (they add up to ${total})`);
    }
  } else {
    throw new InputError(`--groups ${text}: expected a group count such as 3, or sizes such as 2+3+3`);
  }
  const groups: number[][] = [];
  let next = 0;
  for (const s of sizes) {
    groups.push(Array.from({ length: s }, (_, i) => next + i));
    next += s;
  }
  return groups;
}

/**
 * The gateway's own int8 matrix-vector product (lib/native/int8_matvec.c, a Node-API addon):
 * weights packed once for a sequential read, activations quantised per call as ONNX's
 * DynamicQuantizeLinear does, so a product is the one onnxruntime's MatMulInteger pattern
 * computes (the same integer sums) at the memory's streaming rate.
 *
 * Shapes: a matrix W [rows, cols] (or several stacked on their rows) is held packed, rows in
 * groups of 4, columns in chunks of 64 (padded with zeros): packed[g, chunk, k, j] =
 * W[4g + k, 64 chunk + j], [rows4 / 4, cols64 / 64, 4, 64].
 */
import * as fs from 'node:fs';
import { MeshLlmError } from '../llm/errors';
import { quantizeRowInt8 } from '../llm/quant';
import { buildKernel, kernelAddon } from './build';

interface Addon {
  /** Which instructions the sums use on this CPU: 'avx512-vnni', 'avx2' or 'c'. */
  kernel: string;
  matvecI8(packed: Int8Array, rows: number, cols: number, a: Uint8Array, zeroPoint: number, aScale: number, wScales: Float32Array, rowSums: Int32Array, out: Float32Array): void;
}

let addon: Addon | undefined;

/** The addon, compiled on first use where the build has not (an installed package holds its source, not a binary). */
export function nativeKernels(log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Addon {
  if (addon) return addon;
  const file = kernelAddon();
  if (!fs.existsSync(file)) buildKernel(log);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  addon = require(file) as Addon;
  return addon;
}

/** Columns padded to the kernel's chunk of 64. */
export function paddedCols(cols: number): number {
  return Math.ceil(cols / 64) * 64;
}

/** An int8 matrix as the kernel reads it: codes packed, one float32 scale and one code sum per row. */
export interface PackedInt8 {
  rows: number;
  cols: number;
  /** cols padded to a multiple of 64: the kernel's width. */
  colsPadded: number;
  packed: Int8Array;
  scales: Float32Array;
  /** Sum of each row's codes: the zero point's share of a product, taken off once per row. */
  rowSums: Int32Array;
}

/** Matrices W_0..W_k-1, each [rows, cols], stacked on their rows -> int8 with one scale per row (quantizeRowInt8), packed. */
export function packRows(ws: Float32Array | Float32Array[], rows: number, cols: number): PackedInt8 {
  const list = Array.isArray(ws) ? ws : [ws];
  const n = list.length * rows;
  const colsPadded = paddedCols(cols);
  const groups = Math.ceil(n / 4);
  const packed = new Int8Array(groups * 4 * colsPadded);
  const scales = new Float32Array(n);
  const rowSums = new Int32Array(n);
  const row = new Int8Array(cols);
  for (let r = 0; r < n; r++) {
    const w = list[Math.floor(r / rows)];
    scales[r] = quantizeRowInt8(w, (r % rows) * cols, cols, row, 0, 1);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += row[c];
    rowSums[r] = sum;
    const base = (r >> 2) * 4 * colsPadded + (r & 3) * 64;
    for (let c0 = 0; c0 < cols; c0 += 64) packed.set(row.subarray(c0, Math.min(c0 + 64, cols)), base + c0 * 4);
  }
  return { rows: n, cols, colsPadded, packed, scales, rowSums };
}

/** Round half to even, as ONNX's quantisation rounds. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** An activation as uint8 with one scale and zero point (ONNX DynamicQuantizeLinear); q [colsPadded], the padding at the zero point. */
export interface QuantizedActivation {
  q: Uint8Array;
  scale: number;
  zeroPoint: number;
}

/**
 * x [n] -> uint8 codes over the range [min(0, min x), max(0, max x)]: scale = range / 255
 * (float32), zeroPoint = round(-min / scale), q = clamp(round(x / scale) + zeroPoint, 0, 255);
 * into `q` (its length the padded width; entries past n are the zero point, so they add nothing).
 */
export function quantizeActivation(x: Float32Array, q: Uint8Array): QuantizedActivation {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < x.length; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  const scale = Math.fround(Math.fround(hi - lo) / 255);
  if (scale === 0) {
    q.fill(0);
    return { q, scale, zeroPoint: 0 };
  }
  const zeroPoint = Math.min(255, Math.max(0, roundHalfEven(Math.fround(-lo / scale))));
  for (let i = 0; i < x.length; i++) q[i] = Math.min(255, Math.max(0, roundHalfEven(Math.fround(x[i] / scale)) + zeroPoint));
  q.fill(zeroPoint, x.length);
  return { q, scale, zeroPoint };
}

/** out [rows] = W · x for a packed W [rows, cols] and its quantised x. */
export function matvecInt8(m: PackedInt8, a: QuantizedActivation, out: Float32Array): void {
  if (a.q.length !== m.colsPadded) throw new MeshLlmError(`matvecInt8: the activation has ${a.q.length} codes, the matrix ${m.colsPadded} (padded) columns`);
  nativeKernels().matvecI8(m.packed, m.rows, m.colsPadded, a.q, a.zeroPoint, a.scale, m.scales, m.rowSums, out);
}

/**
 * The gateway's own int8 layer step (lib/native/int8_gateway.c, a Node-API addon): weights
 * packed here once for a sequential read; per product the activation quantised as ONNX's
 * DynamicQuantizeLinear does, so a product is the one onnxruntime's MatMulInteger pattern
 * computes (the same integer sums) at the memory's streaming rate.
 *
 * Shapes: a matrix W [rows, cols] (or several stacked on their rows) is held packed, rows in
 * groups of 4, columns in chunks of 64 (padded with zeros): packed[g, chunk, k, j] =
 * W[4g + k, 64 chunk + j], [rows4 / 4, cols64 / 64, 4, 64].
 */
import * as fs from 'node:fs';
import { quantizeRowInt8 } from '../llm/quant';
import { buildKernel, kernelAddon } from './build';

/** lib/native/int8_gateway.c's exports. */
export interface Int8GatewayAddon {
  /** Which instructions the sums use on this CPU: 'avx512-vnni', 'avx2' or 'c'. */
  kernel: string;
  /** out [rows] = W · x, x [cols] quantised to uint8 first (DynamicQuantizeLinear). */
  product(m: PackedInt8, x: Float32Array, out: Float32Array): void;
  /** x [n] -> uint8 codes into q (its entries past n: the zero point); returns [scale, zeroPoint]. */
  quantizeActivation(x: Float32Array, q: Uint8Array): [number, number];
  /** out = x1 + W_2 · swiglu(W_13 · RMSNorm(x1)), x1 = x + W_O · heads. x, heads, out [dim]. */
  layerStep(layer: PackedLayer, x: Float32Array, heads: Float32Array, out: Float32Array): void;
  /** out [vocab] = W_cls · RMSNorm(x) with rmsFinal [dim]. */
  logitsStep(w: PackedInt8, rmsFinal: Float32Array, x: Float32Array, out: Float32Array): void;
}

let addon: Int8GatewayAddon | undefined;

/** The addon, compiled on first use where the build has not (an installed package holds its source, not a binary). */
export function nativeKernels(log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Int8GatewayAddon {
  if (addon) return addon;
  const file = kernelAddon();
  if (!fs.existsSync(file)) buildKernel(log);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  addon = require(file) as Int8GatewayAddon;
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

/** An int8 gateway layer as layerStep takes it: W_1 and W_3 stacked on their rows (one pass, one activation quantisation). */
export interface PackedLayer {
  wo: PackedInt8;
  w13: PackedInt8;
  w2: PackedInt8;
  rmsFfn: Float32Array;
}

/**
 * Per-head application of a steering direction. The residual stream receives the head
 * outputs through W_O: x += W_O h, with h [dim] the heads' outputs concatenated in head order.
 * A direction d [dim] in the residual stream is written as head outputs u = W_O+ d (W_O+ the
 * pseudo-inverse of that layer's W_O); a node holding heads H receives its block u_H
 * [|H| * headSize], adds alpha * sum_c reading_c * u_{H,c} to its head outputs, and so moves
 * the residual stream by W_O[:, H] u_H: its share of the direction, a vector in its heads'
 * output subspace. The shares of all nodes add up to W_O W_O+ d, which is d itself when W_O
 * has full rank (it does for stories260K; `reconstructionError` measures it).
 *
 * W_O can be ill-conditioned (stories260K layer 3: singular values from 1.5 down to 0.005):
 * writing the part of d along its weakest output directions would take head outputs hundreds
 * of times larger than d, shares that cancel each other, and one node alone would move the
 * residual stream far more than the whole mesh. So a direction is first reduced to its
 * writable part (`writablePart`), the part the heads can write with outputs of moderate size;
 * for that part W_O+ is bounded and the shares still add up to it exactly.
 */
import { Geometry } from '../llm/config';
import { Matrix, columns, matrix, multiply, norm, pseudoInverse, svd } from './linalg';
import { steeringVector } from '../llm/steering-vector';

/** A node and the query heads it computes (ascending). */
export interface NodeHeads {
  node: string;
  heads: number[];
}

/** One node's block of every channel's direction: channel -> [heads.length * headSize]. */
export interface NodeShare extends NodeHeads {
  layer: number;
  /** heads.length * headSize: the length of the node's head outputs and of every channel's block. */
  width: number;
  channels: Record<string, Float32Array>;
}

/** The output columns of W_O that carry some heads: head h owns columns h*headSize .. (h+1)*headSize-1. */
export function headColumns(g: Geometry, heads: readonly number[]): number[] {
  return heads.flatMap((h) => Array.from({ length: g.headSize }, (_, d) => h * g.headSize + d));
}

/** W_O of one layer as a matrix [dim, dim] (x += W_O h). */
export function outputProjection(g: Geometry, wo: Float32Array): Matrix {
  return matrix(g.dim, g.dim, wo);
}

/** The head outputs u = W_O+ d [dim] that write direction d [dim] into the residual stream. */
export function headOutputsFor(woPinv: Matrix, direction: ArrayLike<number>): Float64Array {
  return multiply(woPinv, direction);
}

/**
 * Every node's share of every channel's direction at one layer. `directions`: channel ->
 * [dim]; `wo`: that layer's W_O [dim, dim].
 */
export function splitDirections(g: Geometry, wo: Float32Array, layer: number, nodes: readonly NodeHeads[], directions: Record<string, ArrayLike<number>>): NodeShare[] {
  const pinv = pseudoInverse(outputProjection(g, wo));
  const headOutputs = Object.fromEntries(Object.entries(directions).map(([c, d]) => [c, headOutputsFor(pinv, d)]));
  return nodes.map(({ node, heads }) => {
    const cols = headColumns(g, heads);
    const channels = Object.fromEntries(Object.entries(headOutputs).map(([c, u]) => [c, Float32Array.from(cols, (j) => u[j])]));
    return { node, heads: [...heads], layer, width: cols.length, channels };
  });
}

/**
 * What a node adds to its head outputs: alpha * sum over channels of reading_c * share_c
 * [heads.length * headSize]. Channels without a reading (or with a bad one) contribute nothing.
 */
export function nodeSteeringVector(share: NodeShare, readings: Record<string, number>, alpha: number): Float32Array {
  return steeringVector(share.width, share.channels, readings, alpha);
}

/** The residual-stream vector W_O[:, heads] v [dim] that head-output values v of some heads produce. */
export function residualOf(g: Geometry, wo: Float32Array, heads: readonly number[], v: ArrayLike<number>): Float64Array {
  return multiply(columns(outputProjection(g, wo), headColumns(g, heads)), v);
}

/** |sum over nodes of their residual shares - d| / |d| for one channel. */
export function reconstructionError(g: Geometry, wo: Float32Array, shares: readonly NodeShare[], channel: string, direction: ArrayLike<number>): number {
  const sum = new Float64Array(g.dim);
  for (const s of shares) residualOf(g, wo, s.heads, s.channels[channel]).forEach((x, i) => (sum[i] += x));
  const diff = Array.from(sum, (x, i) => x - direction[i]);
  return norm(diff) / Math.max(norm(direction), 1e-30);
}

/**
 * An orthonormal basis of the writable subspace of one layer: the left singular vectors of
 * W_O whose singular values are at least rcond times the largest. [k][dim]
 */
export function writableBasis(g: Geometry, wo: Float32Array, rcond: number): Float64Array[] {
  const { us, sigma } = svd(outputProjection(g, wo));
  const top = Math.max(...sigma);
  const basis: Float64Array[] = [];
  for (let j = 0; j < g.dim; j++) {
    if (sigma[j] === 0 || sigma[j] < rcond * top) continue;
    basis.push(Float64Array.from({ length: g.dim }, (_, i) => us.data[i * g.dim + j] / sigma[j]));
  }
  return basis;
}

/**
 * The part of d [dim] in the writable subspace: U_k U_k^T d. Its head outputs W_O+ d_k have
 * norm at most |d| / (rcond * sigma_max).
 */
export function writablePart(g: Geometry, wo: Float32Array, direction: ArrayLike<number>, rcond: number): Float64Array {
  const out = new Float64Array(g.dim);
  for (const b of writableBasis(g, wo, rcond)) {
    let c = 0;
    for (let i = 0; i < g.dim; i++) c += b[i] * direction[i];
    for (let i = 0; i < g.dim; i++) out[i] += c * b[i];
  }
  return out;
}

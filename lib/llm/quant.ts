/**
 * Group-wise int8 quantisation: a vector (or each matrix row) is cut into groups of
 * `groupSize` values; each group stores int8 values and one float32 scale = max|v| / 127,
 * with q = round(v / scale) (half away from zero, float32 division, as C's roundf(v / s)).
 * The same code quantises head weight slices and encodes the vectors the radio carries.
 */

/** How numbers are held: float32, or int8 groups with a float32 scale each. Head weights
 * (`--quant`) and the vectors that cross between gateway and heads (the transport) are each
 * one of these; lib/link/body.ts gives each its wire code. */
export type Encoding = 'f32' | 'int8';

/** Int8 values with one float32 scale per group; the last group may be shorter. */
export interface Int8Groups {
  q: Int8Array;
  scales: Float32Array;
  groupSize: number;
}

function roundHalfAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** The scale of a group: max|v| / 127 in float32. */
function groupScale(x: Float32Array, from: number, len: number): number {
  let maxAbs = 0;
  for (let i = 0; i < len; i++) maxAbs = Math.max(maxAbs, Math.abs(x[from + i]));
  return Math.fround(maxAbs / 127);
}

/** The int8 value of v in a group of that scale. */
function quantizeValue(v: number, scale: number): number {
  return scale === 0 ? 0 : roundHalfAway(Math.fround(v / scale));
}

/** Quantises x[offset, offset + n) into `into` at value index `qOffset` (group-aligned). */
function quantizeInto(into: Int8Groups, qOffset: number, x: Float32Array, offset: number, n: number): void {
  const gs = into.groupSize;
  for (let g0 = 0; g0 < n; g0 += gs) {
    const len = Math.min(gs, n - g0);
    const scale = groupScale(x, offset + g0, len);
    into.scales[(qOffset + g0) / gs] = scale;
    for (let i = 0; i < len; i++) into.q[qOffset + g0 + i] = quantizeValue(x[offset + g0 + i], scale);
  }
}

/** Number of groups of `groupSize` covering n values. */
export function groupCount(n: number, groupSize: number): number {
  return Math.ceil(n / groupSize);
}

/** Encodes a vector as int8 groups. Shapes: x [n] -> q [n], scales [ceil(n / groupSize)]. */
export function quantizeVector(x: Float32Array, groupSize: number): Int8Groups {
  const out: Int8Groups = { q: new Int8Array(x.length), scales: new Float32Array(groupCount(x.length, groupSize)), groupSize };
  quantizeInto(out, 0, x, 0, x.length);
  return out;
}

/** Decodes int8 groups into out (float32 q * scale). */
export function dequantizeInto(out: Float32Array, v: Int8Groups, outOffset = 0): void {
  const gs = v.groupSize;
  for (let g = 0, g0 = 0; g0 < v.q.length; g++, g0 += gs) {
    const scale = v.scales[g];
    const end = Math.min(g0 + gs, v.q.length);
    for (let i = g0; i < end; i++) out[outOffset + i] = v.q[i] * scale;
  }
}

/**
 * Replaces x[offset, offset + n) by what survives int8 group encoding and decoding: the
 * values a receiver sees. Used wherever a vector crosses the radio in int8 mode.
 */
export function int8RoundTrip(x: Float32Array, groupSize: number, offset = 0, n = x.length - offset): void {
  // quantizeVector then dequantizeInto, group by group, without allocating the encoding
  for (let g0 = offset; g0 < offset + n; g0 += groupSize) {
    const len = Math.min(groupSize, offset + n - g0);
    const scale = groupScale(x, g0, len);
    for (let i = g0; i < g0 + len; i++) x[i] = quantizeValue(x[i], scale) * scale;
  }
}

/** An int8 matrix [rows, cols] quantised row by row; cols must be a multiple of groupSize. */
export interface Int8Matrix extends Int8Groups {
  rows: number;
  cols: number;
}

export function quantizeMatrix(w: Float32Array, rows: number, cols: number, groupSize: number): Int8Matrix {
  if (cols % groupSize !== 0) throw new RangeError(`int8 group size ${groupSize} does not divide the row length ${cols}`);
  const m: Int8Matrix = { q: new Int8Array(rows * cols), scales: new Float32Array((rows * cols) / groupSize), groupSize, rows, cols };
  for (let r = 0; r < rows; r++) quantizeInto(m, r * cols, w, r * cols, cols);
  return m;
}

/**
 * out[outOffset + r] = sum over groups g of scale[r, g] * (q[r, g] . x[g]). Shapes: x [cols].
 * Like matmul, rows are taken four at a time (one load of x serves four rows); each row's
 * sums keep their order, so the result is bit-identical to one row at a time.
 */
export function matmulInt8(out: Float32Array, x: Float32Array, m: Int8Matrix, outOffset = 0): void {
  const { q, scales, groupSize: gs, rows, cols } = m;
  const groups = cols / gs;
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let g = 0; g < groups; g++) {
      const c0 = g * gs;
      const q0 = r * cols + c0;
      const q1 = q0 + cols;
      const q2 = q1 + cols;
      const q3 = q2 + cols;
      let d0 = 0;
      let d1 = 0;
      let d2 = 0;
      let d3 = 0;
      for (let i = 0; i < gs; i++) {
        const xi = x[c0 + i];
        d0 += q[q0 + i] * xi;
        d1 += q[q1 + i] * xi;
        d2 += q[q2 + i] * xi;
        d3 += q[q3 + i] * xi;
      }
      const sc = r * groups + g; // scale of row r, group g
      s0 += scales[sc] * d0;
      s1 += scales[sc + groups] * d1;
      s2 += scales[sc + 2 * groups] * d2;
      s3 += scales[sc + 3 * groups] * d3;
    }
    out[outOffset + r] = s0;
    out[outOffset + r + 1] = s1;
    out[outOffset + r + 2] = s2;
    out[outOffset + r + 3] = s3;
  }
  for (; r < rows; r++) {
    let sum = 0;
    for (let g = 0; g < groups; g++) {
      const base = r * cols + g * gs;
      let dot = 0;
      for (let i = 0; i < gs; i++) dot += q[base + i] * x[g * gs + i];
      sum += scales[r * groups + g] * dot;
    }
    out[outOffset + r] = sum;
  }
}

/** The largest divisor of n that is at most `limit`: a group size that never straddles a head. */
export function alignedGroupSize(n: number, limit: number): number {
  for (let g = Math.min(n, limit); g > 1; g--) if (n % g === 0) return g;
  return 1;
}

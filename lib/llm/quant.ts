/**
 * Group-wise int8 quantisation: a vector (or each matrix row) is cut into groups of
 * `groupSize` values; each group stores int8 values and one float32 scale = max|v| / 127,
 * with q = round(v / scale) (half away from zero, float32 division, as C's roundf(v / s)).
 * The same code quantises head weight slices and encodes the vectors the radio carries.
 */

/** Int8 values with one float32 scale per group; the last group may be shorter. */
export interface Int8Groups {
  q: Int8Array;
  scales: Float32Array;
  groupSize: number;
}

function roundHalfAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Quantises x[offset, offset + n) into `into` at value index `qOffset` (group-aligned). */
function quantizeInto(into: Int8Groups, qOffset: number, x: Float32Array, offset: number, n: number): void {
  const gs = into.groupSize;
  for (let g0 = 0; g0 < n; g0 += gs) {
    const len = Math.min(gs, n - g0);
    let maxAbs = 0;
    for (let i = 0; i < len; i++) maxAbs = Math.max(maxAbs, Math.abs(x[offset + g0 + i]));
    const scale = Math.fround(maxAbs / 127);
    into.scales[(qOffset + g0) / gs] = scale;
    for (let i = 0; i < len; i++) {
      into.q[qOffset + g0 + i] = scale === 0 ? 0 : roundHalfAway(Math.fround(x[offset + g0 + i] / scale));
    }
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
  for (let i = 0; i < v.q.length; i++) out[outOffset + i] = v.q[i] * v.scales[Math.floor(i / gs)];
}

/**
 * Replaces x[offset, offset + n) by what survives int8 group encoding and decoding: the
 * values a receiver sees. Used wherever a vector crosses the radio in int8 mode.
 */
export function int8RoundTrip(x: Float32Array, groupSize: number, offset = 0, n = x.length - offset): void {
  const enc: Int8Groups = { q: new Int8Array(n), scales: new Float32Array(groupCount(n, groupSize)), groupSize };
  quantizeInto(enc, 0, x, offset, n);
  dequantizeInto(x, enc, offset);
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

/** out[outOffset + r] = sum over groups g of scale[r, g] * (q[r, g] . x[g]). Shapes: x [cols]. */
export function matmulInt8(out: Float32Array, x: Float32Array, m: Int8Matrix, outOffset = 0): void {
  const { q, scales, groupSize: gs, rows, cols } = m;
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let c0 = 0; c0 < cols; c0 += gs) {
      const base = r * cols + c0;
      let dot = 0;
      for (let i = 0; i < gs; i++) dot += q[base + i] * x[c0 + i];
      sum += scales[base / gs] * dot;
    }
    out[outOffset + r] = sum;
  }
}

/** The largest divisor of n that is at most `limit`: a group size that never straddles a head. */
export function alignedGroupSize(n: number, limit: number): number {
  for (let g = Math.min(n, limit); g > 1; g--) if (n % g === 0) return g;
  return 1;
}

/**
 * Group-wise quantisation: a vector (or each matrix row) is cut into groups of `groupSize`
 * values, each group coded by round-to-nearest (RTN) against parameters of its own.
 *
 * - int8 and int4, symmetric: one float32 scale = max|v| / L per group (L = 127 for int8, 7 for
 *   int4, so int4 codes are -7..7, GGML's Q4_0 idea without its -8), q = round(v / scale)
 *   (half away from zero, float32 division, as C's roundf(v / s)); v ~ q * scale.
 * - int2, affine: a float32 scale = (max - min) / 3 and an offset = min per group (of 128, or the
 *   whole row when shorter), q =
 *   round((v - min) / scale) in 0..3 (GGML's Q4_1 "scale and min" idea at 2 bits); v ~ q *
 *   scale + min. A matrix-vector product is the int8 kernel's sum of scale * (q . x) plus, per
 *   group, min * sum(x) (addGroupOffsets).
 *
 * The same code quantises head weight slices and encodes the vectors the radio carries; the
 * firmware's quant.cpp ports it with the same arithmetic (bit-identical, test/firmware-head).
 */

/** How vectors cross between gateway and heads (the transport), each with its wire code in
 * lib/link/body.ts: float32, int8 groups, int4 groups (two codes a byte on the wire), int7
 * groups (codes -63..63, seven bits each on the wire), or int7h: int7 groups of each group's
 * Walsh-Hadamard transform (walshHadamard below; group lengths powers of two). */
export type Encoding = 'f32' | 'int8' | 'int4' | 'int7' | 'int7h';

/** How a head group's weights are held: float32, int8 or int4 groups, or 2-bit affine groups. */
export type WeightFormat = 'f32' | 'int8' | 'int4' | 'int2';

export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'int8', 'int4', 'int2'];
export const TRANSPORT_ENCODINGS: readonly Encoding[] = ['f32', 'int8', 'int7', 'int7h', 'int4'];

/**
 * Storage of each format: bits per value, values per group (weight rows; 0: no groups) and the
 * float32 parameters of a group (a scale; int2 a scale and an offset).
 */
export const FORMAT_SPECS: Readonly<Record<WeightFormat, { bits: number; groupSize: number; groupParams: number }>> = {
  f32: { bits: 32, groupSize: 0, groupParams: 0 },
  int8: { bits: 8, groupSize: 32, groupParams: 1 },
  int4: { bits: 4, groupSize: 32, groupParams: 1 },
  int2: { bits: 2, groupSize: 128, groupParams: 2 },
};

/** The largest code of a symmetric format: codes are -L..L. */
export const SYMMETRIC_LEVELS: Readonly<Record<'int8' | 'int7' | 'int7h' | 'int4', number>> = { int8: 127, int7: 63, int7h: 63, int4: 7 };
/** Bits of a code on the wire. */
export const CODE_BITS: Readonly<Record<'int8' | 'int7' | 'int7h' | 'int4', number>> = { int8: 8, int7: 7, int7h: 7, int4: 4 };
/** The encodings whose groups carry the codes of their Walsh-Hadamard transform. */
export function isRotated(e: Encoding): e is 'int7h' {
  return e === 'int7h';
}
/** Codes of int2 groups are 0..INT2_MAX. */
export const INT2_MAX = 3;

/** Bytes of n values stored in a format in groups of groupSize: packed codes plus the float32 parameters of each group. */
export function storageBytes(n: number, f: WeightFormat, groupSize = FORMAT_SPECS[f].groupSize): number {
  const { bits, groupParams } = FORMAT_SPECS[f];
  return f === 'f32' ? 4 * n : Math.ceil((n * bits) / 8) + 4 * groupParams * Math.ceil(n / groupSize);
}

/**
 * Codes held one a byte (int8, and int4/int2 unpacked) with one float32 scale per group (and
 * for int2 an offset); the last group may be shorter.
 */
export interface Int8Groups {
  q: Int8Array;
  scales: Float32Array;
  groupSize: number;
  /** int2: the offset (group minimum) of each group; absent for symmetric codes. */
  offsets?: Float32Array;
}

export function roundHalfAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/**
 * One matrix row w[offset, offset + cols) as int8 codes with one scale, max|row| / 127 in
 * float32, codes round(w / scale) (half away from zero, by multiplying with 1 / scale), written
 * to out[outOffset + c * outStride]: the gateway's per-row int8 weights (onnxruntime's and the
 * native kernel's alike). Returns the scale.
 */
export function quantizeRowInt8(w: Float32Array, offset: number, cols: number, out: Int8Array, outOffset: number, outStride: number): number {
  let amax = 0;
  for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(w[offset + c]));
  const scale = Math.fround(amax / 127);
  const inv = scale ? 1 / scale : 0;
  for (let c = 0; c < cols; c++) out[outOffset + c * outStride] = roundHalfAway(w[offset + c] * inv);
  return scale;
}

/** The scale of a symmetric group: max|v| / levels in float32. */
export function groupScale(x: Float32Array, from: number, len: number, levels = 127): number {
  let maxAbs = 0;
  for (let i = 0; i < len; i++) maxAbs = Math.max(maxAbs, Math.abs(x[from + i]));
  return Math.fround(maxAbs / levels);
}

/**
 * The code of v in a symmetric group of that scale. int8 codes are not clamped (a degenerate
 * subnormal scale wraps in the Int8Array store, as quant.cpp's toInt8 does); int4 codes are
 * clamped to -7..7.
 */
export function quantizeValue(v: number, scale: number, levels = 127): number {
  if (scale === 0) return 0;
  const q = roundHalfAway(Math.fround(v / scale));
  return levels === 127 ? q : Math.min(levels, Math.max(-levels, q));
}

/** Quantises x[offset, offset + n) into `into` at value index `qOffset` (group-aligned), symmetric codes of -levels..levels. */
function quantizeInto(into: Int8Groups, qOffset: number, x: Float32Array, offset: number, n: number, levels = 127): void {
  const gs = into.groupSize;
  for (let g0 = 0; g0 < n; g0 += gs) {
    const len = Math.min(gs, n - g0);
    const scale = groupScale(x, offset + g0, len, levels);
    into.scales[(qOffset + g0) / gs] = scale;
    for (let i = 0; i < len; i++) into.q[qOffset + g0 + i] = quantizeValue(x[offset + g0 + i], scale, levels);
  }
}

/**
 * int2 affine groups of x[offset, offset + n) into `into` at `qOffset`: min and max of the
 * group (float32 values), scale = float32((max - min) / 3), q = round(float32((v - min) / scale))
 * clamped to 0..3; a constant group has scale 0 and codes 0.
 */
function quantizeAffineInto(into: Int8Groups, qOffset: number, x: Float32Array, offset: number, n: number): void {
  const gs = into.groupSize;
  const offsets = into.offsets!;
  for (let g0 = 0; g0 < n; g0 += gs) {
    const len = Math.min(gs, n - g0);
    let min = x[offset + g0];
    let max = min;
    for (let i = 1; i < len; i++) {
      const v = x[offset + g0 + i];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const scale = Math.fround((max - min) / INT2_MAX);
    const g = (qOffset + g0) / gs;
    into.scales[g] = scale;
    offsets[g] = min;
    for (let i = 0; i < len; i++) {
      const q = scale === 0 ? 0 : roundHalfAway(Math.fround((x[offset + g0 + i] - min) / scale));
      into.q[qOffset + g0 + i] = Math.min(INT2_MAX, Math.max(0, q));
    }
  }
}

/** Number of groups of `groupSize` covering n values. */
export function groupCount(n: number, groupSize: number): number {
  return Math.ceil(n / groupSize);
}

/** Encodes a vector as symmetric groups (int8 unless levels says otherwise). Shapes: x [n] -> q [n], scales [ceil(n / groupSize)]. */
export function quantizeVector(x: Float32Array, groupSize: number, levels = 127): Int8Groups {
  const out: Int8Groups = { q: new Int8Array(x.length), scales: new Float32Array(groupCount(x.length, groupSize)), groupSize };
  quantizeInto(out, 0, x, 0, x.length, levels);
  return out;
}

/** Encodes a vector as int2 affine groups. Shapes: x [n] -> q [n] in 0..3, scales and offsets [ceil(n / groupSize)]. */
export function quantizeInt2Vector(x: Float32Array, groupSize: number): Int8Groups {
  const groups = groupCount(x.length, groupSize);
  const out: Int8Groups = { q: new Int8Array(x.length), scales: new Float32Array(groups), groupSize, offsets: new Float32Array(groups) };
  quantizeAffineInto(out, 0, x, 0, x.length);
  return out;
}

/** Decodes groups into out: float32 q * scale (int2: float32(q * scale + offset)). */
export function dequantizeInto(out: Float32Array, v: Int8Groups, outOffset = 0): void {
  const gs = v.groupSize;
  for (let g = 0, g0 = 0; g0 < v.q.length; g++, g0 += gs) {
    const scale = v.scales[g];
    const end = Math.min(g0 + gs, v.q.length);
    if (v.offsets) {
      const offset = v.offsets[g];
      for (let i = g0; i < end; i++) out[outOffset + i] = v.q[i] * scale + offset;
    } else {
      for (let i = g0; i < end; i++) out[outOffset + i] = v.q[i] * scale;
    }
  }
}

/**
 * Codes of `bits` bits (two's complement) as a little-endian bit stream: code i takes bits
 * [i * bits, (i + 1) * bits), low bit first; the last byte's unused high bits are 0. codes [n]
 * -> bytes [ceil(n * bits / 8)]. For 4 bits: two codes a byte, the first in the low nibble.
 */
export function packCodes(q: Int8Array, bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((q.length * bits) / 8));
  const mask = (1 << bits) - 1;
  for (let i = 0; i < q.length; i++) {
    const at = i * bits;
    const v = (q[i] & mask) << (at & 7); // at most 14 bits
    out[at >> 3] |= v & 0xff;
    if (v > 0xff) out[(at >> 3) + 1] |= v >> 8;
  }
  return out;
}

/** The codes packCodes packed: bytes -> codes [n], sign-extended. */
export function unpackCodes(bytes: Uint8Array, n: number, bits: number): Int8Array {
  const q = new Int8Array(n);
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) q[i] = signedCode(bytes, i, bits, mask);
  return q;
}

/** Code i of a packed stream, sign-extended. */
export function signedCode(bytes: Uint8Array, i: number, bits: number, mask = (1 << bits) - 1): number {
  const at = i * bits;
  const word = bytes[at >> 3] | ((at >> 3) + 1 < bytes.length ? bytes[(at >> 3) + 1] << 8 : 0);
  const u = (word >> (at & 7)) & mask;
  return u >= 1 << (bits - 1) ? u - (1 << bits) : u;
}

/** Two int4 codes a byte, the first in the low nibble (two's complement): codes [n] -> bytes [ceil(n / 2)]. */
export function packInt4(q: Int8Array): Uint8Array {
  return packCodes(q, 4);
}

/** The codes packInt4 packed: bytes -> codes [n], sign-extended. */
export function unpackInt4(bytes: Uint8Array, n: number): Int8Array {
  return unpackCodes(bytes, n, 4);
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

/** int4RoundTrip: as int8RoundTrip with codes -7..7 (scale max|v| / 7). */
export function int4RoundTrip(x: Float32Array, groupSize: number, offset = 0, n = x.length - offset): void {
  clampedRoundTrip(x, groupSize, SYMMETRIC_LEVELS.int4, offset, n);
}

/** int7RoundTrip: as int8RoundTrip with codes -63..63 (scale max|v| / 63). */
export function int7RoundTrip(x: Float32Array, groupSize: number, offset = 0, n = x.length - offset): void {
  clampedRoundTrip(x, groupSize, SYMMETRIC_LEVELS.int7, offset, n);
}

function clampedRoundTrip(x: Float32Array, groupSize: number, L: number, offset: number, n: number): void {
  for (let g0 = offset; g0 < offset + n; g0 += groupSize) {
    const len = Math.min(groupSize, offset + n - g0);
    const scale = groupScale(x, g0, len, L);
    for (let i = g0; i < g0 + len; i++) x[i] = quantizeValue(x[i], scale, L) * scale;
  }
}

/**
 * The unnormalised Walsh-Hadamard transform of x[offset, offset + n) in place (n a power of
 * two): y = H_n x with H_1 = [1], H_2m = [[H_m, H_m], [H_m, -H_m]] (Sylvester order), as
 * log2(n) rounds of butterflies (a, b) -> (a + b, a - b) with half-widths 1, 2, 4, ..., each
 * sum rounded to float32. H_n H_n = n I, so walshHadamard twice, then a division by n (a power
 * of two: exact), gives x back up to the rounding of the sums. The firmware's
 * ml_walsh_hadamard does the same operations in the same order (bit-identical).
 *
 * Why: a group's largest value sets its scale; the transform spreads an outlier over the whole
 * group, so the codes use their range better (incoherence processing, as QuIP#, Tseng et al.
 * 2024, arXiv:2402.04396, and QuaRot, Ashkboos et al. 2024, arXiv:2404.00456, apply to
 * activations). It is orthogonal up to the factor sqrt(n), so a code's error spreads evenly.
 */
export function walshHadamard(x: Float32Array, offset = 0, n = x.length - offset): void {
  if (n < 1 || (n & (n - 1)) !== 0) throw new RangeError(`a Walsh-Hadamard transform needs a power-of-two length (got ${n})`);
  for (let h = 1; h < n; h *= 2) {
    for (let i = 0; i < n; i += 2 * h) {
      for (let j = offset + i; j < offset + i + h; j++) {
        const a = x[j];
        const b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

/** The inverse of walshHadamard on x[offset, offset + n): the transform again, then float32 division by n. */
export function inverseWalshHadamard(x: Float32Array, offset = 0, n = x.length - offset): void {
  walshHadamard(x, offset, n);
  for (let i = offset; i < offset + n; i++) x[i] = x[i] / n;
}

/** Each group of x (groups of groupSize, the last may be shorter) through f, in place. */
export function eachGroup(x: Float32Array, groupSize: number, f: (x: Float32Array, offset: number, n: number) => void, offset = 0, n = x.length - offset): void {
  for (let g0 = offset; g0 < offset + n; g0 += groupSize) f(x, g0, Math.min(groupSize, offset + n - g0));
}

/** int7hRoundTrip: each group's Walsh-Hadamard transform through int7RoundTrip, then transformed back (what an int7h receiver decodes). */
export function int7hRoundTrip(x: Float32Array, groupSize: number, offset = 0, n = x.length - offset): void {
  eachGroup(x, groupSize, walshHadamard, offset, n);
  int7RoundTrip(x, groupSize, offset, n);
  eachGroup(x, groupSize, inverseWalshHadamard, offset, n);
}

/** The values a receiver decodes after x[offset, offset + n) crossed in a transport encoding (f32: unchanged). */
export function transportRoundTrip(encoding: Encoding, x: Float32Array, groupSize: number, offset = 0, n = x.length - offset): void {
  if (encoding === 'int8') int8RoundTrip(x, groupSize, offset, n);
  else if (encoding === 'int4') int4RoundTrip(x, groupSize, offset, n);
  else if (encoding === 'int7') int7RoundTrip(x, groupSize, offset, n);
  else if (encoding === 'int7h') int7hRoundTrip(x, groupSize, offset, n);
}

/** An int8 matrix [rows, cols] quantised row by row; cols must be a multiple of groupSize. */
export interface Int8Matrix extends Int8Groups {
  rows: number;
  cols: number;
}

/**
 * A weight matrix [rows, cols] quantised row by row in a format's groups (codes one a byte):
 * int8 (the default), int4 or int2. cols must be a multiple of groupSize.
 */
export function quantizeMatrix(w: Float32Array, rows: number, cols: number, groupSize: number, format: 'int8' | 'int4' | 'int2' = 'int8'): Int8Matrix {
  if (cols % groupSize !== 0) throw new RangeError(`${format} group size ${groupSize} does not divide the row length ${cols}`);
  const groups = (rows * cols) / groupSize;
  const m: Int8Matrix = { q: new Int8Array(rows * cols), scales: new Float32Array(groups), groupSize, rows, cols };
  if (format === 'int2') {
    m.offsets = new Float32Array(groups);
    for (let r = 0; r < rows; r++) quantizeAffineInto(m, r * cols, w, r * cols, cols);
  } else {
    for (let r = 0; r < rows; r++) quantizeInto(m, r * cols, w, r * cols, cols, SYMMETRIC_LEVELS[format]);
  }
  return m;
}

/**
 * The offsets' share of an int2 product, after matmulInt8 wrote out[outOffset + r] (float32):
 * out[outOffset + r] = float32(out + sum over groups g of offset[r, g] * sum(x[g])), each sum
 * of x in order in double. Shapes: x [cols]. No-op for symmetric codes.
 */
export function addGroupOffsets(out: Float32Array, x: Float32Array, m: Int8Matrix, outOffset = 0): void {
  const { offsets, groupSize: gs, rows, cols } = m;
  if (!offsets) return;
  const groups = cols / gs;
  const xSum = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    let s = 0;
    for (let i = 0; i < gs; i++) s += x[g * gs + i];
    xSum[g] = s;
  }
  for (let r = 0; r < rows; r++) {
    let sum = out[outOffset + r];
    for (let g = 0; g < groups; g++) sum += offsets[r * groups + g] * xSum[g];
    out[outOffset + r] = sum;
  }
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

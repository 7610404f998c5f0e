/**
 * The numeric kernels of the forward pass, as llama2.c's run.c computes them. Vectors are
 * Float32Array, matrices row-major [rows, cols]. Dot products accumulate in double precision
 * and are stored as float32.
 */
import { RMS_EPS, ROPE_THETA } from './config';

/** out[i] = weight[i] * x[i] / sqrt(mean(x^2) + eps); out may alias x. Shapes: [n]. */
export function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array): void {
  const n = x.length;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[i] * x[i];
  const scale = Math.fround(1 / Math.sqrt(Math.fround(Math.fround(ss / n) + RMS_EPS)));
  for (let i = 0; i < n; i++) out[i] = weight[i] * Math.fround(scale * x[i]);
}

/** Dot product a[aOffset, aOffset + n) . b[bOffset, bOffset + n), summed in order in double precision. */
export function dot(a: Float32Array, aOffset: number, b: Float32Array, bOffset: number, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[aOffset + i] * b[bOffset + i];
  return sum;
}

/**
 * out = W x for W [rows, cols] stored from element `wOffset` of w; x [cols]; out [rows]
 * written from element `outOffset`. Each row is the in-order dot product of `dot`; rows are
 * taken eight at a time so that one load of x[c] serves eight rows and the eight sums
 * advance independently (docs/PERFORMANCE.md). The result is bit-identical to one row at a
 * time.
 */
export function matmul(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, cols: number, wOffset = 0, outOffset = 0): void {
  let r = 0;
  for (; r + 8 <= rows; r += 8) {
    const row = wOffset + r * cols; // W[r, 0]; W[r + k, c] is w[row + k * cols + c]
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let s4 = 0;
    let s5 = 0;
    let s6 = 0;
    let s7 = 0;
    for (let c = 0; c < cols; c++) {
      const xc = x[c];
      const i = row + c;
      s0 += w[i] * xc;
      s1 += w[i + cols] * xc;
      s2 += w[i + 2 * cols] * xc;
      s3 += w[i + 3 * cols] * xc;
      s4 += w[i + 4 * cols] * xc;
      s5 += w[i + 5 * cols] * xc;
      s6 += w[i + 6 * cols] * xc;
      s7 += w[i + 7 * cols] * xc;
    }
    out[outOffset + r] = s0;
    out[outOffset + r + 1] = s1;
    out[outOffset + r + 2] = s2;
    out[outOffset + r + 3] = s3;
    out[outOffset + r + 4] = s4;
    out[outOffset + r + 5] = s5;
    out[outOffset + r + 6] = s6;
    out[outOffset + r + 7] = s7;
  }
  for (; r < rows; r++) out[outOffset + r] = dot(w, wOffset + r * cols, x, 0, cols);
}

/**
 * Attention-weighted sum of value rows: out[outOffset + d] = sum over t < len of
 * a[t] * v[t * stride + vOffset + d], for d < n. Each output element is accumulated in
 * double precision in a register (four at a time) and rounded to float32 once.
 */
export function weightedRowSum(out: Float32Array, outOffset: number, a: Float32Array, len: number, v: Float32Array, vOffset: number, stride: number, n: number): void {
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let t = 0, row = vOffset + d; t < len; t++, row += stride) {
      const w = a[t];
      s0 += w * v[row];
      s1 += w * v[row + 1];
      s2 += w * v[row + 2];
      s3 += w * v[row + 3];
    }
    out[outOffset + d] = s0;
    out[outOffset + d + 1] = s1;
    out[outOffset + d + 2] = s2;
    out[outOffset + d + 3] = s3;
  }
  for (; d < n; d++) {
    let s = 0;
    for (let t = 0; t < len; t++) s += a[t] * v[t * stride + vOffset + d];
    out[outOffset + d] = s;
  }
}

/** ln2 / 32 split so that k * EXP_STEP_HI is exact for |k| < 2^21 (fdlibm's ln2_hi / ln2_lo). */
const EXP_STEP_HI = 6.93147180369123816490e-1 / 32;
const EXP_STEP_LO = 1.90821492927058770002e-10 / 32;
const EXP_STEPS_PER_LN2 = 32 / Math.LN2;
/** 2^(j/32) for j in 0..31. */
export const EXP_FRACTION = Float64Array.from({ length: 32 }, (_, j) => Math.pow(2, j / 32));
/** 2^m for m in -160..160 (exact powers of two; |x| < 104 needs |m| <= 151). */
const EXP_SCALE_BIAS = 160;
const EXP_SCALE = Float64Array.from({ length: 2 * EXP_SCALE_BIAS + 1 }, (_, i) => Math.pow(2, i - EXP_SCALE_BIAS));

/**
 * e^x rounded to float32, as C's expf: what Math.fround(Math.exp(x)) gives, about twice as
 * fast (docs/PERFORMANCE.md). x = (32m + j) ln2/32 + r with |r| <= ln2/64, so
 * e^x = 2^m * 2^(j/32) * e^r, e^r by its Taylor series to r^5 (relative error < 3e-15,
 * far below float32's 6e-8, so the rounded result is the same except in the rarest ties).
 */
export function expf(x: number): number {
  // outside (-104, 89) (and NaN) float32 gives 0 or Infinity: leave those to Math.exp
  if (!(x > -104 && x < 89)) return Math.fround(Math.exp(x));
  const k = Math.floor(x * EXP_STEPS_PER_LN2 + 0.5);
  const r = x - k * EXP_STEP_HI - k * EXP_STEP_LO;
  const er = 1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))));
  return Math.fround(er * EXP_FRACTION[k & 31] * EXP_SCALE[(k >> 5) + EXP_SCALE_BIAS]);
}

/** In-place softmax over x[0, n). */
export function softmax(x: Float32Array, n: number): void {
  let max = x[0];
  for (let i = 1; i < n; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = expf(x[i] - max);
    x[i] = e;
    sum += e;
  }
  const total = Math.fround(sum);
  for (let i = 0; i < n; i++) x[i] = x[i] / total;
}

/** x += y, element-wise. Shapes: [n]. */
export function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}

/** SwiGLU gate: h1[i] = silu(h1[i]) * h3[i]. Shapes: [hiddenDim]. */
export function swiglu(h1: Float32Array, h3: Float32Array): void {
  for (let i = 0; i < h1.length; i++) {
    const v = h1[i];
    const silu = Math.fround(v * Math.fround(1 / Math.fround(1 + expf(-v))));
    h1[i] = silu * h3[i];
  }
}

/**
 * RoPE rotation table for one position: cos and sin of pos * theta^(-2i/headSize) for each
 * pair i of a head, computed in float32 as run.c does. Shapes: [headSize / 2] each.
 */
export function ropeTable(pos: number, headSize: number): { cos: Float32Array; sin: Float32Array } {
  const half = headSize / 2;
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let p = 0; p < half; p++) {
    const freq = Math.fround(1 / Math.fround(Math.pow(ROPE_THETA, Math.fround((2 * p) / headSize))));
    const angle = Math.fround(pos * freq);
    cos[p] = Math.cos(angle);
    sin[p] = Math.sin(angle);
  }
  return { cos, sin };
}

/** Rotates one head vector v[offset, offset + headSize) in place by a RoPE table. */
export function rope(v: Float32Array, offset: number, cos: Float32Array, sin: Float32Array): void {
  for (let p = 0; p < cos.length; p++) {
    const i = offset + 2 * p;
    const v0 = v[i];
    const v1 = v[i + 1];
    v[i] = Math.fround(v0 * cos[p]) - Math.fround(v1 * sin[p]);
    v[i + 1] = Math.fround(v0 * sin[p]) + Math.fround(v1 * cos[p]);
  }
}

/** Index of the largest element (the first one on ties). */
export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

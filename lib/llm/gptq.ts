/**
 * GPTQ: error-compensating rounding of weight rows (Frantar, Ashkboos, Hoefler and Alistarh,
 * "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR
 * 2023, arXiv:2210.17323, Algorithm 1 without lazy batching, groups in column order). A
 * projection y = W x [rows, cols] is quantised column by column; the rounding error of column
 * j, divided by the j-th diagonal entry of the upper Cholesky factor U of H^-1, is taken off
 * the columns not yet quantised (W[:, k] -= err * U[j, k]), where H = sum of x x^T over
 * calibration inputs (plus 1% of its mean diagonal, the paper's damping). A group's parameters
 * are set from the (already corrected) values when its first column is reached.
 *
 * What it produces is an Int8Matrix in exactly quantizeMatrix's layout (codes one a byte, the
 * groups' float32 scales, int2's offsets): only the stored integers and scales differ from
 * round-to-nearest, so every kernel (TypeScript, WebAssembly, the firmware's) runs it
 * unchanged. The calibration inputs are the model's own stories (lib/llm/calibration.ts,
 * bench/fidelity.ts).
 */
import { INT2_MAX, Int8Matrix, SYMMETRIC_LEVELS, roundHalfAway } from './quant';

/** Lower Cholesky factor L of a symmetric positive definite A [n, n] (A = L L^T), in a new array. */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) throw new RangeError(`cholesky: the matrix is not positive definite (pivot ${i} is ${s})`);
        l[i * n + i] = Math.sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  return l;
}

/** A^-1 of a symmetric positive definite A [n, n], through its Cholesky factor. */
export function inverseSpd(a: Float64Array, n: number): Float64Array {
  const l = cholesky(a, n);
  // L^-1 by forward substitution, then A^-1 = L^-T L^-1
  const li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = c; k < i; k++) s -= l[i * n + k] * li[k * n + c];
      li[i * n + c] = s / l[i * n + i];
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/** The upper Cholesky factor U of H^-1 (H^-1 = U^T U) after GPTQ's damping: H + 0.01 mean(diag H) I, a dead input's diagonal set to 1. */
export function gptqInverseFactor(h: Float64Array, n: number, damp = 0.01): Float64Array {
  const a = Float64Array.from(h);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += a[i * n + i] / n;
  for (let i = 0; i < n; i++) {
    if (a[i * n + i] === 0) a[i * n + i] = 1;
    a[i * n + i] += damp * mean;
  }
  const l = cholesky(inverseSpd(a, n), n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = l[j * n + i];
  return u;
}

/**
 * W [rows, cols] quantised by GPTQ against U = gptqInverseFactor(H) [cols, cols], in a format's
 * groups of groupSize (int8, int4: symmetric, scale = float32(max|v| / L) of the group's
 * corrected values, codes clamped to -L..L; int2: affine, scale = float32((max - min) / 3),
 * offset = min, codes 0..3). cols must be a multiple of groupSize.
 */
export function gptqQuantizeMatrix(w: Float32Array, rows: number, cols: number, groupSize: number, format: 'int8' | 'int4' | 'int2', u: Float64Array): Int8Matrix {
  if (cols % groupSize !== 0) throw new RangeError(`${format} group size ${groupSize} does not divide the row length ${cols}`);
  const groups = cols / groupSize;
  const m: Int8Matrix = { q: new Int8Array(rows * cols), scales: new Float32Array(rows * groups), groupSize, rows, cols };
  if (format === 'int2') m.offsets = new Float32Array(rows * groups);
  const work = Float64Array.from(w);
  const L = format === 'int2' ? INT2_MAX : SYMMETRIC_LEVELS[format];
  const scale = new Float64Array(rows);
  const offset = new Float64Array(rows);
  for (let j = 0; j < cols; j++) {
    if (j % groupSize === 0) setGroupParameters(work, m, rows, cols, j, format, L, scale, offset);
    const d = u[j * cols + j];
    for (let r = 0; r < rows; r++) {
      const v = work[r * cols + j];
      const q = code(v, scale[r], offset[r], format, L);
      m.q[r * cols + j] = q;
      const err = (v - (format === 'int2' ? Math.fround(q * scale[r] + offset[r]) : Math.fround(q * scale[r]))) / d;
      for (let k = j + 1; k < cols; k++) work[r * cols + k] -= err * u[j * cols + k];
    }
  }
  return m;
}

/** Each row's parameters for the group starting at column j, from the row's current values. */
function setGroupParameters(work: Float64Array, m: Int8Matrix, rows: number, cols: number, j: number, format: 'int8' | 'int4' | 'int2', L: number, scale: Float64Array, offset: Float64Array): void {
  const gs = m.groupSize;
  const g = j / gs;
  const groups = cols / gs;
  for (let r = 0; r < rows; r++) {
    const row = work.subarray(r * cols + j, r * cols + j + gs);
    if (format === 'int2') {
      const min = Math.fround(Math.min(...row));
      const max = Math.fround(Math.max(...row));
      scale[r] = Math.fround((max - min) / L);
      offset[r] = min;
      m.offsets![r * groups + g] = min;
    } else {
      let maxAbs = 0;
      for (const v of row) maxAbs = Math.max(maxAbs, Math.abs(v));
      scale[r] = Math.fround(Math.fround(maxAbs) / L);
    }
    m.scales[r * groups + g] = scale[r];
  }
}

/** The code of v under a group's parameters, clamped to the format's range. */
function code(v: number, scale: number, offset: number, format: 'int8' | 'int4' | 'int2', L: number): number {
  if (scale === 0) return 0;
  if (format === 'int2') return Math.min(L, Math.max(0, roundHalfAway(Math.fround((v - offset) / scale))));
  return Math.min(L, Math.max(-L, roundHalfAway(Math.fround(v / scale))));
}

/**
 * The little linear algebra steering needs, in double precision: the Moore-Penrose
 * pseudo-inverse of a matrix by one-sided Jacobi SVD. Matrices are row-major [rows, cols].
 */

export interface Matrix {
  rows: number;
  cols: number;
  /** Row-major values [rows * cols]. */
  data: Float64Array;
}

export function matrix(rows: number, cols: number, values: ArrayLike<number>): Matrix {
  if (values.length !== rows * cols) throw new RangeError(`a ${rows}x${cols} matrix needs ${rows * cols} values (got ${values.length})`);
  return { rows, cols, data: Float64Array.from(values) };
}

/** y = A x for A [rows, cols], x [cols]. */
export function multiply(a: Matrix, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(a.rows);
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    for (let j = 0; j < a.cols; j++) s += a.data[i * a.cols + j] * x[j];
    y[i] = s;
  }
  return y;
}

/** The columns `cols` of A, in that order: [A.rows, cols.length]. */
export function columns(a: Matrix, cols: readonly number[]): Matrix {
  const out = new Float64Array(a.rows * cols.length);
  for (let i = 0; i < a.rows; i++) cols.forEach((c, k) => (out[i * cols.length + k] = a.data[i * a.cols + c]));
  return { rows: a.rows, cols: cols.length, data: out };
}

export interface Svd {
  /** Left singular vectors scaled by their singular values: column j is sigma_j u_j [rows, cols]. */
  us: Matrix;
  /** Right singular vectors as columns [cols, cols]. */
  v: Matrix;
  sigma: Float64Array;
}

/**
 * One-sided Jacobi SVD: rotates pairs of columns of A until they are mutually orthogonal;
 * the rotated columns are sigma_j u_j and the accumulated rotations are V.
 */
export function svd(a: Matrix, maxSweeps = 60): Svd {
  const { rows: m, cols: n } = a;
  const u = Float64Array.from(a.data);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const rotate = (w: Float64Array, rowsOf: number, p: number, q: number, c: number, s: number): void => {
    for (let i = 0; i < rowsOf; i++) {
      const wp = w[i * n + p];
      const wq = w[i * n + q];
      w[i * n + p] = c * wp - s * wq;
      w[i * n + q] = s * wp + c * wq;
    }
  };
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          const up = u[i * n + p];
          const uq = u[i * n + q];
          alpha += up * up;
          beta += uq * uq;
          gamma += up * uq;
        }
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma === 0) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        rotate(u, m, p, q, c, c * t);
        rotate(v, n, p, q, c, c * t);
      }
    }
    if (!rotated) break;
  }
  const sigma = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += u[i * n + j] ** 2;
    sigma[j] = Math.sqrt(s);
  }
  return { us: { rows: m, cols: n, data: u }, v: { rows: n, cols: n, data: v }, sigma };
}

/**
 * The pseudo-inverse A+ [cols, rows] = V S+ U^T, singular values below rcond * max(sigma)
 * treated as zero.
 */
export function pseudoInverse(a: Matrix, rcond = 1e-12): Matrix {
  const { us, v, sigma } = svd(a);
  const { rows: m, cols: n } = a;
  const tol = rcond * Math.max(0, ...sigma);
  const out = new Float64Array(n * m);
  for (let j = 0; j < n; j++) {
    if (sigma[j] <= tol) continue;
    const w = 1 / (sigma[j] * sigma[j]); // us holds sigma_j u_j, so U^T picks up one more 1/sigma_j
    for (let k = 0; k < n; k++) {
      const vkj = v.data[k * n + j] * w;
      if (vkj === 0) continue;
      for (let i = 0; i < m; i++) out[k * m + i] += vkj * us.data[i * n + j];
    }
  }
  return { rows: n, cols: m, data: out };
}

/** Euclidean norm. */
export function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

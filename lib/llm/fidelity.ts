/**
 * Fidelity of a quantised configuration against float32, by teacher forcing: both engines
 * are fed the same tokens and their next-token distributions compared at every position.
 */
import { argmax } from './math';

export interface Fidelity {
  positions: number;
  /** Share of positions where both pick the same most likely token. */
  top1Agreement: number;
  /** Mean over positions of KL(p_reference || p_candidate), in nats. */
  meanKl: number;
  maxKl: number;
}

/** Softmax in double precision. */
export function probabilities(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

export function klDivergence(reference: Float32Array, candidate: Float32Array): number {
  const p = probabilities(reference);
  const q = probabilities(candidate);
  let kl = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) kl += p[i] * Math.log(p[i] / Math.max(q[i], 1e-300));
  return Math.max(0, kl);
}

export function compareLogits(reference: Float32Array[], candidate: Float32Array[]): Fidelity {
  let agree = 0;
  let total = 0;
  let maxKl = 0;
  reference.forEach((r, i) => {
    if (argmax(r) === argmax(candidate[i])) agree++;
    const kl = klDivergence(r, candidate[i]);
    total += kl;
    maxKl = Math.max(maxKl, kl);
  });
  return { positions: reference.length, top1Agreement: agree / reference.length, meanKl: total / reference.length, maxKl };
}

/** -log p(token) under logits, in nats (double precision softmax). */
export function negativeLogLikelihood(logits: Float32Array, token: number): number {
  return -Math.log(Math.max(probabilities(logits)[token], 1e-300));
}

/**
 * Perplexity of a token sequence under teacher-forced logits: logits[pos] predicts
 * tokens[pos + 1]; exp of the mean negative log-likelihood over positions 0..n-2.
 */
export function perplexity(logits: readonly Float32Array[], tokens: readonly number[]): number {
  let nll = 0;
  for (let pos = 0; pos + 1 < tokens.length; pos++) nll += negativeLogLikelihood(logits[pos], tokens[pos + 1]);
  return Math.exp(nll / (tokens.length - 1));
}

/** A fidelity measured over several teacher-forced sequences, pooled position by position. */
export interface PooledFidelity extends Fidelity {
  /** Perplexity of the sequences under the candidate (pooled negative log-likelihood). */
  perplexity: number;
  /** The same under the reference. */
  referencePerplexity: number;
}

/** Pools the comparison of reference and candidate logits over sequences (each its tokens and both logits). */
export function pooledFidelity(runs: readonly { tokens: readonly number[]; reference: Float32Array[]; candidate: Float32Array[] }[]): PooledFidelity {
  let positions = 0;
  let agree = 0;
  let kl = 0;
  let maxKl = 0;
  let nll = 0;
  let refNll = 0;
  let predicted = 0;
  for (const r of runs) {
    const f = compareLogits(r.reference, r.candidate);
    positions += f.positions;
    agree += f.top1Agreement * f.positions;
    kl += f.meanKl * f.positions;
    maxKl = Math.max(maxKl, f.maxKl);
    const n = r.tokens.length - 1; // a sequence of one token predicts nothing
    if (n < 1) continue;
    nll += Math.log(perplexity(r.candidate, r.tokens)) * n;
    refNll += Math.log(perplexity(r.reference, r.tokens)) * n;
    predicted += n;
  }
  return { positions, top1Agreement: agree / positions, meanKl: kl / positions, maxKl, perplexity: Math.exp(nll / predicted), referencePerplexity: Math.exp(refNll / predicted) };
}

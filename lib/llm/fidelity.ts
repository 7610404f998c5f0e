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

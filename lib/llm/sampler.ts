/**
 * Token sampling as llama2.c does it: greedy at temperature 0; otherwise softmax of
 * logits / temperature, then top-p (nucleus) or plain multinomial sampling driven by a
 * seeded xorshift64* generator, so a seed reproduces a run.
 */
import { argmax, softmax } from './math';

const MASK64 = (1n << 64n) - 1n;

/** llama2.c's xorshift64* generator; floats in [0, 1) from its top 24 bits. */
export class Rng {
  private state: bigint;
  constructor(seed: bigint) {
    this.state = BigInt.asUintN(64, seed);
  }
  nextU32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & MASK64;
    s ^= s >> 27n;
    this.state = s;
    return Number(((s * 0x2545f4914f6cdd1dn) & MASK64) >> 32n);
  }
  nextF32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }
}

export interface SamplerOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Nucleus threshold in (0, 1); values outside it sample from the whole distribution. */
  topP: number;
  seed: bigint;
}

export class Sampler {
  readonly options: SamplerOptions;
  private readonly rng: Rng;
  constructor(options: SamplerOptions) {
    this.options = options;
    this.rng = new Rng(options.seed);
  }

  /**
   * Moves the random stream on as sample() would, without logits: for a token recorded by an
   * earlier run of the same request that is fed again (a resumed run), so what follows is the same.
   */
  skip(): void {
    if (this.options.temperature !== 0) this.rng.nextF32();
  }

  /** Picks the next token; logits [vocab] are overwritten. */
  sample(logits: Float32Array): number {
    const { temperature, topP } = this.options;
    if (temperature === 0) return argmax(logits);
    for (let i = 0; i < logits.length; i++) logits[i] = logits[i] / temperature;
    softmax(logits, logits.length);
    const coin = this.rng.nextF32();
    return topP <= 0 || topP >= 1 ? sampleMultinomial(logits, coin) : sampleTopP(logits, topP, coin);
  }
}

function sampleMultinomial(probs: Float32Array, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < probs.length; i++) {
    cdf = Math.fround(cdf + probs[i]);
    if (coin < cdf) return i;
  }
  return probs.length - 1;
}

/** Samples among the smallest set of most probable tokens whose mass exceeds topP. */
function sampleTopP(probs: Float32Array, topP: number, coin: number): number {
  const n = probs.length;
  const cutoff = Math.fround((1 - topP) / (n - 1));
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) if (probs[i] >= cutoff) candidates.push(i);
  candidates.sort((a, b) => probs[b] - probs[a] || a - b);
  let cumulative = 0;
  let last = candidates.length - 1;
  for (let i = 0; i < candidates.length; i++) {
    cumulative = Math.fround(cumulative + probs[candidates[i]]);
    if (cumulative > topP) {
      last = i;
      break;
    }
  }
  const r = Math.fround(coin * cumulative);
  let cdf = 0;
  for (let i = 0; i <= last; i++) {
    cdf = Math.fround(cdf + probs[candidates[i]]);
    if (r < cdf) return candidates[i];
  }
  return candidates[last];
}

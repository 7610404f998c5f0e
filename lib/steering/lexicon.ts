/**
 * What steering does to the text, measured on the model: the probability that the next word
 * is one of a channel's lexicon words, and the perplexity of a text under a model.
 */
import { Engine, HeadRunner, forward } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { Tokenizer } from '../llm/tokenizer';
import { probabilities } from '../llm/fidelity';

/** Each lexicon word as the tokens it is written with after a space (" loud" and so on). */
export function lexiconTokens(tokenizer: Tokenizer, words: readonly string[]): number[][] {
  const seqs = words.map((w) => tokenizer.encode(w.trim(), false, false));
  // a word that is a token prefix of another would be counted twice
  seqs.forEach((a, i) =>
    seqs.forEach((b, j) => {
      if (i !== j && a.length <= b.length && a.every((t, k) => b[k] === t)) throw new MeshLlmError(`lexicon word "${words[i]}" is a token prefix of "${words[j]}": keep only one`);
    }),
  );
  return seqs;
}

/**
 * Probability that the text after `context` (tokens, BOS first) begins with one of the words:
 * the sum over words of the product of their tokens' conditional probabilities. Runs the
 * engine's gateway on `heads` (default: the engine's own, with whatever steering they carry).
 */
export async function lexiconMass(engine: Engine, context: readonly number[], words: readonly number[][], heads: HeadRunner = engine.heads): Promise<number> {
  const headOut = new Float32Array(engine.g.dim);
  await heads.reset();
  let logits: Float32Array | null = null;
  for (let pos = 0; pos < context.length; pos++) logits = await forward(engine.gateway, heads, context[pos], pos, headOut);
  const first = probabilities(logits!);
  let mass = 0;
  for (const word of words) {
    let p = first[word[0]];
    for (let i = 1; i < word.length && p > 0; i++) {
      // positions after the context are rewritten by every word, so the cache stays the context's
      const next = (await forward(engine.gateway, heads, word[i - 1], context.length + i - 1, headOut)) as Float32Array;
      p *= probabilities(next)[word[i]];
    }
    mass += p;
  }
  return mass;
}

/** Mean lexicon mass over several contexts. */
export async function meanLexiconMass(engine: Engine, contexts: readonly number[][], words: readonly number[][], heads: HeadRunner = engine.heads): Promise<number> {
  let sum = 0;
  for (const c of contexts) sum += await lexiconMass(engine, c, words, heads);
  return sum / contexts.length;
}

/**
 * Mean negative log-likelihood (nats) of tokens[from..] under the engine as it is (teacher
 * forcing; tokens BOS first). exp of it is the perplexity.
 */
export async function meanNll(engine: Engine, tokens: readonly number[], from: number): Promise<{ nll: number; count: number }> {
  const logits = await engine.teacherForce(tokens.slice(0, -1));
  let nll = 0;
  let count = 0;
  for (let pos = Math.max(1, from); pos < tokens.length; pos++) {
    nll -= Math.log(Math.max(probabilities(logits[pos - 1])[tokens[pos]], 1e-300));
    count++;
  }
  return { nll: count ? nll / count : 0, count };
}

/**
 * How varied a text is, from its token ids alone: the repeated-4-gram rate (a loop repeats
 * its 4-grams) and distinct-2 (the share of different bigrams). Perplexity under the
 * unsteered model does not see a loop (a loop is cheap to predict); these do.
 */

/** The n-grams of `tokens` as strings, in order. */
function ngrams(tokens: readonly number[], n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i + n <= tokens.length; i++) out.push(tokens.slice(i, i + n).join(','));
  return out;
}

/** 1 - distinct n-grams / all n-grams (0 for a text too short to hold an n-gram). */
export function repeatedNgramRate(tokens: readonly number[], n = 4): number {
  const all = ngrams(tokens, n);
  return all.length === 0 ? 0 : 1 - new Set(all).size / all.length;
}

/** Distinct n-grams / all n-grams (distinct-2 for n = 2; 1 for a text too short to hold one). */
export function distinctNgrams(tokens: readonly number[], n = 2): number {
  const all = ngrams(tokens, n);
  return all.length === 0 ? 1 : new Set(all).size / all.length;
}

/** The two figures of a set of texts: each text's figure, averaged over the texts. */
export interface Variety {
  /** Mean repeated-4-gram rate. */
  repeated4: number;
  /** Mean distinct-2. */
  distinct2: number;
}

/** Mean variety of several token sequences (each scored on its own, then averaged). */
export function meanVariety(texts: readonly (readonly number[])[]): Variety {
  const mean = (f: (t: readonly number[]) => number) => texts.reduce((s, t) => s + f(t), 0) / Math.max(texts.length, 1);
  return { repeated4: mean((t) => repeatedNgramRate(t, 4)), distinct2: mean((t) => distinctNgrams(t, 2)) };
}

/**
 * What the passages do to the answer, measured on the model: the probability that the answer's
 * next word is one of the passages' own words (lexicon mass, lib/steering/lexicon.ts), with the
 * passages in the prompt and without them; and how often sampled drafts use those words.
 */
import { lexiconMass, lexiconTokens } from '../steering/lexicon';
import { Passage } from './messages';
import { Reasoner, modelPromptOf } from './reasoning';

const STOP = new Set('a an and are as at be but by did do for from had has have he her his i in is it its of on or she so that the their them then there they this to was we were what when where which who will with you your one day once upon time'.split(' '));

/**
 * The passages' content words: lower-case words of three letters or more, not in the prompt,
 * not a stopword, and not a token prefix of another (lexiconMass would count it twice).
 */
export function passageWords(reasoner: Reasoner, passages: readonly Passage[], prompt: string): string[] {
  const inPrompt = new Set(prompt.toLowerCase().match(/[a-z]+/g) ?? []);
  const words = [...new Set(passages.flatMap((p) => p.text.toLowerCase().match(/[a-z]{3,}/g) ?? []))].filter((w) => !STOP.has(w) && !inPrompt.has(w));
  const tokens = words.map((w) => reasoner.engine.tokenizer.encode(w, false, false));
  return words.filter((_, i) => !tokens.some((b, j) => j !== i && tokens[i].length <= b.length && tokens[i].every((t, k) => b[k] === t)));
}

/** The probability that the answer's first word is one of `words`, after the prompt alone and after passages + prompt (unsteered). */
export async function passageWordMass(reasoner: Reasoner, passages: readonly Passage[], prompt: string, words: readonly string[]): Promise<{ without: number; with: number }> {
  const { engine } = reasoner;
  const { runner } = reasoner.steer(null);
  const seqs = lexiconTokens(engine.tokenizer, words);
  const without = await lexiconMass(engine, engine.tokenizer.encode(prompt, true, false), seqs, runner);
  const withPassages = await lexiconMass(engine, engine.tokenizer.encode(modelPromptOf(passages, prompt), true, false), seqs, runner);
  return { without, with: withPassages };
}

/** Share of drafts that use at least one of `words` (whole words, any case). */
export function wordUseRate(texts: readonly string[], words: readonly string[]): number {
  const re = new RegExp(`\\b(${words.join('|')})\\b`, 'i');
  return texts.filter((t) => re.test(t)).length / Math.max(texts.length, 1);
}

/**
 * The filter role's checks of a draft, each with its measured value, threshold and reason:
 *   degeneration  the repeated-4-gram rate of the draft's tokens (a loop repeats its 4-grams);
 *   coherence     the perplexity of the draft under the model, after what the model was fed
 *                 (noise and word salad are expensive to predict; a loop is not, so both checks);
 *   safety        words of a configurable lexicon in the text (whole words, any case).
 * The thresholds are calibrated on the model's own samples (calibrate.ts; docs/AGENTIC.md).
 */
import * as fs from 'node:fs';
import { BOS } from '../llm/config';
import { Engine } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { meanNll } from '../steering/lexicon';
import { repeatedNgramRate } from '../steering/variety';
import { Check, DraftMessage, VerdictMessage } from './messages';

export interface FilterThresholds {
  /** Largest repeated-4-gram rate of an accepted draft. */
  maxRepeated4: number;
  /** Largest perplexity of an accepted draft (after the request's prompt, under the model). */
  maxPerplexity: number;
  /** Fewest sampled tokens of an accepted draft. */
  minTokens: number;
}

/**
 * Calibrated on stories260K (`mesh-llm role filter --calibrate`, calibrate.ts, docs/AGENTIC.md):
 * the 0.95 quantile of 200 of the model's own drafts at the agent's default sampling
 * (temperature 0.8, top-p 0.9, 96 tokens after 100 model-written prompts), times 1.1.
 */
export const DEFAULT_THRESHOLDS: FilterThresholds = { maxRepeated4: 0.141, maxPerplexity: 3.25, minTokens: 4 };

/** A small default safety lexicon (a deployment gives its own with --lexicon FILE). */
export const DEFAULT_SAFETY_LEXICON = ['kill', 'killed', 'blood', 'gun', 'knife', 'hate', 'stupid', 'die', 'dead'];

/** A lexicon file: a JSON array of words, or one word a line (# comments). */
export function loadLexicon(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new MeshLlmError(`lexicon ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const words = text.trim().startsWith('[') ? (JSON.parse(text) as unknown[]) : text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
  if (!words.every((w) => typeof w === 'string' && /^[\p{L}\p{N}' -]+$/u.test(w))) throw new MeshLlmError(`lexicon ${file}: every entry must be a word or phrase of letters, digits, spaces, ' and -`);
  return (words as string[]).map((w) => w.toLowerCase());
}

/** The lexicon's words found in the text, whole words, in lexicon order. */
export function lexiconHits(text: string, lexicon: readonly string[]): string[] {
  const lower = text.toLowerCase();
  return lexicon.filter((w) => new RegExp(`(^|[^\\p{L}\\p{N}])${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^\\p{L}\\p{N}])`, 'u').test(lower));
}

export function degenerationCheck(tokens: readonly number[], t: FilterThresholds): Check {
  if (tokens.length < t.minTokens) return { check: 'degeneration', ok: false, value: 1, threshold: t.maxRepeated4, reason: `only ${tokens.length} tokens (fewer than ${t.minTokens})` };
  const r = repeatedNgramRate(tokens, 4);
  const ok = r <= t.maxRepeated4;
  return { check: 'degeneration', ok, value: r, threshold: t.maxRepeated4, reason: ok ? `repeated 4-grams ${pct(r)} <= ${pct(t.maxRepeated4)}` : `repeated 4-grams ${pct(r)} > ${pct(t.maxRepeated4)}: the draft loops` };
}

export function safetyCheck(text: string, lexicon: readonly string[]): Check {
  const hits = lexiconHits(text, lexicon);
  if (hits.length === 0) return { check: 'safety', ok: true, value: 0, threshold: 0, reason: 'no lexicon word' };
  return { check: 'safety', ok: false, value: hits.length, threshold: 0, reason: `lexicon words: ${hits.join(', ')}`, words: hits };
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

export class DraftFilter {
  constructor(
    readonly engine: Engine,
    readonly thresholds: FilterThresholds = DEFAULT_THRESHOLDS,
    readonly lexicon: readonly string[] = DEFAULT_SAFETY_LEXICON,
  ) {}

  /** exp(mean NLL) of the draft's tokens after the prompt the model wrote them after (BOS first). */
  async perplexity(prompt: string, tokens: readonly number[]): Promise<number> {
    const context = this.engine.tokenizer.encode(prompt, true, false);
    const all = [...context, ...tokens].slice(0, this.engine.g.seqLen + 1);
    if (all.length <= context.length) return Infinity;
    return Math.exp((await meanNll(this.engine, all, context.length)).nll);
  }

  async coherenceCheck(prompt: string, tokens: readonly number[]): Promise<Check> {
    const ppl = tokens.length === 0 ? Infinity : await this.perplexity(prompt, tokens);
    const max = this.thresholds.maxPerplexity;
    const ok = ppl <= max;
    const value = Number.isFinite(ppl) ? ppl : 1e9;
    return { check: 'coherence', ok, value, threshold: max, reason: ok ? `perplexity ${ppl.toFixed(2)} <= ${max}` : `perplexity ${Number.isFinite(ppl) ? ppl.toFixed(2) : 'infinite'} > ${max}: the draft is not text the model finds coherent` };
  }

  /** Every check of a draft; accepted when all pass. */
  async verdict(d: Pick<DraftMessage, 'id' | 'attempt' | 'modelPrompt' | 'text' | 'tokens'>): Promise<VerdictMessage> {
    const tokens = d.tokens.filter((t) => t !== BOS);
    const checks = [degenerationCheck(tokens, this.thresholds), await this.coherenceCheck(d.modelPrompt, tokens), safetyCheck(d.text, this.lexicon)];
    return { protocol: 1, id: d.id, attempt: d.attempt, accepted: checks.every((c) => c.ok), checks, text: d.text };
  }
}

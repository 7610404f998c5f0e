/**
 * The filter's thresholds, calibrated on the model's own samples, and the labelled drafts its
 * rates are measured on. Normal drafts: the model continuing prompts it wrote itself, sampled
 * as the agent samples by default. Degenerate drafts, labelled by construction: a normal
 * draft's first tokens looped, one token stuttered, the model's own text at temperature 2
 * (noise), and a normal draft's tokens shuffled (word salad with the same words).
 */
import { Engine } from '../llm/engine';
import { VARIETY, modelWrittenPrompts } from '../steering/measure';
import { SimRng } from '../steering/sensors';
import { repeatedNgramRate } from '../steering/variety';
import { DraftFilter, FilterThresholds, DEFAULT_THRESHOLDS } from './filter';

export interface Sampling {
  tokens: number;
  temperature: number;
  topP: number;
}

/** The agent's default sampling of a draft. */
export const AGENT_SAMPLING: Sampling = { tokens: 96, temperature: 0.8, topP: 0.9 };

export interface LabelledDraft {
  label: 'normal' | 'loop' | 'stutter' | 'noise' | 'shuffled';
  prompt: string;
  tokens: number[];
  text: string;
}

export interface DraftSet {
  /** Model-written prompts per start phrase. */
  promptsPerStart: number;
  /** First prompt seed (calibration and evaluation use different ones). */
  promptSeed: number;
  /** Samples per prompt. */
  seeds: number[];
}

export const CALIBRATION_SET: DraftSet = { promptsPerStart: 25, promptSeed: 200001, seeds: [1, 2] };
export const EVALUATION_SET: DraftSet = { promptsPerStart: 10, promptSeed: 300001, seeds: [3] };

async function sampleDrafts(engine: Engine, set: DraftSet, s: Sampling, label: LabelledDraft['label']): Promise<LabelledDraft[]> {
  const prompts = await modelWrittenPrompts(engine, { ...VARIETY, promptsPerStart: set.promptsPerStart, promptSeed: set.promptSeed, promptPositions: 12 });
  const out: LabelledDraft[] = [];
  for (const [i, prompt] of prompts.entries()) {
    const n = engine.tokenizer.encode(prompt, true, false).length;
    for (const seed of set.seeds) {
      const r = await engine.generate({ prompt, steps: Math.min(engine.g.seqLen, n + s.tokens), temperature: s.temperature, topP: s.topP, seed: BigInt(seed + 1000 * i) });
      const tokens = r.tokens.slice(n);
      out.push({ label, prompt, tokens, text: engine.tokenizer.decode([r.tokens[n - 1], ...tokens]) });
    }
  }
  return out;
}

/** The model's own drafts, sampled as the agent does. */
export function normalDrafts(engine: Engine, set: DraftSet, s: Sampling = AGENT_SAMPLING): Promise<LabelledDraft[]> {
  return sampleDrafts(engine, set, s, 'normal');
}

function relabel(engine: Engine, d: LabelledDraft, label: LabelledDraft['label'], tokens: number[]): LabelledDraft {
  const last = engine.tokenizer.encode(d.prompt, true, false).at(-1)!;
  return { label, prompt: d.prompt, tokens, text: engine.tokenizer.decode([last, ...tokens]) };
}

/** Degenerate drafts made from normal ones (and the model's noise at temperature 2), same lengths. */
export async function degenerateDrafts(engine: Engine, normal: readonly LabelledDraft[], set: DraftSet, s: Sampling = AGENT_SAMPLING): Promise<LabelledDraft[]> {
  const rng = new SimRng(set.promptSeed);
  const out: LabelledDraft[] = [];
  for (const d of normal) {
    const n = Math.max(d.tokens.length, 24);
    const period = 8 + Math.floor(rng.uniform() * 9); // a loop of 8 to 16 tokens
    const head = d.tokens.slice(0, period);
    out.push(relabel(engine, d, 'loop', Array.from({ length: n }, (_, i) => head[i % head.length])));
    out.push(relabel(engine, d, 'stutter', Array.from({ length: n }, (_, i) => (i < 4 ? d.tokens[i] : d.tokens[4]))));
    const shuffled = [...d.tokens];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    out.push(relabel(engine, d, 'shuffled', shuffled));
  }
  out.push(...(await sampleDrafts(engine, set, { ...s, temperature: 2, topP: 1 }, 'noise')));
  return out;
}

export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

export interface Calibration {
  thresholds: FilterThresholds;
  /** The normal drafts' figures the thresholds come from. */
  normal: { drafts: number; repeated4: { median: number; q: number; max: number }; perplexity: { median: number; q: number; max: number } };
  quantile: number;
  margin: number;
}

/** Thresholds: the q quantile of the normal drafts' repeated-4-gram rate and perplexity, times the margin. */
export async function calibrateThresholds(engine: Engine, normal: readonly LabelledDraft[], q = 0.95, margin = 1.1): Promise<Calibration> {
  const filter = new DraftFilter(engine);
  const rep = normal.map((d) => repeatedNgramRate(d.tokens, 4));
  const ppl: number[] = [];
  for (const d of normal) ppl.push(await filter.perplexity(d.prompt, d.tokens));
  const stats = (v: number[]) => ({ median: quantile(v, 0.5), q: quantile(v, q), max: Math.max(...v) });
  const round = (x: number, digits: number) => Math.ceil(x * 10 ** digits) / 10 ** digits;
  return {
    thresholds: { maxRepeated4: round(quantile(rep, q) * margin, 3), maxPerplexity: round(quantile(ppl, q) * margin, 2), minTokens: DEFAULT_THRESHOLDS.minTokens },
    normal: { drafts: normal.length, repeated4: stats(rep), perplexity: stats(ppl) },
    quantile: q,
    margin,
  };
}

export interface FilterRates {
  /** label -> share of drafts accepted (normal) or rejected (the degenerate labels), with counts. */
  byLabel: Record<string, { drafts: number; rate: number; measure: 'accepted' | 'rejected' }>;
}

/** How the filter does on labelled drafts: the share of normal ones accepted, of each degenerate kind rejected. */
export async function filterRates(filter: DraftFilter, drafts: readonly LabelledDraft[]): Promise<FilterRates> {
  const byLabel: FilterRates['byLabel'] = {};
  for (const d of drafts) {
    const v = await filter.verdict({ id: 'calibration', attempt: 1, modelPrompt: d.prompt, text: d.text, tokens: d.tokens });
    const measure = d.label === 'normal' ? 'accepted' : 'rejected';
    const hit = measure === 'accepted' ? v.accepted : !v.accepted;
    const e = (byLabel[d.label] ??= { drafts: 0, rate: 0, measure });
    e.rate = (e.rate * e.drafts + (hit ? 1 : 0)) / (e.drafts + 1);
    e.drafts++;
  }
  return { byLabel };
}

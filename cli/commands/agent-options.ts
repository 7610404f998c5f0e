/** Options shared by `mesh-llm agent` and `mesh-llm role`: the broker, the index, the filter, the sensing source. */
import * as path from 'node:path';
import { UsageError, floatOption } from '../args';
import { DEFAULT_SAFETY_LEXICON, DEFAULT_THRESHOLDS, FilterThresholds, loadLexicon } from '../../lib/agent/filter';
import { PassageIndex } from '../../lib/agent/retrieval';
import { SensingSource } from '../../lib/agent/roles';

export const indexOptionSpec = {
  corpus: { type: 'string' },
  index: { type: 'string' },
} as const;

export const filterOptionSpec = {
  lexicon: { type: 'string' },
  'max-repeated4': { type: 'string' },
  'max-perplexity': { type: 'string' },
} as const;

export const sensingOptionSpec = {
  scenario: { type: 'string' },
  sensors: { type: 'string' },
  alpha: { type: 'string' },
} as const;

export const indexUsage = `
  --corpus DIR       retrieve from the .txt/.md files of this folder (indexed at start)
  --index FILE       retrieve from an index built by mesh-llm index`;

export const filterUsage = `
  --lexicon FILE     the safety lexicon: a JSON array of words or one a line (default: ${DEFAULT_SAFETY_LEXICON.length} words, docs/AGENTIC.md)
  --max-repeated4 R  largest repeated-4-gram rate accepted (default ${DEFAULT_THRESHOLDS.maxRepeated4}, calibrated)
  --max-perplexity P largest perplexity accepted (default ${DEFAULT_THRESHOLDS.maxPerplexity}, calibrated)`;

export const sensingUsage = `
  --scenario NAME    steer by a simulated scenario: calm, explosion, bright-flash or earthquake
  --sensors FILE     steer by a CSV sensor trace, calibrated on its first minute
  --alpha A          steering strength (default: steering/steering.json)`;

export function indexOf(v: { corpus?: string; index?: string }): PassageIndex {
  if (v.corpus && v.index) throw new UsageError('give --corpus DIR or --index FILE, not both');
  if (v.index) return PassageIndex.load(path.resolve(v.index));
  if (v.corpus) return PassageIndex.fromCorpus(path.resolve(v.corpus));
  return PassageIndex.empty();
}

export function filterOf(v: { lexicon?: string; 'max-repeated4'?: string; 'max-perplexity'?: string }): { thresholds: FilterThresholds; lexicon: string[] } {
  return {
    thresholds: {
      maxRepeated4: floatOption('max-repeated4', v['max-repeated4'], DEFAULT_THRESHOLDS.maxRepeated4, 0, 1),
      maxPerplexity: floatOption('max-perplexity', v['max-perplexity'], DEFAULT_THRESHOLDS.maxPerplexity, 1, 1e9),
      minTokens: DEFAULT_THRESHOLDS.minTokens,
    },
    lexicon: v.lexicon ? loadLexicon(v.lexicon) : [...DEFAULT_SAFETY_LEXICON],
  };
}

export function sensingOf(v: { scenario?: string; sensors?: string; alpha?: string }): SensingSource | undefined {
  if (v.scenario !== undefined && v.sensors !== undefined) throw new UsageError('give --scenario or --sensors, not both');
  const alpha = v.alpha === undefined ? undefined : floatOption('alpha', v.alpha, 0, -100, 100);
  if (v.scenario === undefined && v.sensors === undefined) return alpha === undefined ? undefined : { readings: {}, alpha };
  return { scenario: v.scenario, sensors: v.sensors, alpha };
}

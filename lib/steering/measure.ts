/**
 * `mesh-llm steer measure`: what steering does on the real model, per channel: the lexicon
 * mass as a function of the normalised reading, the perplexity of steered text under the
 * unsteered model, the variety of steered text (repeated 4-grams, distinct-2), sample texts at
 * calm and at full stimulus; the same variety per scenario; how often attribution names the
 * one node of eight that felt a stimulus, and both of two stimulated nodes; and how well the
 * per-node divergences alone tell a node whose sensors changed (ROC AUC).
 */
import { MeshLlmError } from '../llm/errors';
import { Engine, GenerateOptions, HeadRunner, generate } from '../llm/engine';
import { CounterfactualHeads, generateWithAttribution } from './attribution';
import { SteeringData, loadSteering, steeringDir } from './directions';
import { lexiconTokens, meanLexiconMass, meanNll } from './lexicon';
import { scenarioReadings } from './readings';
import { ScenarioName, SimRng } from './sensors';
import { Variety, meanVariety } from './variety';
import { reconstructionError } from './shares';
import { NodeReadings, Steering, clearSteering, localNodes, uniformReadings } from './steer';

export interface MeasureOptions {
  modelPath: string;
  tokenizerPath: string;
  dir?: string;
  /** Default: the settings' alpha. */
  alpha?: number;
  /** Readings at which the lexicon mass is read (0 first). */
  readings?: number[];
  /** Sampled tokens per evaluation context for the perplexity. */
  perplexityTokens?: number;
  /** Samples per evaluation context for the perplexity (default 4; same seeds steered and unsteered). */
  perplexitySamples?: number;
  /** Called as each channel is measured (and before the attribution trials), for progress. */
  onProgress?: (done: number, total: number, what: string) => void;
  attributionTrials?: number;
  /** Sampled tokens per attribution trial. */
  attributionTokens?: number;
  seed?: number;
  /** How the variety of steered text is measured (defaults: VARIETY). */
  variety?: Partial<VarietyOptions>;
  /** Trials with two nodes stimulated on two channels (default 24). */
  pairTrials?: number;
  /** Trials of the novelty detector (default 24): one node stimulated, the others drifting inside the noise. */
  noveltyTrials?: number;
}

/**
 * The variety measurement: prompts the unsteered model writes itself (from `starts`, seeds
 * from `promptSeed` on: no corpus or evaluation text), each continued to `steps` positions
 * greedily and sampled at `temperature` (top-p 0.9) with each of `seeds`.
 */
export interface VarietyOptions {
  starts: string[];
  promptsPerStart: number;
  promptPositions: number;
  promptSeed: number;
  steps: number;
  temperature: number;
  seeds: number[];
}

export const VARIETY: VarietyOptions = {
  starts: ['Once upon a time', 'Lily wanted to', 'Ben had a red ball', 'The cat sat on'],
  promptsPerStart: 4,
  promptPositions: 16,
  promptSeed: 100001,
  steps: 200,
  temperature: 0.8,
  seeds: [1, 2, 3],
};

/** Variety of the steered texts, greedy and sampled (repeated-4-gram rate over every token, BOS included, as the table). */
export interface VarietyMeasure {
  greedy: Variety;
  sampled: Variety;
}

/** A scenario's readings on the eight nodes, the push they add up to and the variety of its text. */
export interface ScenarioMeasure {
  name: ScenarioName;
  /** |combined push| per unit of alpha before the budget. */
  pushNorm: number;
  /** The alpha the nodes apply (alpha, or less inside the budget). */
  alpha: number;
  variety: VarietyMeasure;
  sample: string;
}

export interface ChannelMeasure {
  name: string;
  lexicon: string[];
  /** Lexicon mass at each reading (mean over the evaluation contexts). */
  curve: { reading: number; mass: number }[];
  massRatioAtFull: number;
  monotonic: boolean;
  perplexityUnsteered: number;
  perplexitySteered: number;
  perplexityIncrease: number;
  samples: { calm: string; full: string };
  /** Variety of text at full reading on every node. */
  variety: VarietyMeasure;
}

export interface SteeringMeasure {
  model: string;
  layer: number;
  alpha: number;
  channels: ChannelMeasure[];
  attributionTop1: number;
  attributionTrials: number;
  /** Share of two-stimulus trials whose top-2 attribution is exactly the two stimulated nodes. */
  attributionPairTop2: number;
  pairTrials: number;
  /** Novelty from the divergences alone: ROC AUC of a node's mean KL, stimulated against drifting windows. */
  noveltyAuc: number;
  noveltyWindows: { stimulus: number; none: number };
  unsteeredVariety: VarietyMeasure;
  scenarios: ScenarioMeasure[];
  varietyOptions: VarietyOptions;
  /** Samples per evaluation context behind each perplexity. */
  perplexitySamples: number;
  /** Largest |sum of the node shares - direction| / |direction| over the channels (8 nodes). */
  reconstructionError: number;
}

const SAMPLE_PROMPT = 'Tom was playing in the park with his friend. Suddenly,';

/** Sets the readings' steering on the engine's groups; returns the runner that applies it as a steered generation does (with the envelope). */
function setReadings(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number): HeadRunner {
  steering.apply(engine.heads, readings, alpha);
  return new CounterfactualHeads(engine.heads, engine.g, steering.steeredNodes(readings, alpha));
}

/** A generation with these readings, as `generate --scenario/--sensors` writes it (without the attribution passes). */
async function steeredGenerate(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, options: GenerateOptions) {
  const result = await generate(engine.gateway, setReadings(engine, steering, readings, alpha), engine.tokenizer, options);
  clearSteering(engine.heads);
  return result;
}

/** Perplexity under the unsteered model of text sampled with the given readings (pooled over contexts and samples). */
async function perplexityOf(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, contexts: readonly string[], tokens: number, samples: number, seed: number): Promise<number> {
  let nll = 0;
  let count = 0;
  for (const [i, prompt] of contexts.entries()) {
    for (let k = 0; k < samples; k++) {
      const promptLength = engine.tokenizer.encode(prompt, true, false).length;
      const gen = await steeredGenerate(engine, steering, readings, alpha, { prompt, steps: promptLength + tokens, temperature: 1, topP: 0.9, seed: BigInt(seed + 1000 * k + i) });
      const r = await meanNll(engine, gen.tokens, promptLength);
      nll += r.nll * r.count;
      count += r.count;
    }
  }
  return Math.exp(nll / Math.max(count, 1));
}

/** The model-written prompts of the variety measurement (unsteered, temperature 1, top-p 0.9). */
export async function modelWrittenPrompts(engine: Engine, o: VarietyOptions): Promise<string[]> {
  clearSteering(engine.heads);
  const prompts: string[] = [];
  for (const [i, start] of o.starts.entries()) {
    for (let k = 0; k < o.promptsPerStart; k++) {
      const r = await engine.generate({ prompt: start, steps: o.promptPositions, temperature: 1, topP: 0.9, seed: BigInt(o.promptSeed + i * o.promptsPerStart + k) });
      prompts.push(r.text);
    }
  }
  return prompts;
}

/** Variety of text continued from every prompt with the given readings: greedy once, sampled once per seed. */
export async function varietyOf(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, prompts: readonly string[], o: VarietyOptions): Promise<VarietyMeasure> {
  const texts = async (temperature: number, seeds: readonly number[]) => {
    const out: number[][] = [];
    for (const prompt of prompts) {
      for (const seed of seeds) {
        out.push((await steeredGenerate(engine, steering, readings, alpha, { prompt, steps: o.steps, temperature, topP: 0.9, seed: BigInt(seed) })).tokens);
      }
    }
    return out;
  };
  return { greedy: meanVariety(await texts(0, [1])), sampled: meanVariety(await texts(o.temperature, o.seeds)) };
}

async function sample(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, seed: number): Promise<string> {
  return (await steeredGenerate(engine, steering, readings, alpha, { prompt: SAMPLE_PROMPT, steps: 80, temperature: 0.8, topP: 0.9, seed: BigInt(seed) })).text;
}

type ChannelOptions = Required<Pick<MeasureOptions, 'readings' | 'perplexityTokens' | 'perplexitySamples' | 'seed'>> & { variety: VarietyOptions; prompts: string[] };

async function measureChannel(engine: Engine, steering: Steering, data: SteeringData, index: number, alpha: number, o: ChannelOptions): Promise<ChannelMeasure> {
  const channel = data.channels[index];
  const nodes = localNodes(engine.heads);
  const words = lexiconTokens(engine.tokenizer, channel.lexicon);
  const contexts = data.settings.evaluation.map((p) => engine.tokenizer.encode(p, true, false));
  const at = (r: number) => uniformReadings(nodes, { [channel.channel]: r });
  const curve: ChannelMeasure['curve'] = [];
  for (const reading of o.readings) {
    curve.push({ reading, mass: await meanLexiconMass(engine, contexts, words, setReadings(engine, steering, at(reading), alpha)) });
  }
  clearSteering(engine.heads);
  const base = curve[0].mass;
  const full = curve[curve.length - 1].mass;
  const perplexityUnsteered = await perplexityOf(engine, steering, at(0), alpha, data.settings.evaluation, o.perplexityTokens, o.perplexitySamples, o.seed);
  const perplexitySteered = await perplexityOf(engine, steering, at(1), alpha, data.settings.evaluation, o.perplexityTokens, o.perplexitySamples, o.seed);
  return {
    name: channel.channel,
    lexicon: channel.lexicon,
    curve,
    massRatioAtFull: full / base,
    monotonic: curve.every((c, i) => i === 0 || c.mass > curve[i - 1].mass),
    perplexityUnsteered,
    perplexitySteered,
    perplexityIncrease: perplexitySteered / perplexityUnsteered - 1,
    samples: { calm: await sample(engine, steering, at(0), alpha, o.seed), full: await sample(engine, steering, at(1), alpha, o.seed) },
    variety: await varietyOf(engine, steering, at(1), alpha, o.prompts, o.variety),
  };
}

/** The scenarios with an event, as `generate --scenario S --groups 8` reads them. */
const EVENT_SCENARIOS: ScenarioName[] = ['explosion', 'earthquake', 'bright-flash'];

async function measureScenario(engine: Engine, steering: Steering, name: ScenarioName, alpha: number, o: ChannelOptions): Promise<ScenarioMeasure> {
  const readings = scenarioReadings(name, localNodes(engine.heads).map((n) => n.node)).readings;
  return {
    name,
    pushNorm: steering.pushNorm(readings),
    alpha: steering.alphaFor(readings, alpha),
    variety: await varietyOf(engine, steering, readings, alpha, o.prompts, o.variety),
    sample: await sample(engine, steering, readings, alpha, o.seed),
  };
}

/**
 * Every node's mean divergence KL(steered || without that node) over the tokens sampled
 * after `prompt` with these readings: what the gateway sees, without reading any sensor.
 */
export async function divergenceByNode(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, prompt: string, tokens: number, seed: number): Promise<Map<string, number>> {
  const nodes = localNodes(engine.heads);
  steering.apply(engine.heads, readings, alpha);
  const steps = engine.tokenizer.encode(prompt, true, false).length + tokens;
  const r = await generateWithAttribution(engine.gateway, engine.heads, engine.tokenizer, steering.steeredNodes(readings, alpha), { prompt, steps, temperature: 1, topP: 0.9, seed: BigInt(seed) });
  clearSteering(engine.heads);
  const total = new Map<string, number>(nodes.map((n) => [n.node, 0]));
  for (const a of r.attributions) for (const n of a.nodes) total.set(n.node, total.get(n.node)! + n.kl / r.attributions.length);
  return total;
}

/** The nodes with the largest divergences, largest first. */
function topNodes(divergences: Map<string, number>, k: number): string[] {
  return [...divergences.entries()].sort((a, b) => b[1] - a[1]).slice(0, k).map(([n]) => n);
}

/** Calm-room readings on every node (a simulated calm minute, calibrated): inside every deadband. */
function calmReadings(engine: Engine, seed: number): NodeReadings {
  return scenarioReadings('calm', localNodes(engine.heads).map((n) => n.node), { seed }).readings;
}

/**
 * Attribution trials on eight one-head nodes: every node has the calm room's readings, one
 * node also feels a full stimulus on one channel; the trial counts when that node has the
 * largest mean divergence over the sampled tokens.
 */
export async function attributionTrials(engine: Engine, steering: Steering, data: SteeringData, alpha: number, trials: number, tokens: number, seed: number): Promise<number> {
  const nodes = localNodes(engine.heads);
  let hits = 0;
  for (let t = 0; t < trials; t++) {
    const target = nodes[t % nodes.length].node;
    const channel = steering.channels[Math.floor(t / nodes.length) % steering.channels.length];
    const readings = calmReadings(engine, seed + t);
    readings[target] = { ...readings[target], [channel]: 1 };
    const prompt = data.settings.evaluation[t % data.settings.evaluation.length];
    if (topNodes(await divergenceByNode(engine, steering, readings, alpha, prompt, tokens, seed + t), 1)[0] === target) hits++;
  }
  return hits / trials;
}

/**
 * Two stimuli at once: two different nodes each feel a full stimulus on a different channel
 * (the calm room elsewhere); the trial counts when the two nodes of largest mean divergence
 * are exactly those two.
 */
export async function pairAttributionTrials(engine: Engine, steering: Steering, prompts: readonly string[], alpha: number, trials: number, tokens: number, seed: number): Promise<number> {
  const nodes = localNodes(engine.heads).map((n) => n.node);
  const channels = steering.channels;
  if (nodes.length < 2 || channels.length < 2) throw new MeshLlmError(`two-stimulus trials need two nodes and two channels (have ${nodes.length} nodes, ${channels.length} channels)`);
  let hits = 0;
  for (let t = 0; t < trials; t++) {
    // every pair of nodes and of channels in turn: the second of each pair 1, 2, ... places after the first
    const other = <T>(xs: readonly T[]) => xs[(t + 1 + (Math.floor(t / xs.length) % (xs.length - 1))) % xs.length];
    const a = nodes[t % nodes.length];
    const b = other(nodes);
    const readings = calmReadings(engine, seed + t);
    readings[a] = { ...readings[a], [channels[t % channels.length]]: 1 };
    readings[b] = { ...readings[b], [other(channels)]: 1 };
    const top = topNodes(await divergenceByNode(engine, steering, readings, alpha, prompts[t % prompts.length], tokens, seed + t), 2);
    if (top.includes(a) && top.includes(b)) hits++;
  }
  return hits / trials;
}

/** ROC AUC of scores of positive against negative windows (Mann-Whitney; ties count half). */
export function rocAuc(positive: readonly number[], negative: readonly number[]): number {
  let wins = 0;
  for (const p of positive) for (const n of negative) wins += p > n ? 1 : p === n ? 0.5 : 0;
  return wins / Math.max(positive.length * negative.length, 1);
}

/**
 * Novelty from the token distributions alone. Per trial (held-out prompts and seeds), one node
 * feels a stimulus of a random strength in [0.25, 1] on a random channel; every other node
 * drifts on a random channel by a reading in [0, 0.1] (a sensor just outside its deadband,
 * which is no event). The detector's score for a node's window is its mean divergence over
 * the sampled tokens; it never sees the readings. Returns the ROC AUC of stimulated against
 * drifting windows.
 */
export async function noveltyTrials(engine: Engine, steering: Steering, prompts: readonly string[], alpha: number, trials: number, tokens: number, seed: number): Promise<{ auc: number; stimulus: number; none: number }> {
  const nodes = localNodes(engine.heads).map((n) => n.node);
  const rng = new SimRng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng.uniform() * xs.length)];
  const positive: number[] = [];
  const negative: number[] = [];
  for (let t = 0; t < trials; t++) {
    const target = pick(nodes);
    const readings: NodeReadings = Object.fromEntries(nodes.map((n) => [n, n === target ? { [pick(steering.channels)]: 0.25 + 0.75 * rng.uniform() } : { [pick(steering.channels)]: 0.1 * rng.uniform() }]));
    const kl = await divergenceByNode(engine, steering, readings, alpha, prompts[t % prompts.length], tokens, seed + 7919 * (t + 1));
    for (const n of nodes) (n === target ? positive : negative).push(kl.get(n)!);
  }
  return { auc: rocAuc(positive, negative), stimulus: positive.length, none: negative.length };
}

export async function measureSteering(o: MeasureOptions): Promise<SteeringMeasure> {
  const engine = Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, groups: 8 });
  const data = loadSteering(engine.g.dim, engine.g.nLayers, o.dir ?? steeringDir());
  const steering = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
  const alpha = o.alpha ?? data.settings.alpha;
  const variety = { ...VARIETY, ...o.variety };
  const prompts = await modelWrittenPrompts(engine, variety);
  const opts: ChannelOptions = { readings: o.readings ?? [0, 0.25, 0.5, 0.75, 1], perplexityTokens: o.perplexityTokens ?? 48, perplexitySamples: o.perplexitySamples ?? 4, seed: o.seed ?? 1, variety, prompts };
  const trials = o.attributionTrials ?? 80;
  const pairTrials = o.pairTrials ?? 24;
  const novelty = o.noveltyTrials ?? 24;
  const tokens = o.attributionTokens ?? 6;
  const steps = data.channels.length + 3;
  const channels: ChannelMeasure[] = [];
  for (let i = 0; i < data.channels.length; i++) {
    o.onProgress?.(i, steps, data.channels[i].channel);
    channels.push(await measureChannel(engine, steering, data, i, alpha, opts));
  }
  o.onProgress?.(data.channels.length, steps, `unsteered text and ${EVENT_SCENARIOS.length} scenarios`);
  const unsteeredVariety = await varietyOf(engine, steering, {}, alpha, prompts, variety);
  const scenarios: ScenarioMeasure[] = [];
  for (const name of EVENT_SCENARIOS) scenarios.push(await measureScenario(engine, steering, name, alpha, opts));
  o.onProgress?.(data.channels.length + 1, steps, `${trials} attribution trials, ${pairTrials} with two stimuli`);
  const attributionTop1 = trials === 0 ? NaN : await attributionTrials(engine, steering, data, alpha, trials, tokens, opts.seed);
  const attributionPairTop2 = pairTrials === 0 ? NaN : await pairAttributionTrials(engine, steering, prompts, alpha, pairTrials, tokens, opts.seed + 5000);
  o.onProgress?.(data.channels.length + 2, steps, `${novelty} novelty trials`);
  const n = novelty === 0 ? { auc: NaN, stimulus: 0, none: 0 } : await noveltyTrials(engine, steering, prompts, alpha, novelty, tokens, opts.seed + 9000);
  const wo = engine.gateway.weights.wo[steering.layer];
  const reconstruction = Math.max(...data.channels.map((c) => reconstructionError(engine.g, wo, steering.shares, c.channel, c.vector)));
  o.onProgress?.(steps, steps, 'done');
  return {
    model: engine.checkpoint.path,
    layer: steering.layer,
    alpha,
    channels,
    attributionTop1,
    attributionTrials: trials,
    attributionPairTop2,
    pairTrials,
    noveltyAuc: n.auc,
    noveltyWindows: { stimulus: n.stimulus, none: n.none },
    unsteeredVariety,
    scenarios,
    varietyOptions: variety,
    perplexitySamples: opts.perplexitySamples,
    reconstructionError: reconstruction,
  };
}

/** The repetition targets: sampled at most 1.25x the unsteered rate, greedy at most unsteered + 0.08. */
export const REPETITION_LIMITS = { sampledRatio: 1.25, greedyExcess: 0.08 };

/** Whether a steered text's variety meets the repetition targets against the unsteered text's. */
export function repetitionOk(v: VarietyMeasure, unsteered: VarietyMeasure): boolean {
  return v.sampled.repeated4 <= REPETITION_LIMITS.sampledRatio * unsteered.sampled.repeated4 && v.greedy.repeated4 <= unsteered.greedy.repeated4 + REPETITION_LIMITS.greedyExcess;
}

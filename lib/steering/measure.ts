/**
 * `mesh-llm steer measure`: what steering does on the real model, per channel: the lexicon
 * mass as a function of the normalised reading, the perplexity of steered text under the
 * unsteered model, sample texts at calm and at full stimulus; and how often attribution names
 * the one node of eight that felt a stimulus.
 */
import { Engine } from '../llm/engine';
import { generateWithAttribution } from './attribution';
import { SteeringData, loadSteering, steeringDir } from './directions';
import { lexiconTokens, meanLexiconMass, meanNll } from './lexicon';
import { scenarioReadings } from './readings';
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
}

export interface SteeringMeasure {
  model: string;
  layer: number;
  alpha: number;
  channels: ChannelMeasure[];
  attributionTop1: number;
  attributionTrials: number;
  /** Samples per evaluation context behind each perplexity. */
  perplexitySamples: number;
  /** Largest |sum of the node shares - direction| / |direction| over the channels (8 nodes). */
  reconstructionError: number;
}

const SAMPLE_PROMPT = 'Tom was playing in the park with his friend. Suddenly,';

function setReadings(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number): void {
  steering.apply(engine.heads, readings, alpha);
}

/** Perplexity under the unsteered model of text sampled with the given readings (pooled over contexts and samples). */
async function perplexityOf(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, contexts: readonly string[], tokens: number, samples: number, seed: number): Promise<number> {
  let nll = 0;
  let count = 0;
  for (const [i, prompt] of contexts.entries()) {
    for (let k = 0; k < samples; k++) {
      setReadings(engine, steering, readings, alpha);
      const promptLength = engine.tokenizer.encode(prompt, true, false).length;
      const gen = await engine.generate({ prompt, steps: promptLength + tokens, temperature: 1, topP: 0.9, seed: BigInt(seed + 1000 * k + i) });
      clearSteering(engine.heads);
      const r = await meanNll(engine, gen.tokens, promptLength);
      nll += r.nll * r.count;
      count += r.count;
    }
  }
  return Math.exp(nll / Math.max(count, 1));
}

async function sample(engine: Engine, steering: Steering, readings: NodeReadings, alpha: number, seed: number): Promise<string> {
  setReadings(engine, steering, readings, alpha);
  const r = await engine.generate({ prompt: SAMPLE_PROMPT, steps: 80, temperature: 0.8, topP: 0.9, seed: BigInt(seed) });
  clearSteering(engine.heads);
  return r.text;
}

async function measureChannel(engine: Engine, steering: Steering, data: SteeringData, index: number, alpha: number, o: Required<Pick<MeasureOptions, 'readings' | 'perplexityTokens' | 'perplexitySamples' | 'seed'>>): Promise<ChannelMeasure> {
  const channel = data.channels[index];
  const nodes = localNodes(engine.heads);
  const words = lexiconTokens(engine.tokenizer, channel.lexicon);
  const contexts = data.settings.evaluation.map((p) => engine.tokenizer.encode(p, true, false));
  const at = (r: number) => uniformReadings(nodes, { [channel.channel]: r });
  const curve: ChannelMeasure['curve'] = [];
  for (const reading of o.readings) {
    setReadings(engine, steering, at(reading), alpha);
    curve.push({ reading, mass: await meanLexiconMass(engine, contexts, words) });
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
  };
}

/**
 * Attribution trials on eight one-head nodes: every node has the calm room's readings (a
 * simulated calm minute, calibrated), one node also feels a full stimulus on one channel; the
 * trial counts when that node has the largest mean divergence over the sampled tokens.
 */
export async function attributionTrials(engine: Engine, steering: Steering, data: SteeringData, alpha: number, trials: number, tokens: number, seed: number): Promise<number> {
  const nodes = localNodes(engine.heads);
  let hits = 0;
  for (let t = 0; t < trials; t++) {
    const target = nodes[t % nodes.length].node;
    const channel = steering.channels[Math.floor(t / nodes.length) % steering.channels.length];
    const readings = scenarioReadings('calm', nodes.map((n) => n.node), { seed: seed + t }).readings;
    readings[target] = { ...readings[target], [channel]: 1 };
    const vectors = steering.apply(engine.heads, readings, alpha);
    const steered = nodes.map((n) => ({ node: n.node, heads: n.heads, steering: vectors.get(n.node)! }));
    const prompt = data.settings.evaluation[t % data.settings.evaluation.length];
    const steps = engine.tokenizer.encode(prompt, true, false).length + tokens;
    const r = await generateWithAttribution(engine.gateway, engine.heads, engine.tokenizer, steered, { prompt, steps, temperature: 1, topP: 0.9, seed: BigInt(seed + t) });
    const total = new Map<string, number>();
    for (const a of r.attributions) for (const n of a.nodes) total.set(n.node, (total.get(n.node) ?? 0) + n.kl);
    const top = [...total.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    if (top === target) hits++;
  }
  clearSteering(engine.heads);
  return hits / trials;
}

export async function measureSteering(o: MeasureOptions): Promise<SteeringMeasure> {
  const engine = Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, groups: 8 });
  const data = loadSteering(engine.g.dim, engine.g.nLayers, o.dir ?? steeringDir());
  const steering = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
  const alpha = o.alpha ?? data.settings.alpha;
  const opts = { readings: o.readings ?? [0, 0.25, 0.5, 0.75, 1], perplexityTokens: o.perplexityTokens ?? 48, perplexitySamples: o.perplexitySamples ?? 4, seed: o.seed ?? 1 };
  const channels: ChannelMeasure[] = [];
  const steps = data.channels.length + 1;
  for (let i = 0; i < data.channels.length; i++) {
    o.onProgress?.(i, steps, data.channels[i].channel);
    channels.push(await measureChannel(engine, steering, data, i, alpha, opts));
  }
  const trials = o.attributionTrials ?? 80;
  o.onProgress?.(data.channels.length, steps, `${trials} attribution trials`);
  const attributionTop1 = trials === 0 ? NaN : await attributionTrials(engine, steering, data, alpha, trials, o.attributionTokens ?? 6, opts.seed);
  const wo = engine.gateway.weights.wo[steering.layer];
  const reconstruction = Math.max(...data.channels.map((c) => reconstructionError(engine.g, wo, steering.shares, c.channel, c.vector)));
  o.onProgress?.(steps, steps, 'done');
  return { model: engine.checkpoint.path, layer: steering.layer, alpha, channels, attributionTop1, attributionTrials: trials, perplexitySamples: opts.perplexitySamples, reconstructionError: reconstruction };
}

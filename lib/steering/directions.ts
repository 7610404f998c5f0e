/**
 * Steering directions: per sensor channel a vector in the residual stream, found from text the
 * model writes itself (corpus.ts: a seeded corpus of stories, the same on every run), by one of
 * two methods the channel's file names. `caa` (the default), contrastive activation addition:
 * a channel's positive set is every position within a few tokens of one of its lexicon words
 * (where a story is about to write it, writes it, or has just written it), its negative set
 * every other position; the direction is the mean residual stream over the positive set minus
 * the mean over the negative set, taken right after a layer's attention output is added (where
 * the nodes' steering enters). `gradient`: the lexicon gradient on contexts cut from the corpus
 * (gradient.ts). Then its writable part (shares.ts), scaled to the channel's norm. Each channel
 * is one editable data file in steering/ (lexicon, method, contrast settings, norm and the
 * computed vector); `mesh-llm steer calibrate` recomputes the vectors after an edit.
 */
import { PushEnvelope, checkEnvelope } from './envelope';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../llm/engine';
import { CorpusSettings, CorpusStory, sampleCorpus } from './corpus';
import { MeshLlmError } from '../llm/errors';
import { packageRoot } from '../llm/resolve';
import { lexiconTokens } from './lexicon';
import { writablePart } from './shares';
import { Range, splitWork } from './threads';
import { GradientSettings, checkGradientSettings, gradientDirections } from './gradient';

export type { CorpusSettings, CorpusStory } from './corpus';
export { residualsAfterAttention, sampleCorpus } from './corpus';

/** The shared settings of steering/steering.json. */
export interface SteeringSettings {
  /** Layer whose head outputs are steered (0-based). */
  layer: number;
  /** Default steering strength. */
  alpha: number;
  /**
   * Directions keep only their part along W_O's output directions with singular values of at
   * least rcond times the largest (shares.ts writablePart); 0 keeps all of it.
   */
  rcond: number;
  /**
   * Norm budget of the combined push, per unit of alpha: when the nodes' pushes add up to a
   * residual-stream vector longer than alpha * budget, every node's vector is scaled down by
   * the same factor (steer.ts). Absent: no budget.
   */
  budget?: number;
  /** How the push varies with position (envelope.ts). Absent: the same at every position. */
  envelope?: PushEnvelope;
  /** The model-written stories the contrast sets are taken from. */
  corpus: CorpusSettings;
  /** How channels with `method: "gradient"` measure their lexicon gradient (gradient.ts). */
  gradient?: GradientSettings;
  /** Channel files to load, in this order (steering/{channel}.json). */
  channels: string[];
  /** Contexts (not used to compute directions) at whose end `steer measure` reads the lexicon mass. */
  evaluation: string[];
}

/** One channel's file, steering/{channel}.json. */
export interface ChannelDirectionFile {
  channel: string;
  description: string;
  /** Words whose probability mass the channel should raise (each is a word following a space). */
  lexicon: string[];
  /**
   * How the direction is found: "caa" (the default), contrastive activation addition on the
   * corpus with the contrast settings below; "gradient", the lexicon gradient (gradient.ts) on
   * contexts cut from the corpus, with steering.json's `gradient` settings.
   */
  method?: 'caa' | 'gradient';
  /**
   * CAA's positive set: positions from `before` tokens before a lexicon word of the corpus to
   * `after` tokens after it (each word weighted alike); the negative set: every other position.
   */
  window?: { before: number; after: number };
  /** The positive mean as the mean of the per-word means (default true) or of all positive positions. */
  perWord?: boolean;
  /** The negative set: every other position of the corpus (default), or the other channels' positive sets. */
  negative?: 'rest' | 'otherChannels';
  /** Norm of the direction (its gain: alpha * reading * norm is how far a full mesh moves the residual stream). */
  norm: number;
  /** Computed by `mesh-llm steer calibrate`. */
  direction?: {
    model: string;
    layer: number;
    /** [dim] */
    vector: number[];
  };
}

/** A loaded channel with its direction, ready to use. */
export interface ChannelDirection {
  channel: string;
  lexicon: string[];
  layer: number;
  vector: Float64Array;
}

export interface SteeringData {
  settings: SteeringSettings;
  channels: ChannelDirection[];
}

/** steering/ of the package (or MESH_LLM_STEERING_DIR). */
export function steeringDir(): string {
  return process.env.MESH_LLM_STEERING_DIR ?? path.join(packageRoot(), 'steering');
}

function readJson<T>(file: string): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new MeshLlmError(`steering file ${file}: ${(e as Error).message}`);
  }
}

function checkSettings(file: string, s: SteeringSettings, nLayers?: number): SteeringSettings {
  if (!Number.isInteger(s.layer) || s.layer < 0 || (nLayers !== undefined && s.layer >= nLayers)) throw new MeshLlmError(`steering file ${file}: layer ${s.layer} is not a layer of the model`);
  if (!Number.isFinite(s.alpha)) throw new MeshLlmError(`steering file ${file}: alpha must be a number`);
  if (!(s.rcond >= 0 && s.rcond < 1)) throw new MeshLlmError(`steering file ${file}: rcond must be a number in [0, 1)`);
  if (s.budget !== undefined && !(s.budget > 0)) throw new MeshLlmError(`steering file ${file}: budget must be a positive number (or absent: no budget)`);
  if (s.envelope !== undefined) checkEnvelope(file, s.envelope);
  if (!Array.isArray(s.channels) || s.channels.length === 0) throw new MeshLlmError(`steering file ${file}: channels must list at least one channel`);
  if (!Array.isArray(s.evaluation) || s.evaluation.length === 0) throw new MeshLlmError(`steering file ${file}: evaluation must list at least one context`);
  const c = s.corpus;
  if (!c || !Array.isArray(c.prompts) || c.prompts.length === 0 || !Number.isInteger(c.stories) || c.stories < 1 || !Number.isInteger(c.steps) || c.steps < 2 || !Number.isInteger(c.seed) || c.seed < 1 || !(c.temperature >= 0) || !(c.topP >= 0 && c.topP <= 1))
    throw new MeshLlmError(`steering file ${file}: corpus needs prompts, stories >= 1, steps >= 2, a temperature, a top-p in [0, 1] and a seed >= 1`);
  if (s.gradient !== undefined) checkGradientSettings(file, s.gradient);
  return s;
}

export function readSettings(dir = steeringDir()): SteeringSettings {
  const file = path.join(dir, 'steering.json');
  return checkSettings(file, readJson<SteeringSettings>(file));
}

export function readChannelFile(channel: string, dir = steeringDir()): ChannelDirectionFile {
  const file = path.join(dir, `${channel}.json`);
  const f = readJson<ChannelDirectionFile>(file);
  if (f.channel !== channel) throw new MeshLlmError(`steering file ${file}: names channel "${f.channel}", expected "${channel}"`);
  if (!f.lexicon?.length) throw new MeshLlmError(`steering file ${file}: needs a lexicon`);
  if (f.method !== undefined && f.method !== 'caa' && f.method !== 'gradient') throw new MeshLlmError(`steering file ${file}: method must be "caa" or "gradient"`);
  const w = f.window;
  if ((f.method ?? 'caa') === 'caa' && (!w || !Number.isInteger(w.before) || !Number.isInteger(w.after) || w.before < 0 || w.after < 0)) throw new MeshLlmError(`steering file ${file}: window needs whole numbers before and after (>= 0)`);
  if (!(f.norm > 0 && Number.isFinite(f.norm))) throw new MeshLlmError(`steering file ${file}: norm must be a number > 0`);
  if (f.perWord !== undefined && typeof f.perWord !== 'boolean') throw new MeshLlmError(`steering file ${file}: perWord must be true or false`);
  if (f.negative !== undefined && f.negative !== 'rest' && f.negative !== 'otherChannels') throw new MeshLlmError(`steering file ${file}: negative must be "rest" or "otherChannels"`);
  return f;
}

export function writeChannelFile(f: ChannelDirectionFile, dir = steeringDir()): string {
  const file = path.join(dir, `${f.channel}.json`);
  const { direction, ...rest } = f;
  // one line per vector keeps the file readable and its diffs small
  const text = JSON.stringify(rest, null, 2).replace(/\n}$/, '') + (direction ? `,\n  "direction": ${JSON.stringify(direction)}\n}\n` : '\n}\n');
  fs.writeFileSync(file, text);
  return file;
}

/**
 * The directions a model can use: every channel of the settings, with a vector computed for
 * this model's width at the settings' layer.
 */
export function loadSteering(dim: number, nLayers: number, dir = steeringDir()): SteeringData {
  const settingsFile = path.join(dir, 'steering.json');
  const settings = checkSettings(settingsFile, readJson<SteeringSettings>(settingsFile), nLayers);
  const channels = settings.channels.map((c) => {
    const f = readChannelFile(c, dir);
    const d = f.direction;
    const where = path.join(dir, `${c}.json`);
    if (!d) throw new MeshLlmError(`steering file ${where}: has no direction yet; run \`mesh-llm steer calibrate\``);
    if (d.layer !== settings.layer) throw new MeshLlmError(`steering file ${where}: direction was computed at layer ${d.layer}, settings say ${settings.layer}; run \`mesh-llm steer calibrate\``);
    if (d.vector.length !== dim || d.vector.some((x) => typeof x !== 'number' || !Number.isFinite(x))) throw new MeshLlmError(`steering file ${where}: direction must be ${dim} finite numbers`);
    return { channel: c, lexicon: f.lexicon, layer: d.layer, vector: Float64Array.from(d.vector) };
  });
  return { settings, channels };
}

/** Where the words occur in tokens: [word index, start] for every occurrence (start >= 1). */
export function wordOccurrences(tokens: readonly number[], words: readonly number[][]): [number, number][] {
  const out: [number, number][] = [];
  for (let start = 1; start < tokens.length; start++) words.forEach((w, k) => w.every((t, j) => tokens[start + j] === t) && out.push([k, start]));
  return out;
}

/** A running sum of residual vectors. */
class MeanAccumulator {
  readonly sum: Float64Array;
  count = 0;
  constructor(dim: number) {
    this.sum = new Float64Array(dim);
  }
  add(xs: Float32Array, pos: number): void {
    const dim = this.sum.length;
    for (let d = 0; d < dim; d++) this.sum[d] += xs[pos * dim + d];
    this.count++;
  }
  mean(): Float64Array {
    return this.sum.map((v) => v / this.count);
  }
  merge(sum: Float64Array, count: number): void {
    for (let d = 0; d < this.sum.length; d++) this.sum[d] += sum[d];
    this.count += count;
  }
}

/** Words seen fewer times than this in the corpus are left out of a channel's positive mean (too few to average). */
export const MIN_OCCURRENCES = 5;

/** What a channel's contrast sets held: occurrences per lexicon word, positions in each set. */
export interface ContrastCounts {
  occurrences: Record<string, number>;
  positive: number;
  negative: number;
}

/**
 * What corpusDirections needs of a channel file. A channel without a window (its direction is
 * found another way) gets no contrast of its own, but its words still make up part of the
 * other channels' sets for channels whose negative set is `otherChannels`.
 */
export type ChannelContrast = Pick<ChannelDirectionFile, 'lexicon' | 'window' | 'perWord' | 'negative'>;

/** Positions (1 .. residual positions - 1) within a window of the words' occurrences; calls `each` per occurrence. */
function nearWords(tokens: readonly number[], words: readonly number[][], window: { before: number; after: number }, each?: (word: number, from: number, to: number) => void): Uint8Array {
  const positions = tokens.length - 1;
  const near = new Uint8Array(positions);
  for (const [k, start] of wordOccurrences(tokens, words)) {
    // positions start-1 .. start+len-2 predict the word's tokens
    const from = Math.max(1, start - 1 - window.before);
    const to = Math.min(positions - 1, start + words[k].length - 2 + window.after);
    for (let p = from; p <= to; p++) near[p] = 1;
    each?.(k, from, to);
  }
  return near;
}

/** Every running sum behind the channels' contrast sets, for stories added in any split (threads) and merged. */
class ContrastSums {
  readonly perWord: MeanAccumulator[][];
  readonly occurrences: number[][];
  readonly near: MeanAccumulator[];
  readonly rest: MeanAccumulator[];
  readonly others: MeanAccumulator[][];
  private readonly words: number[][][];

  constructor(engine: Engine, private readonly channels: readonly ChannelContrast[]) {
    const dim = engine.g.dim;
    this.words = channels.map((c) => lexiconTokens(engine.tokenizer, c.lexicon));
    this.perWord = channels.map((c) => c.lexicon.map(() => new MeanAccumulator(dim)));
    this.occurrences = channels.map((c) => c.lexicon.map(() => 0));
    this.near = channels.map(() => new MeanAccumulator(dim));
    this.rest = channels.map(() => new MeanAccumulator(dim));
    this.others = channels.map(() => channels.map(() => new MeanAccumulator(dim)));
  }

  add({ tokens, residuals }: CorpusStory): void {
    const positions = tokens.length - 1;
    const { channels, words } = this;
    channels.forEach((c, ci) => {
      if (!c.window) return;
      const mine = nearWords(tokens, words[ci], c.window, (k, from, to) => {
        this.occurrences[ci][k]++;
        for (let p = from; p <= to; p++) this.perWord[ci][k].add(residuals, p);
      });
      for (let p = 1; p < positions; p++) (mine[p] ? this.near[ci] : this.rest[ci]).add(residuals, p);
      if (c.negative !== 'otherChannels') return;
      channels.forEach((_, oi) => {
        if (oi === ci) return;
        const theirs = nearWords(tokens, words[oi], c.window!);
        for (let p = 1; p < positions; p++) if (theirs[p] && !mine[p]) this.others[ci][oi].add(residuals, p);
      });
    });
  }

  /** Every accumulator in one fixed order (for export and merge). */
  private accumulators(): MeanAccumulator[] {
    return this.channels.flatMap((_, ci) => [...this.perWord[ci], this.near[ci], this.rest[ci], ...this.others[ci]]);
  }

  /** The sums as plain arrays, to send from a worker thread. */
  export(): { sums: Float64Array[]; counts: number[]; occurrences: number[][] } {
    const accs = this.accumulators();
    return { sums: accs.map((a) => a.sum), counts: accs.map((a) => a.count), occurrences: this.occurrences };
  }

  merge(other: ReturnType<ContrastSums['export']>): void {
    this.accumulators().forEach((a, i) => a.merge(other.sums[i], other.counts[i]));
    other.occurrences.forEach((row, ci) => row.forEach((n, k) => (this.occurrences[ci][k] += n)));
  }

  /** Per channel: the mean of the positive set minus the mean of the negative set [dim], and what the sets held (null: a channel without a window). */
  directions(dim: number): ({ caa: Float64Array; counts: ContrastCounts } | null)[] {
    const { perWord, occurrences, near, rest, others } = this;
    return this.channels.map((c, ci) => {
      if (!c.window) return null;
      let positive: Float64Array;
      if (c.perWord === false) {
        if (near[ci].count === 0) throw new MeshLlmError(`no lexicon word of [${c.lexicon.join(', ')}] occurs in the corpus: sample more stories or revise the lexicon`);
        positive = near[ci].mean();
      } else {
        const used = perWord[ci].filter((_, k) => occurrences[ci][k] >= MIN_OCCURRENCES);
        if (used.length === 0) throw new MeshLlmError(`no lexicon word of [${c.lexicon.join(', ')}] occurs ${MIN_OCCURRENCES} times in the corpus: sample more stories or revise the lexicon`);
        positive = new Float64Array(dim);
        for (const acc of used) acc.mean().forEach((v, d) => (positive[d] += v / used.length));
      }
      let negative: Float64Array;
      let negatives: number;
      if (c.negative === 'otherChannels') {
        const sets = others[ci].filter((acc, oi) => oi !== ci && acc.count > 0);
        if (sets.length === 0) throw new MeshLlmError('negative "otherChannels" needs another channel whose words occur in the corpus');
        negative = new Float64Array(dim);
        for (const acc of sets) acc.mean().forEach((v, d) => (negative[d] += v / sets.length));
        negatives = sets.reduce((n, acc) => n + acc.count, 0);
      } else {
        negative = rest[ci].mean();
        negatives = rest[ci].count;
      }
      return {
        caa: positive.map((v, d) => v - negative[d]),
        counts: { occurrences: Object.fromEntries(c.lexicon.map((w, k) => [w, occurrences[ci][k]])), positive: near[ci].count, negative: negatives },
      };
    });
  }
}

/** What a corpus worker thread is given (lib/steering/corpus-worker.ts). */
export interface CorpusWorkerData {
  modelPath: string;
  tokenizerPath: string;
  corpus: CorpusSettings;
  layer: number;
  channels: ChannelContrast[];
  range: Range;
}

/** Runs in a corpus worker thread (corpus-worker.ts): its share of the stories; its sums go back to the parent. */
export async function corpusWorkerMain(data: CorpusWorkerData, tick: () => void): Promise<ReturnType<ContrastSums['export']>> {
  const engine = Engine.load({ modelPath: data.modelPath, tokenizerPath: data.tokenizerPath });
  return contrastShare(engine, data.corpus, data.layer, data.channels, data.range, tick);
}

/** One share of the stories written, their sums kept. */
async function contrastShare(engine: Engine, corpus: CorpusSettings, layer: number, channels: readonly ChannelContrast[], range: Range, tick: () => void): Promise<ReturnType<ContrastSums['export']>> {
  const sums = new ContrastSums(engine, channels);
  await sampleCorpus(engine, corpus, layer, (story) => {
    sums.add(story);
    tick();
  }, range);
  return sums.export();
}

export interface CorpusOptions {
  /** Threads that write the corpus (default: one per CPU, at most 4); the stories are split in contiguous shares. */
  threads?: number;
  /** Called after every story with the number written so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Contrastive activation addition on the corpus, for every channel at once. Per channel, the
 * positive set is the positions within its window of its lexicon words; its mean is the mean of
 * the per-word means (`perWord`, the default: frequent words do not stand for the whole
 * channel; words seen fewer than MIN_OCCURRENCES times are left out) or the plain mean of the
 * positions. The negative set is every other position (`negative: "rest"`, the default), or
 * the positive sets of the other channels (`"otherChannels"`: the mean of their means, each
 * with this channel's window and without this channel's positions). Position 0 (BOS) is never
 * used. The stories are written by `threads` threads (this one and worker threads with their
 * own unsteered engine on the same files) and their sums added in story order. Returns [dim]
 * per channel.
 */
export async function corpusDirections(engine: Engine, corpus: CorpusSettings, layer: number, channels: readonly ChannelContrast[], o: CorpusOptions = {}): Promise<({ caa: Float64Array; counts: ContrastCounts } | null)[]> {
  const shares = await splitWork({
    total: corpus.stories,
    threads: o.threads,
    script: 'corpus-worker.js',
    units: 'stories',
    data: (range): CorpusWorkerData => ({ modelPath: engine.checkpoint.path, tokenizerPath: engine.tokenizer.path, corpus, layer, channels: [...channels], range }),
    local: (range, tick) => contrastShare(engine, corpus, layer, channels, range, tick),
    onProgress: o.onProgress,
  });
  const sums = new ContrastSums(engine, channels);
  for (const share of shares) sums.merge(share);
  return sums.directions(engine.g.dim);
}

/** Options of recomputeDirections: the corpus' threads and progress, and the gradient's progress. */
export interface RecomputeOptions extends CorpusOptions {
  /** Called after every basis vector of the lexicon gradient with the number done so far and the total. */
  onGradientProgress?: (done: number, total: number) => void;
}

/** What recomputeDirections wrote for one channel. */
export interface RecomputedChannel {
  file: string;
  channel: string;
  method: 'caa' | 'gradient';
  norm: number;
  /** caa: what the contrast sets held. */
  counts?: ContrastCounts;
  /** gradient: the number of contexts it was measured on. */
  contexts?: number;
}

/**
 * Recomputes every channel's direction with an unsteered engine (per its method: contrastive
 * activation addition on the sampled corpus, or the lexicon gradient on contexts cut from it),
 * takes its writable part, scales it to the channel's norm and writes the files back.
 */
export async function recomputeDirections(engine: Engine, modelName: string, dir = steeringDir(), layerOverride?: number, o: RecomputeOptions = {}): Promise<RecomputedChannel[]> {
  for (const group of engine.heads.groups) group.steering = null;
  const settingsFile = path.join(dir, 'steering.json');
  const settings = checkSettings(settingsFile, readJson<SteeringSettings>(settingsFile), engine.g.nLayers);
  const layer = layerOverride ?? settings.layer;
  if (layer !== settings.layer) {
    checkSettings(settingsFile, { ...settings, layer }, engine.g.nLayers);
    fs.writeFileSync(settingsFile, `${JSON.stringify({ ...settings, layer }, null, 2)}\n`);
  }
  const files = settings.channels.map((c) => readChannelFile(c, dir));
  const gradientFiles = files.filter((f) => f.method === 'gradient');
  if (gradientFiles.length && !settings.gradient) throw new MeshLlmError(`steering file ${settingsFile}: channels ${gradientFiles.map((f) => f.channel).join(', ')} use method "gradient", which needs the \`gradient\` settings`);
  // every channel's words take part in the contrasts (negative sets of other channels); only CAA channels get one of their own
  const contrasted = files.map((f) => (f.method === 'gradient' ? { ...f, window: undefined } : f));
  const contrasts = gradientFiles.length < files.length ? await corpusDirections(engine, settings.corpus, layer, contrasted, o) : files.map(() => null);
  let gradients: Float64Array[] = [];
  let contexts = 0;
  if (gradientFiles.length && settings.gradient) {
    ({ gradients, contexts } = await gradientDirections(engine, settings.corpus, settings.gradient, layer, settings.rcond, gradientFiles.map((f) => f.lexicon), { threads: o.threads, onProgress: o.onGradientProgress }));
  }
  return files.map((f, i) => {
    const method = f.method ?? 'caa';
    const contrast = contrasts[i];
    const raw = contrast ? contrast.caa : gradients[gradientFiles.indexOf(f)];
    const v = writablePart(engine.g, engine.gateway.weights.wo[layer], raw, settings.rcond);
    const scale = f.norm / Math.hypot(...v);
    const vector = Array.from(v, (x) => Number((x * scale).toPrecision(6)));
    const file = writeChannelFile({ ...f, direction: { model: modelName, layer, vector } }, dir);
    const norm = Math.hypot(...vector);
    return contrast ? { file, channel: f.channel, method, norm, counts: contrast.counts } : { file, channel: f.channel, method, norm, contexts };
  });
}

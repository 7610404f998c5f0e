/**
 * Steering directions: per sensor channel a vector in the residual stream, found by
 * contrastive activation addition: the mean residual stream (right after a layer's attention
 * output is added, where the nodes' steering enters) where prompts that carry the channel's
 * meaning are about to write one of its lexicon words, minus the mean where prompts that
 * carry its opposite are about to write a word. Each channel is one editable
 * data file in steering/ (prompts, target lexicon, and the computed vector); the shared
 * settings (layer, default alpha) are in steering/steering.json. `mesh-llm steer
 * calibrate` recomputes the vectors after an edit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { packageRoot } from '../llm/resolve';
import { Tokenizer } from '../llm/tokenizer';
import { lexiconTokens } from './lexicon';
import { writablePart } from './shares';

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
  /** Prompts that carry the channel's meaning, and prompts that carry its opposite. */
  positive: string[];
  negative: string[];
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
  if (!Array.isArray(s.channels) || s.channels.length === 0) throw new MeshLlmError(`steering file ${file}: channels must list at least one channel`);
  if (!Array.isArray(s.evaluation) || s.evaluation.length === 0) throw new MeshLlmError(`steering file ${file}: evaluation must list at least one context`);
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
  if (!f.positive?.length || !f.negative?.length) throw new MeshLlmError(`steering file ${file}: needs positive and negative prompts`);
  if (!f.lexicon?.length) throw new MeshLlmError(`steering file ${file}: needs a lexicon`);
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

/**
 * The residual stream right after `layer`'s attention output is added, at every position of
 * `tokens` (BOS first). Steering on the engine's heads, if any, is part of what is captured.
 */
export async function residualsAfterAttention(engine: Engine, tokens: readonly number[], layer: number): Promise<Float32Array[]> {
  const { gateway, heads } = engine;
  const headOut = new Float32Array(engine.g.dim);
  const out: Float32Array[] = [];
  await heads.reset();
  for (let pos = 0; pos < tokens.length; pos++) {
    const x = gateway.embed(tokens[pos]);
    for (let l = 0; l <= layer; l++) {
      const xb = gateway.attentionInput(x, l);
      heads.run(xb, pos, l, headOut);
      gateway.aggregate(x, headOut, l);
      if (l < layer) gateway.ffn(x, l);
    }
    out.push(x);
  }
  return out;
}

/** Positions i (1 <= i < tokens.length - 1) whose next token belongs to one of the words. */
export function positionsBeforeWords(tokens: readonly number[], words: readonly number[][]): number[] {
  const inWord = new Uint8Array(tokens.length);
  for (let start = 1; start < tokens.length; start++) {
    for (const w of words) if (w.every((t, k) => tokens[start + k] === t)) for (let k = 0; k < w.length; k++) inWord[start + k] = 1;
  }
  const out: number[] = [];
  for (let i = 1; i < tokens.length - 1; i++) if (inWord[i + 1]) out.push(i);
  return out;
}

/**
 * Mean residual after `layer`'s attention over chosen positions of some prompts: `pick`
 * returns the positions of a prompt's tokens (BOS first) to include.
 */
export async function meanResidual(engine: Engine, prompts: readonly string[], layer: number, pick: (tokens: number[]) => number[]): Promise<{ mean: Float64Array; count: number }> {
  const mean = new Float64Array(engine.g.dim);
  let count = 0;
  for (const p of prompts) {
    const tokens = engine.tokenizer.encode(p, true, false);
    const xs = await residualsAfterAttention(engine, tokens, layer);
    for (const i of pick(tokens)) {
      for (let d = 0; d < mean.length; d++) mean[d] += xs[i][d];
      count++;
    }
  }
  if (count === 0) throw new MeshLlmError('a contrastive prompt set has no position to average over (does the positive set use the lexicon words?)');
  return { mean: mean.map((v) => v / count), count };
}

/** Positions i (1 <= i < tokens.length - 1) whose next token starts a word (its piece begins with a space). */
export function positionsBeforeAnyWord(tokenizer: Tokenizer, tokens: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < tokens.length - 1; i++) if (tokenizer.pieces[tokens[i + 1]].startsWith(' ')) out.push(i);
  return out;
}

/**
 * Contrastive activation addition for one channel: the mean residual where the positive
 * prompts are about to write a lexicon word (positions whose next token belongs to one),
 * minus the mean residual where the negative prompts are about to write any word. [dim]
 */
export async function contrastiveDirection(engine: Engine, positive: readonly string[], negative: readonly string[], lexicon: readonly number[][], layer: number): Promise<Float64Array> {
  const p = await meanResidual(engine, positive, layer, (tokens) => positionsBeforeWords(tokens, lexicon));
  const n = await meanResidual(engine, negative, layer, (tokens) => positionsBeforeAnyWord(engine.tokenizer, tokens));
  return p.mean.map((v, i) => v - n.mean[i]);
}

/**
 * Recomputes every channel's direction with an unsteered engine (contrastive activation
 * addition, then its writable part) and writes the files back.
 */
export async function recomputeDirections(engine: Engine, modelName: string, dir = steeringDir(), layerOverride?: number): Promise<{ file: string; channel: string; norm: number }[]> {
  for (const group of engine.heads.groups) group.steering = null;
  const settingsFile = path.join(dir, 'steering.json');
  const settings = checkSettings(settingsFile, readJson<SteeringSettings>(settingsFile), engine.g.nLayers);
  const layer = layerOverride ?? settings.layer;
  if (layer !== settings.layer) {
    checkSettings(settingsFile, { ...settings, layer }, engine.g.nLayers);
    fs.writeFileSync(settingsFile, `${JSON.stringify({ ...settings, layer }, null, 2)}\n`);
  }
  const written: { file: string; channel: string; norm: number }[] = [];
  for (const channel of settings.channels) {
    const f = readChannelFile(channel, dir);
    const caa = await contrastiveDirection(engine, f.positive, f.negative, lexiconTokens(engine.tokenizer, f.lexicon), layer);
    const v = writablePart(engine.g, engine.gateway.weights.wo[layer], caa, settings.rcond);
    const vector = Array.from(v, (x) => Number(x.toPrecision(6)));
    const file = writeChannelFile({ ...f, direction: { model: modelName, layer, vector } }, dir);
    written.push({ file, channel, norm: Math.hypot(...vector) });
  }
  return written;
}

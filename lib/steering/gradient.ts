/**
 * Lexicon-gradient directions: for a channel, the push p [dim] in the residual stream right
 * after layer L's attention (the same at every position, as the nodes' steering adds it) that
 * raises the log of the channel's lexicon mass fastest,
 *
 *   g = grad_p log( mean over contexts of lexiconMass(context; p) )   at p = 0,
 *
 * taken only inside the writable subspace (shares.ts: W_O's output directions with singular
 * values >= rcond * the largest), so g is a push the heads can write as it is. The contexts are
 * cut from the beginnings of the corpus stories the model writes (corpus.ts), before a word,
 * so they are the model's own text and never the evaluation contexts.
 *
 * g is measured by central differences along an orthonormal basis b_1..b_k of the subspace:
 *   g = sum_j b_j (log M(+eps b_j) - log M(-eps b_j)) / (2 eps),   M(p) = sum over contexts of the mass.
 * Nothing before the push depends on it: every position's residual after layer L's attention
 * (the push point) is computed once per context, unpushed, and each pushed pass runs only
 * layer L's FFN and the layers above it.
 */
import { Engine, LocalHeads } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { probabilities } from '../llm/fidelity';
import { Gateway } from '../llm/gateway';
import { CorpusSettings, CorpusStory, residualsAfterAttention, sampleCorpus } from './corpus';
import { lexiconTokens } from './lexicon';
import { writableBasis } from './shares';
import { Range, splitWork } from './threads';

/** steering.json `gradient`: where the contexts are cut and how the derivative is taken. */
export interface GradientSettings {
  /** Number of contexts: story i of the corpus (i < contexts) gives one. */
  contexts: number;
  /** A context ends before a word that starts at a position in [from, to) (drawn per story, seeded). */
  from: number;
  to: number;
  /** Step of the central differences (a push of norm eps). */
  epsilon: number;
  /** Seed of the draw of each story's cut (story i uses seed + i). */
  seed: number;
}

export function checkGradientSettings(where: string, s: GradientSettings | undefined): GradientSettings {
  if (!s || !Number.isInteger(s.contexts) || s.contexts < 1 || !Number.isInteger(s.from) || s.from < 1 || !Number.isInteger(s.to) || s.to <= s.from + 1 || !(s.epsilon > 0) || !Number.isInteger(s.seed) || s.seed < 1)
    throw new MeshLlmError(`steering file ${where}: gradient needs contexts >= 1, whole numbers 1 <= from < to - 1, epsilon > 0 and a seed >= 1`);
  return s;
}

/** xorshift32: the draw of a story's cut. */
function draw(seed: number, n: number): number {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < 4; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
  }
  return x % n;
}

/**
 * The context a corpus story gives: its tokens up to (not including) a word start drawn among
 * the word starts at positions [from, to); null when the story has none there.
 */
export function cutContext(tokens: readonly number[], pieces: readonly string[], s: GradientSettings, story: number): number[] | null {
  const starts: number[] = [];
  for (let i = s.from; i < Math.min(s.to, tokens.length); i++) if (pieces[tokens[i]].startsWith(' ')) starts.push(i);
  return starts.length ? tokens.slice(0, starts[draw(s.seed + story, starts.length)]) : null;
}

/**
 * One context with everything a pushed pass needs that the push does not change: the residual
 * after layer L's attention at each context position, and for each channel's each word the same
 * at the positions where its tokens after the first are predicted.
 */
interface PreparedContext {
  /** [positions][dim] */
  residuals: Float32Array[];
  /** channel -> word -> residuals at positions length .. length + word.length - 2 */
  words: Float32Array[][][];
}

/** Runs position `pos` from the push point up: x += push, layer L's FFN, the layers above; x is changed. */
async function fromPushPoint(gateway: Gateway, heads: LocalHeads, layer: number, x: Float32Array, push: Float64Array | null, pos: number, headOut: Float32Array): Promise<void> {
  if (push) for (let d = 0; d < x.length; d++) x[d] += push[d];
  gateway.ffn(x, layer);
  for (let l = layer + 1; l < gateway.g.nLayers; l++) {
    const xb = gateway.attentionInput(x, l);
    await heads.run(xb, pos, l, headOut);
    gateway.aggregate(x, headOut, l);
    gateway.ffn(x, l);
  }
}

async function prepare(engine: Engine, layer: number, context: readonly number[], channels: readonly number[][][]): Promise<PreparedContext> {
  const residuals = await residualsAfterAttention(engine, context, layer);
  // a word's later tokens are written after the context, one word after another (each rewrites those positions)
  const words: Float32Array[][][] = [];
  for (const ws of channels) {
    const perWord: Float32Array[][] = [];
    for (const w of ws) perWord.push(await residualsAfterAttention(engine, [...context, ...w.slice(0, -1)], layer, context.length));
    words.push(perWord);
  }
  return { residuals, words };
}

/**
 * Contexts ready for pushed passes: the lexicon mass of every channel after every context, with
 * a push added to the residual stream after layer L's attention at every position, for the cost
 * of the layers above the push point only. The engine must be unsteered and is not used
 * elsewhere meanwhile (its head caches above layer L are rewritten).
 */
export class PushedContexts {
  private constructor(
    private readonly engine: Engine,
    readonly layer: number,
    private readonly channels: number[][][],
    private readonly prepared: PreparedContext[],
  ) {}

  static async prepare(engine: Engine, layer: number, contexts: readonly number[][], lexicons: readonly string[][]): Promise<PushedContexts> {
    for (const group of engine.heads.groups) group.steering = null;
    const channels = lexicons.map((l) => lexiconTokens(engine.tokenizer, l));
    const prepared: PreparedContext[] = [];
    for (const c of contexts) prepared.push(await prepare(engine, layer, c, channels));
    return new PushedContexts(engine, layer, channels, prepared);
  }

  get count(): number {
    return this.prepared.length;
  }

  /** Per context, every channel's lexicon mass with the push p [dim] (null: none). */
  async masses(push: ArrayLike<number> | null): Promise<number[][]> {
    const p = push ? Float64Array.from(push) : null;
    const out: number[][] = [];
    for (const c of this.prepared) out.push(await this.contextMasses(c, p));
    return out;
  }

  /** Every channel's lexicon mass summed over the contexts, with the push. */
  async summed(push: ArrayLike<number> | null): Promise<number[]> {
    const total = this.channels.map(() => 0);
    for (const m of await this.masses(push)) m.forEach((v, ci) => (total[ci] += v));
    return total;
  }

  private async contextMasses(c: PreparedContext, push: Float64Array | null): Promise<number[]> {
    const { gateway, heads } = this.engine;
    const { layer } = this;
    const headOut = new Float32Array(this.engine.g.dim);
    const x = new Float32Array(this.engine.g.dim);
    const n = c.residuals.length;
    for (let pos = 0; pos < n; pos++) {
      x.set(c.residuals[pos]);
      await fromPushPoint(gateway, heads, layer, x, push, pos, headOut);
    }
    const first = probabilities(gateway.logits(x));
    const masses: number[] = [];
    for (const [ci, words] of this.channels.entries()) {
      let mass = 0;
      for (const [k, w] of words.entries()) {
        let p = first[w[0]];
        for (let i = 1; i < w.length && p > 0; i++) {
          x.set(c.words[ci][k][i - 1]);
          await fromPushPoint(gateway, heads, layer, x, push, n + i - 1, headOut);
          p *= probabilities(gateway.logits(x))[w[i]];
        }
        mass += p;
      }
      masses.push(mass);
    }
    return masses;
  }
}

/** The contexts of the gradient: the corpus' first stories, written up to position `to`, each cut before a word. */
export async function gradientContexts(engine: Engine, corpus: CorpusSettings, s: GradientSettings, layer: number): Promise<number[][]> {
  // a context and a word after it must fit in the model's sequence
  if (s.to > engine.g.seqLen - 16) throw new MeshLlmError(`gradient: contexts must end before position ${engine.g.seqLen - 16} (this model's sequence is ${engine.g.seqLen} positions); "to" is ${s.to}`);
  const contexts: number[][] = [];
  let story = 0;
  await sampleCorpus(engine, { ...corpus, steps: s.to }, layer, ({ tokens }: CorpusStory) => {
    const c = cutContext(tokens, engine.tokenizer.pieces, s, story++);
    if (c) contexts.push(c);
  }, { from: 0, to: s.contexts });
  if (contexts.length === 0) throw new MeshLlmError(`gradient: no story of the first ${s.contexts} has a word start between positions ${s.from} and ${s.to}`);
  return contexts;
}

/** The contexts used, and per basis vector the masses summed over them of every channel, pushed +eps and -eps along it. */
export interface DirectionalMasses {
  contexts: number;
  masses: { plus: number[]; minus: number[] }[];
}

/** For basis vectors [from, to): the summed masses of every channel with the push +eps b_j and -eps b_j. */
export async function directionalMasses(engine: Engine, corpus: CorpusSettings, s: GradientSettings, layer: number, rcond: number, lexicons: readonly string[][], range: Range, onDirection?: () => void): Promise<DirectionalMasses> {
  for (const group of engine.heads.groups) group.steering = null;
  const pushed = await PushedContexts.prepare(engine, layer, await gradientContexts(engine, corpus, s, layer), lexicons);
  const basis = writableBasis(engine.g, engine.gateway.weights.wo[layer], rcond);
  const masses: { plus: number[]; minus: number[] }[] = [];
  for (let j = range.from; j < Math.min(range.to, basis.length); j++) {
    const along = (sign: number) => pushed.summed(basis[j].map((v) => sign * s.epsilon * v));
    masses.push({ plus: await along(1), minus: await along(-1) });
    onDirection?.();
    await new Promise((resolve) => setImmediate(resolve)); // let the event loop run (worker threads' progress) between directions
  }
  return { contexts: pushed.count, masses };
}

/** What a gradient worker thread is given (gradient-worker.ts). */
export interface GradientWorkerData {
  modelPath: string;
  tokenizerPath: string;
  corpus: CorpusSettings;
  gradient: GradientSettings;
  layer: number;
  rcond: number;
  lexicons: string[][];
  range: Range;
}

/** Runs in a gradient worker thread (gradient-worker.ts): its share of the basis; the masses go back to the parent. */
export async function gradientWorkerMain(data: GradientWorkerData, tick: () => void): Promise<DirectionalMasses> {
  const engine = Engine.load({ modelPath: data.modelPath, tokenizerPath: data.tokenizerPath });
  return directionalMasses(engine, data.corpus, data.gradient, data.layer, data.rcond, data.lexicons, data.range, tick);
}

export interface GradientOptions {
  /** Threads (default: one per CPU, at most 4); the basis vectors are split in contiguous shares. */
  threads?: number;
  /** Called after every basis vector with the number done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The lexicon gradient [dim] of every channel (lexicons: one word list per channel), in the
 * writable subspace of `layer`. Each basis vector's differences are taken in one thread or
 * another and put together in basis order, so the result does not depend on the thread count.
 */
export async function gradientDirections(engine: Engine, corpus: CorpusSettings, s: GradientSettings, layer: number, rcond: number, lexicons: readonly string[][], o: GradientOptions = {}): Promise<{ gradients: Float64Array[]; contexts: number }> {
  const basis = writableBasis(engine.g, engine.gateway.weights.wo[layer], rcond);
  const k = basis.length;
  const shares = await splitWork({
    total: k,
    threads: o.threads,
    script: 'gradient-worker.js',
    units: 'basis vectors',
    data: (range): GradientWorkerData => ({ modelPath: engine.checkpoint.path, tokenizerPath: engine.tokenizer.path, corpus, gradient: s, layer, rcond, lexicons: lexicons.map((l) => [...l]), range }),
    local: (range, tick) => directionalMasses(engine, corpus, s, layer, rcond, lexicons, range, tick),
    onProgress: o.onProgress,
  });
  const { contexts } = shares[0];
  const masses = shares.flatMap((share) => share.masses);
  const gradients = lexicons.map((lexicon, ci) => {
    const g = new Float64Array(engine.g.dim);
    basis.forEach((b, j) => {
      const { plus, minus } = masses[j];
      if (!(plus[ci] > 0 && minus[ci] > 0)) throw new MeshLlmError(`gradient: the model never gives [${lexicon.join(', ')}] any probability after the contexts; revise the lexicon`);
      const slope = (Math.log(plus[ci]) - Math.log(minus[ci])) / (2 * s.epsilon);
      for (let d = 0; d < g.length; d++) g[d] += slope * b[d];
    });
    return g;
  });
  return { gradients, contexts };
}

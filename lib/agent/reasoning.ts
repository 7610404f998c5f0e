/**
 * The reasoning role's work: the project's model writes a draft after a prompt made of the
 * retrieved passages and the request's prompt, steered per node by the sensing role's readings.
 * The model runs in this process (LocalModel: its heads cut into one group per head, so the
 * readings steer it as `generate --scenario --groups 8` does) or head-sharded over the mesh's
 * head nodes (MeshModel: variant C on top of A/B). The filter's feedback on earlier drafts
 * changes the sampling of the next (samplingFor, generateAvoiding).
 */
import { Geometry } from '../llm/config';
import { Engine, GenerateOptions, Generation, GenerationResult, HeadRunner, forward } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { Gateway } from '../llm/gateway';
import { Tokenizer } from '../llm/tokenizer';
import { MeshGateway, NodeAssignment } from '../mesh/gateway';
import { BrokerAddress, Logger } from '../mesh/mqtt';
import { MeshSteering } from '../steering/mesh';
import { NodeHeads } from '../steering/shares';
import { CounterfactualHeads } from '../steering/attribution';
import { SteeringData, loadSteering } from '../steering/directions';
import { NodeReadings, Steering, clearSteering, localNodes } from '../steering/steer';
import { AgentSteeringMessage, DraftMessage, DraftSteering, Passage, ReasonMessage } from './messages';

export interface ReasonerOptions {
  modelPath: string;
  tokenizerPath: string;
  /** Head groups of the model, each a steering node node-1.. (default: one per head). */
  groups?: number;
  /** steering/ folder (default: the package's). */
  steeringDir?: string;
}

/**
 * How the next draft is sampled after the filter's reasons: a new seed every attempt, per
 * reason a change of temperature, and the safety words found never written again (generateAvoiding).
 */
export const RETRY = {
  /** Seed of attempt a: seed + (a - 1) * seedStep. */
  seedStep: 7919,
  /** A degenerate draft (loops): sample hotter, at least `degenerationFloor`, at most `max`. */
  degenerationStep: 0.2,
  degenerationFloor: 0.8,
  /** An incoherent draft (perplexity too high): sample colder. */
  coherenceFactor: 0.75,
  max: 1.2,
} as const;

/** The temperature and seed of a request's attempt, from the filter's feedback on the attempts before it. */
export function samplingFor(req: Pick<ReasonMessage, 'attempt' | 'feedback' | 'temperature' | 'seed'>): { temperature: number; seed: number } {
  let t = req.temperature;
  for (const f of req.feedback) {
    if (f.check === 'degeneration') t = Math.min(RETRY.max, Math.max(t + RETRY.degenerationStep, RETRY.degenerationFloor));
    else if (f.check === 'coherence') t = t * RETRY.coherenceFactor;
  }
  return { temperature: Math.round(t * 1e6) / 1e6, seed: req.seed + (req.attempt - 1) * RETRY.seedStep };
}

/** Each word as the model writes it after a space and capitalised: the token sequences a draft may not complete. */
export function bannedSequences(tokenizer: Tokenizer, words: readonly string[]): number[][] {
  const forms = [...new Set(words.flatMap((w) => [w, w[0].toUpperCase() + w.slice(1)]))];
  return forms.map((w) => tokenizer.encode(w, false, false));
}

/** Sets -Infinity on every token that would complete a banned sequence after `tokens`. */
export function maskBanned(logits: Float32Array, tokens: readonly number[], bans: readonly number[][]): void {
  for (const seq of bans) {
    const prefix = seq.length - 1;
    let match = tokens.length >= prefix;
    for (let i = 0; match && i < prefix; i++) match = tokens[tokens.length - prefix + i] === seq[i];
    if (match) logits[seq[prefix]] = -Infinity;
  }
}

/** run.c's loop (engine.ts generate) on `heads`, never completing a banned token sequence. */
export async function generateAvoiding(m: Pick<ReasoningModel, 'g' | 'gateway' | 'tokenizer'>, heads: HeadRunner, options: GenerateOptions, bans: readonly number[][]): Promise<GenerationResult> {
  const headOut = new Float32Array(m.g.dim);
  await heads.reset();
  const gen = new Generation(m.tokenizer, options, m.g.seqLen);
  while (!gen.done) {
    const logits = await forward(m.gateway, heads, gen.token, gen.pos, headOut, gen.needsLogits);
    if (logits && bans.length > 0) maskBanned(logits, gen.tokens, bans);
    gen.advance(logits);
  }
  return gen.result();
}

/** What the model is fed: the passages' texts, one a line, then the prompt. */
export function modelPromptOf(passages: readonly Passage[], prompt: string): string {
  return [...passages.map((p) => p.text), prompt].filter((s) => s !== '').join('\n');
}

/**
 * The model the reasoning role drives: its gateway and tokenizer, the nodes its heads are cut
 * into (each a steering node), and a way to run heads steered by readings, one run at a time.
 */
export interface ReasoningModel {
  readonly g: Geometry;
  readonly gateway: Gateway;
  readonly tokenizer: Tokenizer;
  readonly nodes: readonly NodeHeads[];
  readonly steeringData: SteeringData;
  /** One line: what computes the heads. */
  readonly describe: string;
  /** Runs f on heads steered by the readings (none: unsteered), with the steered generation's envelope. */
  withHeads<T>(readings: NodeReadings, alpha: number, f: (heads: HeadRunner) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The model in this process, its heads cut into one group per steering node. */
export class LocalModel implements ReasoningModel {
  readonly engine: Engine;
  readonly steering: Steering;
  readonly steeringData: SteeringData;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(o: ReasonerOptions) {
    this.engine = Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, groups: o.groups ?? 8 });
    this.steeringData = loadSteering(this.engine.g.dim, this.engine.g.nLayers, o.steeringDir);
    this.steering = new Steering(this.engine.g, this.engine.gateway, this.steeringData, localNodes(this.engine.heads));
  }

  get g(): Geometry {
    return this.engine.g;
  }
  get gateway(): Gateway {
    return this.engine.gateway;
  }
  get tokenizer(): Tokenizer {
    return this.engine.tokenizer;
  }
  get nodes(): NodeHeads[] {
    return localNodes(this.engine.heads);
  }
  get describe(): string {
    return `${this.engine.checkpoint.path} in this process, ${this.engine.heads.groups.length} head groups`;
  }

  /**
   * Sets the readings' steering on the head groups (as a steered generation does, with the
   * envelope); the returned runner computes the heads steered. clearSteering takes it off.
   */
  steer(readings: NodeReadings, alpha: number): HeadRunner {
    clearSteering(this.engine.heads);
    if (Object.keys(readings).length === 0) return this.engine.heads;
    this.steering.apply(this.engine.heads, readings, alpha);
    return new CounterfactualHeads(this.engine.heads, this.engine.g, this.steering.steeredNodes(readings, alpha));
  }

  withHeads<T>(readings: NodeReadings, alpha: number, f: (heads: HeadRunner) => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      try {
        return await f(this.steer(readings, alpha));
      } finally {
        clearSteering(this.engine.heads);
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {}
}

export interface MeshModelOptions extends BrokerAddress {
  meshId: string;
  modelPath: string;
  tokenizerPath: string;
  /** Head nodes to wait for (default: whoever is up after a short settle). */
  nodes?: number;
  steeringDir?: string;
  gatherTimeoutMs?: number;
  log?: Logger;
}

/**
 * The model head-sharded over the mesh (variant C on variant A/B): the reasoning role is the
 * gateway of head nodes on the bus, one head group per node, each node a steering node whose
 * steering goes to it over MQTT (lib/steering/mesh.ts) before every draft.
 */
export class MeshModel implements ReasoningModel {
  readonly steering: Steering;
  readonly steeringData: SteeringData;

  private constructor(
    readonly gw: MeshGateway,
    private readonly link: MeshSteering,
    readonly assignment: NodeAssignment[],
  ) {
    this.steeringData = loadSteering(gw.g.dim, gw.g.nLayers);
    this.steering = new Steering(gw.g, gw.gateway, this.steeringData, this.nodes);
  }

  static async connect(o: MeshModelOptions): Promise<MeshModel> {
    const gw = await MeshGateway.connect({ url: o.url, username: o.username, password: o.password, meshId: o.meshId, modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, gatherTimeoutMs: o.gatherTimeoutMs, log: o.log });
    try {
      const ids = await gw.discover({ count: o.nodes });
      const assignment = await gw.assign(ids);
      const link = await MeshSteering.connect({ url: o.url, username: o.username, password: o.password, meshId: o.meshId });
      return new MeshModel(gw, link, assignment);
    } catch (e) {
      await gw.close();
      throw e;
    }
  }

  get g(): Geometry {
    return this.gw.g;
  }
  get gateway(): Gateway {
    return this.gw.gateway;
  }
  get tokenizer(): Tokenizer {
    return this.gw.tokenizer;
  }
  get nodes(): NodeHeads[] {
    return this.assignment.map((a) => ({ node: a.node, heads: a.heads }));
  }
  get describe(): string {
    return `head-sharded over ${this.assignment.length} head nodes (${this.assignment.map((a) => `${a.node}: ${a.heads.join('+')}`).join(', ')})`;
  }

  withHeads<T>(readings: NodeReadings, alpha: number, f: (heads: HeadRunner) => Promise<T>): Promise<T> {
    const runner = this.gw.runner;
    return runner.exclusive(async () => {
      // every node gets its steering (none: zeros) before the draft, so none keeps an earlier one
      await this.link.configure(this.steering, readings, alpha);
      return f(Object.keys(readings).length === 0 ? runner : new CounterfactualHeads(runner, this.g, this.steering.steeredNodes(readings, alpha)));
    });
  }

  async close(): Promise<void> {
    await this.link.close();
    await this.gw.close();
  }
}

export class Reasoner {
  constructor(readonly model: ReasoningModel) {}

  /** The model in this process. */
  static local(o: ReasonerOptions): Reasoner {
    return new Reasoner(new LocalModel(o));
  }

  /** The local model's engine (measurements run on it). */
  get engine(): Engine {
    if (!(this.model instanceof LocalModel)) throw new MeshLlmError('the reasoning model is on the mesh: it has no local engine');
    return this.model.engine;
  }

  get steeringData(): SteeringData {
    return this.model.steeringData;
  }

  /** Node ids of the model's head groups (what steering readings are keyed by). */
  get nodes(): string[] {
    return this.model.nodes.map((n) => n.node);
  }

  /**
   * The passages that fit in front of the prompt with room for `tokens` sampled tokens, best
   * first: a passage that does not fit is left out (and the draft does not cite it).
   */
  fitPassages(passages: readonly Passage[], prompt: string, tokens: number): Passage[] {
    const { g, tokenizer } = this.model;
    const room = g.seqLen - Math.min(tokens, g.seqLen - 1);
    const out: Passage[] = [];
    for (const p of passages) {
      if (tokenizer.encode(modelPromptOf([...out, p], prompt), true, false).length <= room) out.push(p);
    }
    return out;
  }

  /** The readings of a steering message for this model's nodes, and its alpha. */
  private readingsOf(steering: AgentSteeringMessage | null): { readings: NodeReadings; alpha: number } {
    const nodes = this.nodes;
    const readings = Object.fromEntries(Object.entries(steering?.readings ?? {}).filter(([n]) => nodes.includes(n)));
    return { readings, alpha: steering?.alpha ?? this.steeringData.settings.alpha };
  }

  /** The local model's heads steered by a steering message (for measurements; clearSteering ends it). */
  steer(steering: AgentSteeringMessage | null): { runner: HeadRunner; alpha: number } {
    const { readings, alpha } = this.readingsOf(steering);
    if (!(this.model instanceof LocalModel)) throw new MeshLlmError('the reasoning model is on the mesh: measure on a local one');
    return { runner: this.model.steer(readings, alpha), alpha };
  }

  /** A draft for the request, steered by the sensing role's last readings (null: unsteered). */
  async draft(req: ReasonMessage, steering: AgentSteeringMessage | null): Promise<DraftMessage> {
    const { tokenizer, g } = this.model;
    const used = this.fitPassages(req.passages, req.prompt, req.tokens);
    const modelPrompt = modelPromptOf(used, req.prompt);
    const promptTokens = tokenizer.encode(modelPrompt, true, false);
    const steps = Math.min(g.seqLen, promptTokens.length + req.tokens);
    const { temperature, seed } = samplingFor(req);
    const { readings, alpha } = this.readingsOf(steering);
    const steered = Object.keys(readings).length;
    const bans = bannedSequences(tokenizer, req.feedback.flatMap((f) => f.words ?? []));
    const r = await this.model.withHeads(readings, alpha, (heads) => generateAvoiding(this.model, heads, { prompt: modelPrompt, steps, temperature, topP: req.topP, seed: BigInt(seed) }, bans));
    const tokens = r.tokens.slice(promptTokens.length);
    const draftSteering: DraftSteering | null = steered > 0 ? { source: steering!.source, alpha, nodes: steered } : null;
    // the text after the model's prompt (decode's first id is context only)
    const text = tokenizer.decode([promptTokens[promptTokens.length - 1], ...tokens]);
    return { protocol: 1, id: req.id, attempt: req.attempt, prompt: req.prompt, text, tokens, modelPrompt, sources: used.map((p) => p.source), temperature, seed, steering: draftSteering };
  }
}

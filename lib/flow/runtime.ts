/**
 * What the Node-RED nodes share through their config node: the gateway half of the model on
 * a mesh of head nodes. Each step of a generation is one method here, so each Node-RED node
 * is a thin wrapper that calls one of them on the message it receives:
 *
 *   begin -> embed -> [broadcast -> aggregate -> ffn -> nextLayer] x n_layers -> sample -> ...
 *
 * A message carries the run id, the position, the layer and the hidden state x [dim]; the
 * rest of a run (its Generation, its pending gather) stays here. Runs are queued: one
 * generation at a time per mesh, each a session of its own on the head nodes. What happens on
 * the mesh (assignment, each gather, late nodes, the end of a run) is told on `events`, which
 * the nodes' statuses show.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Geometry } from '../llm/config';
import { GenerateOptions, Generation, GenerationResult, HeadRunner } from '../llm/engine';
import { InputError, MeshLlmError } from '../llm/errors';
import { BadRequestError } from './request';
import { Gateway } from '../llm/gateway';
import { Tokenizer } from '../llm/tokenizer';
import { MeshGateway, NodeAssignment } from '../mesh/gateway';
import { FailoverEvent } from '../mesh/runner';
import { Logger } from '../mesh/mqtt';
import { PROTOCOL_VERSION, TokenMessage } from '../mesh/wire';
import { OnnxFfn } from '../onnx/ffn';
import { loadSteering } from '../steering/directions';
import { ATTRIBUTION_FLOOR, CounterfactualHeads, NodeSteering, attributeStep } from '../steering/attribution';
import { RunEvents, TokenSteering, tokenDistribution } from '../mesh/events';
import { MeshSteering } from '../steering/mesh';
import { NodeReadings, Steering } from '../steering/steer';
import { WeightFormat } from '../llm/quant';

export interface FlowRuntimeOptions {
  modelPath: string;
  tokenizerPath: string;
  brokerUrl: string;
  username?: string;
  password?: string;
  meshId: string;
  quant: WeightFormat;
  /** Head nodes to wait for (default: whoever is up after a short settle). */
  nodes?: number;
  discoverTimeoutMs?: number;
  gatherTimeoutMs?: number;
  /** Move a lost node's heads and go on (default true; lib/mesh/runner.ts Failover). */
  failover?: boolean;
  log?: Logger;
  /** Where the runtime tells what happens on the mesh (default: an emitter of its own). */
  events?: MeshEvents;
}

/** A layer's gather on the head nodes: started, done (with its round trip), or waiting on late nodes. */
export interface GatherEvent {
  pos: number;
  layer: number;
  ms?: number;
  /** Nodes that have not answered within half the gather timeout. */
  late?: string[];
  /** Each node's round trip (gather-done). */
  nodes?: { node: string; ms: number }[];
}

/** A sampled token's record beyond the token (lib/runs): its probability, the top alternatives, the steering's KL and node. */
export interface TokenDetail {
  probability?: number;
  /** The most probable tokens and their probabilities (softmax of the logits, before temperature). */
  topK?: [number, number][];
  kl?: number;
  node?: string | null;
}

/** The steering in force (set by steer()): the readings, their baselines if given, alpha and each node's vector. */
export interface SteeringInForce {
  readings: NodeReadings;
  alpha: number;
  baselines?: unknown;
  vectors: Record<string, { layer: number; vector: number[] }>;
}


/** What the runtime tells its watchers; a run's end carries the error that ended it, if one did. */
export interface MeshEventMap {
  assigned: [nodes: string[]];
  'gather-start': [GatherEvent];
  'gather-done': [GatherEvent];
  'gather-late': [GatherEvent];
  'run-end': [{ error?: string }];
  /** Heads moved off lost nodes and rebuilt by replay; the run went on. */
  failover: [FailoverEvent];
}

export type MeshEvents = EventEmitter<MeshEventMap>;

/** What travels in msg.llm between the nodes of the layer loop. */
export interface StepState {
  run: string;
  pos: number;
  layer: number;
}

interface Run {
  id: string;
  generation: Generation;
  /** The run's events on the bus (lib/mesh/events.ts). */
  told: RunEvents;
  headOut: Float32Array;
  gather: Promise<void> | null;
  finished: (r: GenerationResult | null) => void;
}

export class FlowRuntime {
  readonly g: Geometry;
  readonly gateway: Gateway;
  readonly tokenizer: Tokenizer;
  readonly mesh: MeshGateway;
  readonly events: MeshEvents;
  assignment: NodeAssignment[];
  private readonly options: FlowRuntimeOptions;
  private readonly ffnGraphs: OnnxFfn;
  private readonly runs = new Map<string, Run>();
  private steeringLink: { link: MeshSteering; steering: Steering; alpha: number; assignment: NodeAssignment[] } | null = null;
  /** The nodes' steering while it is on (what attribution takes out, one node at a time). */
  private steered: NodeSteering[] = [];
  /** What steer() put in force, for the run records (null: no steering). */
  steering: SteeringInForce | null = null;
  /** What a layer's broadcast runs on: the mesh runner, wrapped by steering's envelope while steering is on. */
  private heads: HeadRunner;
  private closing = false;

  private constructor(options: FlowRuntimeOptions, mesh: MeshGateway, ffn: OnnxFfn, assignment: NodeAssignment[]) {
    this.options = options;
    this.mesh = mesh;
    this.g = mesh.g;
    this.gateway = mesh.gateway;
    this.tokenizer = mesh.tokenizer;
    this.ffnGraphs = ffn;
    this.assignment = assignment;
    this.heads = mesh.runner;
    this.events = options.events ?? new EventEmitter<MeshEventMap>();
    // the node statuses follow the mesh's own event stream (which the gateway also publishes on the bus)
    mesh.events.on((e) => {
      if (e.kind === 'broadcast') this.events.emit('gather-start', { pos: e.pos, layer: e.layer });
      else if (e.kind === 'gather') this.events.emit('gather-done', { pos: e.pos, layer: e.layer, ms: e.ms, nodes: e.nodes });
      else if (e.kind === 'late') this.events.emit('gather-late', { pos: e.pos, layer: e.layer, late: e.nodes, ms: e.ms });
      else if (e.kind === 'failover') this.events.emit('failover', { pos: e.pos, layer: e.layer, lost: e.lost, moves: e.moves, session: e.session, replayed: e.replayed, replayMs: e.replayMs });
    });
    // a failover (or the restore after one) hands heads to other nodes: the flow's assignment, and steering's shares, follow them
    mesh.reassigned.add((slots, changed) => this.follow(slots, changed));
    this.events.emit('assigned', this.nodes);
  }

  /** After a failover or a restore: the assignment in force, and each moved head's steering sent to the node that now holds it. */
  private async follow(slots: readonly { node: string; slot: number; heads: number[] }[], changed: string[]): Promise<void> {
    const before = this.assignment;
    this.assignment = this.mesh.assignmentOf(slots);
    const s = this.steeringLink;
    if (s && s.assignment === before) {
      s.assignment = this.assignment;
      if (this.steering) await s.link.follow(s.steering, this.steering.readings, this.steering.alpha, slots, changed, this.g.headSize);
    }
    this.events.emit('assigned', this.nodes);
  }

  /** The assigned head nodes, in slot order. */
  get nodes(): string[] {
    return this.assignment.map((a) => a.node);
  }

  /** Loads the gateway weights, builds the FFN graphs, finds and assigns the head nodes. */
  static async start(o: FlowRuntimeOptions): Promise<FlowRuntime> {
    const mesh = await MeshGateway.connect({ url: o.brokerUrl, username: o.username, password: o.password, meshId: o.meshId, modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, gatherTimeoutMs: o.gatherTimeoutMs, failover: o.failover, log: o.log });
    try {
      const ffn = await OnnxFfn.create(mesh.gateway.weights, mesh.g.dim, mesh.g.hiddenDim);
      const nodes = await mesh.discover({ count: o.nodes, timeoutMs: o.discoverTimeoutMs ?? 30000 });
      const assignment = await mesh.assign(nodes, { quant: o.quant });
      return new FlowRuntime(o, mesh, ffn, assignment);
    } catch (e) {
      await mesh.close();
      throw e;
    }
  }

  /**
   * Steers the head nodes from normalised sensor readings (node -> channel -> [-1, 1]): each
   * node receives its share of every channel's direction and its own readings, and adds
   * alpha * sum(reading * share) to its head outputs from then on. Resolves once every
   * node has acknowledged. alpha defaults to steering/steering.json's.
   */
  async steer(readings: NodeReadings, alpha?: number, baselines?: unknown): Promise<void> {
    if (!this.steeringLink || this.steeringLink.assignment !== this.assignment) {
      await this.steeringLink?.link.close();
      const data = loadSteering(this.g.dim, this.g.nLayers);
      const nodes = this.assignment.map((a) => ({ node: a.node, heads: a.heads }));
      const link = await MeshSteering.connect({ url: this.options.brokerUrl, username: this.options.username, password: this.options.password, meshId: this.options.meshId });
      this.steeringLink = { link, steering: new Steering(this.g, this.gateway, data, nodes), alpha: data.settings.alpha, assignment: this.assignment };
    }
    const { link, steering } = this.steeringLink;
    const a = alpha ?? this.steeringLink.alpha;
    await link.configure(steering, readings, a);
    // the gateway's part of steering, as in every steered run: the push envelope over positions
    this.steered = steering.steeredNodes(readings, a);
    this.heads = new CounterfactualHeads(this.mesh.runner, this.g, this.steered);
    const vectors = Object.fromEntries(this.steered.map((n) => [n.node, { layer: n.steering.layer, vector: Array.from(n.steering.vector) }]));
    this.steering = { readings, alpha: a, ...(baselines !== undefined ? { baselines } : {}), vectors };
  }

  async close(): Promise<void> {
    this.closing = true; // runs still queued end at their turn instead of starting a session
    await this.steeringLink?.link.close().catch(() => undefined);
    this.steeringLink = null;
    for (const run of this.runs.values()) this.abort(run.id, new MeshLlmError('the mesh runtime closed'));
    await this.ffnGraphs.release();
    await this.mesh.close();
  }

  /** Runs waiting or running. */
  get pendingRuns(): number {
    return this.runs.size;
  }

  /**
   * Waits for the mesh to be free (the runner's queue, shared with every other kind of run),
   * starts a session and the run's Generation, and resolves with the first step. The turn
   * lasts until the run ends (finish or abort), so the next run waits for it. `resume`: the
   * tokens (positions 1..k) an interrupted run of the same request recorded, fed again first.
   */
  begin(options: GenerateOptions, resume?: readonly number[]): Promise<StepState> {
    const id = randomUUID();
    return new Promise<StepState>((started, failed) => {
      const turn = this.mesh.runner.exclusive(async () => {
        try {
          if (this.closing) throw new MeshLlmError('the mesh runtime closed');
          const generation = new Generation(this.tokenizer, options, this.g.seqLen);
          if (resume?.length) generation.resume(resume);
          await this.freshSession();
          const told = new RunEvents(this.mesh.events, id, () => this.mesh.runner.session);
          const ended = new Promise<GenerationResult | null>((finished) => this.runs.set(id, { id, generation, told, headOut: new Float32Array(this.g.dim), gather: null, finished }));
          const o = generation.options;
          told.start({ source: 'flow', prompt: o.prompt, steps: o.steps, temperature: o.temperature, promptTokens: generation.prompt.length, steered: this.heads !== this.mesh.runner });
          started({ run: id, pos: 0, layer: 0 });
          await ended;
        } catch (e) {
          // a request the model cannot take answers 400 over HTTP, like one that fails the schema
          failed(e instanceof InputError && !(e instanceof BadRequestError) ? new BadRequestError(`invalid generate request: ${e.message}`) : e);
        }
      });
      turn.catch(() => undefined);
    });
  }

  /**
   * Starts a session on the assigned nodes. A session start clears an earlier failure when
   * every assigned node acknowledges it (the nodes keep their weights); if one does not (it
   * died), the mesh is discovered and assigned again first, so the flow recovers once nodes
   * are back.
   */
  private async freshSession(): Promise<void> {
    const runner = this.mesh.runner;
    try {
      await runner.reset();
      return;
    } catch {
      // a node is gone or does not answer: assign again below
    }
    const nodes = await this.mesh.discover({ count: this.options.nodes, timeoutMs: this.options.discoverTimeoutMs ?? 30000 });
    this.assignment = await this.mesh.assign(nodes, { quant: this.options.quant });
    this.heads = this.mesh.runner; // steering was cut for the old assignment: steer() again
    this.steered = [];
    this.steering = null;
    this.events.emit('assigned', this.nodes);
    await runner.reset();
  }

  private get(step: StepState): Run {
    const run = this.runs.get(step.run);
    if (!run) throw new MeshLlmError(`run ${step.run} is not active (it ended or failed)`);
    return run;
  }

  /** The residual stream for the run's current token: x [dim]. */
  embed(step: StepState): Float32Array {
    const run = this.get(step);
    step.pos = run.generation.pos;
    step.layer = 0;
    return this.gateway.embed(run.generation.token);
  }

  /** Sends RMSNorm(x) of this layer to the head nodes; the gather runs while the message moves on. */
  broadcast(step: StepState, x: Float32Array): void {
    const run = this.get(step);
    const xb = this.gateway.attentionInput(x, step.layer);
    const gather = Promise.resolve(this.heads.run(xb, step.pos, step.layer, run.headOut));
    gather.catch(() => undefined); // a failure is reported when aggregate awaits it
    run.gather = gather;
  }

  /** Waits for every head node's result, then x += W_O · heads. */
  async aggregate(step: StepState, x: Float32Array): Promise<void> {
    const run = this.get(step);
    if (!run.gather) throw new MeshLlmError(`layer ${step.layer} at position ${step.pos} was not broadcast before aggregate`);
    const gather = run.gather;
    run.gather = null;
    await gather;
    this.gateway.aggregate(x, run.headOut, step.layer);
  }

  /** x += FFN(x) of this layer, on onnxruntime. */
  async ffn(step: StepState, x: Float32Array): Promise<void> {
    this.get(step);
    await this.ffnGraphs.apply(x, step.layer);
  }

  /** Moves to the next layer; false after the last one. */
  nextLayer(step: StepState): boolean {
    step.layer++;
    return step.layer < this.g.nLayers;
  }

  /**
   * After the last layer: logits, then the next token. Returns the token as the tokens topic
   * carries it (null at the end of the run) and, at the end, the run's result. In a steered
   * run each sampled token is also attributed (lib/steering/attribution.ts: one pass per node
   * without its steering, one without any, then the steered pass again, so the caches end as
   * the steered run leaves them), for the token event's KL and node.
   */
  async sample(step: StepState, x: Float32Array): Promise<{ token: TokenMessage | null; result: GenerationResult | null; detail: TokenDetail }> {
    const run = this.get(step);
    const g = run.generation;
    const logits = g.needsLogits ? this.gateway.logits(x) : null;
    const moved = logits && this.heads instanceof CounterfactualHeads && this.steered.length ? await this.attribute(run) : undefined;
    const pos = g.pos;
    const out = g.advance(logits);
    const token: TokenMessage | null = out ? { protocol: PROTOCOL_VERSION, session: this.mesh.runner.session, pos: g.pos, token: out.token, piece: out.piece.toString('utf8') } : null;
    if (out) run.told.token(pos + 1, out.token, out.piece, logits, moved);
    const detail: TokenDetail = out && logits ? { ...tokenDistribution(logits, out.token), ...(moved ? { kl: moved.kl, node: moved.node } : {}) } : {};
    if (!g.done) return { token, result: null, detail };
    const result = g.result();
    this.finish(run, result);
    return { token, result, detail };
  }

  /** How far the sensors moved the distribution at the run's position, and which node most. */
  private async attribute(run: Run): Promise<TokenSteering> {
    const g = run.generation;
    const a = await attributeStep(this.gateway, this.heads as CounterfactualHeads, this.steered, g.token, g.pos, new Float32Array(this.g.dim));
    return { kl: a.kl, node: a.nodes.length && a.nodes[0].kl > ATTRIBUTION_FLOOR ? a.nodes[0].node : null };
  }

  /** Ends a run after an error: its gather fails, its session closes and the next queued run may start. */
  abort(runId: string, error: Error): void {
    const run = this.runs.get(runId);
    if (!run) return;
    this.mesh.runner.fail(error);
    this.finish(run, null, error);
  }

  private finish(run: Run, result: GenerationResult | null, error?: Error): void {
    this.runs.delete(run.id);
    const r = result ?? run.generation.result();
    run.told.end({ tokens: r.tokens.length - 1, seconds: r.seconds, text: r.text, error: error?.message });
    run.finished(result);
    this.events.emit('run-end', error ? { error: error.message } : {});
  }
}


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
import { CounterfactualHeads } from '../steering/attribution';
import { MeshSteering } from '../steering/mesh';
import { NodeReadings, Steering } from '../steering/steer';
import { Encoding } from '../llm/quant';

export interface FlowRuntimeOptions {
  modelPath: string;
  tokenizerPath: string;
  brokerUrl: string;
  username?: string;
  password?: string;
  meshId: string;
  quant: Encoding;
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
    mesh.runner.listener = {
      started: (pos, layer) => this.events.emit('gather-start', { pos, layer }),
      done: (pos, layer, ms) => this.events.emit('gather-done', { pos, layer, ms }),
      late: (pos, layer, late, ms) => this.events.emit('gather-late', { pos, layer, late, ms }),
      failover: (e) => this.events.emit('failover', e),
    };
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
  async steer(readings: NodeReadings, alpha?: number): Promise<void> {
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
    this.heads = steering.envelope ? new CounterfactualHeads(this.mesh.runner, this.g, steering.steeredNodes(readings, a)) : this.mesh.runner;
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
   * lasts until the run ends (finish or abort), so the next run waits for it.
   */
  begin(options: GenerateOptions): Promise<StepState> {
    const id = randomUUID();
    return new Promise<StepState>((started, failed) => {
      const turn = this.mesh.runner.exclusive(async () => {
        try {
          if (this.closing) throw new MeshLlmError('the mesh runtime closed');
          const generation = new Generation(this.tokenizer, options, this.g.seqLen);
          await this.freshSession();
          const ended = new Promise<GenerationResult | null>((finished) => this.runs.set(id, { id, generation, headOut: new Float32Array(this.g.dim), gather: null, finished }));
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
   * carries it (null at the end of the run) and, at the end, the run's result.
   */
  sample(step: StepState, x: Float32Array): { token: TokenMessage | null; result: GenerationResult | null } {
    const run = this.get(step);
    const g = run.generation;
    const out = g.advance(g.needsLogits ? this.gateway.logits(x) : null);
    const token: TokenMessage | null = out ? { protocol: PROTOCOL_VERSION, session: this.mesh.runner.session, pos: g.pos, token: out.token, piece: out.piece.toString('utf8') } : null;
    if (!g.done) return { token, result: null };
    const result = g.result();
    this.finish(run, result);
    return { token, result };
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
    run.finished(result);
    this.events.emit('run-end', error ? { error: error.message } : {});
  }
}

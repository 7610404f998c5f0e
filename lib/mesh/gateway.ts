/**
 * The gateway orchestrator: holds the gateway weights (embeddings, W_O, FFN, classifier),
 * discovers head nodes on the bus, assigns them head groups, and runs the engine's own
 * generation loop with a HeadRunner whose run() broadcasts the attention input of a layer and
 * gathers every node's result frame. Requests are queued (one generation at a time per mesh);
 * each generation is its own session with fresh KV caches on the nodes.
 */
import { randomInt } from 'node:crypto';
import { Aedes } from 'aedes';
import { MqttClient } from 'mqtt';
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, geometry } from '../llm/config';
import { MeshLlmError } from '../llm/errors';
import { Gateway } from '../llm/gateway';
import { GenerateOptions, GenerationResult, HeadRunner, TokenListener, generate } from '../llm/engine';
import { INT8_GROUP_SIZE, partitionHeads } from '../llm/head';
import { Tokenizer } from '../llm/tokenizer';
import { BrokerAddress, Logger, connectMqtt, endClient, stderrLogger, subscribe } from './mqtt';
import { Body, BodyType, GATEWAY_SENDER, decodeBody, encodeBody } from '../link/body';
import { Encoding } from '../llm/quant';
import { AckMessage, ControlKind, ControlMessages, ModelShape, PROTOCOL_VERSION, StatusMessage, TelemetryMessage, Topics, encodeControl, nodeOfTopic, parseControl, topicsFor } from './wire';

export interface MeshGatewayOptions extends BrokerAddress {
  meshId: string;
  modelPath: string;
  tokenizerPath: string;
  /** How long a layer waits for every node's result before the generation fails. */
  gatherTimeoutMs?: number;
  /** How long assignment (weight loading) and session acknowledgements may take. */
  controlTimeoutMs?: number;
  /**
   * The embedded broker, when it runs in this process: tensor frames then go through it
   * directly instead of over the gateway's own TCP connection (control messages still use MQTT).
   */
  embeddedBroker?: Aedes;
  log?: Logger;
}

/** Where the gateway sends broadcast frames and per-token messages, and hears result frames. */
interface FrameBus {
  publish(topic: string, frame: Buffer): void;
  subscribe(pattern: string, onFrame: (topic: string, frame: Buffer) => void): Promise<void>;
}

function clientFrameBus(client: MqttClient): FrameBus {
  return {
    publish: (topic, frame) => client.publish(topic, frame, { qos: 0 }),
    subscribe: (pattern) => subscribe(client, [pattern], 0), // frames arrive through the client's message handler
  };
}

function aedesFrameBus(aedes: Aedes): FrameBus {
  return {
    publish: (topic, frame) => aedes.publish({ cmd: 'publish', topic, payload: frame, qos: 0, retain: false, dup: false }, () => undefined),
    subscribe: (pattern, onFrame) =>
      new Promise((resolve) =>
        aedes.subscribe(pattern, (packet, cb) => {
          onFrame(packet.topic, packet.payload as Buffer);
          cb();
        }, () => resolve()),
      ),
  };
}

export interface NodeView {
  id: string;
  status: StatusMessage;
  telemetry?: TelemetryMessage;
}

export interface AssignOptions {
  /** Head partition: a group count, sizes such as "2+3+3", or explicit head lists. Default: one group per node (at most n_heads). */
  groups?: string | number | number[][];
  /** int8: int8 head weights on the nodes and int8 transport both ways, as the engine's quant int8. */
  quant?: Encoding;
  /** Overrides the transport implied by `quant` (as the engine's `transport` option). */
  transport?: Encoding;
}

export interface NodeAssignment {
  node: string;
  slot: number;
  heads: number[];
  kvHeads: number[];
  weightBytes: number;
}

/** Dropped frames and messages, by reason. */
export interface GatewayCounters {
  malformed: number;
  invalidJson: number;
  stale: number;
  duplicate: number;
  unassigned: number;
}

/** The mesh failed to do what was asked; the message names the node(s) at fault. */
export class MeshError extends MeshLlmError {
  constructor(message: string) {
    super(message);
    this.name = 'MeshError';
  }
}

const naturalOrder = new Intl.Collator('en', { numeric: true });

/** node-2 before node-10. */
function byNodeId(a: string, b: string): number {
  return naturalOrder.compare(a, b);
}

function modelShape(g: Geometry): ModelShape {
  return { dim: g.dim, nLayers: g.nLayers, nHeads: g.nHeads, nKvHeads: g.nKvHeads, vocabSize: g.vocabSize, seqLen: g.seqLen };
}

const ALIVE: ReadonlySet<StatusMessage['state']> = new Set(['online', 'loading', 'ready']);

interface Slot {
  node: string;
  slot: number;
  heads: number[];
}

interface Gather {
  session: number;
  seq: number;
  pos: number;
  layer: number;
  out: Float32Array;
  /** Per slot index: 1 once its result arrived. */
  received: Uint8Array;
  remaining: number;
  startNs: bigint;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * The HeadRunner of the mesh. run() sends one broadcast frame and resolves when every assigned
 * node's result has been placed into `out`; a watchdog fails the gather after the timeout.
 */
export class MeshHeads implements HeadRunner {
  /** Broadcast-to-last-result time of every layer since the last reset (ms). */
  readonly roundTripsMs: number[] = [];
  session = 0;
  private readonly owner: MeshGateway;
  private readonly g: Geometry;
  private readonly transport: Encoding;
  private readonly slots: Slot[];
  private readonly slotOfNode = new Map<string, number>();
  private readonly gatherTimeoutMs: number;
  /** The gateway's counters: results that do not belong are counted there. */
  private readonly counters: GatewayCounters;
  /** Sequence numbers run on across sessions (on the radio they name the message), from a random start. */
  private seq = randomInt(0, 0x40000000);
  private pending: Gather | null = null;
  private failure: Error | null = null;

  constructor(owner: MeshGateway, g: Geometry, transport: Encoding, slots: Slot[], gatherTimeoutMs: number) {
    this.owner = owner;
    this.g = g;
    this.transport = transport;
    this.slots = slots;
    this.gatherTimeoutMs = gatherTimeoutMs;
    this.counters = owner.counters;
    slots.forEach((s, i) => this.slotOfNode.set(s.node, i));
  }

  get nodes(): string[] {
    return this.slots.map((s) => s.node);
  }

  hasNode(node: string): boolean {
    return this.slotOfNode.has(node);
  }

  run(xb: Float32Array, pos: number, layer: number, out: Float32Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const header = { type: BodyType.Broadcast, encoding: this.transport, sender: GATEWAY_SENDER, session: this.session, seq, pos, layer };
    const frame = encodeBody(header, xb, this.transport === 'int8' ? INT8_GROUP_SIZE : 0);
    return new Promise<void>((resolve, reject) => {
      this.pending = { session: this.session, seq, pos, layer, out, received: new Uint8Array(this.slots.length), remaining: this.slots.length, startNs: process.hrtime.bigint(), resolve, reject };
      this.owner.publishBroadcast(frame);
    });
  }

  /** A new session: the previous one ends, every assigned node starts an empty KV cache. */
  async reset(): Promise<void> {
    if (this.failure) throw this.failure;
    await this.owner.endSession(this);
    this.session = this.owner.nextSessionId();
    this.roundTripsMs.length = 0;
    await this.owner.startSession(this);
  }

  /** Places one result frame; anything that does not belong to the current gather is counted and ignored. */
  accept(node: string, frame: Body): string | null {
    const index = this.slotOfNode.get(node);
    if (index === undefined || this.slots[index].slot !== frame.sender) {
      this.counters.unassigned++;
      return null;
    }
    const p = this.pending;
    if (!p || frame.session !== p.session || frame.seq !== p.seq || frame.pos !== p.pos || frame.layer !== p.layer) {
      this.counters.stale++;
      return null;
    }
    if (p.received[index]) {
      this.counters.duplicate++;
      return null;
    }
    const heads = this.slots[index].heads;
    const hs = this.g.headSize;
    if (frame.type !== BodyType.Result) return `frame type ${frame.type} on a result topic (expected ${BodyType.Result})`;
    if (frame.encoding !== this.transport) return `result encoded ${frame.encoding}, the mesh runs ${this.transport}`;
    if (frame.values.length !== heads.length * hs) return `result carries ${frame.values.length} values; ${heads.length} heads of ${hs} expected`;
    heads.forEach((h, i) => p.out.set(frame.values.subarray(i * hs, (i + 1) * hs), h * hs));
    p.received[index] = 1;
    if (--p.remaining === 0) {
      this.roundTripsMs.push(Number(process.hrtime.bigint() - p.startNs) / 1e6);
      this.pending = null;
      p.resolve();
    }
    return null;
  }

  /** Fails the current gather if it has waited longer than the timeout (called by the watchdog). */
  checkTimeout(nowNs: bigint): void {
    const p = this.pending;
    if (!p || Number(nowNs - p.startNs) / 1e6 <= this.gatherTimeoutMs) return;
    const missing = this.slots.filter((_, i) => !p.received[i]).map((s) => s.node);
    this.fail(new MeshError(`head node${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not answer layer ${p.layer} at position ${p.pos} within ${this.gatherTimeoutMs} ms`));
  }

  /** Fails the current gather and every later one. */
  fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    const p = this.pending;
    this.pending = null;
    p?.reject(error);
  }
}

export class MeshGateway {
  readonly g: Geometry;
  readonly gateway: Gateway;
  readonly tokenizer: Tokenizer;
  readonly nodes = new Map<string, NodeView>();
  readonly counters: GatewayCounters = { malformed: 0, invalidJson: 0, stale: 0, duplicate: 0, unassigned: 0 };
  private readonly o: MeshGatewayOptions;
  private readonly t: Topics;
  private readonly log: Logger;
  private client!: MqttClient;
  private frames!: FrameBus;
  private heads: MeshHeads | null = null;
  private assignmentId = '';
  private assignmentCount = 0;
  private sessionCounter = randomInt(1, 0x40000000);
  private queue: Promise<unknown> = Promise.resolve();
  private readonly ackWaiters = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly nodeWaiters = new Set<() => void>();
  private watchdog?: NodeJS.Timeout;

  private constructor(o: MeshGatewayOptions) {
    this.o = o;
    this.t = topicsFor(o.meshId);
    this.log = o.log ?? stderrLogger('gateway');
    const ckpt = Checkpoint.open(o.modelPath);
    try {
      this.g = geometry(ckpt.info.config);
      this.gateway = Gateway.load(ckpt);
    } finally {
      ckpt.close();
    }
    this.tokenizer = Tokenizer.load(o.tokenizerPath, this.g.vocabSize);
  }

  /** Loads the gateway weights and joins the mesh's topics on the broker. */
  static async connect(o: MeshGatewayOptions): Promise<MeshGateway> {
    const gw = new MeshGateway(o);
    gw.client = await connectMqtt({ ...o, clientId: `mesh-llm-${o.meshId}-gateway-${process.pid}`.slice(0, 64) });
    gw.client.on('message', (topic, payload) => gw.onMessage(topic, payload));
    gw.client.on('close', () => gw.heads?.fail(new MeshError(`lost the connection to the MQTT broker ${o.url}`)));
    gw.frames = o.embeddedBroker ? aedesFrameBus(o.embeddedBroker) : clientFrameBus(gw.client);
    await gw.frames.subscribe(gw.t.results, (topic, frame) => gw.onResult(topic, frame));
    await subscribe(gw.client, [gw.t.telemetries], 0);
    await subscribe(gw.client, [gw.t.statuses, gw.t.acks], 1);
    return gw;
  }

  /** The current assignment's runner (null before assign()). */
  get runner(): MeshHeads | null {
    return this.heads;
  }

  /** Node ids that are up, in natural order. */
  aliveNodes(): string[] {
    return [...this.nodes.values()].filter((n) => ALIVE.has(n.status.state)).map((n) => n.id).sort(byNodeId);
  }

  /**
   * Waits until `count` nodes are up (or, without a count, for `settleMs` and takes whoever is
   * up, at least one); rejects after timeoutMs naming how many were found.
   */
  async discover(o: { count?: number; timeoutMs?: number; settleMs?: number } = {}): Promise<string[]> {
    const timeoutMs = o.timeoutMs ?? 15000;
    const enough = () => (o.count === undefined ? this.aliveNodes().length > 0 : this.aliveNodes().length >= o.count);
    if (o.count === undefined) await new Promise((r) => setTimeout(r, o.settleMs ?? 500));
    await this.waitFor(enough, timeoutMs, () => `found ${this.aliveNodes().length} head node(s) on mesh ${this.o.meshId} (${this.aliveNodes().join(', ') || 'none'}) within ${timeoutMs} ms, ${o.count ?? 1} needed`);
    const alive = this.aliveNodes();
    return o.count === undefined ? alive : alive.slice(0, o.count);
  }

  /** Cuts the heads into groups and assigns one group per node; resolves when every node has loaded its slices. */
  async assign(nodeIds: string[], o: AssignOptions = {}): Promise<NodeAssignment[]> {
    const nodes = [...nodeIds].sort(byNodeId);
    if (nodes.length === 0) throw new MeshError('no head nodes to assign');
    const groups = Array.isArray(o.groups) ? this.checkPartition(o.groups) : partitionHeads(this.g.nHeads, o.groups ?? Math.min(nodes.length, this.g.nHeads));
    if (groups.length > nodes.length) throw new MeshError(`${groups.length} head groups need ${groups.length} nodes; only ${nodes.length} available (${nodes.join(', ')})`);
    const quant = o.quant ?? 'f32';
    const transport = o.transport ?? quant;
    const id = `a${++this.assignmentCount}-${Date.now().toString(36)}`;
    this.heads?.fail(new MeshError('the mesh was reassigned'));
    this.heads = null;
    this.assignmentId = id;
    const slotOf = this.slotsFor(nodes);
    const slots: Slot[] = groups.map((heads, i) => ({ node: nodes[i], slot: slotOf.get(nodes[i]) as number, heads }));
    const idle = nodes.slice(groups.length);
    const publish = (node: string, slot: number, heads: number[]) => {
      const m = { protocol: PROTOCOL_VERSION, assignment: id, slot, heads, weights: quant, transport, model: modelShape(this.g) } as const;
      this.client.publish(this.t.assign(node), encodeControl('assignment', m), { qos: 1 });
    };
    const acks = this.waitForAcks(nodes, 'assignment', id);
    for (const s of slots) publish(s.node, s.slot, s.heads);
    for (const node of idle) publish(node, slotOf.get(node) as number, []);
    await acks;
    this.heads = new MeshHeads(this, this.g, transport, slots, this.o.gatherTimeoutMs ?? 2000);
    return slots.map((s) => {
      const st = this.nodes.get(s.node)?.status;
      return { node: s.node, slot: s.slot, heads: s.heads, kvHeads: st?.kvHeads ?? [], weightBytes: st?.weightBytes ?? 0 };
    });
  }

  /** Generates through the mesh with the engine's loop; requests wait their turn. */
  generate(options: GenerateOptions, onToken?: TokenListener): Promise<GenerationResult> {
    const run = this.queue.then(() => this.generateNow(options, onToken));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async generateNow(options: GenerateOptions, onToken?: TokenListener): Promise<GenerationResult> {
    const heads = this.heads;
    if (!heads) throw new MeshError('no head nodes assigned: call assign() first');
    this.startWatchdog(heads);
    try {
      const publishToken: TokenListener = (token, piece, pos) => {
        const m = { protocol: PROTOCOL_VERSION, session: heads.session, pos, token, piece: piece.toString('utf8') } as const;
        this.frames.publish(this.t.tokens, Buffer.from(encodeControl('token', m)));
        onToken?.(token, piece, pos);
      };
      return await generate(this.gateway, heads, this.tokenizer, options, publishToken);
    } finally {
      this.stopWatchdog();
      await this.endSession(heads).catch(() => undefined);
    }
  }

  /** Leaves the bus (nodes keep running). */
  async close(): Promise<void> {
    this.stopWatchdog();
    this.heads?.fail(new MeshError('the gateway closed'));
    for (const w of this.ackWaiters.values()) w.reject(new MeshError('the gateway closed'));
    if (this.client) await endClient(this.client);
  }

  // --- used by MeshHeads --------------------------------------------------------------------

  nextSessionId(): number {
    this.sessionCounter = this.sessionCounter >= 0xfffffffe ? 1 : this.sessionCounter + 1;
    return this.sessionCounter;
  }

  publishBroadcast(frame: Buffer): void {
    this.frames.publish(this.t.broadcast, frame);
  }

  async startSession(heads: MeshHeads): Promise<void> {
    const acks = this.waitForAcks(heads.nodes, 'session', `start:${heads.session}`);
    this.publishSession('start', heads.session);
    await acks;
  }

  async endSession(heads: MeshHeads): Promise<void> {
    if (heads.session !== 0) this.publishSession('end', heads.session);
  }

  // --- receiving ----------------------------------------------------------------------------

  private publishSession(op: 'start' | 'reset' | 'end', session: number): void {
    this.client.publish(this.t.session, encodeControl('session', { protocol: PROTOCOL_VERSION, op, session, assignment: this.assignmentId }), { qos: 1 });
  }

  private onMessage(topic: string, payload: Buffer): void {
    try {
      const kind = topic.slice(this.t.root.length + 1, topic.lastIndexOf('/'));
      if (kind === 'result') this.onResult(topic, payload);
      else if (kind === 'status') this.onControl('status', topic, payload, (m) => this.onStatus(topic, m));
      else if (kind === 'ack') this.onControl('ack', topic, payload, (m) => this.onAck(topic, m));
      else if (kind === 'telemetry') this.onControl('telemetry', topic, payload, (m) => this.onTelemetry(topic, m));
    } catch (e) {
      this.reject(topic, `internal error handling message: ${(e as Error).message}`);
    }
  }

  private onResult(topic: string, payload: Buffer): void {
    let frame: Body;
    try {
      frame = decodeBody(payload);
    } catch (e) {
      this.counters.malformed++;
      return this.reject(topic, (e as Error).message);
    }
    const heads = this.heads;
    if (!heads) {
      this.counters.unassigned++;
      return;
    }
    const problem = heads.accept(nodeOfTopic(topic), frame);
    if (problem) {
      this.counters.malformed++;
      this.reject(topic, problem);
    }
  }

  private onControl<K extends ControlKind>(kind: K, topic: string, payload: Buffer, handle: (m: ControlMessages[K]) => void): void {
    if (payload.length === 0) return; // a cleared retained message
    let m: ControlMessages[K];
    try {
      m = parseControl(kind, payload);
    } catch (e) {
      this.counters.invalidJson++;
      return this.reject(topic, (e as Error).message);
    }
    handle(m);
  }

  private onStatus(topic: string, m: StatusMessage): void {
    const id = nodeOfTopic(topic);
    if (m.node !== id) return this.reject(topic, `status names node "${m.node}" on the topic of "${id}"`);
    const view = this.nodes.get(id);
    this.nodes.set(id, { id, status: m, telemetry: view?.telemetry });
    if (!ALIVE.has(m.state) && this.heads?.hasNode(id)) {
      this.heads.fail(new MeshError(`head node ${id} went ${m.state}${m.reason ? ` (${m.reason})` : ''}`));
      for (const [key, w] of this.ackWaiters) if (key.startsWith(`${id}|`)) w.reject(new MeshError(`head node ${id} went ${m.state}`));
    }
    for (const wake of this.nodeWaiters) wake();
  }

  private onAck(topic: string, m: AckMessage): void {
    if (m.node !== nodeOfTopic(topic)) return this.reject(topic, `ack names node "${m.node}" on the topic of "${nodeOfTopic(topic)}"`);
    const key = `${m.node}|${m.kind}|${m.id}`;
    const waiter = this.ackWaiters.get(key);
    if (!waiter) {
      this.counters.stale++;
      return;
    }
    if (m.ok) waiter.resolve();
    else waiter.reject(new MeshError(`head node ${m.node} refused ${m.kind} ${m.id}: ${m.error ?? 'no reason given'}`));
  }

  private onTelemetry(topic: string, m: TelemetryMessage): void {
    if (m.node !== nodeOfTopic(topic)) return this.reject(topic, `telemetry names node "${m.node}" on the topic of "${nodeOfTopic(topic)}"`);
    const view = this.nodes.get(m.node);
    if (view) view.telemetry = m;
  }

  /** Drops a message: one log line and one report on the errors topic. */
  private reject(topic: string, reason: string): void {
    this.log('warn', `dropped message on ${topic}: ${reason}`);
    this.client.publish(this.t.errors, encodeControl('error', { protocol: PROTOCOL_VERSION, source: 'gateway', topic, reason: reason.slice(0, 2000) }), { qos: 0 });
  }

  // --- waiting ------------------------------------------------------------------------------

  private waitForAcks(nodes: string[], kind: AckMessage['kind'], id: string): Promise<void> {
    const timeoutMs = this.o.controlTimeoutMs ?? 15000;
    const pending = new Set(nodes);
    const keys = nodes.map((n) => `${n}|${kind}|${id}`);
    return new Promise<void>((resolve, reject) => {
      const finish = (err?: Error) => {
        clearTimeout(timer);
        keys.forEach((k) => this.ackWaiters.delete(k));
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => finish(new MeshError(`head node${pending.size > 1 ? 's' : ''} ${[...pending].join(', ')} did not acknowledge ${kind} ${id} within ${timeoutMs} ms`)), timeoutMs);
      nodes.forEach((node, i) => {
        this.ackWaiters.set(keys[i], {
          resolve: () => {
            pending.delete(node);
            if (pending.size === 0) finish();
          },
          reject: (e) => finish(e),
        });
      });
      const gone = nodes.find((n) => this.nodes.has(n) && !ALIVE.has((this.nodes.get(n) as NodeView).status.state));
      if (gone) finish(new MeshError(`head node ${gone} is ${this.nodes.get(gone)?.status.state}`));
    });
  }

  private waitFor(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        done();
        resolve();
      };
      const done = () => {
        clearTimeout(timer);
        this.nodeWaiters.delete(check);
      };
      const timer = setTimeout(() => {
        done();
        reject(new MeshError(describe()));
      }, timeoutMs);
      this.nodeWaiters.add(check);
    });
  }

  private startWatchdog(heads: MeshHeads): void {
    const every = Math.max(5, Math.min(100, Math.floor((this.o.gatherTimeoutMs ?? 2000) / 10)));
    this.watchdog = setInterval(() => heads.checkTimeout(process.hrtime.bigint()), every);
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /**
   * A slot per node: a node whose status names a fixed slot (a radio node: its flashed radio
   * address) gets that one; the others take the lowest numbers left free.
   */
  private slotsFor(nodes: string[]): Map<string, number> {
    const slots = new Map<string, number>();
    const taken = new Map<number, string>();
    for (const node of nodes) {
      const fixed = this.nodes.get(node)?.status.slot;
      if (fixed === undefined) continue;
      const other = taken.get(fixed);
      if (other !== undefined) throw new MeshError(`head nodes ${other} and ${node} both have fixed slot ${fixed}`);
      taken.set(fixed, node);
      slots.set(node, fixed);
    }
    let next = 1;
    for (const node of nodes) {
      if (slots.has(node)) continue;
      while (taken.has(next)) next++;
      taken.set(next, node);
      slots.set(node, next);
    }
    return slots;
  }

  private checkPartition(groups: number[][]): number[][] {
    const all = groups.flat().sort((a, b) => a - b);
    const ok = groups.every((g) => g.length > 0) && all.length === this.g.nHeads && all.every((h, i) => h === i);
    if (!ok) throw new MeshError(`head groups ${JSON.stringify(groups)} must cover heads 0..${this.g.nHeads - 1} exactly once, no group empty`);
    return groups.map((g) => [...g].sort((a, b) => a - b));
  }
}

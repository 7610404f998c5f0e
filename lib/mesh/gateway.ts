/**
 * The gateway orchestrator: holds the gateway weights (embeddings, W_O, FFN, classifier),
 * discovers head nodes on the bus and assigns them head groups. Running on the assigned nodes
 * is the mesh runner's (runner.ts: sessions, the gather and its timeout, the request queue),
 * over the MQTT head link (link.ts); generate() is the engine's loop on that runner.
 */
import { Aedes } from 'aedes';
import { MqttClient } from 'mqtt';
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, geometry } from '../llm/config';
import { Gateway } from '../llm/gateway';
import { randomUUID } from 'node:crypto';
import { GenerateOptions, Generation, GenerationResult, TokenListener, generate } from '../llm/engine';
import { partitionHeads } from '../llm/head';
import { Encoding, WeightFormat } from '../llm/quant';
import { Tokenizer } from '../llm/tokenizer';
import { MeshEventStream, RunEvents } from './events';
import { AckWaiter, MqttHeadLink, aedesBodyBus, clientBodyBus, isAlive } from './link';
import { BrokerAddress, Logger, connectMqtt, endClient, stderrLogger, subscribe } from './mqtt';
import { ReportLimiter, withHeldCount } from './report-limit';
import { HeadMove, MeshError, MeshRunner, ResultCounters, RunnerAssignment, RunnerSlot } from './runner';
import { AckMessage, ControlKind, ControlMessages, ModelShape, PROTOCOL_VERSION, StatusMessage, TelemetryMessage, Topics, encodeControl, nodeOfTopic, receiveControl, topicsFor } from './wire';

export interface MeshGatewayOptions extends BrokerAddress {
  meshId: string;
  modelPath: string;
  tokenizerPath: string;
  /** How long a layer waits for every node's result before the generation fails. */
  gatherTimeoutMs?: number;
  /** How long assignment (weight loading) and session acknowledgements may take. */
  controlTimeoutMs?: number;
  /**
   * The embedded broker, when it runs in this process: bodies then go through it
   * directly instead of over the gateway's own TCP connection (control messages still use MQTT).
   */
  embeddedBroker?: Aedes;
  /** Move the heads of a lost node to a standby or surviving node and go on (default true); false: a lost node fails the run. */
  failover?: boolean;
  log?: Logger;
}

export interface NodeView {
  id: string;
  status: StatusMessage;
  telemetry?: TelemetryMessage;
}

export interface AssignOptions {
  /** Head partition: a group count, sizes such as "2+3+3", or explicit head lists. Default: one group per node (at most n_heads). */
  groups?: string | number | number[][];
  /** Head weights on the nodes (int8, int4 and int2 imply int8 transport both ways, as the engine's quant). */
  quant?: WeightFormat;
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

/** Dropped messages, by reason: result bodies (counted by the runner) and JSON. */
export interface GatewayCounters extends ResultCounters {
  invalidJson: number;
}

const naturalOrder = new Intl.Collator('en', { numeric: true });

/** node-2 before node-10. */
function byNodeId(a: string, b: string): number {
  return naturalOrder.compare(a, b);
}

function modelShape(g: Geometry): ModelShape {
  return { dim: g.dim, nLayers: g.nLayers, nHeads: g.nHeads, nKvHeads: g.nKvHeads, vocabSize: g.vocabSize, seqLen: g.seqLen };
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
  private readonly acks: AckWaiter;
  /** What happens on this gateway's mesh, published on the events topic (lib/mesh/events.ts). */
  readonly events = new MeshEventStream();
  private client!: MqttClient;
  private link!: MqttHeadLink;
  private mesh!: MeshRunner;
  private assignmentCount = 0;
  private unpublish: (() => void) | null = null;
  private closed = false;
  /** Why the broker connection is down (null while it is up). */
  private lost: MeshError | null = null;
  private readonly nodeWaiters = new Set<() => void>();
  /** The last assignment asked for (nodes, options): what a failover's revision is restored to once its nodes are back. */
  private plan: { nodes: string[]; options: AssignOptions; weights: WeightFormat } | null = null;
  /**
   * Nodes that were lost from a run (a missed gather timeout, say) and have said nothing since:
   * not counted alive, so no assignment waits on them; their next status or telemetry clears it.
   */
  readonly suspects = new Set<string>();
  /** What the gateway reports on the errors topic, at most 10 a second after a burst of 20. */
  readonly reports = new ReportLimiter();
  /**
   * Told when a failover (or the restore after one) gave nodes other heads, once they have
   * loaded them and before the run goes on: steering follows the heads (lib/steering/mesh.ts).
   */
  readonly reassigned = new Set<(slots: RunnerSlot[], changed: string[]) => Promise<void>>();

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
    this.acks = new AckWaiter(o.controlTimeoutMs ?? 15000, (node) => this.nodes.get(node)?.status.state);
  }

  /** Runs on the assigned nodes: every generation, of whatever kind, goes through it. */
  get runner(): MeshRunner {
    return this.mesh;
  }

  /** Loads the gateway weights and joins the mesh's topics on the broker. */
  static async connect(o: MeshGatewayOptions): Promise<MeshGateway> {
    const gw = new MeshGateway(o);
    gw.client = await connectMqtt({ ...o, clientId: `mesh-llm-${o.meshId}-gateway-${process.pid}`.slice(0, 64) });
    gw.client.on('message', (topic, payload) => gw.onMessage(topic, payload));
    const bodies = o.embeddedBroker ? aedesBodyBus(o.embeddedBroker) : clientBodyBus(gw.client);
    gw.link = new MqttHeadLink({ client: gw.client, bodies, topics: gw.t, acks: gw.acks, reject: (topic, reason) => gw.reject(topic, reason) });
    gw.mesh = new MeshRunner(gw.link, gw.g, { gatherTimeoutMs: o.gatherTimeoutMs, counters: gw.counters });
    gw.mesh.listener = gw.events.gatherListener(() => gw.mesh.session);
    gw.publishEvents(true);
    if (o.failover !== false) gw.mesh.failover = { replace: (a, lost) => gw.replace(a, lost), restore: () => gw.restore() };
    gw.client.on('close', () => {
      const lost = new MeshError(`lost the connection to the MQTT broker ${o.url}`);
      gw.mesh.fail(lost);
      gw.lost = lost; // a discovery waiting for nodes ends now, not at its timeout
      for (const check of [...gw.nodeWaiters]) check();
    });
    gw.client.on('connect', () => (gw.lost = null));
    await bodies.subscribe(gw.t.results, (topic, payload) => gw.runner.accept(nodeOfTopic(topic), payload));
    await subscribe(gw.client, [gw.t.telemetries], 0);
    await subscribe(gw.client, [gw.t.statuses, gw.t.acks], 1);
    return gw;
  }

  /** Node ids that are up, in natural order. */
  aliveNodes(): string[] {
    return [...this.nodes.values()].filter((n) => isAlive(n.status.state) && !this.suspects.has(n.id)).map((n) => n.id).sort(byNodeId);
  }

  /**
   * Waits until `count` nodes are up (or, without a count, for `settleMs` and takes whoever is
   * up, at least one); rejects after timeoutMs naming how many were found.
   */
  async discover(o: { count?: number; timeoutMs?: number; settleMs?: number } = {}): Promise<string[]> {
    if (this.closed) throw new MeshError('the gateway closed');
    const timeoutMs = o.timeoutMs ?? 15000;
    const enough = () => (o.count === undefined ? this.aliveNodes().length > 0 : this.aliveNodes().length >= o.count);
    if (o.count === undefined) await new Promise((r) => setTimeout(r, o.settleMs ?? 500));
    await this.waitFor(enough, timeoutMs, () => `found ${this.aliveNodes().length} head node(s) on mesh ${this.o.meshId} (${this.aliveNodes().join(', ') || 'none'}) within ${timeoutMs} ms, ${o.count ?? 1} needed`);
    const alive = this.aliveNodes();
    return o.count === undefined ? alive : alive.slice(0, o.count);
  }

  /**
   * Cuts the heads into groups and assigns one group per node; resolves when every node has
   * loaded its slices (a node given the heads and weights it already holds keeps them).
   */
  async assign(nodeIds: string[], o: AssignOptions = {}): Promise<NodeAssignment[]> {
    if (this.closed) throw new MeshError('the gateway closed');
    const sorted = [...nodeIds].sort(byNodeId);
    if (sorted.length === 0) throw new MeshError('no head nodes to assign');
    const flashed = o.groups === undefined ? this.flashedGroups(sorted) : null;
    const nodes = flashed ? flashed.nodes : sorted;
    const groups = flashed ? this.checkPartition(flashed.groups) : Array.isArray(o.groups) ? this.checkPartition(o.groups) : partitionHeads(this.g.nHeads, o.groups ?? Math.min(nodes.length, this.g.nHeads));
    if (groups.length > nodes.length) throw new MeshError(`${groups.length} head groups need ${groups.length} nodes; only ${nodes.length} available (${nodes.join(', ')})`);
    const quant = o.quant ?? 'f32';
    const transport: Encoding = o.transport ?? (quant === 'f32' ? 'f32' : 'int8');
    const id = `a${++this.assignmentCount}-${Date.now().toString(36)}`;
    this.runner.use(null);
    const slotOf = this.slotsFor(nodes);
    const slots: RunnerSlot[] = groups.map((heads, i) => ({ node: nodes[i], slot: slotOf.get(nodes[i]) as number, heads }));
    const idle = nodes.slice(groups.length);
    const publish = (node: string, slot: number, heads: number[]) => {
      const m = { protocol: PROTOCOL_VERSION, assignment: id, slot, heads, weights: quant, transport, model: modelShape(this.g) } as const;
      this.client.publish(this.t.assign(node), encodeControl('assignment', m), { qos: 1 });
    };
    const acks = this.acks.wait(nodes, 'assignment', id);
    for (const s of slots) publish(s.node, s.slot, s.heads);
    for (const node of idle) publish(node, slotOf.get(node) as number, []);
    await acks;
    this.plan = { nodes, options: o, weights: quant };
    this.runner.use({ id, slots, transport });
    this.events.emit({ kind: 'assigned', nodes: slots.map((s) => ({ node: s.node, slot: s.slot, heads: s.heads })) });
    return this.assignmentOf(slots);
  }

  /** The assignment of these slots as the nodes' statuses describe it (what assign() returns; also what a failover's revised slots amount to). */
  assignmentOf(slots: readonly { node: string; slot: number; heads: number[] }[]): NodeAssignment[] {
    return slots.map((s) => {
      const st = this.nodes.get(s.node)?.status;
      return { node: s.node, slot: s.slot, heads: s.heads, kvHeads: st?.kvHeads ?? [], weightBytes: st?.weightBytes ?? 0 };
    });
  }

  /**
   * The runner's failover: the heads of the lost nodes go to standby nodes (alive, holding no
   * heads), one lost node's group to each, or, when none is left, head by head to the surviving
   * node with the fewest heads. Only the nodes whose heads change are sent an assignment (the
   * same assignment id, so the others keep their weights); the lost ones are released. Resolves
   * once the changed nodes have loaded their heads.
   */
  private async replace(current: RunnerAssignment, lost: readonly string[]): Promise<{ assignment: RunnerAssignment; moves: HeadMove[] }> {
    if (this.closed) throw new MeshError('the gateway closed');
    for (const node of lost) this.suspects.add(node);
    const alive = new Set(this.aliveNodes());
    const survivors = current.slots.filter((s) => alive.has(s.node)).map((s) => ({ ...s, heads: [...s.heads] }));
    const orphans = current.slots.filter((s) => !alive.has(s.node));
    const standby = [...alive].filter((n) => !current.slots.some((s) => s.node === n));
    const heads = orphans.flatMap((s) => s.heads);
    if (survivors.length + standby.length === 0) throw new MeshError(`no head node is left on mesh ${this.o.meshId} to take heads [${heads.join(',')}] of ${orphans.map((s) => s.node).join(', ')}`);
    this.log('warn', `head node${orphans.length > 1 ? 's' : ''} ${orphans.map((s) => s.node).join(', ')} lost: moving heads [${heads.join(',')}]`);
    const slots: RunnerSlot[] = [...survivors];
    const changed = new Set<RunnerSlot>();
    const moves: HeadMove[] = [];
    const move = (from: string, to: RunnerSlot, moved: number[]) => {
      const m = moves.find((x) => x.from === from && x.to === to.node);
      if (m) m.heads.push(...moved);
      else moves.push({ from, to: to.node, heads: [...moved] });
      changed.add(to);
    };
    for (const orphan of orphans) {
      // a standby that holds exactly these heads first (a radio node's heads are fixed in its flash: a spare flashed with the lost node's group)
      const same = (hs: readonly number[] | undefined) => hs !== undefined && hs.length === orphan.heads.length && [...hs].sort((a, b) => a - b).every((h, i) => h === [...orphan.heads].sort((a, b) => a - b)[i]);
      // a node with a fixed slot (a radio node) holds its heads in flash: it can take only those
      const fixed = (n: string) => this.nodes.get(n)?.status.slot !== undefined;
      const holder = standby.findIndex((n) => same(this.nodes.get(n)?.status.heads));
      const loadable = standby.findIndex((n) => !fixed(n));
      const pick = holder >= 0 ? holder : loadable;
      const node = pick >= 0 ? standby.splice(pick, 1)[0] : undefined;
      if (node !== undefined) {
        const s: RunnerSlot = { node, slot: this.freeSlot(node, slots), heads: [...orphan.heads] };
        slots.push(s);
        move(orphan.node, s, orphan.heads);
        continue;
      }
      const takers = slots.filter((x) => !fixed(x.node));
      if (takers.length === 0) throw new MeshError(`no head node is left on mesh ${this.o.meshId} that can take heads [${orphan.heads.join(',')}] of ${orphan.node}: the others hold their heads in flash (radio nodes), and no spare flashed with these heads is up`);
      for (const h of orphan.heads) {
        const target = takers.reduce((a, b) => (b.heads.length < a.heads.length ? b : a));
        target.heads.push(h);
        target.heads.sort((a, b) => a - b);
        move(orphan.node, target, [h]);
      }
    }
    const weights: WeightFormat = this.plan?.weights ?? (current.transport === 'int7' || current.transport === 'int7h' ? 'int8' : current.transport);
    const publish = (node: string, slot: number, hs: number[]) => {
      const m = { protocol: PROTOCOL_VERSION, assignment: current.id, slot, heads: hs, weights, transport: current.transport, model: modelShape(this.g) } as const;
      this.client.publish(this.t.assign(node), encodeControl('assignment', m), { qos: 1 });
    };
    const acks = this.acks.wait([...changed].map((s) => s.node), 'assignment', current.id);
    for (const s of changed) publish(s.node, s.slot, s.heads);
    for (const o of orphans) publish(o.node, o.slot, []); // a node that was only held releases its heads when it runs again
    await acks;
    slots.sort((a, b) => a.slot - b.slot);
    for (const hook of this.reassigned) await hook(slots, [...changed].map((s) => s.node));
    return { assignment: { id: current.id, slots, transport: current.transport }, moves };
  }

  /** After a failover, at the next session: the planned assignment again, once every one of its nodes is up. */
  private async restore(): Promise<void> {
    const plan = this.plan;
    if (!plan) return;
    const alive = new Set(this.aliveNodes());
    if (!plan.nodes.every((n) => alive.has(n))) return;
    this.log('info', `head nodes ${plan.nodes.join(', ')} are all up again: assigning them as planned`);
    const assignment = await this.assign(plan.nodes, plan.options);
    for (const hook of this.reassigned) await hook(assignment, assignment.map((a) => a.node));
  }

  /** A slot for a node joining an assignment: its fixed slot, or the lowest number free. */
  private freeSlot(node: string, slots: readonly RunnerSlot[]): number {
    const taken = new Set(slots.map((s) => s.slot));
    const fixed = this.nodes.get(node)?.status.slot;
    if (fixed !== undefined && !taken.has(fixed)) return fixed;
    let next = 1;
    while (taken.has(next)) next++;
    return next;
  }

  /** Generates through the mesh with the engine's loop, each token also on the tokens topic; requests wait their turn. */
  generate(options: GenerateOptions, onToken?: TokenListener, source: 'cli' | 'radio' = 'cli'): Promise<GenerationResult> {
    const runner = this.runner;
    const events = this.runEvents();
    const publishToken: TokenListener = (token, piece, pos, logits) => {
      this.link.publishToken({ protocol: PROTOCOL_VERSION, session: runner.session, pos, token, piece: piece.toString('utf8') });
      events.token(pos, token, piece, logits ?? null);
      onToken?.(token, piece, pos, logits);
    };
    return runner.exclusive(() => this.told(events, source, false, (onStart) => generate(this.gateway, runner, this.tokenizer, options, publishToken, onStart)));
  }

  /** Whether the mesh events go out on the bus (mesh-llm/{mesh}/events; on from the start). Local watchers hear them either way. */
  publishEvents(on: boolean): void {
    this.unpublish?.();
    this.unpublish = on
      ? this.events.on((e) => {
          if (this.client.connected) this.client.publish(this.t.events, encodeControl('event', e), { qos: 0 });
        })
      : null;
  }

  /** The events of one new run on this mesh. */
  runEvents(): RunEvents {
    return new RunEvents(this.events, randomUUID(), () => this.mesh.session);
  }

  /** Runs `work` as one run of the event stream: run-start once its session is open, run-end however it ends. */
  async told<T extends GenerationResult>(events: RunEvents, source: 'cli' | 'radio' | 'flow', steered: boolean, work: (onStart: (gen: Generation) => void) => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      const result = await work((gen) => events.start({ source, prompt: gen.options.prompt, steps: gen.options.steps, temperature: gen.options.temperature, promptTokens: gen.prompt.length, steered }));
      events.end({ tokens: result.tokens.length - 1, seconds: result.seconds, text: result.text });
      return result;
    } catch (e) {
      events.end({ tokens: events.tokens, seconds: (performance.now() - t0) / 1000, error: (e as Error).message });
      throw e;
    }
  }

  /** Leaves the bus (nodes keep running). */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.nodeWaiters) wake();
    this.runner.fail(new MeshError('the gateway closed'));
    this.runner.end();
    this.acks.abort(new MeshError('the gateway closed'));
    if (this.client) await endClient(this.client);
  }

  // --- receiving ----------------------------------------------------------------------------

  private onMessage(topic: string, payload: Buffer): void {
    try {
      const kind = topic.slice(this.t.root.length + 1, topic.lastIndexOf('/'));
      if (kind === 'result') this.runner.accept(nodeOfTopic(topic), payload);
      else if (kind === 'status') this.onControl('status', topic, payload, (m) => this.onStatus(topic, m));
      else if (kind === 'ack') this.onControl('ack', topic, payload, (m) => this.onAck(topic, m));
      else if (kind === 'telemetry') this.onControl('telemetry', topic, payload, (m) => this.onTelemetry(topic, m));
    } catch (e) {
      this.reject(topic, `internal error handling message: ${(e as Error).message}`);
    }
  }

  private onControl<K extends ControlKind>(kind: K, topic: string, payload: Buffer, handle: (m: ControlMessages[K]) => void): void {
    if (payload.length === 0) return; // a cleared retained message
    const m = receiveControl(kind, payload, (reason) => {
      this.counters.invalidJson++;
      this.reject(topic, reason);
    });
    if (m) handle(m);
  }

  private onStatus(topic: string, m: StatusMessage): void {
    const id = nodeOfTopic(topic);
    if (m.node !== id) return this.reject(topic, `status names node "${m.node}" on the topic of "${id}"`);
    const view = this.nodes.get(id);
    this.nodes.set(id, { id, status: m, telemetry: view?.telemetry });
    this.suspects.delete(id); // it speaks again
    if (!isAlive(m.state)) {
      this.runner.nodeLost(id, `${m.state}${m.reason ? ` (${m.reason})` : ''}`);
      this.acks.nodeLost(id, m.state);
    }
    for (const wake of this.nodeWaiters) wake();
  }

  private onAck(topic: string, m: AckMessage): void {
    if (m.node !== nodeOfTopic(topic)) return this.reject(topic, `ack names node "${m.node}" on the topic of "${nodeOfTopic(topic)}"`);
    if (!this.acks.received(m)) this.counters.stale++;
  }

  private onTelemetry(topic: string, m: TelemetryMessage): void {
    if (m.node !== nodeOfTopic(topic)) return this.reject(topic, `telemetry names node "${m.node}" on the topic of "${nodeOfTopic(topic)}"`);
    const view = this.nodes.get(m.node);
    if (view) view.telemetry = m;
    if (this.suspects.delete(m.node)) for (const wake of this.nodeWaiters) wake();
  }

  /** Drops a message: one log line and one report on the errors topic, both rate-limited (lib/mesh/report-limit.ts). */
  private reject(topic: string, reason: string): void {
    const go = this.reports.take();
    if (!go) return;
    const said = withHeldCount(reason, go.heldBefore);
    this.log('warn', `dropped message on ${topic}: ${said}`);
    this.client.publish(this.t.errors, encodeControl('error', { protocol: PROTOCOL_VERSION, source: 'gateway', topic, reason: said.slice(0, 2000) }), { qos: 0 });
  }

  // --- waiting ------------------------------------------------------------------------------

  private waitFor(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    if (this.closed) return Promise.reject(new MeshError('the gateway closed'));
    if (this.lost) return Promise.reject(this.lost); // lost before the wait began: no close event will come to end it
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.closed) {
          done();
          return reject(new MeshError('the gateway closed'));
        }
        if (this.lost) {
          done();
          return reject(this.lost);
        }
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

  /**
   * Nodes that hold their heads in flash (radio nodes: a fixed slot and heads in their status)
   * are given exactly those: the first node of each head group, by slot, carries it, and the
   * others holding the same group stay idle as its spares. Null when any node can load heads.
   */
  private flashedGroups(nodes: readonly string[]): { nodes: string[]; groups: number[][] } | null {
    const held = nodes.map((id) => ({ id, status: this.nodes.get(id)?.status }));
    if (!held.every((n) => n.status?.slot !== undefined && (n.status.heads?.length ?? 0) > 0)) return null;
    held.sort((a, b) => (a.status?.slot as number) - (b.status?.slot as number));
    const carriers = new Map<string, { id: string; heads: number[] }>();
    for (const n of held) {
      const heads = [...(n.status?.heads ?? [])].sort((a, b) => a - b);
      if (!carriers.has(heads.join(','))) carriers.set(heads.join(','), { id: n.id, heads });
    }
    const primary = [...carriers.values()];
    const covered = new Set(primary.flatMap((p) => p.heads));
    const missing = Array.from({ length: this.g.nHeads }, (_, h) => h).filter((h) => !covered.has(h));
    if (missing.length) throw new MeshError(`the head nodes ${nodes.join(', ')} hold their heads in flash (radio nodes), and none holds heads [${missing.join(',')}]`);
    const spares = held.map((n) => n.id).filter((id) => !primary.some((p) => p.id === id));
    return { nodes: [...primary.map((p) => p.id), ...spares], groups: primary.map((p) => p.heads) };
  }

  private checkPartition(groups: number[][]): number[][] {
    const all = groups.flat().sort((a, b) => a - b);
    const ok = groups.every((g) => g.length > 0) && all.length === this.g.nHeads && all.every((h, i) => h === i);
    if (!ok) throw new MeshError(`head groups ${JSON.stringify(groups)} must cover heads 0..${this.g.nHeads - 1} exactly once, no group empty`);
    return groups.map((g) => [...g].sort((a, b) => a - b));
  }
}

/**
 * The head-node runtime: one process computing one head group for the gateway. It announces
 * itself (retained status, with a last will saying offline), waits for its assignment, loads
 * only its own W_Q/W_K/W_V rows, once per assignment, keeps one KV cache per session over
 * them, answers each broadcast frame with a result frame, and sends heartbeats. Bad input is
 * dropped, logged and reported on the errors topic; nothing a peer sends can crash it.
 */
import { MqttClient } from 'mqtt';
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, geometry } from '../llm/config';
import { resultGroupSize } from '../llm/engine';
import { HeadSession, HeadSteering, HeadWeights, loadHeadSlices } from '../llm/head';
import { steeringFromMessage } from './node-steering';
import { ReportLimiter, withHeldCount } from './report-limit';
import { BrokerAddress, GOODBYE_MS, Logger, connectMqtt, endClient, stderrLogger, subscribe, withinMs } from './mqtt';
import { Body, BodyType, decodeBody, encodeBody } from '../link/body';
import { Encoding } from '../llm/quant';
import { AckMessage, AssignmentMessage, ControlKind, ControlMessages, ModelShape, PROTOCOL_VERSION, SessionMessage, StatusMessage, SteeringMessage, Topics, checkId, encodeControl, receiveControl, topicsFor } from './wire';

export interface HeadNodeOptions extends BrokerAddress {
  id: string;
  meshId: string;
  modelPath: string;
  heartbeatMs?: number;
  /** KV caches kept at once; the least recently started session is dropped beyond it. */
  maxSessions?: number;
  log?: Logger;
}

/** What a node drops, by reason. */
export interface NodeCounters {
  framesIn: number;
  framesOut: number;
  malformed: number;
  invalidJson: number;
  /** Frames for a session this node does not hold, or before any assignment. */
  stale: number;
}

interface ActiveAssignment {
  id: string;
  slot: number;
  heads: number[];
  transport: Encoding;
  /** The assignment's one copy of its weights; every session's KV cache is made over it. */
  weights: HeadWeights;
}

function sameShape(a: ModelShape, g: Geometry): string | null {
  const keys: (keyof ModelShape)[] = ['dim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'];
  const diff = keys.filter((k) => a[k] !== g[k]);
  return diff.length === 0 ? null : diff.map((k) => `${k} ${g[k]} here, ${a[k]} at the gateway`).join(', ');
}

export class HeadNode {
  readonly id: string;
  readonly counters: NodeCounters = { framesIn: 0, framesOut: 0, malformed: 0, invalidJson: 0, stale: 0 };
  private readonly o: HeadNodeOptions;
  private readonly t: Topics;
  private readonly log: Logger;
  private readonly g: Geometry;
  private client?: MqttClient;
  private assignment?: ActiveAssignment;
  private readonly sessions = new Map<number, HeadSession>();
  /** Added to the head outputs of every session (lib/steering); null: none. */
  private steering: HeadSteering | null = null;
  private heartbeat?: NodeJS.Timeout;
  private stopping = false;
  /** What this node reports on the errors topic, at most 10 a second after a burst of 20. */
  readonly reports = new ReportLimiter();
  private readonly started = Date.now();
  private connectionLost = false;
  private markLost: (why: string) => void = () => undefined;
  /** Resolves with a reason if the broker connection drops while the node is not stopping. */
  readonly lost = new Promise<string>((resolve) => (this.markLost = resolve));

  constructor(o: HeadNodeOptions) {
    this.o = o;
    this.id = checkId('node', o.id);
    this.t = topicsFor(o.meshId);
    this.log = o.log ?? stderrLogger(o.id);
    const ckpt = Checkpoint.open(o.modelPath);
    try {
      this.g = geometry(ckpt.info.config);
    } finally {
      ckpt.close();
    }
  }

  /** Bytes of this node's weights as loaded, as its status and telemetry report them (0 until assigned). */
  get weightBytes(): number {
    return this.assignment?.weights.weightBytes ?? 0;
  }

  /**
   * Bytes this node's weights really take: the kernel arenas of the distinct weights objects
   * that its assignment and its sessions hold (one per assignment, however many sessions).
   */
  get residentWeightBytes(): number {
    const distinct = new Set<HeadWeights>([...this.sessions.values()].map((s) => s.weights));
    if (this.assignment) distinct.add(this.assignment.weights);
    let n = 0;
    for (const w of distinct) n += w.arenaBytes;
    return n;
  }

  get cacheBytes(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.cacheBytes;
    return n;
  }

  async start(): Promise<void> {
    const offline: StatusMessage = { protocol: PROTOCOL_VERSION, node: this.id, state: 'offline', reason: 'connection lost' };
    this.client = await connectMqtt({
      ...this.o,
      clientId: `mesh-llm-${this.o.meshId}-${this.id}`.slice(0, 64),
      will: { topic: this.t.status(this.id), payload: encodeControl('status', offline), retain: true, qos: 1 },
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.on('close', () => {
      this.connectionLost = true;
      if (!this.stopping) this.markLost(`lost the connection to the MQTT broker ${this.o.url}`);
    });
    await subscribe(this.client, [this.t.broadcast], 0);
    await subscribe(this.client, [this.t.assign(this.id), this.t.session, this.t.steer(this.id)], 1);
    this.publishStatus('online');
    this.heartbeat = setInterval(() => this.publishTelemetry(), this.o.heartbeatMs ?? 1000);
    this.heartbeat.unref();
    this.log('info', `online on ${this.o.url}, mesh ${this.o.meshId}`);
  }

  /** Says goodbye (retained offline status) and disconnects. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    const client = this.client;
    if (!client) return;
    if (this.connectionLost || !client.connected) return endClient(client); // nobody left to tell
    // a broker that stopped answering must not keep the node from stopping
    const goodbye = encodeControl('status', { protocol: PROTOCOL_VERSION, node: this.id, state: 'offline', reason: 'stopped' });
    await withinMs(GOODBYE_MS, new Promise<void>((resolve) => client.publish(this.t.status(this.id), goodbye, { qos: 1, retain: true }, () => resolve())));
    await withinMs(GOODBYE_MS, endClient(client));
    if (client.connected) client.end(true);
  }

  private onMessage(topic: string, payload: Buffer): void {
    try {
      if (topic === this.t.broadcast) this.onBroadcast(topic, payload);
      else if (topic === this.t.assign(this.id)) this.onControl('assignment', topic, payload, (m) => this.onAssignment(m));
      else if (topic === this.t.session) this.onControl('session', topic, payload, (m) => this.onSession(m));
      else if (topic === this.t.steer(this.id)) this.onControl('steering', topic, payload, (m) => this.onSteering(m));
    } catch (e) {
      this.reject(topic, `internal error handling message: ${(e as Error).message}`);
    }
  }

  private onControl<K extends ControlKind>(kind: K, topic: string, payload: Buffer, handle: (m: ControlMessages[K]) => void): void {
    const message = receiveControl(kind, payload, (reason) => {
      this.counters.invalidJson++;
      this.reject(topic, reason);
    });
    if (message) handle(message);
  }

  /** Drops a message: one log line and one report on the errors topic, both rate-limited (a flood must not become a flood of reports). */
  private reject(topic: string, reason: string): void {
    const go = this.reports.take();
    if (!go) return;
    const said = withHeldCount(reason, go.heldBefore);
    this.log('warn', `dropped message on ${topic}: ${said}`);
    this.client?.publish(this.t.errors, encodeControl('error', { protocol: PROTOCOL_VERSION, source: this.id, topic, reason: said.slice(0, 2000) }), { qos: 0 });
  }

  private onAssignment(m: AssignmentMessage): void {
    const mismatch = sameShape(m.model, this.g);
    const badHead = m.heads.find((h) => h >= this.g.nHeads);
    if (mismatch || badHead !== undefined) {
      const error = mismatch ? `model mismatch: ${mismatch}` : `head ${badHead} does not exist (the model has ${this.g.nHeads})`;
      this.reject(this.t.assign(this.id), `assignment ${m.assignment} refused: ${error}`);
      this.ack('assignment', m.assignment, false, error);
      return;
    }
    this.sessions.clear();
    this.steering = null; // cut for the previous heads
    if (m.heads.length === 0) {
      this.assignment = undefined;
      this.publishStatus('online');
      this.ack('assignment', m.assignment, true);
      return;
    }
    this.publishStatus('loading', { assignment: m.assignment, heads: m.heads });
    let weights: HeadWeights;
    try {
      weights = this.loadWeights(m);
    } catch (e) {
      const error = `cannot load heads [${m.heads.join(',')}]: ${(e as Error).message}`;
      this.log('error', error);
      this.assignment = undefined;
      this.publishStatus('failed', { assignment: m.assignment, reason: error.slice(0, 1000) });
      this.ack('assignment', m.assignment, false, error.slice(0, 1000));
      return;
    }
    const { heads, kvHeads, weightBytes } = weights;
    // Heads are computed in the order the gateway listed them; the weights' heads are sorted ascending.
    this.assignment = { id: m.assignment, slot: m.slot, heads, transport: m.transport, weights };
    this.publishStatus('ready', { assignment: m.assignment, heads, kvHeads, weights: m.weights, weightBytes });
    this.ack('assignment', m.assignment, true);
    this.log('info', `assignment ${m.assignment}: heads [${heads.join(',')}] kv [${kvHeads.join(',')}], ${m.weights} weights ${weightBytes} bytes, slot ${m.slot}`);
  }

  /** Reads this node's rows of W_Q, W_K and W_V, and nothing else, from the checkpoint, into their kernel arena. */
  private loadWeights(m: AssignmentMessage): HeadWeights {
    const ckpt = Checkpoint.open(this.o.modelPath);
    try {
      return new HeadWeights(this.g, loadHeadSlices(ckpt, this.g, m.heads, m.weights));
    } finally {
      ckpt.close();
    }
  }

  private onSession(m: SessionMessage): void {
    const a = this.assignment;
    if (!a) return; // an idle node takes part in no session
    const id = `${m.op}:${m.session}`;
    if (m.assignment !== a.id) {
      this.counters.stale++;
      this.log('debug', `session ${id} for assignment ${m.assignment} ignored (current ${a.id})`);
      return;
    }
    if (m.op === 'start') this.startSession(m.session, a);
    else this.sessions.delete(m.session);
    this.ack('session', id, true);
  }

  private startSession(session: number, a: ActiveAssignment): void {
    const max = this.o.maxSessions ?? 4;
    while (this.sessions.size >= max) this.sessions.delete(this.sessions.keys().next().value as number);
    const s = a.weights.session();
    s.steering = this.steering;
    this.sessions.set(session, s);
  }

  /** Steering from the gateway, applied by every session after attention. */
  private onSteering(m: SteeringMessage): void {
    const a = this.assignment;
    const s = a ? steeringFromMessage(m, a.heads, this.g.headSize, this.g.nLayers) : `steering ${m.id} arrived before any assignment`;
    if (typeof s === 'string') {
      this.reject(this.t.steer(this.id), s);
      return this.ack('steering', m.id, false, s);
    }
    this.steering = m.channels.length > 0 ? s : null;
    for (const s of this.sessions.values()) s.steering = this.steering;
    this.ack('steering', m.id, true);
  }

  /** The hot path: decode the broadcast, compute the group's heads, send the result frame. */
  private onBroadcast(topic: string, payload: Buffer): void {
    let frame: Body;
    try {
      frame = decodeBody(payload);
    } catch (e) {
      this.counters.malformed++;
      return this.reject(topic, (e as Error).message);
    }
    this.counters.framesIn++;
    const problem = this.checkBroadcast(frame);
    if (problem) {
      this.counters.malformed++;
      return this.reject(topic, problem);
    }
    const a = this.assignment;
    const session = this.sessions.get(frame.session);
    if (!a || !session) {
      this.counters.stale++;
      return;
    }
    const out = session.forward(frame.values, frame.pos, frame.layer);
    const gs = resultGroupSize(this.g, a.transport);
    const result = encodeBody({ ...frame, type: BodyType.Result, encoding: a.transport, sender: a.slot }, out, gs);
    this.client?.publish(this.t.result(this.id), result, { qos: 0 });
    this.counters.framesOut++;
  }

  private checkBroadcast(f: Body): string | null {
    if (f.type !== BodyType.Broadcast) return `frame type ${f.type} on the broadcast topic (expected ${BodyType.Broadcast})`;
    if (f.values.length !== this.g.dim) return `broadcast carries ${f.values.length} values (the model's dim is ${this.g.dim})`;
    if (f.layer >= this.g.nLayers) return `layer ${f.layer} does not exist (the model has ${this.g.nLayers})`;
    if (f.pos >= this.g.seqLen) return `position ${f.pos} is beyond the context of ${this.g.seqLen}`;
    if (this.assignment && f.encoding !== this.assignment.transport) return `broadcast encoded ${f.encoding}, assignment says ${this.assignment.transport}`;
    return null;
  }

  private publishStatus(state: StatusMessage['state'], extra: Partial<StatusMessage> = {}): void {
    const m: StatusMessage = { protocol: PROTOCOL_VERSION, node: this.id, state, pid: process.pid, ...extra };
    this.client?.publish(this.t.status(this.id), encodeControl('status', m), { qos: 1, retain: true });
  }

  private ack(kind: AckMessage['kind'], id: string, ok: boolean, error?: string): void {
    this.client?.publish(this.t.ack(this.id), encodeControl('ack', { protocol: PROTOCOL_VERSION, node: this.id, kind, id, ok, ...(error ? { error } : {}) }), { qos: 1 });
  }

  private publishTelemetry(): void {
    const c = this.counters;
    const m = {
      protocol: PROTOCOL_VERSION,
      node: this.id,
      uptimeMs: Date.now() - this.started,
      rssBytes: process.memoryUsage.rss(),
      weightBytes: this.weightBytes,
      cacheBytes: this.cacheBytes,
      sessions: this.sessions.size,
      framesIn: c.framesIn,
      framesOut: c.framesOut,
      dropped: c.malformed + c.invalidJson + c.stale,
    } as const;
    this.client?.publish(this.t.telemetry(this.id), encodeControl('telemetry', m), { qos: 0 });
  }
}

/**
 * The LoRa-to-MQTT bridge: makes the head nodes behind a LoRa gateway radio look like head
 * nodes of the MQTT mesh (lib/mesh), so the mesh gateway runs unchanged.
 *
 * For each radio node the bridge keeps an MQTT connection of its own, with the node's last
 * will: it publishes the node's retained status (its flashed heads, kv heads and weight
 * bytes, and `slot`: its radio address, which the mesh gateway then assigns it), answers
 * assignment messages on its behalf (accepting exactly the heads the node holds: weights
 * cannot be reloaded over LoRa; and only its own slot), acknowledges session operations, and
 * publishes its result bodies. One more connection hears the broadcast and session topics.
 *
 * Between the two sides travels one message, the head-link body (lib/link/body.ts): every
 * broadcast body on MQTT goes into the radio unchanged as one layer exchange (GatewayMac; the
 * bridge only checks it with checkBody), and each node's result body, as the node sent it
 * (signed with its radio address, echoing the broadcast's session and sequence number), is
 * published unchanged on the node's result topic. The body carries the mesh gateway's u32
 * session, so the bridge keeps no session state of its own and decodes no values. MQTT topics
 * and control messages are lib/mesh/wire.ts, the radio frames lib/radio/frame.ts: the bridge
 * defines no format.
 *
 * Steering: the bridge hears each radio node's steering message (mesh-llm/{mesh}/steer/{node},
 * schemas/steering.json), turns it into the vector the node adds (steeringFromMessage, the
 * MQTT node's own arithmetic) and delivers it to the node as a steering body (BodyType.Steering)
 * through the MAC, in the same queue as the layers, so it is on the node before the next
 * broadcast; the node's acknowledgement on the radio becomes its steering ack on MQTT.
 */
import { MqttClient } from 'mqtt';
import { Geometry } from '../lib/llm/config';
import { BrokerAddress, GOODBYE_MS, Logger, connectMqtt, endClient, stderrLogger, subscribe, withinMs } from '../lib/mesh/mqtt';
import { BodyType, CheckedHeader, checkBody } from '../lib/link/body';
import { Encoding, WeightFormat } from '../lib/llm/quant';
import { AssignmentMessage, PROTOCOL_VERSION, StatusMessage, Topics, checkId, encodeControl, receiveControl, topicsFor, MeshEventMessage } from '../lib/mesh/wire';
import { GatewayMac, steeringBody } from '../lib/radio/mac';
import { steeringFromMessage } from '../lib/mesh/node-steering';
import { SensorReadings } from '../lib/radio/sensor-report';
import { parseSensorMessage } from '../lib/steering/sensors';

/** A head node behind the radio, as the bridge announces it. */
export interface RadioNodeInfo {
  id: string;
  /** Radio address, 1..254. */
  address: number;
  heads: number[];
  kvHeads: number[];
  weights: WeightFormat;
  weightBytes: number;
}

export interface RadioBridgeOptions extends BrokerAddress {
  meshId: string;
  mac: GatewayMac;
  g: Geometry;
  /** The transport the radio runs (the assignment must ask for the same). */
  transport: Encoding;
  nodes: RadioNodeInfo[];
  log?: Logger;
  /** Called when a layer fails on the radio (the mesh gateway itself only sees its gather time out). */
  onFailure?: (e: Error) => void;
}

export interface BridgeCounters {
  broadcasts: number;
  results: number;
  stale: number;
  malformed: number;
  invalidJson: number;
  refusedAssignments: number;
  /** Sensor reports heard on the radio and published as the node's sensor telemetry. */
  sensorReports: number;
  /** Steering messages delivered to radio nodes (acknowledged on the radio). */
  steering: number;
}

interface Proxy {
  info: RadioNodeInfo;
  client: MqttClient;
  /** The id of the accepted assignment (its slot is the node's radio address). */
  assignment?: string;
  /** Why the node was declared lost (it did not deliver a layer in the MAC's rounds): it stays offline on the mesh. */
  lost?: string;
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export class RadioBridge {
  readonly counters: BridgeCounters = { broadcasts: 0, results: 0, stale: 0, malformed: 0, invalidJson: 0, refusedAssignments: 0, sensorReports: 0, steering: 0 };
  private readonly o: RadioBridgeOptions;
  private readonly t: Topics;
  private readonly log: Logger;
  private readonly proxies = new Map<string, Proxy>();
  private client!: MqttClient;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private markLost: (why: string) => void = () => undefined;
  /** Resolves with a reason if a broker connection drops while the bridge is not closing. */
  readonly lost = new Promise<string>((resolve) => (this.markLost = resolve));

  private constructor(o: RadioBridgeOptions) {
    this.o = o;
    this.t = topicsFor(o.meshId);
    this.log = o.log ?? stderrLogger('bridge');
    // a node that does not deliver is lost, not the layer: the mesh gateway fails over (lib/mesh/runner.ts)
    o.mac.partial = true;
  }

  /** Connects, announces every radio node and starts serving the mesh gateway. */
  static async connect(o: RadioBridgeOptions): Promise<RadioBridge> {
    const b = new RadioBridge(o);
    try {
      await b.start();
    } catch (e) {
      await b.close();
      throw e;
    }
    return b;
  }

  private async start(): Promise<void> {
    const o = this.o;
    for (const info of o.nodes) checkId('node', info.id);
    // hear broadcasts and sessions before any radio node is announced: a gateway that discovers
    // the nodes may assign them and start a session at once
    this.client = await connectMqtt({ ...o, clientId: `mesh-llm-${o.meshId}-lora-bridge-${process.pid}`.slice(0, 64) });
    this.watchConnection(this.client);
    this.client.on('message', (topic, payload) =>
      this.guard(topic, () => (topic === this.t.broadcast ? this.onBroadcast(topic, payload) : this.onSession(topic, payload))),
    );
    await subscribe(this.client, [this.t.broadcast], 0);
    await subscribe(this.client, [this.t.session], 1);
    for (const info of o.nodes) {
      const offline: StatusMessage = { protocol: PROTOCOL_VERSION, node: info.id, state: 'offline', reason: 'the LoRa bridge lost its broker connection' };
      const client = await connectMqtt({
        ...o,
        clientId: `mesh-llm-${o.meshId}-${info.id}`.slice(0, 64),
        will: { topic: this.t.status(info.id), payload: encodeControl('status', offline), retain: true, qos: 1 },
      });
      this.watchConnection(client);
      const proxy: Proxy = { info, client };
      this.proxies.set(info.id, proxy);
      client.on('message', (topic, payload) => this.guard(topic, () => (topic === this.t.steer(info.id) ? this.onSteering(proxy, topic, payload) : this.onAssignment(proxy, topic, payload))));
      await subscribe(client, [this.t.assign(info.id), this.t.steer(info.id)], 1);
      this.publishStatus(proxy, 'online');
    }
    o.mac.onSensors = (address, readings) => this.publishSensors(address, readings);
    this.log('info', `bridging ${o.nodes.length} radio node(s) (${o.nodes.map((n) => `${n.id}@${n.address}`).join(', ')}) into mesh ${o.meshId} on ${o.url}`);
  }

  /**
   * A radio node's sensor report, published as the sensor telemetry an MQTT node sends
   * (schemas/sensors.json on mesh-llm/{mesh}/sensors/{node}, through the node's own
   * connection), stamped with the time the gateway heard it: steering and alerts take it
   * as they take any node's readings.
   */
  private publishSensors(address: number, readings: SensorReadings): void {
    const p = [...this.proxies.values()].find((x) => x.info.address === address);
    if (!p || this.closed) return;
    const message = JSON.stringify({ protocol: 1, node: p.info.id, at: Date.now(), readings });
    try {
      parseSensorMessage(message);
    } catch (e) {
      this.log('warn', `a sensor report of ${p.info.id} is not sensor telemetry: ${(e as Error).message}`);
      return;
    }
    this.counters.sensorReports++;
    p.client.publish(this.t.sensors(p.info.id), message, { qos: 0 });
  }

  /**
   * Says every radio node is offline and leaves the broker. Each goodbye waits at most
   * GOODBYE_MS for the broker; with the connection gone there is nobody to tell.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.o.mac.abort(new Error('the LoRa bridge closed'));
    await Promise.all(
      [...this.proxies.values()].map(async (p) => {
        if (p.client.connected) {
          const m = encodeControl('status', { protocol: PROTOCOL_VERSION, node: p.info.id, state: 'offline', reason: 'the LoRa bridge stopped' });
          await withinMs(GOODBYE_MS, new Promise<void>((resolve) => p.client.publish(this.t.status(p.info.id), m, { qos: 1, retain: true }, () => resolve())));
        }
        await withinMs(GOODBYE_MS, endClient(p.client));
      }),
    );
    if (this.client) await withinMs(GOODBYE_MS, endClient(this.client));
  }

  /** A connection that drops while the bridge runs ends it: the radio nodes are offline on the mesh (their last wills say so). */
  private watchConnection(client: MqttClient): void {
    client.on('close', () => {
      if (this.closed) return;
      const why = `lost the connection to the MQTT broker ${this.o.url}`;
      this.log('error', why);
      this.markLost(why);
    });
  }

  private guard(topic: string, handle: () => void): void {
    try {
      handle();
    } catch (e) {
      this.reject(topic, `internal error handling message: ${(e as Error).message}`);
    }
  }

  /** Publishes a mesh event of the radio side (schemas/event.json) on the mesh's events topic. */
  publishEvent(e: MeshEventMessage): void {
    if (this.client?.connected) this.client.publish(this.t.events, encodeControl('event', e), { qos: 0 });
  }

  /**
   * A radio node that did not deliver a layer is lost: its retained status goes offline with
   * the reason (the mesh gateway then moves its heads to a standby node flashed with them and
   * replays the session), and it gets no more broadcasts.
   */
  private lose(p: Proxy, reason: string): void {
    p.lost = reason;
    p.assignment = undefined;
    this.log('warn', `radio node ${p.info.id} (address ${p.info.address}) lost: ${reason}`);
    const m: StatusMessage = { protocol: PROTOCOL_VERSION, node: p.info.id, state: 'offline', reason: `lost on the radio: ${reason}`.slice(0, 200) };
    p.client.publish(this.t.status(p.info.id), encodeControl('status', m), { qos: 1, retain: true });
    this.onLost?.(p.info);
  }

  /** Told when a radio node is declared lost (before the mesh gateway hears of it). */
  onLost?: (node: RadioNodeInfo) => void;

  private reject(topic: string, reason: string): void {
    this.log('warn', `dropped message on ${topic}: ${reason}`);
    this.client?.publish(this.t.errors, encodeControl('error', { protocol: PROTOCOL_VERSION, source: 'lora-bridge', topic, reason: reason.slice(0, 2000) }), { qos: 0 });
  }

  private publishStatus(p: Proxy, state: StatusMessage['state'], assignment?: string): void {
    const i = p.info;
    const m: StatusMessage = { protocol: PROTOCOL_VERSION, node: i.id, state, slot: i.address, heads: i.heads, kvHeads: i.kvHeads, weights: i.weights, weightBytes: i.weightBytes, ...(assignment ? { assignment } : {}) };
    p.client.publish(this.t.status(i.id), encodeControl('status', m), { qos: 1, retain: true });
  }

  private ack(p: Proxy, kind: 'assignment' | 'session' | 'steering', id: string, ok: boolean, error?: string): void {
    p.client.publish(this.t.ack(p.info.id), encodeControl('ack', { protocol: PROTOCOL_VERSION, node: p.info.id, kind, id, ok, ...(error ? { error } : {}) }), { qos: 1 });
  }

  private onAssignment(p: Proxy, topic: string, payload: Buffer): void {
    const m = receiveControl('assignment', payload, (reason) => this.invalid(topic, reason));
    if (!m) return;
    const problem = this.checkAssignment(p.info, m);
    if (problem) {
      this.counters.refusedAssignments++;
      this.reject(topic, `assignment ${m.assignment} refused: ${problem}`);
      p.assignment = undefined;
      return this.ack(p, 'assignment', m.assignment, false, problem);
    }
    if (p.lost) {
      // a lost node released (the failover sends it an empty assignment) stays offline; it is given no heads
      if (m.heads.length === 0) this.ack(p, 'assignment', m.assignment, true);
      else this.ack(p, 'assignment', m.assignment, false, `radio node ${p.info.id} is lost: ${p.lost}`);
      return;
    }
    p.assignment = m.heads.length === 0 ? undefined : m.assignment;
    this.publishStatus(p, m.heads.length === 0 ? 'online' : 'ready', m.heads.length === 0 ? undefined : m.assignment);
    this.ack(p, 'assignment', m.assignment, true);
  }

  /** A control message that is not JSON or fails its schema: counted and reported. */
  private invalid(topic: string, reason: string): void {
    this.counters.invalidJson++;
    this.reject(topic, reason);
  }

  private checkAssignment(i: RadioNodeInfo, m: AssignmentMessage): string | null {
    const g = this.o.g;
    const shape = ['dim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'] as const;
    const diff = shape.filter((k) => m.model[k] !== g[k]);
    if (diff.length) return `model mismatch: ${diff.map((k) => `${k} ${g[k]} on the radio nodes, ${m.model[k]} at the gateway`).join(', ')}`;
    if (m.slot !== i.address) return `radio node ${i.id} signs its results with its radio address ${i.address}; it cannot take slot ${m.slot}`;
    if (m.heads.length === 0) return null;
    const heads = [...m.heads].sort((a, b) => a - b);
    if (!sameList(heads, i.heads)) return `radio node ${i.id} holds heads [${i.heads.join(',')}] in flash; it cannot load [${heads.join(',')}] over LoRa`;
    if (m.weights !== i.weights) return `radio node ${i.id} holds ${i.weights} weights, not ${m.weights}`;
    if (m.transport !== this.o.transport) return `the radio carries ${this.o.transport} bodies, not ${m.transport}`;
    return null;
  }

  /** A radio node's steering: its vector, delivered on the radio in turn with the layers; acknowledged once the node holds it. */
  private onSteering(p: Proxy, topic: string, payload: Buffer): void {
    const m = receiveControl('steering', payload, (reason) => this.invalid(topic, reason));
    if (!m) return;
    const g = this.o.g;
    const s = steeringFromMessage(m, p.info.heads, g.headSize, g.nLayers);
    if (typeof s === 'string') {
      this.reject(topic, s);
      return this.ack(p, 'steering', m.id, false, s);
    }
    // no channels: a vector of zeros, which the node takes as steering off
    const body = steeringBody(0, s.layer, s.vector);
    this.queue = this.queue.then(async () => {
      if (this.closed) return;
      try {
        await this.o.mac.steer(p.info.address, body);
      } catch (e) {
        const why = `steering ${m.id} did not reach radio node ${p.info.id}: ${(e as Error).message}`;
        this.log('error', why);
        return this.ack(p, 'steering', m.id, false, why.slice(0, 2000));
      }
      this.counters.steering++;
      this.ack(p, 'steering', m.id, true);
    });
  }

  private onSession(topic: string, payload: Buffer): void {
    const m = receiveControl('session', payload, (reason) => this.invalid(topic, reason));
    if (!m) return;
    const members = [...this.proxies.values()].filter((p) => p.assignment === m.assignment);
    for (const p of members) this.ack(p, 'session', `${m.op}:${m.session}`, true);
  }

  private onBroadcast(topic: string, payload: Buffer): void {
    let h: CheckedHeader;
    try {
      h = checkBody(payload);
    } catch (e) {
      this.counters.malformed++;
      return this.reject(topic, (e as Error).message);
    }
    const problem = this.broadcastProblem(h);
    if (problem) {
      this.counters.malformed++;
      return this.reject(topic, problem);
    }
    const members = [...this.proxies.values()].filter((p) => p.assignment);
    if (members.length === 0) {
      this.counters.stale++;
      return;
    }
    this.counters.broadcasts++;
    this.queue = this.queue.then(() => this.exchange(payload, h, members));
  }

  /** Why a well-formed body is not a broadcast the radio carries, or null. */
  private broadcastProblem(h: CheckedHeader): string | null {
    if (h.type !== BodyType.Broadcast) return `a body of type ${h.type} on the broadcast topic (expected ${BodyType.Broadcast})`;
    if (h.count !== this.o.g.dim) return `a broadcast of ${h.count} values; the radio nodes' model has dim ${this.o.g.dim}`;
    if (h.encoding !== this.o.transport) return `a broadcast encoded ${h.encoding}; the radio carries ${this.o.transport}`;
    return null;
  }

  /** One layer over the radio: the broadcast body in, then each node's result body on its MQTT topic, both unchanged. */
  private async exchange(broadcast: Buffer, h: CheckedHeader, queued: Proxy[]): Promise<void> {
    if (this.closed) return;
    // a node lost while this broadcast waited its turn (a failover's replay keeps several queued) is not waited on again
    const members = queued.filter((p) => p.lost === undefined);
    if (members.length === 0) {
      this.counters.stale++;
      return;
    }
    let results: Map<number, Buffer>;
    try {
      results = await this.o.mac.exchange(broadcast, members.map((p) => p.info.address));
    } catch (e) {
      // The mesh gateway's gather timeout names the nodes; say why here.
      this.log('error', `layer ${h.layer} at position ${h.pos}: ${(e as Error).message}`);
      this.o.onFailure?.(e as Error);
      return;
    }
    const missing = this.o.mac.missing;
    for (const p of members) {
      const body = results.get(p.info.address);
      if (!body && missing?.addresses.includes(p.info.address)) this.lose(p, missing.reason);
      if (!body || !p.assignment) continue;
      p.client.publish(this.t.result(p.info.id), body, { qos: 0 });
      this.counters.results++;
    }
  }
}

/**
 * A head node behind the radio: what an ESP32 with an SX126x runs. It holds the weight slices
 * of its head group (flashed, so its heads are fixed), listens on the broadcast channel,
 * reassembles each layer's broadcast body, computes its heads with the same HeadGroup the MQTT
 * head node uses, and replies in its slot of the round (see mac.ts): its result body, the
 * result fragments the gateway asked for again, or a NACK of the broadcast fragments it lacks.
 *
 * Sessions: the broadcast body carries the mesh gateway's session id (u32); a session the
 * node has not seen starts a fresh KV cache, and the node keeps the caches of its last
 * `maxSessions` sessions. Its result body is signed with its radio address (the slot the mesh
 * gateway gives it) and echoes the broadcast's session, sequence number, position and layer.
 *
 * Message numbers: the gateway works on one broadcast at a time, so a frame from the gateway
 * under another message number than the last one heard starts a new message, even if that
 * number was used before (numbers come round again, and a new gateway runner starts its
 * sequence numbers anywhere): the node forgets what it held under that number.
 */
import { Geometry } from '../llm/config';
import { HeadSteering } from '../llm/head';
import { Body, BodyType, decodeBody } from '../link/body';
import { Channel } from './regions';
import { Clock } from './clock';
import { Radio, Reception } from './channel';
import { FrameReceiver, FrameSender, GATEWAY_ADDRESS, MessageName, OutgoingMessage, RadioKeyring, RejectReason } from './frame';
import { AirtimeLedger, MeshLayout, Slot, resultBody, slotFor } from './mac';
import { RadioStateFile } from './state';
import { SensorReadings, encodeSensorReport } from './sensor-report';

/** The head computation of one session: HeadGroup fits, and so does a stand-in that only makes traffic. */
export interface HeadComputer {
  forward(xb: Float32Array, pos: number, layer: number): Float32Array;
  /** Added to the head outputs at its layer (HeadSession's); null: none. */
  steering?: HeadSteering | null;
}

export interface RadioHeadNodeOptions {
  /** Radio address, 1..254. */
  address: number;
  /** Query heads of the node's group. */
  heads: number[];
  /** A fresh head computation (empty KV cache) for a new session. */
  newSession: () => HeadComputer;
  g: Geometry;
  layout: MeshLayout;
  clock: Clock;
  /** The node's transceiver on the channel (it must listen on the broadcast channel). */
  radio: Radio;
  /** The network key (the node's two keys are derived from it), or the node's provisioned keyring. */
  key: Buffer | RadioKeyring;
  meshId: number;
  /** A file under the node's data folder for its frame counter and replay window (RadioStateFile): both survive a restart. */
  statePath?: string;
  /** Where the node says why it dropped a frame or refused a broadcast. */
  log?: (level: 'debug' | 'warn', message: string) => void;
  /**
   * The node's sensors, read every `everyMs` (simulated time): the reading goes to the gateway
   * as a sensor report after the node's reply in its next slot (its slot in the layout holds it:
   * LayoutNode.sensors).
   */
  sensors?: { everyMs: number; read: () => SensorReadings };
  /** The gateway MAC's ledger, in a simulation: the node's airtime is counted with the gateway's. */
  ledger?: AirtimeLedger;
  maxSessions?: number;
}

export interface RadioNodeCounters {
  framesIn: number;
  rejected: number;
  results: number;
  resent: number;
  nacks: number;
  /** Slots left unused because the node's duty cycle did not allow it to transmit. */
  dutyCycleSkips: number;
  /** Sensor reports sent. */
  sensorReports: number;
  /** Broadcasts reassembled but refused (a field out of range, a value not finite, a size that does not fit). */
  refusedBodies: number;
  /** Steering bodies taken (and applied to every session). */
  steering: number;
  /** Frames dropped, by reason. */
  byReason: Partial<Record<RejectReason, number>>;
}

interface LayerState {
  messageNumber: number;
  fragmentCount: number;
  /** The broadcast, decoded. */
  broadcast?: Body;
  /** Why the broadcast was refused (the node stays silent about it). */
  refused?: string;
  /** The message is this node's steering, taken: the reply is an empty NACK (the acknowledgement). */
  steered?: boolean;
  result?: OutgoingMessage;
  /** Result fragments the gateway asked for again (from its NACK this round). */
  resend?: number[];
  /** The slot already booked for the marker of this round. */
  slotAtMs?: number;
}

/** How many layers' state a node keeps (the gateway works on one at a time). */
const LAYERS_KEPT = 4;

export class RadioHeadNode {
  readonly address: number;
  readonly heads: number[];
  readonly counters: RadioNodeCounters = { framesIn: 0, rejected: 0, results: 0, resent: 0, nacks: 0, dutyCycleSkips: 0, sensorReports: 0, refusedBodies: 0, steering: 0, byReason: {} };
  /** Called with every broadcast body the node reassembled and took, as it arrived. */
  onBroadcast: (body: Buffer) => void = () => undefined;
  /** Called with every result body the node made, before its first fragment goes out. */
  onResult: (body: Buffer) => void = () => undefined;
  /** Why the last broadcast the node refused was refused. */
  lastRefusal: string | undefined;
  private readonly o: RadioHeadNodeOptions;
  private readonly sender: FrameSender;
  private readonly receiver: FrameReceiver;
  private readonly sessions = new Map<number, HeadComputer>();
  /** The steering every session adds (from the gateway's last steering body), or null. */
  private steering: HeadSteering | null = null;
  /** Per message number. */
  private readonly layers = new Map<number, LayerState>();
  /** The message number of the last frame heard from the gateway. */
  private latestMessage: number | undefined;
  /** When the next sensor report is due, and how many went before it. */
  private nextReportMs = -Infinity;
  private reportNumber = 0;

  constructor(o: RadioHeadNodeOptions) {
    const slot = o.layout.slots.get(o.address);
    if (!slot) throw new RangeError(`radio node ${o.address} has no slot in the mesh layout`);
    this.o = o;
    this.address = o.address;
    this.heads = [...o.heads].sort((a, b) => a - b);
    const maxFrameBytes = o.layout.config.maxFrameBytes;
    const state = o.statePath ? new RadioStateFile(o.statePath) : undefined;
    this.sender = new FrameSender({ key: o.key, meshId: o.meshId, source: o.address, maxFrameBytes, counter: state?.counterStart, reserve: state && ((c) => state.reserve(c)) });
    this.receiver = new FrameReceiver({ key: o.key, meshId: o.meshId, address: o.address, replayStore: state });
    o.radio.onReceive = (r) => this.onReception(r);
  }

  /** The counter the node's next frame will carry. */
  get nextCounter(): number {
    return this.sender.counter;
  }

  private dropped(reason: RejectReason, detail: string): void {
    this.counters.rejected++;
    this.counters.byReason[reason] = (this.counters.byReason[reason] ?? 0) + 1;
    // Other nodes' results on a shared channel land here as 'source': routine, not a fault.
    this.o.log?.(reason === 'source' || reason === 'address' ? 'debug' : 'warn', `dropped a frame (${reason}): ${detail}`);
  }

  private onReception(r: Reception): void {
    this.counters.framesIn++;
    const opened = this.receiver.accept(r.bytes);
    if (!opened.ok) return this.dropped(opened.reason, opened.detail);
    const f = opened.frame;
    if (f.source !== GATEWAY_ADDRESS || f.kind === 'sensors') return;
    this.follow(f.messageNumber);
    const ev = this.receiver.file(f);
    if (ev.kind === 'rejected') return this.dropped(ev.reason, ev.detail);
    if (ev.kind === 'nack') {
      // The gateway asks again for fragments of this node's result.
      const st = this.layers.get(f.messageNumber);
      if (st) st.resend = ev.nack.missing;
      return;
    }
    const st = this.state(f.messageNumber, f.fragmentCount);
    if (ev.kind === 'body') this.take(st, ev.body);
    if (f.fragmentIndex === f.fragmentCount - 1) this.bookSlot(st, r.endMs);
  }

  /** A frame from the gateway under message number m: a number other than the last one heard starts a new message. */
  private follow(m: number): void {
    if (m === this.latestMessage) return;
    this.latestMessage = m;
    this.receiver.reassembler.forget(this.broadcastName(m));
    this.layers.delete(m);
  }

  private broadcastName(messageNumber: number): MessageName {
    return { source: GATEWAY_ADDRESS, messageNumber };
  }

  private state(messageNumber: number, fragmentCount: number): LayerState {
    let st = this.layers.get(messageNumber);
    if (!st) {
      st = { messageNumber, fragmentCount };
      this.layers.set(messageNumber, st);
      if (this.layers.size > LAYERS_KEPT) this.layers.delete(this.layers.keys().next().value as number);
    }
    st.fragmentCount = fragmentCount;
    return st;
  }

  /** A reassembled broadcast body: decoded and kept, or refused (then the node stays silent about it). */
  private take(st: LayerState, body: Buffer): void {
    if (body.readUInt8(3) === BodyType.Steering) return this.takeSteering(st, body);
    const decoded = this.decodeBroadcast(body);
    if (typeof decoded === 'string') {
      this.counters.rejected++;
      this.counters.refusedBodies++;
      st.refused = this.lastRefusal = `message ${st.messageNumber}: ${decoded}`;
      this.o.log?.('warn', `refused a broadcast: ${st.refused}`);
      return;
    }
    st.broadcast = decoded;
    this.onBroadcast(body);
  }

  /**
   * A steering body: the vector this node's sessions add to their head outputs at its layer,
   * as an MQTT node's steering message makes it (lib/mesh/node-steering.ts); all zeros turns
   * steering off. Refused (the node stays silent) when it does not fit the node's heads.
   */
  private takeSteering(st: LayerState, body: Buffer): void {
    const problem = this.steeringProblem(body);
    if (typeof problem === 'string') {
      this.counters.rejected++;
      this.counters.refusedBodies++;
      st.refused = this.lastRefusal = `message ${st.messageNumber}: ${problem}`;
      this.o.log?.('warn', `refused steering: ${st.refused}`);
      return;
    }
    st.steered = true;
    this.counters.steering++;
    this.steering = problem.values.some((v) => v !== 0) ? { layer: problem.layer, vector: problem.values } : null;
    for (const s of this.sessions.values()) s.steering = this.steering;
  }

  private steeringProblem(body: Buffer): Body | string {
    let b: Body;
    try {
      b = decodeBody(body);
    } catch (e) {
      return (e as Error).message;
    }
    const width = this.heads.length * this.o.g.headSize;
    if (b.encoding !== 'f32') return `a steering body encoded ${b.encoding}, not f32`;
    if (b.values.length !== width) return `a steering body of ${b.values.length} values; this node's ${this.heads.length} heads need ${width}`;
    if (b.layer >= this.o.g.nLayers) return `steering at layer ${b.layer}, which does not exist (the model has ${this.o.g.nLayers})`;
    return b;
  }

  /**
   * The decoded broadcast, or why the body is not a broadcast this node can compute: every
   * value finite (decodeBody), dim values, a layer and a position the model has (the
   * firmware's radio_node.cpp take() checks the same, in the same words).
   */
  private decodeBroadcast(body: Buffer): Body | string {
    let b: Body;
    try {
      b = decodeBody(body);
    } catch (e) {
      return (e as Error).message;
    }
    const g = this.o.g;
    if (b.type !== BodyType.Broadcast) return `a body of type ${b.type}, not a broadcast (${BodyType.Broadcast})`;
    if (b.values.length !== g.dim) return `a broadcast of ${b.values.length} values; the model's dim is ${g.dim}`;
    if (b.layer >= g.nLayers) return `layer ${b.layer} does not exist (the model has ${g.nLayers})`;
    if (b.pos >= g.seqLen) return `position ${b.pos} is beyond the context of ${g.seqLen}`;
    return b;
  }

  /** The marker ended at `markerEndMs`: reply in this node's slot of the round. */
  private bookSlot(st: LayerState, markerEndMs: number): void {
    const at = markerEndMs + this.slotOf(st).offsetMs;
    if (st.slotAtMs === at) return;
    st.slotAtMs = at;
    this.o.clock.at(at, () => this.reply(st, at));
  }

  /** This node's slot in the round of a layer's broadcast (the layout's slot plans take turns by message number). */
  private slotOf(st: LayerState): Slot {
    return slotFor(this.o.layout, this.address, st.messageNumber) as Slot;
  }

  private reply(st: LayerState, slotStart: number): void {
    if (st.refused) return;
    let t: number | undefined = slotStart;
    if (st.steered) {
      // the acknowledgement of a steering body: a NACK that lacks nothing
      const nack = this.sender.nack(this.broadcastName(st.messageNumber), { fragmentCount: st.fragmentCount, missing: [] });
      t = this.send(this.slotOf(st), this.sender.frames(nack), slotStart, slotStart, 'nack');
    } else if (st.broadcast && !st.result) {
      st.result = this.sender.body(GATEWAY_ADDRESS, this.compute(st.broadcast));
      st.resend = undefined;
      this.counters.results++;
      t = this.send(this.slotOf(st), this.sender.frames(st.result), slotStart, slotStart, 'result');
    } else if (st.result && st.resend) {
      const frames = this.sender.frames(st.result, st.resend);
      st.resend = undefined;
      this.counters.resent += frames.length;
      t = this.send(this.slotOf(st), frames, slotStart, slotStart, 'resent');
    } else if (!st.broadcast) {
      const name = this.broadcastName(st.messageNumber);
      const nack = this.sender.nack(name, { fragmentCount: st.fragmentCount, missing: this.receiver.reassembler.stillMissing(name, st.fragmentCount) });
      this.counters.nacks++;
      t = this.send(this.slotOf(st), this.sender.frames(nack), slotStart, slotStart, 'nack');
    }
    if (t !== undefined) this.report(this.slotOf(st), slotStart, t);
  }

  /** A sensor report, when one is due, after the reply in the slot (what does not fit waits for the next slot). */
  private report(slot: Slot, slotStart: number, from: number): void {
    const s = this.o.sensors;
    if (!s || this.o.clock.now() < this.nextReportMs) return;
    const report = this.sender.sensors(this.reportNumber, encodeSensorReport(s.read()));
    if (this.send(slot, this.sender.frames(report), slotStart, from) === undefined) return;
    this.reportNumber++;
    this.counters.sensorReports++;
    this.nextReportMs = this.o.clock.now() + s.everyMs;
  }

  /** This node's heads on a broadcast, as the result body it sends: signed with its address, echoing the broadcast. */
  private compute(b: Body): Buffer {
    const out = this.session(b.session).forward(b.values, b.pos, b.layer);
    const body = resultBody(this.o.layout.encodings.result, this.address, b, out);
    this.onResult(body);
    return body;
  }

  /**
   * Sends frames one after another within the slot, from `from`, as the duty cycle allows;
   * what does not fit waits for a NACK. Airtime goes to the ledger under the position the
   * gateway is on. Returns when the last frame ended, or undefined when they did not all fit.
   */
  private send(slot: Slot, frames: Buffer[], slotStart: number, from: number, kind?: 'result' | 'resent' | 'nack'): number | undefined {
    const ch: Channel = slot.channel;
    const slotEnd = slotStart + slot.lengthMs - this.o.layout.config.guardMs;
    let t = from;
    for (const frame of frames) {
      const ms = this.o.radio.airtimeMs(frame.length, ch);
      const start = this.o.radio.earliestStartMs(ch, t);
      if (start + ms > slotEnd + 1e-6) {
        this.counters.dutyCycleSkips++;
        return undefined;
      }
      t = this.o.radio.transmit(frame, ch, start).endMs;
      // sensor reports (no kind) are not in the airtime account of the head step
      if (kind) this.o.ledger?.add(this.o.ledger.position, kind, ms);
    }
    return t;
  }

  private session(session: number): HeadComputer {
    let s = this.sessions.get(session);
    if (!s) {
      s = this.o.newSession();
      s.steering = this.steering;
      this.sessions.set(session, s);
      const max = this.o.maxSessions ?? 2;
      while (this.sessions.size > max) this.sessions.delete(this.sessions.keys().next().value as number);
    }
    return s;
  }
}

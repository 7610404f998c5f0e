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
import { Body, BodyType, decodeBody } from '../link/body';
import { Channel } from './regions';
import { Clock } from './clock';
import { Radio, Reception } from './channel';
import { FrameReceiver, FrameSender, GATEWAY_ADDRESS, MessageName, OutgoingMessage } from './frame';
import { AirtimeLedger, MeshLayout, Slot, resultBody, slotFor } from './mac';

/** The head computation of one session: HeadGroup fits, and so does a stand-in that only makes traffic. */
export interface HeadComputer {
  forward(xb: Float32Array, pos: number, layer: number): Float32Array;
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
  key: Buffer;
  meshId: number;
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
}

interface LayerState {
  messageNumber: number;
  fragmentCount: number;
  /** The broadcast, decoded. */
  broadcast?: Body;
  /** Why the broadcast was refused (the node stays silent about it). */
  refused?: string;
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
  readonly counters: RadioNodeCounters = { framesIn: 0, rejected: 0, results: 0, resent: 0, nacks: 0, dutyCycleSkips: 0 };
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
  /** Per message number. */
  private readonly layers = new Map<number, LayerState>();
  /** The message number of the last frame heard from the gateway. */
  private latestMessage: number | undefined;

  constructor(o: RadioHeadNodeOptions) {
    const slot = o.layout.slots.get(o.address);
    if (!slot) throw new RangeError(`radio node ${o.address} has no slot in the mesh layout`);
    this.o = o;
    this.address = o.address;
    this.heads = [...o.heads].sort((a, b) => a - b);
    const maxFrameBytes = o.layout.config.maxFrameBytes;
    this.sender = new FrameSender({ key: o.key, meshId: o.meshId, source: o.address, maxFrameBytes });
    this.receiver = new FrameReceiver({ key: o.key, meshId: o.meshId, address: o.address });
    o.radio.onReceive = (r) => this.onReception(r);
  }

  private onReception(r: Reception): void {
    this.counters.framesIn++;
    const opened = this.receiver.accept(r.bytes);
    if (!opened.ok) {
      // Other nodes' results on a shared channel land here too (reason 'address').
      this.counters.rejected++;
      return;
    }
    const f = opened.frame;
    if (f.source !== GATEWAY_ADDRESS) return;
    this.follow(f.messageNumber);
    const ev = this.receiver.file(f);
    if (ev.kind === 'rejected') {
      this.counters.rejected++;
      return;
    }
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
    const decoded = this.decodeBroadcast(body);
    if (typeof decoded === 'string') {
      this.counters.rejected++;
      st.refused = this.lastRefusal = `message ${st.messageNumber}: ${decoded}`;
      return;
    }
    st.broadcast = decoded;
    this.onBroadcast(body);
  }

  /** The decoded broadcast, or why the body is not a broadcast this node can compute. */
  private decodeBroadcast(body: Buffer): Body | string {
    let b: Body;
    try {
      b = decodeBody(body);
    } catch (e) {
      return (e as Error).message;
    }
    if (b.type !== BodyType.Broadcast) return `a body of type ${b.type}, not a broadcast (${BodyType.Broadcast})`;
    if (b.values.length !== this.o.g.dim) return `a broadcast of ${b.values.length} values; the model's dim is ${this.o.g.dim}`;
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
    if (st.broadcast && !st.result) {
      st.result = this.sender.body(GATEWAY_ADDRESS, this.compute(st.broadcast));
      st.resend = undefined;
      this.counters.results++;
      this.send(this.slotOf(st), this.sender.frames(st.result), slotStart, 'result');
    } else if (st.result && st.resend) {
      const frames = this.sender.frames(st.result, st.resend);
      st.resend = undefined;
      this.counters.resent += frames.length;
      this.send(this.slotOf(st), frames, slotStart, 'resent');
    } else if (!st.broadcast) {
      const name = this.broadcastName(st.messageNumber);
      const nack = this.sender.nack(name, { fragmentCount: st.fragmentCount, missing: this.receiver.reassembler.stillMissing(name, st.fragmentCount) });
      this.counters.nacks++;
      this.send(this.slotOf(st), this.sender.frames(nack), slotStart, 'nack');
    }
  }

  /** This node's heads on a broadcast, as the result body it sends: signed with its address, echoing the broadcast. */
  private compute(b: Body): Buffer {
    const out = this.session(b.session).forward(b.values, b.pos, b.layer);
    const body = resultBody(this.o.layout.encodings.result, this.address, b, out);
    this.onResult(body);
    return body;
  }

  /**
   * Sends frames one after another within the slot, as the duty cycle allows; what does not
   * fit waits for a NACK. Airtime goes to the ledger under the position the gateway is on.
   */
  private send(slot: Slot, frames: Buffer[], slotStart: number, kind: 'result' | 'resent' | 'nack'): void {
    const ch: Channel = slot.channel;
    const slotEnd = slotStart + slot.lengthMs - this.o.layout.config.guardMs;
    let t = slotStart;
    for (const frame of frames) {
      const ms = this.o.radio.airtimeMs(frame.length, ch);
      const start = this.o.radio.earliestStartMs(ch, t);
      if (start + ms > slotEnd + 1e-6) {
        this.counters.dutyCycleSkips++;
        return;
      }
      t = this.o.radio.transmit(frame, ch, start).endMs;
      this.o.ledger?.add(this.o.ledger.position, kind, ms);
    }
  }

  private session(session: number): HeadComputer {
    let s = this.sessions.get(session);
    if (!s) {
      s = this.o.newSession();
      this.sessions.set(session, s);
      const max = this.o.maxSessions ?? 2;
      while (this.sessions.size > max) this.sessions.delete(this.sessions.keys().next().value as number);
    }
    return s;
  }
}

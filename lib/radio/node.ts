/**
 * A head node behind the radio: what an ESP32 with an SX126x runs. It holds the weight slices
 * of its head group (flashed, so its heads are fixed), listens on the broadcast channel,
 * reassembles each layer's broadcast, computes its heads with the same HeadGroup the MQTT
 * head node uses, and replies in its slot of the round (see mac.ts): its result, the result
 * fragments the gateway asked for again, or a NACK of the broadcast fragments it lacks.
 *
 * Sessions: a broadcast under a session number the node has not seen starts a fresh KV
 * cache; the gateway side gives every generation (and every reset) a new number. The node
 * keeps the caches of its last `maxSessions` sessions.
 */
import { Geometry } from '../llm/config';
import { Channel } from './regions';
import { Clock } from './clock';
import { Radio, Reception } from './channel';
import {
  FrameReceiver,
  FrameSender,
  GATEWAY_ADDRESS,
  OutgoingMessage,
  encodeNack,
  encodeTensor,
  messageKey,
} from './frame';
import { AirtimeLedger, MeshLayout, Slot } from './mac';

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
  session: number;
  pos: number;
  layer: number;
  fragmentCount: number;
  xb?: Float32Array;
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
  private readonly o: RadioHeadNodeOptions;
  private readonly slot: Slot;
  private readonly sender: FrameSender;
  private readonly receiver: FrameReceiver;
  private readonly sessions = new Map<number, HeadComputer>();
  private readonly layers = new Map<string, LayerState>();

  constructor(o: RadioHeadNodeOptions) {
    const slot = o.layout.slots.get(o.address);
    if (!slot) throw new RangeError(`radio node ${o.address} has no slot in the mesh layout`);
    this.o = o;
    this.address = o.address;
    this.heads = [...o.heads].sort((a, b) => a - b);
    this.slot = slot;
    const maxFrameBytes = o.layout.config.maxFrameBytes;
    this.sender = new FrameSender({ key: o.key, meshId: o.meshId, source: o.address, maxFrameBytes });
    this.receiver = new FrameReceiver({ key: o.key, meshId: o.meshId, address: o.address });
    o.radio.onReceive = (r) => this.onReception(r);
  }

  private onReception(r: Reception): void {
    this.counters.framesIn++;
    const ev = this.receiver.receive(r.bytes);
    if (ev.kind === 'rejected') {
      // Other nodes' results on a shared channel land here too (reason 'address').
      this.counters.rejected++;
      return;
    }
    const f = ev.frame;
    if (f.source !== GATEWAY_ADDRESS) return;
    if (f.type === 'nack') {
      if (ev.kind !== 'message' || ev.payload.kind !== 'nack' || ev.payload.nack.type !== 'result') return;
      const st = this.state(f.session, f.position, f.layer, 0);
      st.resend = ev.payload.nack.missing;
      return;
    }
    if (f.type !== 'broadcast') return;
    const st = this.state(f.session, f.position, f.layer, f.fragmentCount);
    if (ev.kind === 'message' && ev.payload.kind === 'tensor') st.xb = ev.payload.tensor.values;
    if (f.fragmentIndex === f.fragmentCount - 1) this.bookSlot(st, r.endMs);
  }

  private state(session: number, pos: number, layer: number, fragmentCount: number): LayerState {
    const key = `${session}/${pos}/${layer}`;
    let st = this.layers.get(key);
    if (!st) {
      st = { session, pos, layer, fragmentCount };
      this.layers.set(key, st);
      if (this.layers.size > LAYERS_KEPT) this.layers.delete(this.layers.keys().next().value as string);
    }
    if (fragmentCount > 0) st.fragmentCount = fragmentCount;
    return st;
  }

  /** The marker ended at `markerEndMs`: reply in this node's slot of the round. */
  private bookSlot(st: LayerState, markerEndMs: number): void {
    const at = markerEndMs + this.slot.offsetMs;
    if (st.slotAtMs === at) return;
    st.slotAtMs = at;
    this.o.clock.at(at, () => this.reply(st, at));
  }

  private reply(st: LayerState, slotStart: number): void {
    if (st.xb && !st.result) {
      const out = this.session(st.session).forward(st.xb, st.pos, st.layer);
      const body = encodeTensor(out, this.o.layout.encodings.result);
      st.result = this.sender.message({ type: 'result', destination: GATEWAY_ADDRESS, session: st.session, position: st.pos, layer: st.layer }, body);
      st.resend = undefined;
      this.counters.results++;
      this.send(this.sender.frames(st.result), slotStart, st.pos, 'result');
    } else if (st.result && st.resend) {
      const frames = this.sender.frames(st.result, st.resend);
      st.resend = undefined;
      this.counters.resent += frames.length;
      this.send(frames, slotStart, st.pos, 'resent');
    } else if (!st.xb && st.fragmentCount > 0) {
      const key = messageKey({ type: 'broadcast', source: GATEWAY_ADDRESS, session: st.session, position: st.pos, layer: st.layer });
      const missing = this.receiver.reassembler.missing(key) ?? Array.from({ length: st.fragmentCount }, (_, i) => i);
      const body = encodeNack({ type: 'broadcast', fragmentCount: st.fragmentCount, missing });
      const nack = this.sender.message({ type: 'nack', destination: GATEWAY_ADDRESS, session: st.session, position: st.pos, layer: st.layer }, body);
      this.counters.nacks++;
      this.send(this.sender.frames(nack), slotStart, st.pos, 'nack');
    }
  }

  /** Sends frames one after another within the slot, as the duty cycle allows; what does not fit waits for a NACK. */
  private send(frames: Buffer[], slotStart: number, pos: number, kind: 'result' | 'resent' | 'nack'): void {
    const ch: Channel = this.slot.channel;
    const slotEnd = slotStart + this.slot.lengthMs - this.o.layout.config.guardMs;
    let t = slotStart;
    for (const frame of frames) {
      const ms = this.o.radio.airtimeMs(frame.length);
      const start = this.o.radio.earliestStartMs(ch, t);
      if (start + ms > slotEnd + 1e-6) {
        this.counters.dutyCycleSkips++;
        return;
      }
      t = this.o.radio.transmit(frame, ch, start).endMs;
      this.o.ledger?.add(pos, kind, ms);
    }
  }

  private session(session: number): HeadComputer {
    let s = this.sessions.get(session);
    if (!s) {
      s = this.o.newSession();
      this.sessions.set(session, s);
      const max = this.o.maxSessions ?? 2;
      while (this.sessions.size > max) {
        const oldest = this.sessions.keys().next().value as number;
        this.sessions.delete(oldest);
        this.receiver.reassembler.endSession(oldest);
      }
    }
    return s;
  }
}

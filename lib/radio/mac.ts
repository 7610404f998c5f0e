/**
 * Medium access: how the gateway and the head nodes share the air without colliding, and
 * how lost fragments are recovered.
 *
 * A layer is an exchange of rounds. In each round the gateway transmits on the broadcast
 * channel, one frame after another under its duty cycle: first a NACK to every node whose
 * result it still lacks (listing the missing result fragments), then the broadcast fragments
 * somebody still needs, always ending with the broadcast's last fragment, the "marker". The
 * marker's end is the time origin of the round's reply window, which every node knows: node
 * k replies in its slot, on receive channel k mod C, starting `computeMs + offset_k` after the
 * marker ended. Slots on one channel follow each other with a guard time, so replies never
 * collide; the slot plan (`meshLayout`) is a pure function of the mesh configuration, which
 * the gateway gives every node when it joins (as LoRaWAN class B derives ping slots).
 *
 * In its slot a node sends: its whole result, once its broadcast is complete; the result
 * fragments the gateway's NACK asked for; or, while its broadcast is incomplete, a NACK
 * listing the broadcast fragments it lacks. A node that did not hear the marker stays silent
 * and is served in the next round. When the window closes the gateway either has every
 * result, or starts the next round with the union of the fragments the nodes asked for.
 *
 * What travels is head-link bodies (lib/link/body.ts): the gateway broadcasts the body the mesh
 * gateway encoded and hands back each node's result body exactly as the node sent it. Every
 * message of a layer is named by the broadcast's message number (the low 16 bits of its
 * sequence number): the broadcast by the gateway's address, each result and each NACK of it by
 * the node's.
 *
 * Duty cycles: the gateway keeps its own DutyCycleTracker, and a conservative model of each
 * node's (as if the node had used its whole slot every round it was owed something), and
 * delays a round's marker until every owed node may transmit in its slot. Nodes check their
 * own tracker too and stay silent rather than break the law.
 */
import { Geometry } from '../llm/config';
import { MeshLlmError } from '../llm/errors';
import { broadcastGroupSize, resultGroupSize } from '../llm/engine';
import { INT8_GROUP_SIZE } from '../llm/head';
import { Encoding } from '../llm/quant';
import { BodyError, BodyHeader, BodyType, CheckedHeader, GATEWAY_SENDER, bodyBytes, checkBody, decodeBody, encodeBody } from '../link/body';
import { BandwidthKHz, LoRaModulation, SpreadingFactor, timeOnAirMs } from './airtime';
import { Clock, ClockTimer } from './clock';
import {
  BROADCAST_ADDRESS,
  FrameReceiver,
  FrameSender,
  GATEWAY_ADDRESS,
  MIC_BYTES,
  MessageName,
  OutgoingMessage,
  RADIO_HEADER_BYTES,
  messageFrameBytes,
  nackFrameBytes,
} from './frame';
import { RadioStateFile } from './state';
import { SENSOR_REPORT_FRAME_BYTES, SensorReadings, decodeSensorReport } from './sensor-report';
import { NamedChannelPlan, namedChannelPlan, planFrameBytes } from './channel-plans';
import { Channel, ChannelPlan, DutyCycleTracker, Region, broadcastChannels, channelModulation, channelPlan, meshFrameBytes, region as regionByName, subBandOf } from './regions';

export interface MacConfig {
  region: Region;
  modulation: LoRaModulation;
  plan: ChannelPlan;
  maxFrameBytes: number;
  /** Silence after each slot: radio turnaround and clock drift (default 5 ms). */
  guardMs: number;
  /** Time a node has between the marker's end and the first slot, to compute its heads (default 20 ms). */
  computeMs: number;
}

export interface MacConfigOptions {
  region: string | Region;
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  /** Receive channels of the gateway: 1 or 8. */
  channels: number;
  /** A named channel plan (channel-plans.ts) instead of `channels` at one bandwidth: its region must be `region`. */
  channelPlan?: string | NamedChannelPlan;
  codingRate?: 5 | 6 | 7 | 8;
  guardMs?: number;
  computeMs?: number;
}

/** A node's compute window per layer, between the broadcast's marker and its slot, ms (the MAC's default). */
export const DEFAULT_COMPUTE_MS = 20;

export function macConfig(o: MacConfigOptions): MacConfig {
  const r = typeof o.region === 'string' ? regionByName(o.region) : o.region;
  const modulation: LoRaModulation = { sf: o.sf, bandwidthKHz: o.bandwidthKHz, codingRate: o.codingRate ?? 5 };
  const named = typeof o.channelPlan === 'string' ? namedChannelPlan(o.channelPlan) : o.channelPlan;
  if (named && named.region.name !== r.name) throw new MeshLlmError(`channel plan ${named.name} is a ${named.region.name} plan, not ${r.name}`);
  const plan = named ?? channelPlan(r, o.channels, o.bandwidthKHz);
  return {
    region: r,
    modulation,
    plan,
    maxFrameBytes: named ? planFrameBytes(named, r, modulation) : meshFrameBytes(r, modulation),
    guardMs: o.guardMs ?? 5,
    computeMs: o.computeMs ?? DEFAULT_COMPUTE_MS,
  };
}

/** Where and when a node replies, relative to the end of the round's marker. */
export interface Slot {
  address: number;
  channel: Channel;
  offsetMs: number;
  lengthMs: number;
}

export interface LayoutNode {
  address: number;
  /** Query heads the node computes (its result carries heads x headSize values). */
  heads: number;
  /** The node sends sensor reports: its slot holds one report frame after its longest reply (sensor-report.ts). */
  sensors?: boolean;
}

/** How the mesh encodes one of its two bodies: the encoding and the int8 group size (0 for float32). */
export interface BodyEncoding {
  encoding: Encoding;
  groupSize: number;
}

/**
 * How the mesh encodes its two bodies under a transport, as the engine's int8 transport does:
 * broadcasts in groups of 32, results in groups aligned to heads.
 */
export function meshEncodings(g: Geometry, transport: Encoding): { broadcast: BodyEncoding; result: BodyEncoding } {
  if (transport === 'f32') return { broadcast: { encoding: 'f32', groupSize: 0 }, result: { encoding: 'f32', groupSize: 0 } };
  return { broadcast: { encoding: transport, groupSize: broadcastGroupSize(transport) }, result: { encoding: transport, groupSize: resultGroupSize(g, transport) } };
}

/** Bytes of the mesh's two bodies under a transport: the broadcast [dim], and the result of a node of `heads` heads. */
export function meshBodyBytes(g: Geometry, transport: Encoding): { broadcast: number; result: (heads: number) => number } {
  const e = meshEncodings(g, transport);
  return {
    broadcast: bodyBytes(e.broadcast.encoding, g.dim, e.broadcast.groupSize),
    result: (heads) => bodyBytes(e.result.encoding, heads * g.headSize, e.result.groupSize),
  };
}

/** Everything gateway and nodes agree on: body and frame sizes, encodings and the reply slots. */
export interface MeshLayout {
  config: MacConfig;
  encodings: { broadcast: BodyEncoding; result: BodyEncoding };
  /** Bytes of a broadcast body. */
  broadcastBytes: number;
  broadcastFrames: number[];
  /** Per node address: the frames of its result. */
  resultFrames: Map<number, number[]>;
  /** Per node address: its longest reply in a slot (its result, or a NACK of the broadcast). */
  longestReply: Map<number, number[]>;
  slots: Map<number, Slot>;
  /**
   * The slot plans the rounds take in turn, by message number (slotFor): one (`slots`), or
   * on a named plan whose receive channels lie in several duty-cycled sub-bands, one per
   * sub-band, each node in a different sub-band from one layer to the next, so each node
   * spends the budgets of all of them.
   */
  slotSets: Map<number, Slot>[];
  /** From the marker's end to the end of the last slot, ms. */
  windowMs: number;
}

/** A node's slot in the round of a broadcast of this message number. */
export function slotFor(layout: MeshLayout, address: number, messageNumber: number): Slot | undefined {
  return layout.slotSets[messageNumber % layout.slotSets.length].get(address);
}

/** Time a radio with a fresh duty-cycle clock needs to send these frames one after another on a channel, ms. */
function burstMs(r: Region, m: LoRaModulation, ch: Channel, frames: number[]): number {
  const tx = new DutyCycleTracker(r);
  const mc = channelModulation(m, ch);
  let t = 0;
  for (const bytes of frames) t = tx.transmit(ch, tx.earliestStartMs(ch, t), timeOnAirMs(bytes, mc));
  return t;
}

/** Time on air of a frame on one of the mesh's channels (at that channel's modulation), ms. */
export function frameAirtimeMs(config: MacConfig, ch: Channel, bytes: number): number {
  return timeOnAirMs(bytes, channelModulation(config.modulation, ch));
}

/** The one frame of a NACK about a message of these frames; refuses frames too small to carry it. */
function nackFrameFor(what: string, frames: number[], maxFrameBytes: number): number {
  const bytes = nackFrameBytes(frames.length);
  if (bytes > maxFrameBytes) throw new MeshLlmError(`a NACK of ${what} (${frames.length} fragments) needs a ${bytes}-byte frame; frames here carry at most ${maxFrameBytes}: choose a faster data rate`);
  return bytes;
}

/**
 * The slot plan: nodes in address order, each on the receive channel where its slot ends
 * soonest (with channels alike: node k on channel k mod C), slots on a channel one after
 * another, each as long as the node's longest reply (its whole result, or a NACK of the
 * broadcast) plus the guard time.
 */
export function meshLayout(config: MacConfig, g: Geometry, transport: Encoding, nodes: LayoutNode[]): MeshLayout {
  const encodings = meshEncodings(g, transport);
  const sizes = meshBodyBytes(g, transport);
  const broadcastFrames = messageFrameBytes(sizes.broadcast, config.maxFrameBytes);
  const nack = nackFrameFor('the broadcast', broadcastFrames, config.maxFrameBytes);
  const resultFrames = new Map<number, number[]>();
  const longestReply = new Map<number, number[]>();
  const sorted = [...nodes].sort((a, b) => a.address - b.address);
  const uplink = config.plan.uplink;
  // sub-bands of the receive channels that keep a duty cycle: on a named plan, one slot plan each
  const bands = [...new Set(uplink.map((ch) => subBandOf(config.region, ch)).filter((b) => b.dutyCycle < 1).map((b) => b.name))];
  const rotations = 'name' in config.plan && bands.length > 1 ? bands.length : 1;
  const slotSets: Map<number, Slot>[] = [];
  let windowMs = 0;
  for (let j = 0; j < rotations; j++) {
    const slots = new Map<number, Slot>();
    const channelEnd = uplink.map(() => config.computeMs);
    sorted.forEach((n, k) => {
      const frames = messageFrameBytes(sizes.result(n.heads), config.maxFrameBytes);
      nackFrameFor(`node ${n.address}'s result`, frames, config.maxFrameBytes);
      resultFrames.set(n.address, frames);
      const report = n.sensors ? [SENSOR_REPORT_FRAME_BYTES] : [];
      const lengthOn = (ch: Channel) => Math.max(burstMs(config.region, config.modulation, ch, [...frames, ...report]), burstMs(config.region, config.modulation, ch, [nack, ...report])) + config.guardMs;
      // the channels this node may use in this slot plan: all, or those of its sub-band of the turn
      const allowed = uplink.map((ch, i) => i).filter((i) => rotations === 1 || subBandOf(config.region, uplink[i]).name === bands[(k + j) % rotations]);
      // the channel where this slot ends soonest; ties to the lowest index from k mod C, as round robin
      let c = allowed[k % allowed.length];
      for (const i of allowed) if (channelEnd[i] + lengthOn(uplink[i]) < channelEnd[c] + lengthOn(uplink[c]) - 1e-9) c = i;
      const channel = uplink[c];
      const resultMs = burstMs(config.region, config.modulation, channel, [...frames, ...report]);
      const nackMs = burstMs(config.region, config.modulation, channel, [nack, ...report]);
      longestReply.set(n.address, resultMs >= nackMs ? [...frames, ...report] : [nack, ...report]);
      const lengthMs = Math.max(resultMs, nackMs) + config.guardMs;
      slots.set(n.address, { address: n.address, channel, offsetMs: channelEnd[c], lengthMs });
      channelEnd[c] += lengthMs;
    });
    slotSets.push(slots);
    windowMs = Math.max(windowMs, ...channelEnd);
  }
  return { config, encodings, broadcastBytes: sizes.broadcast, broadcastFrames, resultFrames, longestReply, slots: slotSets[0], slotSets, windowMs };
}

/** What a body repeats from its layer: session, sequence number, position, layer. */
export type LayerHeader = Pick<BodyHeader, 'session' | 'seq' | 'pos' | 'layer'>;

/** A broadcast body of the mesh's encoding, as the mesh gateway makes it (for what drives the MAC without one: the planner, the LoRa benchmark, tests). */
export function broadcastBody(e: BodyEncoding, h: LayerHeader, xb: Float32Array): Buffer {
  return encodeBody({ ...h, type: BodyType.Broadcast, encoding: e.encoding, sender: GATEWAY_SENDER }, xb, e.groupSize);
}

/** A node's result body of the mesh's encoding: its head outputs, signed with its address, echoing the broadcast's layer header. */
export function resultBody(e: BodyEncoding, sender: number, h: LayerHeader, out: Float32Array): Buffer {
  return encodeBody({ session: h.session, seq: h.seq, pos: h.pos, layer: h.layer, type: BodyType.Result, encoding: e.encoding, sender }, out, e.groupSize);
}

/**
 * A node's steering as the radio carries it: the float32 vector [heads x headSize] the node
 * adds to its head outputs at `layer` (all zeros: steering off), from the gateway, under
 * sequence number `seq` (its message number names the delivery).
 */
export function steeringBody(seq: number, layer: number, vector: Float32Array): Buffer {
  return encodeBody({ type: BodyType.Steering, encoding: 'f32', sender: GATEWAY_SENDER, session: 0, seq, pos: 0, layer }, vector, 0);
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * The analytic airtime bound of one layer for these frames: no schedule does better than the
 * broadcast, the nodes' compute time (config.computeMs: no node can answer a broadcast it has
 * not yet computed on) and the replies spread over the receive channels (each node's own
 * replies in sequence), nor than the busiest transmitter's airtime divided by its duty cycle.
 * Guard times between slots are this MAC's choice and not in the bound.
 *
 * The gateway's budgets, per sub-band b: a frame of airtime a there costs a / dc_b of b's time
 * (the frame and the silence it owes, DutyCycleTracker). The gateway also stays silent while a
 * layer's replies come (they need the whole broadcast; the next broadcast needs every reply),
 * so after the last frame a layer sends in b, b's next frame waits at least the compute time and
 * the replies' airtime, R, however short b's owed silence o: in a layer that uses b, b loses
 * max(0, R - o) more. A layer of F frames uses b at least once per F frames b carries, so each frame's cost in b is
 * a / dc_b + max(0, R - o) / F (o of the longest frame, so the bound stays low), and the
 * frames are spread over the sub-bands at those costs.
 */
export function layerBoundMs(config: MacConfig, broadcastFrames: number[], resultFrames: number[][]): number {
  const broadcastChs = broadcastChannels(config.plan);
  const uplink = config.plan.uplink;
  // the broadcast: every frame on the fastest broadcast channel (the gateway sends one at a time)
  const broadcast = sum(broadcastFrames.map((b) => Math.min(...broadcastChs.map((ch) => frameAirtimeMs(config, ch, b)))));
  // each node's reply on the fastest receive channel; all replies spread over the channels at their speeds
  const perNode = resultFrames.map((f) => Math.min(...uplink.map((ch) => sum(f.map((b) => frameAirtimeMs(config, ch, b))))));
  const spread = replyMakespanBoundMs(resultFrames.flat(), uplink.map((ch) => (b: number) => frameAirtimeMs(config, ch, b)));
  const replies = config.computeMs + Math.max(Math.max(0, ...perNode), spread);
  const channel = broadcast + replies;
  // the gateway's duty-cycle budgets: per sub-band it may fill dutyCycle of the time
  const bands = new Map<string, { duty: number; ch: Channel }>();
  for (const ch of broadcastChs) {
    const b = subBandOf(config.region, ch);
    const had = bands.get(b.name);
    if (!had || frameAirtimeMs(config, ch, 200) < frameAirtimeMs(config, had.ch, 200)) bands.set(b.name, { duty: b.dutyCycle, ch });
  }
  const longest = Math.max(0, ...broadcastFrames);
  const frameCost = (bytes: number, duty: number, ch: Channel) => {
    const owed = duty < 1 ? frameAirtimeMs(config, ch, longest) * (1 / duty - 1) : 0;
    return frameAirtimeMs(config, ch, bytes) / duty + Math.max(0, replies - owed) / broadcastFrames.length;
  };
  const gatewayDuty = sum(broadcastFrames.map((b) => 1 / sum([...bands.values()].map(({ duty, ch }) => 1 / frameCost(b, duty, ch)))));
  const uplinkBands = new Map(uplink.map((c) => subBandOf(config.region, c)).map((b) => [b.name, b.dutyCycle]));
  const transmitter = Math.max(gatewayDuty, Math.max(0, ...perNode) / sum([...uplinkBands.values()]));
  return Math.max(channel, transmitter);
}

/**
 * No schedule sends these frames over channels of these airtimes sooner: a frame is whole on
 * one channel. Frames all of one size: the least T with sum over channels of floor(T / airtime)
 * >= frames (exact for equal frames); otherwise every frame spread over all channels at once.
 */
export function replyMakespanBoundMs(frames: number[], airtimes: ((bytes: number) => number)[]): number {
  if (frames.length === 0) return 0;
  if (frames.every((b) => b === frames[0])) {
    const toa = airtimes.map((f) => f(frames[0]));
    const candidates = toa.flatMap((t) => Array.from({ length: frames.length }, (_, k) => (k + 1) * t)).sort((a, b) => a - b);
    return candidates.find((T) => sum(toa.map((t) => Math.floor(T / t + 1e-9))) >= frames.length)!;
  }
  return sum(frames.map((b) => 1 / sum(airtimes.map((f) => 1 / f(b)))));
}

/** What went on the air, by kind, per token position. */
export type AirtimeKind = 'broadcast' | 'result' | 'nack' | 'resent';
export type AirtimeBreakdown = Record<AirtimeKind, number>;

export function emptyBreakdown(): AirtimeBreakdown {
  return { broadcast: 0, result: 0, nack: 0, resent: 0 };
}

/** Airtime of every frame the gateway and the nodes send, in ms, per token position. */
export class AirtimeLedger {
  readonly byPosition = new Map<number, AirtimeBreakdown>();
  frames = 0;
  /** The position of the layer under way: the gateway's MAC sets it; nodes sharing the ledger count their replies under it. */
  position = 0;

  add(pos: number, kind: AirtimeKind, ms: number): void {
    let b = this.byPosition.get(pos);
    if (!b) this.byPosition.set(pos, (b = emptyBreakdown()));
    b[kind] += ms;
    this.frames++;
  }

  total(): AirtimeBreakdown {
    const t = emptyBreakdown();
    for (const b of this.byPosition.values()) for (const k of Object.keys(t) as AirtimeKind[]) t[k] += b[k];
    return t;
  }
}

/** How the gateway's MAC reaches its radio: the simulated channel, a serial modem, or a packet forwarder. */
export interface GatewayRadioLink {
  /** Transmits a frame at `atMs` (the shared clock) on a channel; resolves once the radio has accepted it. */
  transmit(frame: Buffer, channel: Channel, atMs: number): Promise<void>;
  /** Where received frames go, with the time their reception ended. */
  /** Where received frames go, with the time their reception ended and, where the radio reports it, the signal's quality. */
  onReceive(handler: (frame: Buffer, channel: Channel, endMs: number, quality?: SignalQuality) => void): void;
  close(): Promise<void>;
}

/** RSSI (dBm) and SNR (dB) of a received frame, as the radio reports them. */
export interface SignalQuality {
  rssi: number;
  snr: number;
}

export interface LayerReport {
  session: number;
  pos: number;
  layer: number;
  /** First transmission of the layer, and the close of its last reply window, ms. */
  startMs: number;
  endMs: number;
  rounds: number;
  /** The analytic bound for the layer's frames, ms. */
  boundMs: number;
}

export interface GatewayMacOptions {
  clock: Clock;
  link: GatewayRadioLink;
  layout: MeshLayout;
  key: Buffer;
  meshId: number;
  ledger?: AirtimeLedger;
  /** Rounds before a layer fails (default 32). */
  maxRounds?: number;
  /** A file under the gateway's data folder for its frame counter and replay window (RadioStateFile): both survive a restart. */
  statePath?: string;
}

export interface MacCounters {
  rounds: number;
  retransmittedFragments: number;
  nacksSent: number;
  nacksReceived: number;
  rejected: number;
  /** Steering bodies delivered to nodes, and the airtime of their frames and acknowledgements, ms. */
  steeringDelivered: number;
  steeringAirtimeMs: number;
}

interface Exchange {
  /** The broadcast's header: its session, sequence number, position and layer. */
  header: CheckedHeader;
  /** A steering delivery to one node (the node acknowledges with an empty NACK): no results, no layer report. */
  steering?: boolean;
  message: OutgoingMessage;
  owed: Set<number>;
  /** Per node address: its result body, as it sent it. */
  results: Map<number, Buffer>;
  /** Broadcast NACKs heard this round: node -> missing fragments. */
  nacked: Map<number, number[]>;
  /** Per node address: why the last result it sent was not taken. */
  refused: Map<number, string>;
  rounds: number;
  startMs: number;
  boundMs: number;
  /** How long after the marker the owed replies may come: the end of the last slot of the exchange's nodes. */
  windowMs: number;
  timer?: ClockTimer;
  resolve: (r: Map<number, Buffer>) => void;
  reject: (e: Error) => void;
}

/** Why a result body does not answer a broadcast, or null when it does. */
function resultProblem(broadcast: CheckedHeader, result: CheckedHeader, address: number): string | null {
  if (result.type !== BodyType.Result) return `a body of type ${result.type}, not a result (${BodyType.Result})`;
  if (result.sender !== address) return `a result signed by sender ${result.sender}, not its radio address ${address}`;
  const names = ['session', 'seq', 'pos', 'layer'] as const;
  const differ = names.filter((k) => result[k] !== broadcast[k]);
  if (differ.length) return `a result for ${differ.map((k) => `${k} ${result[k]}`).join(', ')}; the broadcast has ${differ.map((k) => `${k} ${broadcast[k]}`).join(', ')}`;
  return null;
}

/** Why a result body's size or values do not fit the layout (values not finite, another count), or null. */
function resultValuesProblem(layout: MeshLayout, body: Buffer, address: number): string | null {
  const frames = layout.resultFrames.get(address) as number[];
  const planned = frames.reduce((n, b) => n + b - RADIO_HEADER_BYTES - MIC_BYTES, 0);
  if (body.length !== planned) return `a result of ${body.length} bytes; the layout plans ${planned} for node ${address}`;
  try {
    decodeBody(body);
  } catch (e) {
    if (e instanceof BodyError) return `a result that does not decode: ${e.message}`;
    throw e;
  }
  return null;
}

/** The gateway's side of the medium access: one layer's broadcast and gather at a time. */
export class GatewayMac {
  readonly counters: MacCounters = { rounds: 0, retransmittedFragments: 0, nacksSent: 0, nacksReceived: 0, rejected: 0, steeringDelivered: 0, steeringAirtimeMs: 0 };
  readonly ledger: AirtimeLedger;
  /** Called when a layer's exchange completes. */
  onLayer: (r: LayerReport) => void = () => undefined;
  /**
   * false (default): a node that has not delivered in maxRounds fails the layer. true: the
   * exchange resolves with the results that came, without the missing nodes' (named in
   * `missing`), so the bridge can say those nodes are lost and the mesh gateway fail over.
   */
  partial = false;
  /** The nodes the last exchange resolved without, and why (partial only). */
  missing: { addresses: number[]; reason: string } | null = null;
  /** The last signal quality heard from each radio address (authenticated frames only). */
  readonly signal = new Map<number, SignalQuality>();
  /** Called with each sensor report a node sends (decoded; refused reports are counted in `rejected`). */
  onSensors: (address: number, readings: SensorReadings) => void = () => undefined;
  /** Sensor reports taken, and why the last one refused was refused. */
  sensorReports = 0;
  lastSensorRefusal: string | undefined;
  private readonly o: GatewayMacOptions;
  private readonly layout: MeshLayout;
  private readonly sender: FrameSender;
  private readonly receiver: FrameReceiver;
  private readonly tracker: DutyCycleTracker;
  /** Per node: its duty-cycle clock as the gateway must assume it (every owed slot fully used). */
  private readonly nodeModel = new Map<number, DutyCycleTracker>();
  private current: Exchange | null = null;
  /** The message number of the last message the gateway sent (a steering delivery takes one far from it). */
  private lastMessage = 0;

  constructor(o: GatewayMacOptions) {
    this.o = o;
    this.layout = o.layout;
    this.ledger = o.ledger ?? new AirtimeLedger();
    const maxFrameBytes = o.layout.config.maxFrameBytes;
    const state = o.statePath ? new RadioStateFile(o.statePath) : undefined;
    this.sender = new FrameSender({ key: o.key, meshId: o.meshId, source: GATEWAY_ADDRESS, maxFrameBytes, counter: state?.counterStart, reserve: state && ((c) => state.reserve(c)) });
    this.receiver = new FrameReceiver({ key: o.key, meshId: o.meshId, address: GATEWAY_ADDRESS, replayStore: state });
    this.tracker = new DutyCycleTracker(o.layout.config.region);
    for (const a of o.layout.slots.keys()) this.nodeModel.set(a, new DutyCycleTracker(o.layout.config.region));
    o.link.onReceive((frame, _channel, _endMs, quality) => this.onFrame(frame, quality));
  }

  /**
   * Broadcasts a layer's broadcast body (as the mesh gateway encoded it) to the nodes at
   * `addresses` and resolves with each one's result body exactly as the node sent it,
   * retransmitting until every result is in (or maxRounds have failed).
   */
  exchange(broadcast: Buffer, addresses: readonly number[]): Promise<Map<number, Buffer>> {
    if (this.current) return Promise.reject(new Error('a layer exchange is already in progress'));
    this.missing = null;
    for (const a of addresses) if (!this.layout.slots.has(a)) return Promise.reject(new MeshLlmError(`radio node ${a} has no reply slot in the layout`));
    let header: CheckedHeader;
    try {
      header = this.checkBroadcast(broadcast);
    } catch (e) {
      return Promise.reject(e);
    }
    const message = this.sender.body(BROADCAST_ADDRESS, broadcast);
    this.lastMessage = message.messageNumber;
    this.ledger.position = header.pos;
    // A message number that comes round again names a new message: forget the old results under it.
    for (const a of addresses) this.receiver.reassembler.forget(this.resultName(a, message.messageNumber));
    const resultFrames = addresses.map((a) => this.layout.resultFrames.get(a) as number[]);
    return new Promise((resolve, reject) => {
      const x: Exchange = {
        header,
        message,
        owed: new Set(addresses),
        results: new Map(),
        nacked: new Map(),
        refused: new Map(),
        rounds: 0,
        startMs: NaN,
        boundMs: layerBoundMs(this.layout.config, this.layout.broadcastFrames, resultFrames),
        // the nodes of this exchange only: idle nodes (spares) with later slots add no wait; with every node of the layout, the layout's window
        windowMs: Math.max(0, ...this.layout.slotSets.flatMap((set) => addresses.map((a) => { const s = set.get(a) as Slot; return s.offsetMs + s.lengthMs; }))),
        resolve,
        reject,
      };
      this.current = x;
      if (x.owed.size === 0) return this.finish(x);
      this.round(x, Array.from({ length: message.fragmentCount }, (_, i) => i), []);
    });
  }

  /**
   * Delivers a steering body (steeringBody) to the node at `address` and resolves once the node
   * holds it: the body goes out in fragments addressed to the node, the node answers in its
   * slot with a NACK of what it lacks (an empty NACK: it holds the body and has applied it),
   * and rounds go on as for a broadcast until it has (or maxRounds have failed). Its message
   * number lies half the number space away from the last broadcast's, so neither the layer
   * before nor the one after can be taken for it; its airtime goes to the ledger under the
   * position under way (broadcast, resent, nack) and to counters.steeringAirtimeMs.
   */
  steer(address: number, body: Buffer): Promise<void> {
    if (this.current) return Promise.reject(new Error('a layer exchange is already in progress'));
    this.missing = null;
    const slot = this.layout.slots.get(address);
    if (!slot) return Promise.reject(new MeshLlmError(`radio node ${address} has no reply slot in the layout`));
    let header: CheckedHeader;
    try {
      header = checkBody(body);
    } catch (e) {
      return Promise.reject(e instanceof BodyError ? new MeshLlmError(`the steering body is malformed: ${e.message}`) : e);
    }
    if (header.type !== BodyType.Steering) return Promise.reject(new MeshLlmError(`the body to steer with has type ${header.type}, not steering (${BodyType.Steering})`));
    const seq = (this.lastMessage + 0x8000) & 0xffff;
    const numbered = Buffer.from(body);
    numbered.writeUInt32LE(seq, 12); // the body's seq (BODY_FIELDS): its message number names the delivery
    const message = this.sender.body(address, numbered);
    const ackBytes = nackFrameBytes(message.fragmentCount);
    const longest = this.layout.longestReply.get(address) as number[];
    if (ackBytes > Math.max(...longest)) return Promise.reject(new MeshLlmError(`a steering body of ${body.length} bytes needs a ${ackBytes}-byte acknowledgement; node ${address}'s slot holds frames of ${Math.max(...longest)}`));
    this.lastMessage = message.messageNumber;
    return new Promise<void>((resolve, reject) => {
      const x: Exchange = {
        header: { ...header, seq, pos: this.ledger.position },
        steering: true,
        message,
        owed: new Set([address]),
        results: new Map(),
        nacked: new Map(),
        refused: new Map(),
        rounds: 0,
        startMs: NaN,
        boundMs: 0,
        windowMs: Math.max(...this.layout.slotSets.map((set) => { const s = set.get(address) as Slot; return s.offsetMs + s.lengthMs; })),
        resolve: () => {
          this.counters.steeringDelivered++;
          resolve();
        },
        reject,
      };
      this.current = x;
      this.round(x, Array.from({ length: message.fragmentCount }, (_, i) => i), []);
    });
  }

  /** Gives up the exchange in progress (the bridge is closing). */
  abort(error: Error): void {
    const x = this.current;
    if (!x) return;
    x.timer?.cancel();
    this.current = null;
    x.reject(error);
  }

  /** The broadcast's header, once it is a well-formed broadcast of the layout's size. */
  private checkBroadcast(body: Buffer): CheckedHeader {
    let h: CheckedHeader;
    try {
      h = checkBody(body);
    } catch (e) {
      if (e instanceof BodyError) throw new MeshLlmError(`the body to broadcast is malformed: ${e.message}`);
      throw e;
    }
    if (h.type !== BodyType.Broadcast) throw new MeshLlmError(`the body to broadcast has type ${h.type}, not broadcast (${BodyType.Broadcast})`);
    const e = this.layout.encodings.broadcast;
    if (body.length !== this.layout.broadcastBytes) {
      throw new MeshLlmError(`the broadcast is ${body.length} bytes (${h.count} ${h.encoding} values); the radio's layout plans ${this.layout.broadcastBytes} (${e.encoding}, groups of ${e.groupSize})`);
    }
    return h;
  }

  private resultName(address: number, messageNumber: number): MessageName {
    return { source: address, messageNumber };
  }

  private round(x: Exchange, fragments: number[], resultNacks: { address: number; missing: number[] }[]): void {
    const { config } = this.layout;
    const channels = broadcastChannels(config.plan);
    x.rounds++;
    this.counters.rounds++;
    x.nacked.clear();
    const marker = x.message.fragmentCount - 1;
    const ordered = [...new Set(fragments.filter((i) => i !== marker))].sort((a, b) => a - b);
    const frames: { frame: Buffer; kind: AirtimeKind }[] = [];
    for (const n of resultNacks) {
      const fragmentCount = (this.layout.resultFrames.get(n.address) as number[]).length;
      const nack = this.sender.nack(this.resultName(n.address, x.message.messageNumber), { fragmentCount, missing: n.missing });
      frames.push({ frame: this.sender.frames(nack)[0], kind: 'nack' });
      this.counters.nacksSent++;
    }
    const fragmentKind: AirtimeKind = x.rounds === 1 ? 'broadcast' : 'resent';
    for (const f of this.sender.frames(x.message, [...ordered, marker])) frames.push({ frame: f, kind: fragmentKind });
    if (x.rounds > 1) this.counters.retransmittedFragments += ordered.length + 1;

    // The marker must end late enough for every owed node to be allowed to reply in its slot.
    let markerEndAtLeast = -Infinity;
    for (const a of x.owed) {
      const slot = slotFor(this.layout, a, x.message.messageNumber) as Slot;
      const model = this.nodeModel.get(a) as DutyCycleTracker;
      markerEndAtLeast = Math.max(markerEndAtLeast, model.earliestStartMs(slot.channel, -Infinity) - slot.offsetMs);
    }
    let t = this.o.clock.now();
    let markerEnd = t;
    frames.forEach(({ frame, kind }, i) => {
      // the broadcast channel (of the plan's, each in its own sub-band) where this frame ends soonest
      let ch = channels[0];
      let ms = frameAirtimeMs(config, ch, frame.length);
      let start = this.tracker.earliestStartMs(ch, t);
      for (const other of channels.slice(1)) {
        const otherMs = frameAirtimeMs(config, other, frame.length);
        const otherStart = this.tracker.earliestStartMs(other, t);
        if (otherStart + otherMs < start + ms - 1e-9) [ch, ms, start] = [other, otherMs, otherStart];
      }
      if (i === frames.length - 1) start = Math.max(start, markerEndAtLeast - ms);
      if (Number.isNaN(x.startMs)) x.startMs = start;
      t = this.tracker.transmit(ch, start, ms);
      markerEnd = t;
      this.ledger.add(x.header.pos, kind, ms);
      if (x.steering) this.counters.steeringAirtimeMs += ms;
      this.o.link.transmit(frame, ch, start).catch((e: Error) => this.fail(x, new MeshLlmError(`the gateway radio refused a frame: ${e.message}`)));
    });
    // Model every owed node as having used its whole slot.
    for (const a of x.owed) {
      const slot = slotFor(this.layout, a, x.message.messageNumber) as Slot;
      const model = this.nodeModel.get(a) as DutyCycleTracker;
      const reply = this.layout.longestReply.get(a) as number[];
      let s = markerEnd + slot.offsetMs;
      for (const bytes of reply) s = model.transmit(slot.channel, model.earliestStartMs(slot.channel, s), frameAirtimeMs(config, slot.channel, bytes));
    }
    x.timer = this.o.clock.at(markerEnd + x.windowMs, () => this.endRound(x));
  }

  private endRound(x: Exchange): void {
    if (this.current !== x) return;
    if (x.owed.size === 0) return this.finish(x);
    const maxRounds = this.o.maxRounds ?? 32;
    if (x.rounds >= maxRounds && x.steering) return this.fail(x, new MeshLlmError(`radio node ${[...x.owed].join(', ')} did not acknowledge its steering in ${maxRounds} rounds`));
    if (x.rounds >= maxRounds) {
      const nodes = [...x.owed].join(', ');
      const why = [...x.refused].map(([a, problem]) => `; node ${a} sent ${problem}`).join('');
      if (this.partial) {
        this.missing = { addresses: [...x.owed], reason: `did not deliver layer ${x.header.layer} at position ${x.header.pos} in ${maxRounds} rounds${why}` };
        return this.finish(x);
      }
      return this.fail(x, new MeshLlmError(`radio node(s) ${nodes} did not deliver layer ${x.header.layer} at position ${x.header.pos} in ${maxRounds} rounds${why}`));
    }
    const fragments = [...x.nacked.values()].flat();
    const resultNacks: { address: number; missing: number[] }[] = [];
    for (const a of x.owed) {
      if (x.nacked.has(a) || x.steering) continue;
      const count = (this.layout.resultFrames.get(a) as number[]).length;
      resultNacks.push({ address: a, missing: this.receiver.reassembler.stillMissing(this.resultName(a, x.message.messageNumber), count) });
    }
    this.round(x, fragments, resultNacks);
  }

  private finish(x: Exchange): void {
    x.timer?.cancel();
    this.current = null;
    const endMs = this.o.clock.now();
    const { session, pos, layer } = x.header;
    if (!x.steering) this.onLayer({ session, pos, layer, startMs: Number.isNaN(x.startMs) ? endMs : x.startMs, endMs, rounds: x.rounds, boundMs: x.boundMs });
    x.resolve(x.results);
  }

  private fail(x: Exchange, e: Error): void {
    if (this.current !== x) return;
    x.timer?.cancel();
    this.current = null;
    x.reject(e);
  }

  /** A node's sensor report: decoded and handed on, or refused and counted. */
  private takeSensors(address: number, body: Buffer): void {
    let readings: SensorReadings;
    try {
      readings = decodeSensorReport(body);
    } catch (e) {
      if (!(e instanceof BodyError)) throw e;
      this.counters.rejected++;
      this.lastSensorRefusal = `node ${address}: ${e.message}`;
      return;
    }
    this.sensorReports++;
    this.onSensors(address, readings);
  }

  private onFrame(bytes: Buffer, quality?: SignalQuality): void {
    const ev = this.receiver.receive(bytes);
    if (ev.kind === 'rejected') {
      this.counters.rejected++;
      return;
    }
    if (quality) this.signal.set(ev.frame.source, quality);
    if (ev.kind === 'sensors') return this.takeSensors(ev.frame.source, ev.body);
    const x = this.current;
    const source = ev.frame.source;
    if (!x || ev.frame.messageNumber !== x.message.messageNumber || !x.owed.has(source)) return;
    if (ev.kind === 'nack') {
      // A NACK to the gateway asks about the gateway's message: the broadcast.
      this.counters.nacksReceived++;
      if (x.steering) this.counters.steeringAirtimeMs += frameAirtimeMs(this.layout.config, (slotFor(this.layout, source, x.message.messageNumber) as Slot).channel, bytes.length);
      if (x.steering && ev.nack.missing.length === 0) {
        // the node holds its steering
        x.owed.delete(source);
        return this.finish(x);
      }
      x.nacked.set(source, ev.nack.missing);
      return;
    }
    if (ev.kind !== 'body') return;
    const problem = resultProblem(x.header, ev.header, source) ?? resultValuesProblem(this.layout, ev.body, source);
    if (problem) {
      // Not this broadcast's answer (a node's stale result under a number that came round again): ask again.
      this.counters.rejected++;
      x.refused.set(source, problem);
      this.receiver.reassembler.forget(this.resultName(source, x.message.messageNumber));
      return;
    }
    x.results.set(source, ev.body);
    x.owed.delete(source);
    if (x.owed.size === 0) this.finish(x);
  }
}

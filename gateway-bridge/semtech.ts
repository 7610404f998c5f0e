/**
 * Link (b): the Semtech UDP packet-forwarder protocol (lora_pkt_fwd, protocol version 2), so a
 * standard SX1301/SX1302 gateway serves as the mesh's gateway radio. The bridge plays the
 * network server: the forwarder sends PUSH_DATA with the frames it received (rxpk) and
 * PULL_DATA to keep the downlink path open; the bridge answers PUSH_ACK and PULL_ACK, and
 * sends each frame to transmit as a PULL_RESP (txpk, timed by the concentrator's `tmst`
 * counter), which the forwarder acknowledges with TX_ACK. docs/PROTOCOL.md ("Semtech UDP
 * packet forwarder") states how the mesh uses it.
 *
 *   byte 0   protocol version (2)
 *   1..2     random token (a reply echoes its request's token)
 *   3        identifier: 0 PUSH_DATA, 1 PUSH_ACK, 2 PULL_DATA, 3 PULL_RESP, 4 PULL_ACK, 5 TX_ACK
 *   4..11    gateway EUI (PUSH_DATA, PULL_DATA, TX_ACK)
 *   then     JSON (PUSH_DATA, PULL_RESP, TX_ACK)
 */
import * as dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { BandwidthKHz, Modulation } from '../lib/radio/airtime';
import { Radio } from '../lib/radio/channel';
import { Clock } from '../lib/radio/clock';
import { GatewayRadioLink, SignalQuality } from '../lib/radio/mac';
import { Channel } from '../lib/radio/regions';
import { fromTimestampUs, startFor, toTimestampUs } from './modem-time';
import { PendingAcks } from './acks';

export const PROTOCOL_VERSION = 2;
export const PACKET = { pushData: 0, pushAck: 1, pullData: 2, pullResp: 3, pullAck: 4, txAck: 5 } as const;
export type PacketKind = keyof typeof PACKET;
const KIND_BY_ID = new Map<number, PacketKind>(Object.entries(PACKET).map(([k, v]) => [v, k as PacketKind]));

/** A received frame as the forwarder reports it (the fields the mesh uses; others are passed over). */
export interface Rxpk {
  tmst: number;
  chan?: number;
  rfch?: number;
  freq: number;
  stat: number;
  modu: 'LORA';
  datr: string;
  codr: string;
  rssi: number;
  lsnr: number;
  size: number;
  data: string;
}

/** A frame to transmit. */
export interface Txpk {
  imme: boolean;
  tmst?: number;
  freq: number;
  rfch: number;
  powe: number;
  modu: 'LORA';
  datr: string;
  codr: string;
  ipol: boolean;
  size: number;
  data: string;
  ncrc?: boolean;
}

export interface Packet {
  kind: PacketKind;
  token: number;
  /** Gateway EUI, 16 hex digits (PUSH_DATA, PULL_DATA, TX_ACK). */
  eui?: string;
  json?: Record<string, unknown>;
}

const HAS_EUI: ReadonlySet<PacketKind> = new Set(['pushData', 'pullData', 'txAck']);
const HAS_JSON: ReadonlySet<PacketKind> = new Set(['pushData', 'pullResp', 'txAck']);

export function encodePacket(p: Packet): Buffer {
  const head = Buffer.from([PROTOCOL_VERSION, (p.token >> 8) & 0xff, p.token & 0xff, PACKET[p.kind]]);
  const eui = HAS_EUI.has(p.kind) ? Buffer.from((p.eui ?? '0000000000000000').padStart(16, '0'), 'hex') : Buffer.alloc(0);
  const json = HAS_JSON.has(p.kind) && p.json ? Buffer.from(JSON.stringify(p.json)) : Buffer.alloc(0);
  return Buffer.concat([head, eui, json]);
}

/** Decodes a datagram; the reason as a string when it is malformed. */
export function decodePacket(b: Buffer): Packet | string {
  if (b.length < 4) return `${b.length}-byte datagram is shorter than the 4-byte header`;
  if (b[0] !== PROTOCOL_VERSION) return `protocol version ${b[0]}, expected ${PROTOCOL_VERSION}`;
  const kind = KIND_BY_ID.get(b[3]);
  if (!kind) return `unknown identifier 0x${b[3].toString(16)}`;
  const token = (b[1] << 8) | b[2];
  let at = 4;
  let eui: string | undefined;
  if (HAS_EUI.has(kind)) {
    if (b.length < 12) return `${kind} without its gateway EUI`;
    eui = b.subarray(4, 12).toString('hex');
    at = 12;
  }
  let json: Record<string, unknown> | undefined;
  if (HAS_JSON.has(kind) && b.length > at) {
    try {
      const v: unknown = JSON.parse(b.subarray(at).toString('utf8'));
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${kind} JSON is not an object`;
      json = v as Record<string, unknown>;
    } catch (e) {
      return `${kind} JSON does not parse: ${(e as Error).message}`;
    }
  } else if (HAS_JSON.has(kind) && kind !== 'txAck') return `${kind} without JSON`;
  return { kind, token, eui, json };
}

/** "SF7BW125" */
export function dataRateString(sf: number, bandwidthKHz: number): string {
  return `SF${sf}BW${bandwidthKHz}`;
}

export function parseDataRate(datr: unknown): { sf: number; bandwidthKHz: number } | null {
  const m = typeof datr === 'string' ? /^SF(\d{1,2})BW(\d{3})$/.exec(datr) : null;
  return m ? { sf: Number(m[1]), bandwidthKHz: Number(m[2]) } : null;
}

const MHZ = 1e6;

function toMHz(hz: number): number {
  return Number((hz / MHZ).toFixed(6));
}

function fromMHz(mhz: number): number {
  return Math.round(mhz * MHZ);
}

// ---------------------------------------------------------------------------------------------
// The bridge side: a network server for one packet forwarder

export interface SemtechLinkOptions {
  clock: Clock;
  modulation: Modulation;
  host?: string;
  /** UDP port to listen on (0: any free port; the forwarder's default is 1700). */
  port?: number;
  powerDbm?: number;
  /** How long a PULL_RESP may wait for its TX_ACK (wall ms, default 2000). */
  ackTimeoutMs?: number;
}

export interface SemtechCounters {
  pushData: number;
  pullData: number;
  rxpk: number;
  txpk: number;
  malformed: number;
}

export class SemtechUdpLink implements GatewayRadioLink {
  readonly counters: SemtechCounters = { pushData: 0, pullData: 0, rxpk: 0, txpk: 0, malformed: 0 };
  lastError = '';
  /** The forwarder's address, learnt from its PULL_DATA. */
  private downlink: { address: string; port: number } | null = null;
  private readonly downlinkWaiters: (() => void)[] = [];
  private handler: (frame: Buffer, channel: Channel, endMs: number, quality?: SignalQuality) => void = () => undefined;
  private readonly acks = new PendingAcks();

  private constructor(
    private readonly socket: dgram.Socket,
    private readonly o: SemtechLinkOptions,
  ) {
    socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
  }

  static listen(o: SemtechLinkOptions): Promise<SemtechUdpLink> {
    const socket = dgram.createSocket('udp4');
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(o.port ?? 0, o.host ?? '127.0.0.1', () => {
        socket.removeListener('error', reject);
        resolve(new SemtechUdpLink(socket, o));
      });
    });
  }

  get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  /** Resolves once a forwarder has sent PULL_DATA (frames can then be sent to it). */
  waitForForwarder(timeoutMs = 5000): Promise<void> {
    if (this.downlink) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no packet forwarder sent PULL_DATA to port ${this.port} within ${timeoutMs} ms`)), timeoutMs);
      this.downlinkWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  transmit(frame: Buffer, channel: Channel, atMs: number): Promise<void> {
    const to = this.downlink;
    if (!to) return Promise.reject(new Error('no packet forwarder has sent PULL_DATA yet: nowhere to send the frame'));
    const m = this.o.modulation;
    const txpk: Txpk = {
      imme: false,
      tmst: toTimestampUs(atMs),
      freq: toMHz(channel.frequencyHz),
      rfch: 0,
      powe: this.o.powerDbm ?? 14,
      modu: 'LORA',
      datr: dataRateString(m.sf, channel.bandwidthKHz),
      codr: `4/${m.codingRate}`,
      // The mesh's nodes listen with the polarity the gateway sends with: not inverted.
      ipol: false,
      size: frame.length,
      data: frame.toString('base64'),
    };
    let token = randomBytes(2).readUInt16BE(0);
    while (this.acks.has(token)) token = (token + 1) & 0xffff;
    const release = this.o.clock.hold();
    this.counters.txpk++;
    const timeoutMs = this.o.ackTimeoutMs ?? 2000;
    return this.acks.wait(token, release, timeoutMs, `no TX_ACK from the packet forwarder within ${timeoutMs} ms`, () =>
      this.socket.send(encodePacket({ kind: 'pullResp', token, json: { txpk } }), to.port, to.address),
    );
  }

  onReceive(handler: (frame: Buffer, channel: Channel, endMs: number, quality?: SignalQuality) => void): void {
    this.handler = handler;
  }

  close(): Promise<void> {
    this.acks.failAll(new Error('the UDP link closed'));
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private malformed(why: string): void {
    this.counters.malformed++;
    this.lastError = why;
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const p = decodePacket(msg);
    if (typeof p === 'string') return this.malformed(p);
    if (p.kind === 'pushData') {
      this.counters.pushData++;
      // Handle the frames first: the forwarder's simulated clock waits for this PUSH_ACK.
      const rxpks = Array.isArray(p.json?.rxpk) ? (p.json.rxpk as unknown[]) : [];
      for (const r of rxpks) this.onRxpk(r);
      this.socket.send(encodePacket({ kind: 'pushAck', token: p.token }), rinfo.port, rinfo.address);
    } else if (p.kind === 'pullData') {
      this.counters.pullData++;
      this.downlink = { address: rinfo.address, port: rinfo.port };
      this.socket.send(encodePacket({ kind: 'pullAck', token: p.token }), rinfo.port, rinfo.address);
      this.downlinkWaiters.splice(0).forEach((w) => w());
    } else if (p.kind === 'txAck') {
      const ack = (p.json?.txpk_ack ?? {}) as { error?: unknown };
      const error = typeof ack.error === 'string' ? ack.error : 'NONE';
      this.acks.settle(p.token, error === 'NONE' ? undefined : new Error(`the packet forwarder refused the frame: ${error}`));
    } else this.malformed(`unexpected ${p.kind} from the forwarder`);
  }

  private onRxpk(r: unknown): void {
    const x = r as Partial<Rxpk>;
    const rate = parseDataRate(x.datr);
    if (typeof x.data !== 'string' || typeof x.freq !== 'number' || typeof x.tmst !== 'number' || !rate || x.modu !== 'LORA') {
      return this.malformed('rxpk without data, freq, tmst or a LoRa datr');
    }
    if (x.stat !== 1) return; // CRC failed or absent: not a frame
    const frame = Buffer.from(x.data, 'base64');
    if (typeof x.size === 'number' && x.size !== frame.length) return this.malformed(`rxpk size ${x.size} but ${frame.length} bytes of data`);
    this.counters.rxpk++;
    const channel: Channel = { frequencyHz: fromMHz(x.freq), bandwidthKHz: rate.bandwidthKHz as BandwidthKHz };
    const quality = typeof x.rssi === 'number' && typeof x.lsnr === 'number' ? { rssi: x.rssi, snr: x.lsnr } : undefined;
    this.handler(frame, channel, fromTimestampUs(x.tmst, this.o.clock.now()), quality);
  }
}

// ---------------------------------------------------------------------------------------------
// The far end: a packet forwarder whose concentrator is a radio on the simulated channel

export interface SimulatedForwarderOptions {
  /** The bridge's address. */
  host: string;
  port: number;
  radio: Radio;
  clock: Clock;
  modulation: Modulation;
  eui?: string;
  /** PULL_DATA keepalive interval (wall ms, default 5000; lora_pkt_fwd's keepalive_interval is 10 s). */
  keepaliveMs?: number;
}

/** What lora_pkt_fwd does, with the simulated channel as its concentrator. */
export class SimulatedPacketForwarder {
  readonly counters = { pushData: 0, pushAck: 0, pullResp: 0, refused: 0 };
  private readonly eui: string;
  private readonly unacked = new Map<number, () => void>();
  private keepalive?: NodeJS.Timeout;

  private constructor(
    private readonly socket: dgram.Socket,
    private readonly o: SimulatedForwarderOptions,
  ) {
    this.eui = o.eui ?? 'aa555a0000000001';
    socket.on('message', (msg) => this.onDatagram(msg));
    o.radio.onReceive = (r) => {
      const m = o.modulation;
      const rxpk: Rxpk = {
        tmst: toTimestampUs(r.endMs),
        chan: 0,
        rfch: 0,
        freq: toMHz(r.channel.frequencyHz),
        stat: 1,
        modu: 'LORA',
        datr: dataRateString(m.sf, r.channel.bandwidthKHz),
        codr: `4/${m.codingRate}`,
        rssi: r.rssi,
        lsnr: r.snr,
        size: r.bytes.length,
        data: r.bytes.toString('base64'),
      };
      let token = randomBytes(2).readUInt16BE(0);
      while (this.unacked.has(token)) token = (token + 1) & 0xffff;
      this.unacked.set(token, o.clock.hold()); // simulated time waits for the PUSH_ACK
      this.counters.pushData++;
      this.send({ kind: 'pushData', token, eui: this.eui, json: { rxpk: [rxpk] } });
    };
  }

  static start(o: SimulatedForwarderOptions): Promise<SimulatedPacketForwarder> {
    const socket = dgram.createSocket('udp4');
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.removeListener('error', reject);
        const f = new SimulatedPacketForwarder(socket, o);
        f.pull();
        f.keepalive = setInterval(() => f.pull(), o.keepaliveMs ?? 5000);
        f.keepalive.unref();
        resolve(f);
      });
    });
  }

  close(): Promise<void> {
    if (this.keepalive) clearInterval(this.keepalive);
    for (const release of this.unacked.values()) release();
    this.unacked.clear();
    this.o.radio.onReceive = () => undefined;
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private pull(): void {
    this.send({ kind: 'pullData', token: randomBytes(2).readUInt16BE(0), eui: this.eui });
  }

  private send(p: Packet): void {
    this.socket.send(encodePacket(p), this.o.port, this.o.host);
  }

  private onDatagram(msg: Buffer): void {
    const p = decodePacket(msg);
    if (typeof p === 'string') return;
    if (p.kind === 'pushAck') {
      this.counters.pushAck++;
      this.unacked.get(p.token)?.();
      this.unacked.delete(p.token);
    } else if (p.kind === 'pullResp') {
      this.counters.pullResp++;
      const error = this.transmit(p.json?.txpk as Partial<Txpk> | undefined);
      if (error !== 'NONE') this.counters.refused++;
      this.send({ kind: 'txAck', token: p.token, eui: this.eui, json: { txpk_ack: { error } } });
    }
  }

  /** Schedules a txpk on the radio; the TX_ACK error string (lora_pkt_fwd's names). */
  private transmit(t: Partial<Txpk> | undefined): string {
    const rate = parseDataRate(t?.datr);
    if (!t || typeof t.data !== 'string' || typeof t.freq !== 'number' || !rate) return 'TX_FREQ';
    const m = this.o.modulation;
    if (rate.sf !== m.sf || rate.bandwidthKHz !== m.bandwidthKHz || t.codr !== `4/${m.codingRate}`) return 'TX_FREQ';
    const now = this.o.clock.now();
    const at = t.imme ? now : typeof t.tmst === 'number' ? fromTimestampUs(t.tmst, now) : NaN;
    if (Number.isNaN(at)) return 'TX_FREQ';
    if (at < now - this.o.clock.lateToleranceMs - 1) return 'TOO_LATE';
    const channel: Channel = { frequencyHz: fromMHz(t.freq), bandwidthKHz: rate.bandwidthKHz as BandwidthKHz };
    try {
      this.o.radio.transmit(Buffer.from(t.data, 'base64'), channel, startFor(at, this.o.radio.earliestStartMs(channel, at)));
      return 'NONE';
    } catch {
      // Busy, or the region's duty cycle forbids it (protocol v2 has no closer error name).
      return 'COLLISION_PACKET';
    }
  }
}

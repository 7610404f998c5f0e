/**
 * The simulated channel's local socket: how a native process (the firmware's host build,
 * firmware/host/radio/sim_radio.cpp) attaches to the simulated LoRa channel as a radio. The
 * channel (channel.ts) stays the one place where airtime, collisions, half duplex, loss and
 * the duty-cycle law are decided; the socket carries frames and the simulator's time.
 *
 * A unix stream socket; each message is a u16 length (little-endian, of what follows), a type
 * byte and its fields (integers little-endian, times float64 ms on the simulator's clock):
 *
 *   node -> channel
 *   0x01 HELLO     u8 radio address (the node its shard names; 0: the gateway's radio, a modem's host build)
 *   0x02 TX        u8 purpose (1 result, 2 resent, 3 NACK: airtime accounting; 0 not counted here), u32 frequency (Hz), f64 start, frame
 *   0x03 WAKE_AT   f64 time: send a WAKE when the clock reaches it
 *   0x04 DONE      the node has handled the WELCOME, RX or WAKE it was sent (one DONE each)
 *   channel -> node
 *   0x81 WELCOME   JSON: the node's join (its slot of the gateway MAC's plan, modulation, frame size, duty cycle, result encoding, model geometry, heads);
 *                  for the gateway's radio its modulation and channels
 *   0x82 TX_RESULT u8 0 sent, 1 refused by the regulation (duty cycle, dwell time, half duplex), 2 refused otherwise, 3 too late; then the reason (UTF-8)
 *   0x83 RX        u32 frequency (Hz), f64 end of reception, i16 RSSI (dBm), i8 SNR (0.25 dB), frame
 *   0x84 WAKE      f64 now
 *   0x85 REFUSED   the reason (UTF-8); the channel then closes the connection
 *
 * Every WELCOME, RX and WAKE holds the simulator's clock until its DONE arrives, so simulated
 * time stands still while the native node computes (as it does while bytes cross a modem's
 * pty). A node that disconnects releases its holds; its radio stays on the channel (its
 * duty-cycle history with it), deaf until the node joins again, as a rebooting board does.
 * A node that is connected but does not answer (hung, SIGSTOPped) is not waited on for ever,
 * as a real channel does not wait for anybody: when a hold has had no DONE for
 * `silentAfterMs` of wall-clock time, its holds are released and the node is silent: it
 * hears nothing (so it answers nothing, and the MAC gives it up as it gives up a node out of
 * range) until it speaks again. The DONEs it still owes for what it was sent are then taken
 * as such, not as answers to what is sent after.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Geometry } from '../llm/config';
import { Radio, RadioChannel, Reception } from './channel';
import { Clock } from './clock';
import { AirtimeKind, AirtimeLedger, MeshLayout } from './mac';
import { subBandOf } from './regions';
import { loRaOnlyRefusal } from './channel-plans';
import { GATEWAY_ADDRESS } from './frame';

export const SIM_MESSAGES = {
  hello: 0x01,
  tx: 0x02,
  wakeAt: 0x03,
  done: 0x04,
  welcome: 0x81,
  txResult: 0x82,
  rx: 0x83,
  wake: 0x84,
  refused: 0x85,
} as const;

/** One tick of a modem's microsecond counter. */
const TIMESTAMP_TICK_MS = 0.001;

const PURPOSES: Record<number, AirtimeKind> = { 1: 'result', 2: 'resent', 3: 'nack' };

/** One message: u16 length, type, body. */
export function simMessage(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(3);
  head.writeUInt16LE(1 + body.length, 0);
  head.writeUInt8(type, 2);
  return Buffer.concat([head, body]);
}

/** Splits a byte stream into messages. */
export class SimMessageReader {
  private buf = Buffer.alloc(0);
  constructor(private readonly onMessage: (type: number, body: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16LE(0);
      if (this.buf.length < 2 + len) return;
      const m = this.buf.subarray(2, 2 + len);
      this.buf = this.buf.subarray(2 + len);
      if (len >= 1) this.onMessage(m[0], Buffer.from(m.subarray(1)));
    }
  }
}

/** What the channel tells a node when it joins: its part of the gateway's plan. */
export interface SimWelcome {
  address: number;
  maxFrameBytes: number;
  sf: number;
  bandwidthKHz: number;
  codingRate: number;
  preambleSymbols: number;
  broadcastHz: number;
  slot: { frequencyHz: number; offsetMs: number; lengthMs: number };
  guardMs: number;
  dutyCycle: number;
  maxDwellMs: number;
  result: { encoding: string; groupSize: number };
  model: { dim: number; nLayers: number; nHeads: number; nKvHeads: number; seqLen: number };
  heads: number[];
}

/** What the channel tells the gateway's radio (address 0) when it joins. */
export interface SimGatewayWelcome {
  role: 'gateway';
  sf: number;
  bandwidthKHz: number;
  codingRate: number;
  broadcastHz: number;
  uplinkHz: number[];
  nowMs: number;
}

export interface SimRadioServerOptions {
  channel: RadioChannel;
  clock: Clock;
  layout: MeshLayout;
  g: Geometry;
  /** Per radio address: the heads the mesh expects of it (its shard must hold them). */
  heads: ReadonlyMap<number, readonly number[]>;
  ledger?: AirtimeLedger;
  /** Called with every frame a native node puts on the air (tests read counters from it). */
  onTransmit?: (address: number, frame: Buffer) => void;
  log?: (level: 'info' | 'warn', message: string) => void;
  /** Wall-clock ms a node may hold the clock without answering before it counts as silent (default SILENT_AFTER_MS). */
  silentAfterMs?: number;
}

/** How long (wall-clock ms) the channel waits for a native node's DONE before taking the node as silent. */
export const SILENT_AFTER_MS = 3000;

export interface SimRadioCounters {
  joins: number;
  tx: number;
  /** Transmissions the channel refused (the duty cycle, dwell time or half duplex), with the reason logged. */
  refused: number;
  rx: number;
  /** Times a node stopped answering and was taken as silent. */
  silenced: number;
  /** Receptions a silent node did not hear. */
  unheard: number;
}

/** The channel's socket: native radios join it, one connection each. */
export class SimRadioServer {
  readonly path: string;
  readonly counters: SimRadioCounters = { joins: 0, tx: 0, refused: 0, rx: 0, silenced: 0, unheard: 0 };
  private readonly o: SimRadioServerOptions;
  private readonly server: net.Server;
  private readonly radios = new Map<number, Radio>();
  private readonly sockets = new Set<net.Socket>();
  private readonly waiting = new Map<number, (() => void)[]>();
  private readonly joinedNow = new Set<number>();

  private constructor(o: SimRadioServerOptions, server: net.Server, socketPath: string) {
    this.o = o;
    this.server = server;
    this.path = socketPath;
  }

  /** Listens on a fresh unix socket in a private temporary folder. */
  static async listen(o: SimRadioServerOptions): Promise<SimRadioServer> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-radio-'));
    const socketPath = path.join(dir, 'channel.sock');
    const server = net.createServer();
    const s = new SimRadioServer(o, server, socketPath);
    server.on('connection', (sock) => s.serve(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    return s;
  }

  /**
   * Resolves once a node of this address has joined (answered its WELCOME) since the last call.
   * When `gaveUp` settles first (the node exited before joining) the wait is dropped, so the
   * next node of that address resolves the next wait.
   */
  joined(address: number, gaveUp?: Promise<unknown>): Promise<void> {
    if (this.joinedNow.delete(address)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.waiting.get(address) ?? [];
      list.push(resolve);
      this.waiting.set(address, list);
      const drop = () => {
        const at = list.indexOf(resolve);
        if (at >= 0) list.splice(at, 1);
      };
      gaveUp?.then(drop, drop);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(path.dirname(this.path), { recursive: true, force: true });
  }

  private welcome(address: number): SimWelcome | SimGatewayWelcome | string {
    const { layout, g } = this.o;
    if (address === GATEWAY_ADDRESS) {
      const c = layout.config;
      return { role: 'gateway', sf: c.modulation.sf, bandwidthKHz: c.modulation.bandwidthKHz, codingRate: c.modulation.codingRate ?? 5, broadcastHz: c.plan.broadcast.frequencyHz, uplinkHz: c.plan.uplink.map((u) => u.frequencyHz), nowMs: this.o.clock.now() };
    }
    return nodeJoinPlan(layout, g, address, this.o.heads.get(address));
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    const { clock, channel, layout } = this.o;
    const holds: (() => void)[] = [];
    let address = -1;
    let radio: Radio | undefined;
    // a node that does not answer within silentAfterMs (wall clock) is silent until it speaks again
    let silent = false;
    let owed = 0; // DONEs still to come for messages whose holds were released when the node fell silent
    let watchdog: NodeJS.Timeout | undefined;
    const fallSilent = () => {
      watchdog = undefined;
      if (holds.length === 0 || sock.destroyed) return;
      silent = true;
      this.counters.silenced++;
      owed += holds.length;
      for (const release of holds.splice(0)) release();
      this.o.log?.('warn', `native radio ${address} has not answered for ${this.o.silentAfterMs ?? SILENT_AFTER_MS} ms: it is silent (hears nothing) until it speaks again`);
    };
    const watch = () => {
      clearTimeout(watchdog);
      watchdog = holds.length > 0 ? setTimeout(fallSilent, this.o.silentAfterMs ?? SILENT_AFTER_MS) : undefined;
    };
    const send = (type: number, body?: Buffer, hold = false) => {
      if (sock.destroyed) return;
      if (hold && silent) owed++;
      else if (hold) {
        holds.push(clock.hold());
        if (!watchdog) watch();
      }
      sock.write(simMessage(type, body));
    };
    const deliver = (r: Reception) => {
      if (silent) {
        this.counters.unheard++;
        return;
      }
      this.counters.rx++;
      const b = Buffer.alloc(15);
      b.writeUInt32LE(r.channel.frequencyHz, 0);
      b.writeDoubleLE(r.endMs, 4);
      b.writeInt16LE(Math.round(r.rssi), 12);
      b.writeInt8(Math.max(-128, Math.min(127, Math.round(r.snr * 4))), 14);
      send(SIM_MESSAGES.rx, Buffer.concat([b, r.bytes]), true);
    };
    const onMessage = (type: number, body: Buffer) => {
      if (silent) {
        silent = false;
        this.o.log?.('info', `native radio ${address} speaks again: it hears the channel from now on`);
      }
      switch (type) {
        case SIM_MESSAGES.hello: {
          address = body.readUInt8(0);
          const w = this.welcome(address);
          if (typeof w === 'string') {
            send(SIM_MESSAGES.refused, Buffer.from(w));
            sock.end();
            return;
          }
          radio = this.radios.get(address);
          if (!radio) {
            const listen = address === GATEWAY_ADDRESS ? layout.config.plan.uplink : [layout.config.plan.broadcast];
            radio = channel.attach({ name: address === GATEWAY_ADDRESS ? 'gateway-modem' : `native-${address}`, listen });
            this.radios.set(address, radio);
          }
          send(SIM_MESSAGES.welcome, Buffer.from(JSON.stringify(w)), true);
          return;
        }
        case SIM_MESSAGES.done: {
          if (owed > 0) owed--;
          else {
            holds.shift()?.();
            watch();
          }
          if (radio && radio.onReceive !== deliver) {
            // the WELCOME's DONE: the node is ready, it hears the channel from now on
            radio.onReceive = deliver;
            this.counters.joins++;
            const list = this.waiting.get(address);
            if (list?.length) list.shift()?.();
            else this.joinedNow.add(address);
          }
          return;
        }
        case SIM_MESSAGES.wakeAt: {
          const at = body.readDoubleLE(0);
          clock.at(at, () => send(SIM_MESSAGES.wake, doubleLE(clock.now()), true));
          return;
        }
        case SIM_MESSAGES.tx: {
          if (!radio) return;
          const kind: AirtimeKind | undefined = PURPOSES[body.readUInt8(0)];
          const hz = body.readUInt32LE(1);
          const start = body.readDoubleLE(5);
          const frame = Buffer.from(body.subarray(13));
          const plan = layout.config.plan;
          const ch = [plan.broadcast, ...plan.uplink].find((c) => c.frequencyHz === hz);
          const refuse = (code: number, why: string) => {
            this.counters.refused++;
            this.o.log?.('warn', `native radio ${address}: transmission refused: ${why}`);
            send(SIM_MESSAGES.txResult, Buffer.concat([Buffer.from([code]), Buffer.from(why)]));
          };
          if (!ch) return refuse(2, `${hz} Hz is not one of the mesh's channels`);
          if (start < clock.now() - clock.lateToleranceMs - 1) return refuse(3, `a start at ${start.toFixed(3)} ms is past (now ${clock.now().toFixed(3)} ms)`);
          try {
            // a start read back from a microsecond timestamp (a modem's tmst) may be up to a tick early
            const earliest = radio.earliestStartMs(ch, start);
            radio.transmit(frame, ch, earliest > start && earliest - start <= TIMESTAMP_TICK_MS ? earliest : start);
          } catch (e) {
            return refuse((e as Error).name === 'RegulatoryError' ? 1 : 2, (e as Error).message);
          }
          this.counters.tx++;
          if (kind) this.o.ledger?.add(this.o.ledger.position, kind, radio.airtimeMs(frame.length));
          this.o.onTransmit?.(address, frame);
          send(SIM_MESSAGES.txResult, Buffer.from([0]));
          return;
        }
      }
    };
    const reader = new SimMessageReader(onMessage);
    sock.on('data', (d) => reader.push(d));
    const gone = () => {
      clearTimeout(watchdog);
      this.sockets.delete(sock);
      if (radio && radio.onReceive === deliver) radio.onReceive = () => undefined;
      for (const release of holds.splice(0)) release();
    };
    sock.on('close', gone);
    sock.on('error', () => undefined);
  }
}

function doubleLE(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v, 0);
  return b;
}

/**
 * A node's join plan: its part of the gateway MAC's plan and what the mesh expects of it (the
 * WELCOME the channel sends; what `mesh-llm provision` writes into an ESP32's join record). A
 * string says why the address has no place in the mesh.
 */
export function nodeJoinPlan(layout: MeshLayout, g: Geometry, address: number, heads: readonly number[] | undefined): SimWelcome | string {
  const slot = layout.slots.get(address);
  if (!slot || !heads) return `radio address ${address} has no slot in this mesh (addresses ${[...layout.slots.keys()].join(', ')})`;
  const c = layout.config;
  const lora = loRaOnlyRefusal(c.plan, 'the firmware\'s radio node');
  if (lora) return lora;
  const band = subBandOf(c.region, slot.channel);
  return {
    address,
    maxFrameBytes: c.maxFrameBytes,
    sf: c.modulation.sf,
    bandwidthKHz: c.modulation.bandwidthKHz,
    codingRate: c.modulation.codingRate ?? 5,
    preambleSymbols: c.modulation.preambleSymbols ?? 8,
    broadcastHz: c.plan.broadcast.frequencyHz,
    slot: { frequencyHz: slot.channel.frequencyHz, offsetMs: slot.offsetMs, lengthMs: slot.lengthMs },
    guardMs: c.guardMs,
    dutyCycle: band.dutyCycle,
    maxDwellMs: Number.isFinite(c.region.maxDwellMs) ? c.region.maxDwellMs : 0,
    result: { encoding: layout.encodings.result.encoding, groupSize: layout.encodings.result.groupSize },
    model: { dim: g.dim, nLayers: g.nLayers, nHeads: g.nHeads, nKvHeads: g.nKvHeads, seqLen: g.seqLen },
    heads: [...heads],
  };
}

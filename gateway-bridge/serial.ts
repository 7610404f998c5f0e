/**
 * Link (a): a LoRa modem on a serial port, the framing a radio-modem firmware build speaks.
 * docs/PROTOCOL.md ("Serial LoRa modem") states it for firmware authors; this file is its one
 * definition.
 *
 * Each message is followed by its CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, little-endian),
 * then COBS-encoded and terminated by a 0x00 byte. Integers are little-endian.
 *
 *   TX      0x01  host -> modem  u16 token, u32 tmst (µs, the modem's counter), u32 frequency Hz,
 *                                u8 SF, u16 bandwidth kHz, u8 coding rate 4/x, i8 power dBm, payload
 *   TX_ACK  0x02  modem -> host  u16 token, u8 status (TX_STATUS)
 *   RX      0x03  modem -> host  u16 token, u32 tmst (end of reception), u32 frequency Hz, u8 SF,
 *                                u16 bandwidth kHz, u8 coding rate, i16 RSSI dBm, i8 SNR (0.25 dB), payload
 *   RX_ACK  0x04  host -> modem  u16 token: the host has handled the RX (the modem may pace on it)
 *
 * A message that fails its CRC or COBS decoding is dropped and counted; the link never throws
 * on what comes off the wire.
 */
import { SerialPort } from 'serialport';
import { BandwidthKHz, Modulation } from '../lib/radio/airtime';
import { Radio } from '../lib/radio/channel';
import { Clock } from '../lib/radio/clock';
import { GatewayRadioLink, SignalQuality } from '../lib/radio/mac';
import { Channel } from '../lib/radio/regions';
import { fromTimestampUs, startFor, toTimestampUs } from './modem-time';
import { PendingAcks } from './acks';

// ---------------------------------------------------------------------------------------------
// CRC-16 and COBS

/** CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR ("123456789" -> 0x29B1). */
export function crc16(data: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** Consistent Overhead Byte Stuffing: the output holds no 0x00 byte. */
export function cobsEncode(data: Uint8Array): Buffer {
  const out: number[] = [0];
  let codeAt = 0;
  let code = 1;
  for (const byte of data) {
    if (byte === 0) {
      out[codeAt] = code;
      codeAt = out.length;
      out.push(0);
      code = 1;
    } else {
      out.push(byte);
      if (++code === 0xff) {
        out[codeAt] = code;
        codeAt = out.length;
        out.push(0);
        code = 1;
      }
    }
  }
  out[codeAt] = code;
  return Buffer.from(out);
}

/** Inverse of cobsEncode; null when the input is not valid COBS. */
export function cobsDecode(data: Uint8Array): Buffer | null {
  const out: number[] = [];
  let i = 0;
  while (i < data.length) {
    const code = data[i];
    if (code === 0 || i + code > data.length) return null;
    for (let j = 1; j < code; j++) {
      if (data[i + j] === 0) return null;
      out.push(data[i + j]);
    }
    i += code;
    if (code !== 0xff && i < data.length) out.push(0);
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------
// Messages

export const MODEM_MESSAGE = { tx: 0x01, txAck: 0x02, rx: 0x03, rxAck: 0x04 } as const;

export const TX_STATUS = { ok: 0, tooLate: 1, busy: 2, dutyCycle: 3, badParameter: 4 } as const;
export type TxStatus = keyof typeof TX_STATUS;
const STATUS_BY_CODE = new Map<number, TxStatus>(Object.entries(TX_STATUS).map(([k, v]) => [v, k as TxStatus]));

export interface RadioParameters {
  frequencyHz: number;
  sf: number;
  bandwidthKHz: number;
  codingRate: number;
}

export type ModemMessage =
  | ({ kind: 'tx'; token: number; tmst: number; powerDbm: number; payload: Buffer } & RadioParameters)
  | { kind: 'txAck'; token: number; status: TxStatus }
  | ({ kind: 'rx'; token: number; tmst: number; rssi: number; snr: number; payload: Buffer } & RadioParameters)
  | { kind: 'rxAck'; token: number };

const TX_HEADER = 16;
const RX_HEADER = 18;

export function encodeModemMessage(m: ModemMessage): Buffer {
  let b: Buffer;
  switch (m.kind) {
    case 'tx':
      b = Buffer.alloc(TX_HEADER + m.payload.length);
      b[0] = MODEM_MESSAGE.tx;
      b.writeUInt16LE(m.token, 1);
      b.writeUInt32LE(m.tmst, 3);
      b.writeUInt32LE(m.frequencyHz, 7);
      b[11] = m.sf;
      b.writeUInt16LE(m.bandwidthKHz, 12);
      b[14] = m.codingRate;
      b.writeInt8(m.powerDbm, 15);
      m.payload.copy(b, TX_HEADER);
      break;
    case 'txAck':
      b = Buffer.alloc(4);
      b[0] = MODEM_MESSAGE.txAck;
      b.writeUInt16LE(m.token, 1);
      b[3] = TX_STATUS[m.status];
      break;
    case 'rx':
      b = Buffer.alloc(RX_HEADER + m.payload.length);
      b[0] = MODEM_MESSAGE.rx;
      b.writeUInt16LE(m.token, 1);
      b.writeUInt32LE(m.tmst, 3);
      b.writeUInt32LE(m.frequencyHz, 7);
      b[11] = m.sf;
      b.writeUInt16LE(m.bandwidthKHz, 12);
      b[14] = m.codingRate;
      b.writeInt16LE(Math.round(m.rssi), 15);
      b.writeInt8(Math.max(-128, Math.min(127, Math.round(m.snr * 4))), 17);
      m.payload.copy(b, RX_HEADER);
      break;
    case 'rxAck':
      b = Buffer.alloc(3);
      b[0] = MODEM_MESSAGE.rxAck;
      b.writeUInt16LE(m.token, 1);
      break;
  }
  const crc = Buffer.alloc(2);
  crc.writeUInt16LE(crc16(b));
  return Buffer.concat([cobsEncode(Buffer.concat([b, crc])), Buffer.from([0])]);
}

/** Decodes one frame (without its 0x00 delimiter); the reason as a string when it is malformed. */
export function decodeModemMessage(encoded: Uint8Array): ModemMessage | string {
  const raw = cobsDecode(encoded);
  if (!raw) return 'invalid COBS';
  if (raw.length < 3) return `${raw.length} bytes is shorter than any message`;
  const body = raw.subarray(0, raw.length - 2);
  if (crc16(body) !== raw.readUInt16LE(raw.length - 2)) return 'CRC mismatch';
  const token = body.length >= 3 ? body.readUInt16LE(1) : -1;
  switch (body[0]) {
    case MODEM_MESSAGE.tx:
      if (body.length < TX_HEADER) return 'TX shorter than its header';
      return { kind: 'tx', token, tmst: body.readUInt32LE(3), frequencyHz: body.readUInt32LE(7), sf: body[11], bandwidthKHz: body.readUInt16LE(12), codingRate: body[14], powerDbm: body.readInt8(15), payload: Buffer.from(body.subarray(TX_HEADER)) };
    case MODEM_MESSAGE.txAck: {
      const status = STATUS_BY_CODE.get(body[3]);
      if (body.length !== 4 || !status) return 'malformed TX_ACK';
      return { kind: 'txAck', token, status };
    }
    case MODEM_MESSAGE.rx:
      if (body.length < RX_HEADER) return 'RX shorter than its header';
      return { kind: 'rx', token, tmst: body.readUInt32LE(3), frequencyHz: body.readUInt32LE(7), sf: body[11], bandwidthKHz: body.readUInt16LE(12), codingRate: body[14], rssi: body.readInt16LE(15), snr: body.readInt8(17) / 4, payload: Buffer.from(body.subarray(RX_HEADER)) };
    case MODEM_MESSAGE.rxAck:
      if (body.length !== 3) return 'malformed RX_ACK';
      return { kind: 'rxAck', token };
    default:
      return `unknown message type 0x${body[0].toString(16)}`;
  }
}

/** Splits a byte stream at 0x00 delimiters and decodes each frame. */
export class ModemFrameReader {
  private pending: Buffer = Buffer.alloc(0);
  malformed = 0;
  lastError = '';

  constructor(private readonly onMessage: (m: ModemMessage) => void) {}

  push(chunk: Buffer): void {
    let data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let zero: number;
    while ((zero = data.indexOf(0)) >= 0) {
      const frame = data.subarray(0, zero);
      data = data.subarray(zero + 1);
      if (frame.length === 0) continue;
      const m = decodeModemMessage(frame);
      if (typeof m === 'string') {
        this.malformed++;
        this.lastError = m;
      } else this.onMessage(m);
    }
    this.pending = Buffer.from(data);
  }
}

function openPort(path: string, baudRate: number): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const port = new SerialPort({ path, baudRate, autoOpen: false });
    port.open((err) => (err ? reject(new Error(`cannot open serial port ${path}: ${err.message}`)) : resolve(port)));
  });
}

function closePort(port: SerialPort): Promise<void> {
  return new Promise((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve()));
}

// ---------------------------------------------------------------------------------------------
// The host side: the bridge's link to a serial modem

export interface SerialLinkOptions {
  path: string;
  baudRate?: number;
  clock: Clock;
  modulation: Modulation;
  powerDbm?: number;
  /** How long a TX may wait for its TX_ACK (wall ms, default 2000). */
  ackTimeoutMs?: number;
}

export class SerialModemLink implements GatewayRadioLink {
  private handler: (frame: Buffer, channel: Channel, endMs: number, quality?: SignalQuality) => void = () => undefined;
  private readonly acks = new PendingAcks();
  private nextToken = 1;
  private readonly reader = new ModemFrameReader((m) => this.onMessage(m));

  private constructor(
    private readonly port: SerialPort,
    private readonly o: SerialLinkOptions,
  ) {
    port.on('data', (d: Buffer) => this.reader.push(d));
  }

  static async open(o: SerialLinkOptions): Promise<SerialModemLink> {
    return new SerialModemLink(await openPort(o.path, o.baudRate ?? 115200), o);
  }

  get malformed(): number {
    return this.reader.malformed;
  }

  transmit(frame: Buffer, channel: Channel, atMs: number): Promise<void> {
    const token = this.nextToken;
    this.nextToken = (this.nextToken % 0xffff) + 1;
    const m = this.o.modulation;
    const release = this.o.clock.hold(); // simulated time waits until the modem has the frame
    const timeoutMs = this.o.ackTimeoutMs ?? 2000;
    const msg: ModemMessage = { kind: 'tx', token, tmst: toTimestampUs(atMs), frequencyHz: channel.frequencyHz, sf: m.sf, bandwidthKHz: channel.bandwidthKHz, codingRate: m.codingRate, powerDbm: this.o.powerDbm ?? 14, payload: frame };
    return this.acks.wait(token, release, timeoutMs, `no TX_ACK from the modem on ${this.o.path} within ${timeoutMs} ms`, () => this.port.write(encodeModemMessage(msg)));
  }

  onReceive(handler: (frame: Buffer, channel: Channel, endMs: number, quality?: SignalQuality) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    this.acks.failAll(new Error('the serial link closed'));
    await closePort(this.port);
  }

  private onMessage(m: ModemMessage): void {
    if (m.kind === 'txAck') {
      this.acks.settle(m.token, m.status === 'ok' ? undefined : new Error(`the modem refused the frame: ${m.status}`));
    } else if (m.kind === 'rx') {
      const channel: Channel = { frequencyHz: m.frequencyHz, bandwidthKHz: m.bandwidthKHz as BandwidthKHz };
      this.handler(m.payload, channel, fromTimestampUs(m.tmst, this.o.clock.now()), { rssi: m.rssi, snr: m.snr });
      this.port.write(encodeModemMessage({ kind: 'rxAck', token: m.token }));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The far end: a simulated modem whose antenna is a radio on the simulated channel

export interface SimulatedModemOptions {
  path: string;
  baudRate?: number;
  radio: Radio;
  clock: Clock;
  modulation: Modulation;
}

/** What a radio-modem firmware does, with the simulated channel as its radio. */
export class SimulatedSerialModem {
  readonly counters = { tx: 0, rx: 0, refused: 0 };
  private readonly reader = new ModemFrameReader((m) => this.onMessage(m));
  private readonly unacked = new Map<number, () => void>();
  private nextToken = 1;

  private constructor(
    private readonly port: SerialPort,
    private readonly o: SimulatedModemOptions,
  ) {
    port.on('data', (d: Buffer) => this.reader.push(d));
    o.radio.onReceive = (r) => {
      const token = this.nextToken;
      this.nextToken = (this.nextToken % 0xffff) + 1;
      this.unacked.set(token, o.clock.hold()); // simulated time waits until the host has handled it
      this.counters.rx++;
      const m = o.modulation;
      port.write(encodeModemMessage({ kind: 'rx', token, tmst: toTimestampUs(r.endMs), frequencyHz: r.channel.frequencyHz, sf: m.sf, bandwidthKHz: r.channel.bandwidthKHz, codingRate: m.codingRate, rssi: r.rssi, snr: r.snr, payload: r.bytes }));
    };
  }

  static async open(o: SimulatedModemOptions): Promise<SimulatedSerialModem> {
    return new SimulatedSerialModem(await openPort(o.path, o.baudRate ?? 115200), o);
  }

  async close(): Promise<void> {
    for (const release of this.unacked.values()) release();
    this.unacked.clear();
    this.o.radio.onReceive = () => undefined;
    await closePort(this.port);
  }

  private onMessage(m: ModemMessage): void {
    if (m.kind === 'rxAck') {
      this.unacked.get(m.token)?.();
      this.unacked.delete(m.token);
    } else if (m.kind === 'tx') {
      const status = this.transmit(m);
      if (status !== 'ok') this.counters.refused++;
      this.port.write(encodeModemMessage({ kind: 'txAck', token: m.token, status }));
    }
  }

  private transmit(m: Extract<ModemMessage, { kind: 'tx' }>): TxStatus {
    const mod = this.o.modulation;
    if (m.sf !== mod.sf || m.bandwidthKHz !== mod.bandwidthKHz || m.codingRate !== mod.codingRate) return 'badParameter';
    const at = fromTimestampUs(m.tmst, this.o.clock.now());
    if (at < this.o.clock.now() - this.o.clock.lateToleranceMs - 1) return 'tooLate';
    const channel: Channel = { frequencyHz: m.frequencyHz, bandwidthKHz: m.bandwidthKHz as BandwidthKHz };
    try {
      this.o.radio.transmit(m.payload, channel, startFor(at, this.o.radio.earliestStartMs(channel, at)));
      this.counters.tx++;
      return 'ok';
    } catch (e) {
      return (e as Error).name === 'RegulatoryError' ? 'dutyCycle' : 'busy';
    }
  }
}


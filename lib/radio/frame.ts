/**
 * The radio frame: how the LoRa radio carries head-link bodies (lib/link/body.ts, the one
 * message between the gateway and its head nodes) and the NACKs that ask for what was lost.
 * docs/PROTOCOL.md ("LoRa radio frames") states it for people; RADIO_HEADER_FIELDS is the
 * one table the codec below (and the firmware) follow.
 *
 * A message is a head-link body or a NACK. A body is cut into fragments that tile it (every
 * one but the last `maxFrameBytes - 16` bytes long), each in one frame of at most
 * `maxFrameBytes` (230 by default; smaller where a region's data rate says so). Integers are
 * little-endian.
 *
 *   byte  size  field
 *   0     1     version (high nibble, 2) | kind (low nibble: 1 body fragment, 2 NACK, 3 sensor report)
 *   1     1     mesh id
 *   2     1     source address (0 the gateway, 1..254 head nodes)
 *   3     1     destination address (255 = every node)
 *   4     4     frame counter of the source (u32, strictly increasing per source)
 *   8     2     message number: the low 16 bits of the body's sequence number
 *   10    1     fragment index
 *   11    1     fragment count (1..255)
 *   12    n     fragment: body bytes [index x (maxFrameBytes - 16), + n)
 *   12+n  4     MIC: the first 4 bytes of AES-128-CMAC(sealing key of the source, bytes 0 .. 11+n)
 *
 * Keys (docs/PROTOCOL.md, "Keys"): the mesh's 16-byte network key K stays with the gateway.
 * Frames from the gateway (source 0) are sealed under the downlink key
 * AES-CMAC(K, "downlink"), which every node holds; frames from node a under its own uplink
 * key AES-CMAC(K, "uplink" || a) (the six ASCII bytes, then the address as one byte), which
 * only that node and the gateway hold. So a node opens frames from the gateway only, the
 * gateway opens frames from nodes 1..254 only, and no node can seal a frame as another node.
 * A holder of the downlink key (any node) can still seal frames as the gateway.
 *
 * Counters: per source strictly increasing, and no more than MAX_COUNTER_GAP ahead of the
 * last one accepted (LoRaWAN's MAX_FCNT_GAP), so one forged counter of 0xFFFFFFFF cannot
 * shut a real sender out. A receiver may keep its replay window across restarts (ReplayStore).
 *
 * A message is named by its source and its message number; session, position and layer
 * travel once, in the body's own header. A reassembled body is checked with checkBody (the
 * radio never decodes values on the way).
 *
 * NACK body: u8 the fragment count of the message it asks about, then a bitmap: bit i (byte
 * i >> 3, bit i & 7) set when fragment i is missing. A NACK names that message by its
 * header (destination = the message's source, message number = the message's); its source is
 * the asker, who gets exactly those fragments again under fresh counters. A NACK travels in
 * one frame and is not reassembled.
 */
import { timingSafeEqual } from 'node:crypto';
import { BodyError, CheckedHeader, checkBody } from '../link/body';
import { aesCmac } from './cmac';
import { MAX_LORA_PAYLOAD_BYTES } from './airtime';

export const FRAME_VERSION = 2;
export const RADIO_HEADER_BYTES = 12;
export const MIC_BYTES = 4;
/** The seed's LoRa packet budget. */
export const DEFAULT_MAX_FRAME_BYTES = 230;
export const MAX_FRAGMENTS = 255;
export const GATEWAY_ADDRESS = 0;
export const BROADCAST_ADDRESS = 255;
export const NETWORK_KEY_BYTES = 16;
/** How far ahead of the last counter accepted from a source its next frame's counter may be (LoRaWAN's MAX_FCNT_GAP). */
export const MAX_COUNTER_GAP = 16384;

// ---------------------------------------------------------------------------------------------
// Keys

/** The key every node holds and the gateway seals its frames with: AES-CMAC(K, "downlink"). */
export function downlinkKey(networkKey: Buffer): Buffer {
  return aesCmac(checkKey(networkKey), Buffer.from('downlink', 'ascii'));
}

/** Node a's own key, for the frames it sends: AES-CMAC(K, "uplink" || a), a as one byte. */
export function uplinkKey(networkKey: Buffer, address: number): Buffer {
  checkField('address', address, 0xff);
  return aesCmac(checkKey(networkKey), Buffer.concat([Buffer.from('uplink', 'ascii'), Buffer.of(address)]));
}

/** The key frames from `source` are sealed under. */
export function sealingKey(networkKey: Buffer, source: number): Buffer {
  return source === GATEWAY_ADDRESS ? downlinkKey(networkKey) : uplinkKey(networkKey, source);
}

function checkKey(key: Buffer): Buffer {
  if (key.length !== NETWORK_KEY_BYTES) throw new RangeError(`a network key is ${NETWORK_KEY_BYTES} bytes, got ${key.length}`);
  return key;
}

/** The keys one radio holds: the one it seals its frames with, and those it opens others' with. */
export interface RadioKeyring {
  readonly seal: Buffer;
  /** The key frames from `source` carry; undefined when this radio takes no frames from that source. */
  openKey(source: number): Buffer | undefined;
}

/**
 * What the radio at `address` holds, derived from the network key: the gateway seals under the
 * downlink key and opens frames from nodes 1..254 under their uplink keys; node a seals under
 * its uplink key and opens frames from the gateway only.
 */
export function keyringOf(networkKey: Buffer, address: number): RadioKeyring {
  if (address !== GATEWAY_ADDRESS) return nodeKeyring({ downlink: downlinkKey(networkKey), uplink: uplinkKey(networkKey, address) });
  const uplinks = new Map<number, Buffer>();
  return {
    seal: downlinkKey(networkKey),
    openKey(source) {
      if (source === GATEWAY_ADDRESS || source === BROADCAST_ADDRESS) return undefined;
      let k = uplinks.get(source);
      if (!k) uplinks.set(source, (k = uplinkKey(networkKey, source)));
      return k;
    },
  };
}

/** A node provisioned with its two keys only (it never holds the network key). */
export function nodeKeyring(keys: { downlink: Buffer; uplink: Buffer }): RadioKeyring {
  return { seal: checkKey(keys.uplink), openKey: (source) => (source === GATEWAY_ADDRESS ? checkKey(keys.downlink) : undefined) };
}

/** Every source's key (a holder of the network key looking at any frame: tests and tools). */
export function everyKeyring(networkKey: Buffer): RadioKeyring {
  return { seal: downlinkKey(networkKey), openKey: (source) => sealingKey(networkKey, source) };
}

/** What a frame carries: a fragment of a head-link body, a NACK, or a fragment of a node's sensor report (sensor-report.ts). */
export const FRAME_KINDS = { fragment: 1, nack: 2, sensors: 3 } as const;
export type FrameKind = keyof typeof FRAME_KINDS;
const KIND_BY_CODE = new Map<number, FrameKind>(Object.entries(FRAME_KINDS).map(([name, code]) => [code, name as FrameKind]));

/** A field of the radio header: `bytes` little-endian bytes at `offset`, or one nibble of a byte. */
export interface RadioHeaderField {
  readonly name: string;
  readonly offset: number;
  readonly bytes: 1 | 2 | 4;
  readonly nibble?: 'high' | 'low';
}

/** The radio header's fields in order: the one table sealFrame, openFrame, the firmware and the docs follow. */
export const RADIO_HEADER_FIELDS = [
  { name: 'version', offset: 0, bytes: 1, nibble: 'high' },
  { name: 'kind', offset: 0, bytes: 1, nibble: 'low' },
  { name: 'meshId', offset: 1, bytes: 1 },
  { name: 'source', offset: 2, bytes: 1 },
  { name: 'destination', offset: 3, bytes: 1 },
  { name: 'counter', offset: 4, bytes: 4 },
  { name: 'messageNumber', offset: 8, bytes: 2 },
  { name: 'fragmentIndex', offset: 10, bytes: 1 },
  { name: 'fragmentCount', offset: 11, bytes: 1 },
] as const satisfies readonly RadioHeaderField[];

type RadioFieldName = (typeof RADIO_HEADER_FIELDS)[number]['name'];
type RawRadioHeader = Record<RadioFieldName, number>;

/** A message's name: its source and its message number (the low 16 bits of its body's sequence number). */
export interface MessageName {
  source: number;
  messageNumber: number;
}

export interface FrameHeader extends MessageName {
  kind: FrameKind;
  meshId: number;
  destination: number;
  counter: number;
  fragmentIndex: number;
  fragmentCount: number;
}

export interface Frame extends FrameHeader {
  fragment: Buffer;
}

/** The message number of a body: the low 16 bits of its sequence number. */
export function messageNumberOf(seq: number): number {
  return seq & 0xffff;
}

/** Bytes of message body one frame carries at most. */
export function fragmentCapacity(maxFrameBytes: number): number {
  return maxFrameBytes - RADIO_HEADER_BYTES - MIC_BYTES;
}

/**
 * How a body of `bodyBytes` is cut into fragments: as few as the frame size allows, all of
 * `chunkBytes` but the last, which holds the rest (at most chunkBytes). The fragments are as
 * even as that allows (chunkBytes = ceil(bodyBytes / count)), so no short tail frame follows
 * full ones: under a duty-cycle law a full frame owes the longest silence, and a message that
 * ends on one hides that silence behind the replies it asks for.
 */
export function fragmentLayout(bodyBytes: number, maxFrameBytes: number): { count: number; chunkBytes: number } {
  const count = Math.max(1, Math.ceil(bodyBytes / fragmentCapacity(maxFrameBytes)));
  return { count, chunkBytes: Math.max(1, Math.ceil(bodyBytes / count)) };
}

function checkField(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`frame ${name} ${v}: expected a whole number from 0 to ${max}`);
}

/** The largest value a header field holds. */
function fieldMax(f: RadioHeaderField): number {
  return f.nibble ? 0x0f : 2 ** (8 * f.bytes) - 1;
}

function readHeaderField(b: Buffer, f: RadioHeaderField): number {
  if (f.nibble) return f.nibble === 'high' ? b[f.offset] >> 4 : b[f.offset] & 0x0f;
  return f.bytes === 1 ? b[f.offset] : f.bytes === 2 ? b.readUInt16LE(f.offset) : b.readUInt32LE(f.offset);
}

/** Writes a field into a header that starts zeroed (nibbles are or-ed in). */
function writeHeaderField(b: Buffer, f: RadioHeaderField, v: number): void {
  if (f.nibble) b[f.offset] |= f.nibble === 'high' ? v << 4 : v;
  else if (f.bytes === 1) b[f.offset] = v;
  else if (f.bytes === 2) b.writeUInt16LE(v, f.offset);
  else b.writeUInt32LE(v, f.offset);
}

/** Serialises a frame and appends its MIC. */
export function sealFrame(h: FrameHeader, fragment: Uint8Array, key: Buffer): Buffer {
  checkField('fragmentCount', h.fragmentCount - 1, MAX_FRAGMENTS - 1);
  checkField('fragmentIndex', h.fragmentIndex, h.fragmentCount - 1);
  const raw: RawRadioHeader = { ...h, version: FRAME_VERSION, kind: FRAME_KINDS[h.kind] };
  const out = Buffer.alloc(RADIO_HEADER_BYTES + fragment.length + MIC_BYTES);
  for (const f of RADIO_HEADER_FIELDS) {
    checkField(f.name, raw[f.name], fieldMax(f));
    writeHeaderField(out, f, raw[f.name]);
  }
  out.set(fragment, RADIO_HEADER_BYTES);
  const signed = out.subarray(0, out.length - MIC_BYTES);
  aesCmac(key, signed).copy(out, signed.length, 0, MIC_BYTES);
  return out;
}

export type RejectReason = 'length' | 'version' | 'type' | 'mesh' | 'source' | 'mic' | 'replay' | 'address' | 'fragment' | 'body';

export type Rejection = { ok: false; reason: RejectReason; detail: string };
export type OpenResult = { ok: true; frame: Frame } | Rejection;

function reject(reason: RejectReason, detail: string): Rejection {
  return { ok: false, reason, detail };
}

/**
 * Parses a frame and checks its MIC: under `key` whatever the source (the codec alone), or
 * under the key a keyring holds for the frame's source. Never throws on bad input.
 */
export function openFrame(bytes: Uint8Array, key: Buffer | RadioKeyring, meshId: number): OpenResult {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < RADIO_HEADER_BYTES + MIC_BYTES + 1 || b.length > MAX_LORA_PAYLOAD_BYTES) {
    return reject('length', `${b.length} bytes; a frame has ${RADIO_HEADER_BYTES + MIC_BYTES + 1}..${MAX_LORA_PAYLOAD_BYTES}`);
  }
  const raw = {} as RawRadioHeader;
  for (const f of RADIO_HEADER_FIELDS) raw[f.name] = readHeaderField(b, f);
  const { version, kind: code, ...fields } = raw;
  if (version !== FRAME_VERSION) return reject('version', `version ${version}, expected ${FRAME_VERSION}`);
  const kind = KIND_BY_CODE.get(code);
  if (!kind) return reject('type', `unknown frame kind ${code}`);
  if (fields.meshId !== meshId) return reject('mesh', `mesh id ${fields.meshId}, expected ${meshId}`);
  const sourceKey = Buffer.isBuffer(key) ? key : key.openKey(fields.source);
  if (!sourceKey) return reject('source', `a frame from ${fields.source}; this radio takes none from that address`);
  const signed = b.subarray(0, b.length - MIC_BYTES);
  const mic = aesCmac(sourceKey, signed).subarray(0, MIC_BYTES);
  if (!timingSafeEqual(mic, b.subarray(b.length - MIC_BYTES))) return reject('mic', `integrity code does not match the key of source ${fields.source}`);
  return { ok: true, frame: { ...fields, kind, fragment: Buffer.from(b.subarray(RADIO_HEADER_BYTES, b.length - MIC_BYTES)) } };
}

// ---------------------------------------------------------------------------------------------
// NACK bodies

export interface Nack {
  /** Fragment count of the message asked about. */
  fragmentCount: number;
  /** Its missing fragment indices, ascending. */
  missing: number[];
}

function nackBodyBytes(fragmentCount: number): number {
  return 1 + Math.ceil(fragmentCount / 8);
}

/** Sizes of the frames that carry a message body of `bodyBytes`, in fragment order. */
export function messageFrameBytes(bodyBytes: number, maxFrameBytes: number): number[] {
  const { count, chunkBytes } = fragmentLayout(bodyBytes, maxFrameBytes);
  return Array.from({ length: count }, (_, i) => RADIO_HEADER_BYTES + Math.min(chunkBytes, bodyBytes - i * chunkBytes) + MIC_BYTES);
}

/** Size of the one frame of a NACK about a message of `fragmentCount` fragments. */
export function nackFrameBytes(fragmentCount: number): number {
  return RADIO_HEADER_BYTES + nackBodyBytes(fragmentCount) + MIC_BYTES;
}

/** Encodes a NACK body: the message's fragment count, then the bitmap of its missing fragments. */
export function encodeNack(n: Nack): Buffer {
  checkField('fragmentCount', n.fragmentCount - 1, MAX_FRAGMENTS - 1);
  const out = Buffer.alloc(nackBodyBytes(n.fragmentCount));
  out[0] = n.fragmentCount;
  for (const i of n.missing) {
    checkField('missing fragment', i, n.fragmentCount - 1);
    out[1 + (i >> 3)] |= 1 << (i & 7);
  }
  return out;
}

export function decodeNack(body: Buffer): Nack {
  const fragmentCount = body.length >= 1 ? body[0] : 0;
  if (fragmentCount === 0 || body.length !== nackBodyBytes(fragmentCount)) {
    throw new BodyError(`malformed NACK body of ${body.length} bytes (fragment count ${fragmentCount})`);
  }
  const missing: number[] = [];
  for (let i = 0; i < fragmentCount; i++) if (body[1 + (i >> 3)] & (1 << (i & 7))) missing.push(i);
  return { fragmentCount, missing };
}

// ---------------------------------------------------------------------------------------------
// Sending

/** A message ready to send, and to send again in part. */
export interface OutgoingMessage {
  kind: FrameKind;
  destination: number;
  messageNumber: number;
  body: Buffer;
  /** Bytes per fragment (every fragment but the last holds this many; fragmentLayout). */
  chunkBytes: number;
  fragmentCount: number;
}

export interface FrameSenderOptions {
  /** The network key (the sealing key of `source` is derived from it), or the sender's keyring. */
  key: Buffer | RadioKeyring;
  meshId: number;
  /** This sender's address. */
  source: number;
  maxFrameBytes?: number;
  /** Counter of the next frame (default 0); a node restores it from storage after a restart. */
  counter?: number;
  /** Called with each counter before a frame goes out under it (a CounterStore reserves it durably). */
  reserve?: (counter: number) => void;
}

/** One transmitter's frames: cuts messages into fragments and stamps each frame with the next counter. */
export class FrameSender {
  readonly meshId: number;
  readonly source: number;
  readonly maxFrameBytes: number;
  private readonly key: Buffer;
  private readonly reserve?: (counter: number) => void;
  private nextCounter: number;

  constructor(o: FrameSenderOptions) {
    this.key = Buffer.isBuffer(o.key) ? sealingKey(o.key, o.source) : o.key.seal;
    this.reserve = o.reserve;
    this.meshId = o.meshId;
    this.source = o.source;
    this.maxFrameBytes = o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (fragmentCapacity(this.maxFrameBytes) < 1 || this.maxFrameBytes > MAX_LORA_PAYLOAD_BYTES) {
      throw new RangeError(`maximum frame size ${this.maxFrameBytes}: expected ${RADIO_HEADER_BYTES + MIC_BYTES + 1}..${MAX_LORA_PAYLOAD_BYTES} bytes`);
    }
    this.nextCounter = o.counter ?? 0;
  }

  /** The counter the next frame will carry. */
  get counter(): number {
    return this.nextCounter;
  }

  /** Prepares a head-link body for `destination`; its message number comes from the body's sequence number. */
  body(destination: number, body: Buffer): OutgoingMessage {
    return this.prepare('fragment', destination, messageNumberOf(checkBody(body).seq), body);
  }

  /** Prepares a sensor report (sensor-report.ts) for the gateway under its own report number. */
  sensors(reportNumber: number, report: Buffer): OutgoingMessage {
    return this.prepare('sensors', GATEWAY_ADDRESS, reportNumber & 0xffff, report);
  }

  /** Prepares a NACK about a message: to its source, under its message number. */
  nack(about: MessageName, n: Nack): OutgoingMessage {
    return this.prepare('nack', about.source, about.messageNumber, encodeNack(n));
  }

  /** Frames for the message's fragments (all of them, or the listed ones), each under a fresh counter. */
  frames(m: OutgoingMessage, indices?: readonly number[]): Buffer[] {
    const which = indices ?? Array.from({ length: m.fragmentCount }, (_, i) => i);
    return which.map((i) => {
      checkField('fragmentIndex', i, m.fragmentCount - 1);
      const from = i * m.chunkBytes;
      const fragment = m.body.subarray(from, Math.min(from + m.chunkBytes, m.body.length));
      const header: FrameHeader = { kind: m.kind, meshId: this.meshId, source: this.source, destination: m.destination, counter: this.nextCounter, messageNumber: m.messageNumber, fragmentIndex: i, fragmentCount: m.fragmentCount };
      this.reserve?.(this.nextCounter);
      const frame = sealFrame(header, fragment, this.key);
      this.nextCounter++;
      return frame;
    });
  }

  private prepare(kind: FrameKind, destination: number, messageNumber: number, body: Buffer): OutgoingMessage {
    const { count: fragmentCount, chunkBytes } = fragmentLayout(body.length, this.maxFrameBytes);
    const most = kind === 'nack' ? 1 : MAX_FRAGMENTS;
    if (fragmentCount > most) {
      const limit = kind === 'nack' ? 'a NACK has one' : `a message has at most ${MAX_FRAGMENTS}`;
      throw new RangeError(`a ${body.length}-byte ${kind === 'nack' ? 'NACK' : 'body'} needs ${fragmentCount} fragments of ${fragmentCapacity(this.maxFrameBytes)} bytes; ${limit}`);
    }
    return { kind, destination, messageNumber, body, chunkBytes, fragmentCount };
  }
}

// ---------------------------------------------------------------------------------------------
// Receiving

/**
 * Where a replay window survives a restart: per source, a floor at or above every counter
 * accepted from it. The window saves `counter + REPLAY_SAVE_BLOCK` when a counter reaches the
 * saved floor (one write per block of frames, as flash wants), and starts from the floors.
 */
export interface ReplayStore {
  floor(source: number): number | undefined;
  saveFloor(source: number, floor: number): void;
}

/** Counters accepted per write of a replay window's floor. */
export const REPLAY_SAVE_BLOCK = 16;

/**
 * Per source, the highest counter accepted: anything not above it is a replay (LoRaWAN's FCnt
 * rule), and anything more than MAX_COUNTER_GAP above it is refused too. The first counter
 * heard from a source (with nothing stored) is taken as it comes.
 */
export class ReplayWindow {
  private readonly last = new Map<number, number>();
  private readonly saved = new Map<number, number>();
  private readonly store?: ReplayStore;

  constructor(store?: ReplayStore) {
    this.store = store;
  }

  /** Why this counter from this source is refused, or null when it is taken (and remembered). */
  check(source: number, counter: number): string | null {
    const last = this.lastAccepted(source);
    if (last !== undefined && counter <= last) return `counter ${counter} from ${source} is not above ${last}`;
    if (last !== undefined && counter - last > MAX_COUNTER_GAP) return `counter ${counter} from ${source} is ${counter - last} past ${last}; a counter moves at most ${MAX_COUNTER_GAP} ahead`;
    this.last.set(source, counter);
    if (this.store && counter >= (this.saved.get(source) ?? -1)) {
      const floor = Math.min(0xffffffff, counter + REPLAY_SAVE_BLOCK);
      this.store.saveFloor(source, floor);
      this.saved.set(source, floor);
    }
    return null;
  }

  /** Accepts the counter (and remembers it) if it is above every counter accepted from this source, and not too far. */
  accept(source: number, counter: number): boolean {
    return this.check(source, counter) === null;
  }

  lastAccepted(source: number): number | undefined {
    let last = this.last.get(source);
    if (last === undefined && this.store && !this.saved.has(source)) {
      const floor = this.store.floor(source);
      if (floor !== undefined) {
        this.saved.set(source, floor);
        this.last.set(source, (last = floor));
      }
    }
    return last;
  }
}

/** The key of a message's name (a sensor report's apart from a body's of the same number). */
export function messageKey(n: MessageName & { kind?: FrameKind }): string {
  return `${n.kind === 'sensors' ? 'sensors ' : ''}${n.source}/${n.messageNumber}`;
}

export type AddResult =
  | { status: 'incomplete'; missing: number[] }
  | { status: 'complete'; body: Buffer }
  | { status: 'duplicate' }
  | { status: 'inconsistent'; detail: string };

/** A message under way, and what it still lacks: what a NACK asks for. */
export interface PendingMessage {
  name: MessageName;
  fragmentCount: number;
  missing: number[];
}

interface PartialMessage {
  name: MessageName;
  fragments: (Buffer | undefined)[];
  received: number;
}

/** How many finished messages a receiver remembers, so late copies of their fragments count as duplicates. */
const COMPLETED_MEMORY = 256;
/** How many messages may be under way at once; the oldest is forgotten beyond that. */
const PARTIAL_MEMORY = 256;

/** Indices 0..count-1. */
function allFragments(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i);
}

/** Collects fragments in any order and reports which are still missing. */
export class Reassembler {
  private readonly partial = new Map<string, PartialMessage>();
  /** Keys of finished messages, oldest first. */
  private readonly completed = new Set<string>();

  add(f: Frame): AddResult {
    const key = messageKey(f);
    if (this.completed.has(key)) return { status: 'duplicate' };
    let p = this.partial.get(key);
    if (!p) {
      p = { name: { source: f.source, messageNumber: f.messageNumber }, fragments: new Array<Buffer | undefined>(f.fragmentCount).fill(undefined), received: 0 };
      this.partial.set(key, p);
      if (this.partial.size > PARTIAL_MEMORY) this.partial.delete(this.partial.keys().next().value as string);
    }
    if (p.fragments.length !== f.fragmentCount) {
      this.partial.delete(key);
      return { status: 'inconsistent', detail: `message ${key}: fragment count ${f.fragmentCount} after ${p.fragments.length}` };
    }
    if (p.fragments[f.fragmentIndex]) return { status: 'duplicate' };
    p.fragments[f.fragmentIndex] = f.fragment;
    p.received++;
    if (p.received < p.fragments.length) return { status: 'incomplete', missing: missingOf(p) };
    this.partial.delete(key);
    this.remember(key);
    return joinFragments(key, p.fragments as Buffer[]);
  }

  /** Missing fragment indices of a message being reassembled (undefined if none is under way). */
  missing(name: MessageName): number[] | undefined {
    const p = this.partial.get(messageKey(name));
    return p && missingOf(p);
  }

  /** What to ask for of a message of `fragmentCount` fragments: what it still lacks, or all of it when none is under way. */
  stillMissing(name: MessageName, fragmentCount: number): number[] {
    return this.missing(name) ?? allFragments(fragmentCount);
  }

  /** Messages under way, with what each still lacks. */
  pending(): PendingMessage[] {
    return [...this.partial.values()].map((p) => ({ name: p.name, fragmentCount: p.fragments.length, missing: missingOf(p) }));
  }

  /**
   * Forgets a message, under way or finished, so that its name can start a new message: for a
   * message number that has come round again.
   */
  forget(name: MessageName): void {
    const key = messageKey(name);
    this.partial.delete(key);
    this.completed.delete(key);
  }

  private remember(key: string): void {
    this.completed.add(key);
    if (this.completed.size > COMPLETED_MEMORY) this.completed.delete(this.completed.values().next().value as string);
  }
}

function missingOf(p: PartialMessage): number[] {
  return allFragments(p.fragments.length).filter((i) => !p.fragments[i]);
}

/** Joins fragments that must tile the body: every one but the last of one length, the last no longer. */
function joinFragments(key: string, fragments: Buffer[]): AddResult {
  const chunk = fragments[0].length;
  const last = fragments.length - 1;
  for (let i = 1; i < fragments.length; i++) {
    const n = fragments[i].length;
    if (i < last ? n !== chunk : n > chunk) {
      return { status: 'inconsistent', detail: `message ${key}: fragment ${i} is ${n} bytes, fragment 0 is ${chunk}: they do not tile a body` };
    }
  }
  return { status: 'complete', body: Buffer.concat(fragments) };
}

export type ReceiveEvent =
  | { kind: 'rejected'; reason: RejectReason; detail: string }
  | { kind: 'duplicate'; frame: Frame }
  | { kind: 'fragment'; frame: Frame; missing: number[] }
  /** A whole head-link body, checked with checkBody; `frame` is the fragment that completed it. */
  | { kind: 'body'; frame: Frame; body: Buffer; header: CheckedHeader }
  /** A whole sensor report (not yet decoded: decodeSensorReport). */
  | { kind: 'sensors'; frame: Frame; body: Buffer }
  | { kind: 'nack'; frame: Frame; nack: Nack };

export interface FrameReceiverOptions {
  /** The network key (the keys of `address` are derived from it: keyringOf), or the receiver's keyring. */
  key: Buffer | RadioKeyring;
  meshId: number;
  /** This receiver's address: it takes frames sent to it and to BROADCAST_ADDRESS. */
  address: number;
  /** Where the replay window survives restarts (default: it does not). */
  replayStore?: ReplayStore;
}

/** One radio's receive path: source key, MIC, replay window, addressing, reassembly, the body's own checks. */
export class FrameReceiver {
  readonly replay: ReplayWindow;
  readonly reassembler = new Reassembler();
  private readonly o: FrameReceiverOptions;
  private readonly keys: RadioKeyring;

  constructor(o: FrameReceiverOptions) {
    this.o = o;
    this.keys = Buffer.isBuffer(o.key) ? keyringOf(o.key, o.address) : o.key;
    this.replay = new ReplayWindow(o.replayStore);
  }

  /** A frame through every check, then filed: what it completed, or why it was dropped. */
  receive(bytes: Uint8Array): ReceiveEvent {
    const opened = this.accept(bytes);
    return opened.ok ? this.file(opened.frame) : { kind: 'rejected', reason: opened.reason, detail: opened.detail };
  }

  /** The frame's own checks: length, version, kind, mesh, source, MIC, counter, destination, fragment numbers. */
  accept(bytes: Uint8Array): OpenResult {
    const opened = openFrame(bytes, this.keys, this.o.meshId);
    if (!opened.ok) return opened;
    const f = opened.frame;
    const replayed = this.replay.check(f.source, f.counter);
    if (replayed) return reject('replay', replayed);
    if (f.destination !== this.o.address && f.destination !== BROADCAST_ADDRESS) return reject('address', `frame for ${f.destination}, this is ${this.o.address}`);
    if (f.fragmentCount === 0 || f.fragmentIndex >= f.fragmentCount) return reject('fragment', `fragment ${f.fragmentIndex} of ${f.fragmentCount}`);
    if (f.kind === 'nack' && f.fragmentCount !== 1) return reject('fragment', `a NACK in ${f.fragmentCount} fragments; it travels in one frame`);
    return opened;
  }

  /** Files an accepted frame: decodes a NACK, or adds a fragment and checks the body it completes. */
  file(f: Frame): ReceiveEvent {
    if (f.kind === 'nack') return this.nackOf(f);
    const added = this.reassembler.add(f);
    switch (added.status) {
      case 'duplicate':
        return { kind: 'duplicate', frame: f };
      case 'incomplete':
        return { kind: 'fragment', frame: f, missing: added.missing };
      case 'inconsistent':
        return { kind: 'rejected', reason: 'body', detail: added.detail };
      case 'complete':
        return f.kind === 'sensors' ? { kind: 'sensors', frame: f, body: added.body } : this.bodyOf(f, added.body);
    }
  }

  private nackOf(f: Frame): ReceiveEvent {
    try {
      return { kind: 'nack', frame: f, nack: decodeNack(f.fragment) };
    } catch (e) {
      return { kind: 'rejected', reason: 'body', detail: (e as Error).message };
    }
  }

  private bodyOf(f: Frame, body: Buffer): ReceiveEvent {
    let header: CheckedHeader;
    try {
      header = checkBody(body);
    } catch (e) {
      if (e instanceof BodyError) return { kind: 'rejected', reason: 'body', detail: `message ${messageKey(f)}: ${e.message}` };
      throw e;
    }
    if (messageNumberOf(header.seq) !== f.messageNumber) {
      return { kind: 'rejected', reason: 'body', detail: `message ${messageKey(f)} carries a body of sequence number ${header.seq}, whose message number is ${messageNumberOf(header.seq)}` };
    }
    return { kind: 'body', frame: f, body, header };
  }
}

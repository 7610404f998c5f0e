/**
 * The radio frame: the one wire format between the gateway and the head nodes over LoRa.
 *
 * A message (a layer's broadcast vector, a node's head results, a NACK) is a body of bytes
 * cut into fragments; each fragment travels in one frame of at most `maxFrameBytes` (230 by
 * default; smaller where a region's data rate says so). Integers are little-endian.
 *
 *   byte  size  field
 *   0     1     version (high nibble, 1) | type (low nibble: 1 broadcast, 2 result, 3 nack)
 *   1     1     mesh id
 *   2     1     source address (0 the gateway, 1..254 head nodes)
 *   3     1     destination address (255 = every node)
 *   4     1     session
 *   5     2     token position
 *   7     1     layer
 *   8     1     fragment index
 *   9     1     fragment count (1..255)
 *   10    4     frame counter of the source (u32, strictly increasing per source)
 *   14    2     byte offset of this fragment in the message body
 *   16    n     fragment: body bytes [offset, offset + n)
 *   16+n  4     MIC: the first 4 bytes of AES-128-CMAC(network key, bytes 0 .. 15+n)
 *
 * Tensor body (broadcast, result): u8 encoding (0 f32, 1 int8 groups), u8 int8 group size
 * (0 for f32), u16 value count n, then n f32 values, or ceil(n / group size) f32 scales and
 * n int8 values (the Int8Groups of lib/llm/quant.ts). A broadcast carries the layer's
 * attention input [dim]; a result carries the sender's head outputs [heads x headSize], its
 * heads in ascending order as the gateway assigned them.
 *
 * NACK body: u8 type of the message it asks about, u8 that message's fragment count, then a
 * bitmap: bit i (byte i >> 3, bit i & 7) set when fragment i is missing. Its header's source
 * is the asker, its destination the message's source, its session, position and layer the
 * message's; the sender answers by sending those fragments again under fresh counters. A NACK
 * always fits one frame (at most 34 body bytes) and is not reassembled.
 */
import { timingSafeEqual } from 'node:crypto';
import { Geometry } from '../llm/config';
import { headOutputGroupSize } from '../llm/engine';
import { INT8_GROUP_SIZE } from '../llm/head';
import { Encoding, Int8Groups, dequantizeInto, groupCount, quantizeVector } from '../llm/quant';
import { aesCmac } from './cmac';
import { MAX_LORA_PAYLOAD_BYTES } from './airtime';

export const FRAME_VERSION = 1;
export const HEADER_BYTES = 16;
export const MIC_BYTES = 4;
/** The seed's LoRa packet budget. */
export const DEFAULT_MAX_FRAME_BYTES = 230;
export const MAX_FRAGMENTS = 255;
export const GATEWAY_ADDRESS = 0;
export const BROADCAST_ADDRESS = 255;
export const NETWORK_KEY_BYTES = 16;

export const FRAME_TYPES = { broadcast: 1, result: 2, nack: 3 } as const;
export type FrameType = keyof typeof FRAME_TYPES;
const TYPE_BY_CODE = new Map<number, FrameType>(Object.entries(FRAME_TYPES).map(([name, code]) => [code, name as FrameType]));

/** What a message is about: it names the message, and every fragment of it repeats it. */
export interface MessageAddress {
  type: FrameType;
  source: number;
  destination: number;
  session: number;
  position: number;
  layer: number;
}

export interface FrameHeader extends MessageAddress {
  meshId: number;
  fragmentIndex: number;
  fragmentCount: number;
  counter: number;
  byteOffset: number;
}

export interface Frame extends FrameHeader {
  fragment: Buffer;
}

/** Bytes of message body one frame carries. */
export function fragmentCapacity(maxFrameBytes: number): number {
  return maxFrameBytes - HEADER_BYTES - MIC_BYTES;
}

function checkField(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`frame ${name} ${v}: expected a whole number from 0 to ${max}`);
}

/** Serialises a frame and appends its MIC. */
export function sealFrame(h: FrameHeader, fragment: Uint8Array, key: Buffer): Buffer {
  checkField('mesh id', h.meshId, 0xff);
  checkField('source', h.source, 0xff);
  checkField('destination', h.destination, 0xff);
  checkField('session', h.session, 0xff);
  checkField('position', h.position, 0xffff);
  checkField('layer', h.layer, 0xff);
  checkField('fragment count', h.fragmentCount - 1, MAX_FRAGMENTS - 1);
  checkField('fragment index', h.fragmentIndex, h.fragmentCount - 1);
  checkField('counter', h.counter, 0xffffffff);
  checkField('byte offset', h.byteOffset, 0xffff);
  const out = Buffer.alloc(HEADER_BYTES + fragment.length + MIC_BYTES);
  out[0] = (FRAME_VERSION << 4) | FRAME_TYPES[h.type];
  out[1] = h.meshId;
  out[2] = h.source;
  out[3] = h.destination;
  out[4] = h.session;
  out.writeUInt16LE(h.position, 5);
  out[7] = h.layer;
  out[8] = h.fragmentIndex;
  out[9] = h.fragmentCount;
  out.writeUInt32LE(h.counter, 10);
  out.writeUInt16LE(h.byteOffset, 14);
  out.set(fragment, HEADER_BYTES);
  const signed = out.subarray(0, out.length - MIC_BYTES);
  aesCmac(key, signed).copy(out, signed.length, 0, MIC_BYTES);
  return out;
}

export type RejectReason = 'length' | 'version' | 'type' | 'mesh' | 'mic' | 'replay' | 'fragment' | 'address' | 'body';

export type OpenResult = { ok: true; frame: Frame } | { ok: false; reason: RejectReason; detail: string };

function reject(reason: RejectReason, detail: string): { ok: false; reason: RejectReason; detail: string } {
  return { ok: false, reason, detail };
}

/** Parses a frame and checks its MIC under the mesh's key. Never throws on bad input. */
export function openFrame(bytes: Uint8Array, key: Buffer, meshId: number): OpenResult {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < HEADER_BYTES + MIC_BYTES || b.length > MAX_LORA_PAYLOAD_BYTES) {
    return reject('length', `${b.length} bytes; a frame has ${HEADER_BYTES + MIC_BYTES}..${MAX_LORA_PAYLOAD_BYTES}`);
  }
  if (b[0] >> 4 !== FRAME_VERSION) return reject('version', `version ${b[0] >> 4}, expected ${FRAME_VERSION}`);
  const type = TYPE_BY_CODE.get(b[0] & 0x0f);
  if (!type) return reject('type', `unknown frame type ${b[0] & 0x0f}`);
  if (b[1] !== meshId) return reject('mesh', `mesh id ${b[1]}, expected ${meshId}`);
  const signed = b.subarray(0, b.length - MIC_BYTES);
  const mic = aesCmac(key, signed).subarray(0, MIC_BYTES);
  if (!timingSafeEqual(mic, b.subarray(b.length - MIC_BYTES))) return reject('mic', 'integrity code does not match the network key');
  const fragmentIndex = b[8];
  const fragmentCount = b[9];
  if (fragmentCount === 0 || fragmentIndex >= fragmentCount) return reject('fragment', `fragment ${fragmentIndex} of ${fragmentCount}`);
  return {
    ok: true,
    frame: {
      type,
      meshId: b[1],
      source: b[2],
      destination: b[3],
      session: b[4],
      position: b.readUInt16LE(5),
      layer: b[7],
      fragmentIndex,
      fragmentCount,
      counter: b.readUInt32LE(10),
      byteOffset: b.readUInt16LE(14),
      fragment: Buffer.from(b.subarray(HEADER_BYTES, b.length - MIC_BYTES)),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Message bodies

export type TensorEncoding = { kind: 'f32' } | { kind: 'int8'; groupSize: number };

export interface DecodedTensor {
  encoding: TensorEncoding;
  /** The values a receiver uses: float32, or the int8 groups dequantised. */
  values: Float32Array;
  /** The int8 groups as sent (int8 encoding only). */
  int8?: Int8Groups;
}

const TENSOR_PREAMBLE_BYTES = 4;
const ENCODING_CODE = { f32: 0, int8: 1 } as const;

/**
 * How the mesh encodes its two tensors under a transport, as the engine's int8 transport does:
 * broadcasts in groups of 32, results in groups aligned to heads.
 */
export function meshEncodings(g: Geometry, transport: Encoding): { broadcast: TensorEncoding; result: TensorEncoding } {
  if (transport === 'f32') return { broadcast: { kind: 'f32' }, result: { kind: 'f32' } };
  return { broadcast: { kind: 'int8', groupSize: INT8_GROUP_SIZE }, result: { kind: 'int8', groupSize: headOutputGroupSize(g) } };
}

/** Body size of a tensor of n values. */
export function tensorBodyBytes(n: number, e: TensorEncoding): number {
  return TENSOR_PREAMBLE_BYTES + (e.kind === 'f32' ? 4 * n : 4 * groupCount(n, e.groupSize) + n);
}

/** Encodes a vector as a message body: float32, or int8 groups with float32 scales. */
export function encodeTensor(values: Float32Array, e: TensorEncoding): Buffer {
  checkField('tensor length', values.length, 0xffff);
  if (e.kind === 'int8') checkField('int8 group size', e.groupSize - 1, 0xfe);
  const out = Buffer.alloc(tensorBodyBytes(values.length, e));
  out[0] = ENCODING_CODE[e.kind];
  out[1] = e.kind === 'int8' ? e.groupSize : 0;
  out.writeUInt16LE(values.length, 2);
  let at = TENSOR_PREAMBLE_BYTES;
  if (e.kind === 'f32') {
    for (const v of values) at = out.writeFloatLE(v, at);
  } else {
    const g = quantizeVector(values, e.groupSize);
    for (const s of g.scales) at = out.writeFloatLE(s, at);
    out.set(new Uint8Array(g.q.buffer, g.q.byteOffset, g.q.length), at);
  }
  return out;
}

/** Thrown by body decoders on a malformed body. */
export class BodyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BodyError';
  }
}

/** Decodes a tensor body. */
export function decodeTensor(body: Buffer): DecodedTensor {
  if (body.length < TENSOR_PREAMBLE_BYTES) throw new BodyError(`tensor body of ${body.length} bytes is shorter than its ${TENSOR_PREAMBLE_BYTES}-byte preamble`);
  const n = body.readUInt16LE(2);
  let encoding: TensorEncoding;
  if (body[0] === ENCODING_CODE.f32 && body[1] === 0) encoding = { kind: 'f32' };
  else if (body[0] === ENCODING_CODE.int8 && body[1] > 0) encoding = { kind: 'int8', groupSize: body[1] };
  else throw new BodyError(`unknown tensor encoding ${body[0]} with group size ${body[1]}`);
  const expected = tensorBodyBytes(n, encoding);
  if (body.length !== expected) throw new BodyError(`tensor body of ${n} values is ${body.length} bytes, expected ${expected}`);
  const values = new Float32Array(n);
  let at = TENSOR_PREAMBLE_BYTES;
  if (encoding.kind === 'f32') {
    for (let i = 0; i < n; i++, at += 4) values[i] = body.readFloatLE(at);
    return { encoding, values };
  }
  const scales = new Float32Array(groupCount(n, encoding.groupSize));
  for (let i = 0; i < scales.length; i++, at += 4) scales[i] = body.readFloatLE(at);
  const q = new Int8Array(n);
  q.set(new Int8Array(body.buffer, body.byteOffset + at, n));
  const int8: Int8Groups = { q, scales, groupSize: encoding.groupSize };
  dequantizeInto(values, int8);
  return { encoding, values, int8 };
}

export interface Nack {
  /** Type of the message whose fragments are missing. */
  type: FrameType;
  fragmentCount: number;
  /** Missing fragment indices, ascending. */
  missing: number[];
}

/** Sizes of the frames that carry a message body of `bodyBytes`, in fragment order. */
export function messageFrameBytes(bodyBytes: number, maxFrameBytes: number): number[] {
  const chunk = fragmentCapacity(maxFrameBytes);
  const count = Math.max(1, Math.ceil(bodyBytes / chunk));
  return Array.from({ length: count }, (_, i) => HEADER_BYTES + Math.min(chunk, bodyBytes - i * chunk) + MIC_BYTES);
}

/** Size of the one frame of a NACK about a message of `fragmentCount` fragments. */
export function nackFrameBytes(fragmentCount: number): number {
  return HEADER_BYTES + 2 + Math.ceil(fragmentCount / 8) + MIC_BYTES;
}

/** Encodes a NACK body: the message's type and fragment count, and the bitmap of missing fragments. */
export function encodeNack(n: Nack): Buffer {
  checkField('fragment count', n.fragmentCount - 1, MAX_FRAGMENTS - 1);
  const out = Buffer.alloc(2 + Math.ceil(n.fragmentCount / 8));
  out[0] = FRAME_TYPES[n.type];
  out[1] = n.fragmentCount;
  for (const i of n.missing) {
    checkField('missing fragment', i, n.fragmentCount - 1);
    out[2 + (i >> 3)] |= 1 << (i & 7);
  }
  return out;
}

export function decodeNack(body: Buffer): Nack {
  const type = TYPE_BY_CODE.get(body[0]);
  const fragmentCount = body.length >= 2 ? body[1] : 0;
  if (!type || fragmentCount === 0 || body.length !== 2 + Math.ceil(fragmentCount / 8)) {
    throw new BodyError(`malformed NACK body of ${body.length} bytes`);
  }
  const missing: number[] = [];
  for (let i = 0; i < fragmentCount; i++) if (body[2 + (i >> 3)] & (1 << (i & 7))) missing.push(i);
  return { type, fragmentCount, missing };
}

// ---------------------------------------------------------------------------------------------
// Sending

/** A message ready to send, and to send again in part. */
export interface OutgoingMessage {
  address: MessageAddress;
  body: Buffer;
  /** Bytes per fragment (every fragment but the last is full). */
  chunkBytes: number;
  fragmentCount: number;
}

export interface FrameSenderOptions {
  key: Buffer;
  meshId: number;
  /** This sender's address. */
  source: number;
  maxFrameBytes?: number;
  /** Counter of the next frame (default 0); a node restores it from storage after a restart. */
  counter?: number;
}

/** One transmitter's frames: cuts messages into fragments and stamps each frame with the next counter. */
export class FrameSender {
  readonly meshId: number;
  readonly source: number;
  readonly maxFrameBytes: number;
  private readonly key: Buffer;
  private nextCounter: number;

  constructor(o: FrameSenderOptions) {
    if (o.key.length !== NETWORK_KEY_BYTES) throw new RangeError(`a network key is ${NETWORK_KEY_BYTES} bytes, got ${o.key.length}`);
    this.key = o.key;
    this.meshId = o.meshId;
    this.source = o.source;
    this.maxFrameBytes = o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (fragmentCapacity(this.maxFrameBytes) < 1 || this.maxFrameBytes > MAX_LORA_PAYLOAD_BYTES) {
      throw new RangeError(`maximum frame size ${this.maxFrameBytes}: expected ${HEADER_BYTES + MIC_BYTES + 1}..${MAX_LORA_PAYLOAD_BYTES} bytes`);
    }
    this.nextCounter = o.counter ?? 0;
  }

  /** The counter the next frame will carry. */
  get counter(): number {
    return this.nextCounter;
  }

  /** Prepares a message from this sender. */
  message(address: Omit<MessageAddress, 'source'>, body: Buffer): OutgoingMessage {
    const chunkBytes = fragmentCapacity(this.maxFrameBytes);
    const fragmentCount = Math.max(1, Math.ceil(body.length / chunkBytes));
    if (fragmentCount > (address.type === 'nack' ? 1 : MAX_FRAGMENTS)) {
      const most = address.type === 'nack' ? 'a NACK has one' : `a message has at most ${MAX_FRAGMENTS}`;
      throw new RangeError(`a ${body.length}-byte ${address.type} body needs ${fragmentCount} fragments of ${chunkBytes} bytes; ${most}`);
    }
    return { address: { ...address, source: this.source }, body, chunkBytes, fragmentCount };
  }

  /** Frames for the message's fragments (all of them, or the listed ones), each under a fresh counter. */
  frames(m: OutgoingMessage, indices?: readonly number[]): Buffer[] {
    const which = indices ?? Array.from({ length: m.fragmentCount }, (_, i) => i);
    return which.map((i) => {
      checkField('fragment index', i, m.fragmentCount - 1);
      const byteOffset = i * m.chunkBytes;
      const fragment = m.body.subarray(byteOffset, Math.min(byteOffset + m.chunkBytes, m.body.length));
      const header: FrameHeader = { ...m.address, meshId: this.meshId, fragmentIndex: i, fragmentCount: m.fragmentCount, counter: this.nextCounter, byteOffset };
      const frame = sealFrame(header, fragment, this.key);
      this.nextCounter++;
      return frame;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Receiving

/** Per source, the highest counter accepted: anything not above it is a replay (LoRaWAN's FCnt rule). */
export class ReplayWindow {
  private readonly last = new Map<number, number>();

  /** Accepts the counter (and remembers it) if it is above every counter accepted from this source. */
  accept(source: number, counter: number): boolean {
    const last = this.last.get(source);
    if (last !== undefined && counter <= last) return false;
    this.last.set(source, counter);
    return true;
  }

  lastAccepted(source: number): number | undefined {
    return this.last.get(source);
  }
}

/** The address a frame repeats from its message. */
export function addressOf(f: FrameHeader): MessageAddress {
  return { type: f.type, source: f.source, destination: f.destination, session: f.session, position: f.position, layer: f.layer };
}

/** Identifies one message: its sender, type, and the session, position and layer it belongs to. */
export function messageKey(a: Omit<MessageAddress, 'destination'>): string {
  return `${a.type}/${a.source}/${a.session}/${a.position}/${a.layer}`;
}

export type AddResult =
  | { status: 'incomplete'; missing: number[] }
  | { status: 'complete'; body: Buffer }
  | { status: 'duplicate' }
  | { status: 'inconsistent'; detail: string };

/** A message under way, and what it still lacks: what a NACK asks for. */
export interface PendingMessage {
  address: MessageAddress;
  fragmentCount: number;
  missing: number[];
}

interface PartialMessage {
  address: MessageAddress;
  fragments: (Frame | undefined)[];
  received: number;
}

/** How many finished messages to remember, so late retransmissions count as duplicates. */
const COMPLETED_MEMORY = 256;

/** Collects fragments in any order and reports which are still missing. */
export class Reassembler {
  private readonly partial = new Map<string, PartialMessage>();
  /** Finished messages, oldest first, with their session. */
  private readonly completed = new Map<string, number>();

  add(f: Frame): AddResult {
    const key = messageKey(f);
    if (this.completed.has(key)) return { status: 'duplicate' };
    let p = this.partial.get(key);
    if (!p) {
      p = { address: addressOf(f), fragments: new Array(f.fragmentCount).fill(undefined), received: 0 };
      this.partial.set(key, p);
    }
    if (p.fragments.length !== f.fragmentCount) {
      this.partial.delete(key);
      return { status: 'inconsistent', detail: `fragment count ${f.fragmentCount} after ${p.fragments.length}` };
    }
    if (p.fragments[f.fragmentIndex]) return { status: 'duplicate' };
    p.fragments[f.fragmentIndex] = f;
    p.received++;
    if (p.received < p.fragments.length) return { status: 'incomplete', missing: missingOf(p) };
    this.partial.delete(key);
    this.remember(key, f.session);
    return joinFragments(p.fragments as Frame[]);
  }

  /** Missing fragment indices of a message being reassembled (undefined if none is under way). */
  missing(key: string): number[] | undefined {
    const p = this.partial.get(key);
    return p && missingOf(p);
  }

  /** Messages under way, with what each still lacks. */
  pending(): PendingMessage[] {
    return [...this.partial.values()].map((p) => ({ address: p.address, fragmentCount: p.fragments.length, missing: missingOf(p) }));
  }

  /** Forgets a message under way (a timeout). */
  discard(key: string): void {
    this.partial.delete(key);
  }

  /** Forgets everything of a session that ended, so its number can be used again. */
  endSession(session: number): void {
    for (const [key, p] of this.partial) if (p.address.session === session) this.partial.delete(key);
    for (const [key, s] of this.completed) if (s === session) this.completed.delete(key);
  }

  private remember(key: string, session: number): void {
    this.completed.set(key, session);
    if (this.completed.size > COMPLETED_MEMORY) this.completed.delete(this.completed.keys().next().value as string);
  }
}

function missingOf(p: PartialMessage): number[] {
  const out: number[] = [];
  p.fragments.forEach((f, i) => {
    if (!f) out.push(i);
  });
  return out;
}

/** Joins fragments that must tile the body: each starts where the previous ended. */
function joinFragments(fragments: Frame[]): AddResult {
  let expected = 0;
  for (const f of fragments) {
    if (f.byteOffset !== expected) return { status: 'inconsistent', detail: `fragment ${f.fragmentIndex} starts at byte ${f.byteOffset}, expected ${expected}` };
    expected += f.fragment.length;
  }
  return { status: 'complete', body: Buffer.concat(fragments.map((f) => f.fragment)) };
}

export type Payload = { kind: 'tensor'; tensor: DecodedTensor } | { kind: 'nack'; nack: Nack };

export type ReceiveEvent =
  | { kind: 'rejected'; reason: RejectReason; detail: string }
  | { kind: 'duplicate'; frame: Frame }
  | { kind: 'fragment'; frame: Frame; missing: number[] }
  /** A whole message; `frame` is the fragment that completed it. */
  | { kind: 'message'; address: MessageAddress; payload: Payload; frame: Frame };

export interface FrameReceiverOptions {
  key: Buffer;
  meshId: number;
  /** This receiver's address: it takes frames sent to it and to BROADCAST_ADDRESS. */
  address: number;
}

/** One radio's receive path: MIC, replay window, addressing, reassembly, body decoding. */
export class FrameReceiver {
  readonly replay = new ReplayWindow();
  readonly reassembler = new Reassembler();
  private readonly o: FrameReceiverOptions;

  constructor(o: FrameReceiverOptions) {
    this.o = o;
  }

  receive(bytes: Uint8Array): ReceiveEvent {
    const opened = openFrame(bytes, this.o.key, this.o.meshId);
    if (!opened.ok) return { kind: 'rejected', reason: opened.reason, detail: opened.detail };
    const f = opened.frame;
    if (!this.replay.accept(f.source, f.counter)) {
      return { kind: 'rejected', reason: 'replay', detail: `counter ${f.counter} from ${f.source} is not above ${this.replay.lastAccepted(f.source)}` };
    }
    if (f.destination !== this.o.address && f.destination !== BROADCAST_ADDRESS) {
      return { kind: 'rejected', reason: 'address', detail: `frame for ${f.destination}, this is ${this.o.address}` };
    }
    const address = addressOf(f);
    if (f.type === 'nack') return this.decoded(f, address, f.fragmentCount === 1 ? f.fragment : null);
    const added = this.reassembler.add(f);
    switch (added.status) {
      case 'duplicate':
        return { kind: 'duplicate', frame: f };
      case 'incomplete':
        return { kind: 'fragment', frame: f, missing: added.missing };
      case 'inconsistent':
        return { kind: 'rejected', reason: 'body', detail: added.detail };
      case 'complete':
        return this.decoded(f, address, added.body);
    }
  }

  private decoded(frame: Frame, address: MessageAddress, body: Buffer | null): ReceiveEvent {
    try {
      if (body === null) throw new BodyError('a NACK travels in one frame');
      const payload: Payload = address.type === 'nack' ? { kind: 'nack', nack: decodeNack(body) } : { kind: 'tensor', tensor: decodeTensor(body) };
      return { kind: 'message', address, payload, frame };
    } catch (e) {
      if (e instanceof BodyError) return { kind: 'rejected', reason: 'body', detail: e.message };
      throw e;
    }
  }
}

/** The NACK a receiver sends for a message under way: to the message's source, listing what is missing. */
export function nackFor(pending: PendingMessage): { address: Omit<MessageAddress, 'source'>; body: Buffer } {
  const a = pending.address;
  return {
    address: { type: 'nack', destination: a.source, session: a.session, position: a.position, layer: a.layer },
    body: encodeNack({ type: a.type, fragmentCount: pending.fragmentCount, missing: pending.missing }),
  };
}

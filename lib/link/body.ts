/**
 * The head-link body: the one message between the gateway and its head nodes, defined once.
 * A broadcast carries a layer's attention input to every node; a result carries one node's
 * head outputs back. MQTT carries a body whole (the payload of `broadcast` and
 * `result/{node}`); the radio carries the same bytes cut into fragments, each behind a radio
 * header and sealed with a MIC (lib/radio/frame.ts). The LoRa bridge forwards bodies between
 * the two without decoding them. The firmware's firmware/core/link.h states the same table
 * (test/firmware-node.test.ts compares them) and docs/PROTOCOL.md describes it for people.
 *
 * Header, BODY_HEADER_BYTES (24) bytes, little-endian, as BODY_FIELDS lists it; then the
 * payload: float32, `count` float32 values; int8, ceil(count / groupSize) float32 scales, then
 * `count` int8 values (scales first keeps them 4-byte aligned); int4, the scales, then
 * ceil(count / 2) bytes of two int4 codes each (the first in the low nibble, two's complement,
 * -7..7; an odd count leaves the last high nibble 0); int7, the scales, then ceil(7 count / 8)
 * bytes, a little-endian bit stream of seven-bit codes -63..63 (the last byte's unused high bits
 * 0): the group-wise codes of lib/llm/quant.ts, so a receiver decodes exactly the values the
 * engine's transport produces. int7h is int7's layout carrying, per group, the codes of the
 * group's Walsh-Hadamard transform (walshHadamard in lib/llm/quant.ts); every group's length
 * (the last one's too) is a power of two, and the receiver transforms each decoded group back.
 */
import * as os from 'node:os';
import { CODE_BITS, Encoding, Int8Groups, SYMMETRIC_LEVELS, dequantizeInto, eachGroup, groupCount, inverseWalshHadamard, isRotated, packCodes, quantizeVector, signedCode, unpackCodes, walshHadamard } from '../llm/quant';

export const BODY_MAGIC = 0x4c4d; // "ML" read as a little-endian u16
export const BODY_VERSION = 1;
export const BODY_HEADER_BYTES = 24;
/** The sender of a broadcast; a result's sender is the slot its node was assigned (1..65534). */
export const GATEWAY_SENDER = 0;

export enum BodyType {
  Broadcast = 1,
  Result = 2,
  /**
   * Gateway -> one node: the vector the node adds to its heads' outputs at `layer`
   * (alpha * sum over channels of reading x share, lib/llm/steering-vector.ts), heads x headSize
   * values in head order, always float32 (the node adds exactly what an MQTT node computes);
   * all zeros turns steering off. Sender 0, session 0, pos 0; `seq` names the update.
   */
  Steering = 3,
}

/** The wire code of each encoding, here and in firmware/core/link.h. */
export const ENCODING_CODES: Readonly<Record<Encoding, number>> = { f32: 0, int8: 1, int4: 2, int7: 3, int7h: 4 };
const ENCODING_OF_CODE = new Map<number, Encoding>(Object.entries(ENCODING_CODES).map(([e, c]) => [c, e as Encoding]));

/** The header's fields in order: the one table the codec below, the firmware and the docs follow. */
export const BODY_FIELDS = [
  { name: 'magic', offset: 0, bytes: 2 },
  { name: 'version', offset: 2, bytes: 1 },
  { name: 'type', offset: 3, bytes: 1 },
  { name: 'encoding', offset: 4, bytes: 1 },
  { name: 'reserved', offset: 5, bytes: 1 },
  { name: 'sender', offset: 6, bytes: 2 },
  { name: 'session', offset: 8, bytes: 4 },
  { name: 'seq', offset: 12, bytes: 4 },
  { name: 'pos', offset: 16, bytes: 2 },
  { name: 'layer', offset: 18, bytes: 2 },
  { name: 'count', offset: 20, bytes: 2 },
  { name: 'groupSize', offset: 22, bytes: 2 },
] as const;

type FieldName = (typeof BODY_FIELDS)[number]['name'];
type RawHeader = Record<FieldName, number>;

export interface BodyHeader {
  type: BodyType;
  encoding: Encoding;
  /** 0 the gateway, otherwise the slot the node was assigned. */
  sender: number;
  session: number;
  /** The broadcast's sequence number; a result echoes it. */
  seq: number;
  pos: number;
  layer: number;
}

/** A header as read from a body that passed every check, with its value count and group size. */
export interface CheckedHeader extends BodyHeader {
  count: number;
  /** int8, int4: values per scale; float32: 0. */
  groupSize: number;
}

export interface Body extends BodyHeader {
  /** Decoded values [count] (int8 and int4 bodies are dequantised). */
  values: Float32Array;
}

/** A body that cannot be decoded; the message names what is wrong. */
export class BodyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BodyError';
  }
}

const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

function writeField(buf: Buffer, f: (typeof BODY_FIELDS)[number], v: number): void {
  if (f.bytes === 1) buf.writeUInt8(v, f.offset);
  else if (f.bytes === 2) buf.writeUInt16LE(v, f.offset);
  else buf.writeUInt32LE(v, f.offset);
}

function readField(buf: Buffer, f: (typeof BODY_FIELDS)[number]): number {
  return f.bytes === 1 ? buf.readUInt8(f.offset) : f.bytes === 2 ? buf.readUInt16LE(f.offset) : buf.readUInt32LE(f.offset);
}

function readRaw(buf: Buffer): RawHeader {
  const raw = {} as RawHeader;
  for (const f of BODY_FIELDS) raw[f.name] = readField(buf, f);
  return raw;
}

/** Payload bytes of `count` values. */
function payloadBytes(encoding: Encoding, count: number, groupSize: number): number {
  if (encoding === 'f32') return count * 4;
  return groupCount(count, groupSize) * 4 + Math.ceil((count * CODE_BITS[encoding]) / 8);
}

/** Bytes of a body of `count` values (header included). */
export function bodyBytes(encoding: Encoding, count: number, groupSize: number): number {
  return BODY_HEADER_BYTES + payloadBytes(encoding, count, encoding === 'f32' ? 0 : groupSize);
}

function writeFloats(buf: Buffer, offset: number, values: Float32Array): void {
  if (LITTLE_ENDIAN_HOST) buf.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offset);
  else for (let i = 0; i < values.length; i++) buf.writeFloatLE(values[i], offset + 4 * i);
}

function readFloats(buf: Buffer, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  if (LITTLE_ENDIAN_HOST) new Uint8Array(out.buffer).set(buf.subarray(offset, offset + count * 4));
  else for (let i = 0; i < count; i++) out[i] = buf.readFloatLE(offset + 4 * i);
  return out;
}

/**
 * Encodes values [count] as a body. int8 and int4 bodies carry the group-wise encoding of
 * lib/llm/quant with the given group size, so the receiver decodes exactly what transportCodec computes.
 */
export function encodeBody(h: BodyHeader, values: Float32Array, groupSize = 0): Buffer {
  const count = values.length;
  if (count < 1 || count > 0xffff) throw new RangeError(`a body carries 1..65535 values (got ${count})`);
  const gs = h.encoding === 'f32' ? 0 : groupSize;
  if (h.encoding !== 'f32' && (!Number.isInteger(gs) || gs < 1 || gs > 0xffff)) throw new RangeError(`${h.encoding} bodies need a group size in 1..65535 (got ${groupSize})`);
  if (isRotated(h.encoding) && rotationProblem(count, gs)) throw new RangeError(`${h.encoding} bodies need groups of a power-of-two length: ${rotationProblem(count, gs)}`);
  const buf = Buffer.allocUnsafe(bodyBytes(h.encoding, count, gs));
  const raw: RawHeader = { magic: BODY_MAGIC, version: BODY_VERSION, type: h.type, encoding: ENCODING_CODES[h.encoding], reserved: 0, sender: h.sender, session: h.session, seq: h.seq, pos: h.pos, layer: h.layer, count, groupSize: gs };
  for (const f of BODY_FIELDS) writeField(buf, f, raw[f.name]);
  if (h.encoding === 'f32') {
    writeFloats(buf, BODY_HEADER_BYTES, values);
  } else {
    const coded = isRotated(h.encoding) ? values.slice() : values;
    if (isRotated(h.encoding)) eachGroup(coded, gs, walshHadamard);
    const enc = quantizeVector(coded, gs, SYMMETRIC_LEVELS[h.encoding]);
    writeFloats(buf, BODY_HEADER_BYTES, enc.scales);
    const codes = h.encoding === 'int8' ? new Uint8Array(enc.q.buffer, enc.q.byteOffset, enc.q.byteLength) : packCodes(enc.q, CODE_BITS[h.encoding]);
    buf.set(codes, BODY_HEADER_BYTES + enc.scales.byteLength);
  }
  return buf;
}

/**
 * Checks a body's header and length without decoding its values (what a forwarder needs), or
 * throws BodyError naming the first thing that is wrong with it.
 */
export function checkBody(buf: Buffer): CheckedHeader {
  if (buf.length < BODY_HEADER_BYTES) throw new BodyError(`body is ${buf.length} bytes, shorter than the ${BODY_HEADER_BYTES}-byte header`);
  const raw = readRaw(buf);
  if (raw.magic !== BODY_MAGIC) throw new BodyError(`bad magic 0x${raw.magic.toString(16)} (expected 0x${BODY_MAGIC.toString(16)}, "ML")`);
  if (raw.version !== BODY_VERSION) throw new BodyError(`unsupported body version ${raw.version} (this build speaks ${BODY_VERSION})`);
  if (raw.type !== BodyType.Broadcast && raw.type !== BodyType.Result && raw.type !== BodyType.Steering) throw new BodyError(`unknown body type ${raw.type}`);
  const encoding = ENCODING_OF_CODE.get(raw.encoding);
  if (!encoding) throw new BodyError(`unknown encoding ${raw.encoding}`);
  if (raw.reserved !== 0) throw new BodyError(`reserved byte is ${raw.reserved}, not 0`);
  if (raw.count === 0) throw new BodyError('body carries no values');
  if (encoding === 'f32' && raw.groupSize !== 0) throw new BodyError(`float32 body with group size ${raw.groupSize} (must be 0)`);
  if (encoding !== 'f32' && raw.groupSize === 0) throw new BodyError(`${encoding} body with group size 0`);
  if (isRotated(encoding) && rotationProblem(raw.count, raw.groupSize)) throw new BodyError(`${encoding} body of ${raw.count} values in groups of ${raw.groupSize}: ${rotationProblem(raw.count, raw.groupSize)}`);
  const expected = BODY_HEADER_BYTES + payloadBytes(encoding, raw.count, raw.groupSize);
  if (buf.length !== expected) throw new BodyError(`body is ${buf.length} bytes; its header (${raw.count} ${encoding} values) implies ${expected}`);
  return { type: raw.type, encoding, sender: raw.sender, session: raw.session, seq: raw.seq, pos: raw.pos, layer: raw.layer, count: raw.count, groupSize: raw.groupSize };
}

/** Decodes a body, or throws BodyError naming the first thing that is wrong with it. */
export function decodeBody(buf: Buffer): Body {
  const h = checkBody(buf);
  if (h.encoding === 'int4' || h.encoding === 'int7' || h.encoding === 'int7h') checkPackedCodes(buf, h.encoding, h.count, h.groupSize);
  const values = h.encoding === 'f32' ? readFloats(buf, BODY_HEADER_BYTES, h.count) : decodeGroups(buf, h.encoding, h.count, h.groupSize);
  for (let i = 0; i < h.count; i++) if (!Number.isFinite(values[i])) throw new BodyError(`value ${i} is not finite (${values[i]})`);
  return { type: h.type, encoding: h.encoding, sender: h.sender, session: h.session, seq: h.seq, pos: h.pos, layer: h.layer, values };
}

/** Packed codes are -L..L and the bits after the last code are 0, or BodyError names the first that is not. */
/** Why groups of this size cannot carry a Walsh-Hadamard transform (a group, or the short last one, not a power of two), or null. */
function rotationProblem(count: number, groupSize: number): string | null {
  const last = count - (groupCount(count, groupSize) - 1) * groupSize;
  const pow2 = (n: number) => (n & (n - 1)) === 0;
  if (!pow2(groupSize) && count > groupSize) return `group size ${groupSize} is not a power of two`;
  if (!pow2(last)) return `the last group has ${last} values, not a power of two`;
  return null;
}

function checkPackedCodes(buf: Buffer, encoding: 'int4' | 'int7' | 'int7h', count: number, groupSize: number): void {
  const from = BODY_HEADER_BYTES + 4 * groupCount(count, groupSize);
  const codes = buf.subarray(from);
  const bits = CODE_BITS[encoding];
  const L = SYMMETRIC_LEVELS[encoding];
  for (let i = 0; i < count; i++) if (signedCode(codes, i, bits) === -L - 1) throw new BodyError(`${encoding} value ${i} has code ${-L - 1} (codes are -${L}..${L})`);
  const used = (count * bits) % 8;
  if (used !== 0 && codes[codes.length - 1] >> used !== 0) throw new BodyError(`${encoding} body with nonzero bits after its last value`);
}

function decodeGroups(buf: Buffer, encoding: 'int8' | 'int4' | 'int7' | 'int7h', count: number, groupSize: number): Float32Array {
  const scales = readFloats(buf, BODY_HEADER_BYTES, groupCount(count, groupSize));
  const qOffset = BODY_HEADER_BYTES + scales.byteLength;
  const q = encoding === 'int8' ? new Int8Array(buf.buffer, buf.byteOffset + qOffset, count) : unpackCodes(buf.subarray(qOffset), count, CODE_BITS[encoding]);
  const groups: Int8Groups = { q, scales, groupSize };
  const out = new Float32Array(count);
  dequantizeInto(out, groups);
  if (isRotated(encoding)) eachGroup(out, groupSize, inverseWalshHadamard);
  return out;
}

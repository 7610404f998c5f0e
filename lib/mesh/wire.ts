/**
 * The mesh wire format, defined once: the MQTT topic tree of a mesh, the binary tensor frame
 * that carries broadcast vectors and head outputs, and the JSON control messages (each checked
 * against its JSON Schema in schemas/ by ajv wherever it is received). docs/PROTOCOL.md
 * describes the same format for people; this file is what every process runs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv, { ValidateFunction } from 'ajv';
import { Int8Groups, dequantizeInto, groupCount, quantizeVector } from '../llm/quant';
import { packageRoot } from '../llm/resolve';
import { MeshLlmError } from '../llm/errors';

export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Topic tree: everything of one mesh lives under mesh-llm/{mesh}/.

const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Mesh and node ids are one topic level each: letters, digits, '_', '.', '-'. */
export function checkId(kind: 'mesh' | 'node', id: string): string {
  if (!ID_PATTERN.test(id)) throw new MeshLlmError(`${kind} id "${id}" must be 1-64 characters of A-Z a-z 0-9 _ . -`);
  return id;
}

export function topicsFor(meshId: string) {
  const root = `mesh-llm/${checkId('mesh', meshId)}`;
  return {
    root,
    /** Binary broadcast frames, gateway -> every node (QoS 0). */
    broadcast: `${root}/broadcast`,
    /** Binary result frames, node -> gateway (QoS 0). */
    result: (node: string) => `${root}/result/${node}`,
    results: `${root}/result/+`,
    /** JSON status, retained; the broker publishes the node's last will (offline). */
    status: (node: string) => `${root}/status/${node}`,
    statuses: `${root}/status/+`,
    /** JSON head-group assignment, gateway -> one node. */
    assign: (node: string) => `${root}/assign/${node}`,
    /** JSON session control, gateway -> every node. */
    session: `${root}/session`,
    /** JSON acknowledgements of assignments and session operations, node -> gateway. */
    ack: (node: string) => `${root}/ack/${node}`,
    acks: `${root}/ack/+`,
    /** JSON heartbeats, node -> anyone. */
    telemetry: (node: string) => `${root}/telemetry/${node}`,
    telemetries: `${root}/telemetry/+`,
    /** JSON generated tokens, gateway -> anyone. */
    tokens: `${root}/tokens`,
    /** JSON reports of dropped messages, anyone -> anyone. */
    errors: `${root}/errors`,
    /** JSON sensor readings (schemas/sensors.json), node -> anyone. */
    sensors: (node: string) => `${root}/sensors/${node}`,
    sensorsAll: `${root}/sensors/+`,
    /** JSON steering of one node (schemas/steering.json), gateway -> node. */
    steer: (node: string) => `${root}/steer/${node}`,
    /** JSON per-token attribution of the steering to nodes, gateway -> anyone. */
    attribution: `${root}/attribution`,
    /** JSON sensor baselines of one node (schemas/baseline.json), retained, calibration -> anyone. */
    baseline: (node: string) => `${root}/baseline/${node}`,
    baselines: `${root}/baseline/+`,
  };
}

export type Topics = ReturnType<typeof topicsFor>;

/** The last level of a per-node topic (".../result/node-3" -> "node-3"). */
export function nodeOfTopic(topic: string): string {
  return topic.slice(topic.lastIndexOf('/') + 1);
}

// ---------------------------------------------------------------------------------------------
// Tensor frames.
//
// Header, 24 bytes, little-endian:
//   0  u8  'M'     1  u8  'L'       magic
//   2  u8  version (1)
//   3  u8  type     1 = broadcast (gateway -> nodes), 2 = result (node -> gateway)
//   4  u8  encoding 0 = float32, 1 = int8 groups
//   5  u8  reserved, 0
//   6  u16 sender   0 = gateway, otherwise the slot the node was assigned
//   8  u32 session
//  12  u32 seq      the broadcast's sequence number; a result echoes it
//  16  u16 pos      token position
//  18  u16 layer
//  20  u16 count    number of values
//  22  u16 groupSize int8: values per scale; float32: 0
// Payload: float32: count float32 values. int8: ceil(count / groupSize) float32 scales, then
// count int8 values (scales first keeps them 4-byte aligned).

export const FRAME_MAGIC = 0x4c4d; // "ML" read as a little-endian u16
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 24;
export const GATEWAY_SENDER = 0;

export enum FrameType {
  Broadcast = 1,
  Result = 2,
}

export type Encoding = 'f32' | 'int8';
const ENCODING_CODE: Record<Encoding, number> = { f32: 0, int8: 1 };
const ENCODING_OF_CODE: Record<number, Encoding | undefined> = { 0: 'f32', 1: 'int8' };

export interface FrameHeader {
  type: FrameType;
  encoding: Encoding;
  sender: number;
  session: number;
  seq: number;
  pos: number;
  layer: number;
}

export interface Frame extends FrameHeader {
  /** Decoded values [count] (int8 frames are dequantised). */
  values: Float32Array;
}

/** A frame that cannot be decoded; the message names what is wrong. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

function payloadBytes(encoding: Encoding, count: number, groupSize: number): number {
  return encoding === 'f32' ? count * 4 : groupCount(count, groupSize) * 4 + count;
}

function writeHeader(buf: Buffer, h: FrameHeader, count: number, groupSize: number): void {
  buf.writeUInt16LE(FRAME_MAGIC, 0);
  buf.writeUInt8(FRAME_VERSION, 2);
  buf.writeUInt8(h.type, 3);
  buf.writeUInt8(ENCODING_CODE[h.encoding], 4);
  buf.writeUInt8(0, 5);
  buf.writeUInt16LE(h.sender, 6);
  buf.writeUInt32LE(h.session, 8);
  buf.writeUInt32LE(h.seq, 12);
  buf.writeUInt16LE(h.pos, 16);
  buf.writeUInt16LE(h.layer, 18);
  buf.writeUInt16LE(count, 20);
  buf.writeUInt16LE(groupSize, 22);
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
 * Encodes values [count] as a frame. int8 frames carry the group-wise encoding of lib/llm/quant
 * with the given group size, so the receiver decodes exactly what transportCodec computes.
 */
export function encodeFrame(h: FrameHeader, values: Float32Array, groupSize = 0): Buffer {
  const count = values.length;
  if (count < 1 || count > 0xffff) throw new RangeError(`a frame carries 1..65535 values (got ${count})`);
  const gs = h.encoding === 'int8' ? groupSize : 0;
  if (h.encoding === 'int8' && (!Number.isInteger(gs) || gs < 1 || gs > 0xffff)) throw new RangeError(`int8 frames need a group size in 1..65535 (got ${groupSize})`);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes(h.encoding, count, gs));
  writeHeader(buf, h, count, gs);
  if (h.encoding === 'f32') {
    writeFloats(buf, FRAME_HEADER_BYTES, values);
  } else {
    const enc = quantizeVector(values, gs);
    writeFloats(buf, FRAME_HEADER_BYTES, enc.scales);
    buf.set(new Uint8Array(enc.q.buffer, enc.q.byteOffset, enc.q.byteLength), FRAME_HEADER_BYTES + enc.scales.byteLength);
  }
  return buf;
}

/** Decodes a frame, or throws FrameError naming the first thing that is wrong with it. */
export function decodeFrame(buf: Buffer): Frame {
  if (buf.length < FRAME_HEADER_BYTES) throw new FrameError(`frame is ${buf.length} bytes, shorter than the ${FRAME_HEADER_BYTES}-byte header`);
  const magic = buf.readUInt16LE(0);
  if (magic !== FRAME_MAGIC) throw new FrameError(`bad magic 0x${magic.toString(16)} (expected 0x${FRAME_MAGIC.toString(16)}, "ML")`);
  const version = buf.readUInt8(2);
  if (version !== FRAME_VERSION) throw new FrameError(`unsupported frame version ${version} (this build speaks ${FRAME_VERSION})`);
  const type = buf.readUInt8(3);
  if (type !== FrameType.Broadcast && type !== FrameType.Result) throw new FrameError(`unknown frame type ${type}`);
  const encoding = ENCODING_OF_CODE[buf.readUInt8(4)];
  if (!encoding) throw new FrameError(`unknown encoding ${buf.readUInt8(4)}`);
  if (buf.readUInt8(5) !== 0) throw new FrameError(`reserved byte is ${buf.readUInt8(5)}, not 0`);
  const count = buf.readUInt16LE(20);
  const groupSize = buf.readUInt16LE(22);
  if (count === 0) throw new FrameError('frame carries no values');
  if (encoding === 'f32' && groupSize !== 0) throw new FrameError(`float32 frame with group size ${groupSize} (must be 0)`);
  if (encoding === 'int8' && groupSize === 0) throw new FrameError('int8 frame with group size 0');
  const expected = FRAME_HEADER_BYTES + payloadBytes(encoding, count, groupSize);
  if (buf.length !== expected) throw new FrameError(`frame is ${buf.length} bytes; its header (${count} ${encoding} values) implies ${expected}`);
  const values = encoding === 'f32' ? readFloats(buf, FRAME_HEADER_BYTES, count) : decodeInt8(buf, count, groupSize);
  for (let i = 0; i < count; i++) if (!Number.isFinite(values[i])) throw new FrameError(`value ${i} is not finite (${values[i]})`);
  return {
    type,
    encoding,
    sender: buf.readUInt16LE(6),
    session: buf.readUInt32LE(8),
    seq: buf.readUInt32LE(12),
    pos: buf.readUInt16LE(16),
    layer: buf.readUInt16LE(18),
    values,
  };
}

function decodeInt8(buf: Buffer, count: number, groupSize: number): Float32Array {
  const scales = readFloats(buf, FRAME_HEADER_BYTES, groupCount(count, groupSize));
  const qOffset = FRAME_HEADER_BYTES + scales.byteLength;
  const q = new Int8Array(buf.buffer, buf.byteOffset + qOffset, count);
  const groups: Int8Groups = { q, scales, groupSize };
  const out = new Float32Array(count);
  dequantizeInto(out, groups);
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON control messages. The shapes below mirror schemas/*.json; ajv checks every received one.

export type NodeState = 'online' | 'loading' | 'ready' | 'offline' | 'failed';
export type WeightEncoding = 'f32' | 'int8';

export interface StatusMessage {
  protocol: 1;
  node: string;
  state: NodeState;
  pid?: number;
  assignment?: string;
  heads?: number[];
  kvHeads?: number[];
  weights?: WeightEncoding;
  weightBytes?: number;
  reason?: string;
}

export interface ModelShape {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
}

export interface AssignmentMessage {
  protocol: 1;
  assignment: string;
  slot: number;
  heads: number[];
  weights: WeightEncoding;
  transport: Encoding;
  model: ModelShape;
}

export interface SessionMessage {
  protocol: 1;
  op: 'start' | 'reset' | 'end';
  session: number;
  assignment: string;
}

export interface AckMessage {
  protocol: 1;
  node: string;
  kind: 'assignment' | 'session' | 'steering';
  id: string;
  ok: boolean;
  error?: string;
}

export interface TelemetryMessage {
  protocol: 1;
  node: string;
  uptimeMs: number;
  rssBytes: number;
  weightBytes: number;
  cacheBytes: number;
  sessions: number;
  framesIn: number;
  framesOut: number;
  dropped: number;
}

export interface TokenMessage {
  protocol: 1;
  session: number;
  pos: number;
  token: number;
  piece: string;
}

export interface ErrorMessage {
  protocol: 1;
  source: string;
  topic: string;
  reason: string;
}

/** What a node adds to its head outputs at one layer: alpha * sum over channels of reading * share. */
export interface SteeringMessage {
  protocol: 1;
  id: string;
  /** The heads the shares were cut for (the node's assigned heads, ascending). */
  heads: number[];
  layer: number;
  alpha: number;
  /** share: [heads.length * headSize]; reading in [-1, 1]. */
  channels: { name: string; reading: number; share: number[] }[];
}

/** A node's sensor baselines from a calibration window: per channel the median and scaled MAD. */
export interface BaselineMessage {
  protocol: 1;
  node: string;
  /** When the calibration ran, ms since the Unix epoch. */
  at: number;
  channels: Record<string, { median: number; mad: number; samples: number }>;
}

export interface ControlMessages {
  status: StatusMessage;
  assignment: AssignmentMessage;
  session: SessionMessage;
  ack: AckMessage;
  telemetry: TelemetryMessage;
  token: TokenMessage;
  error: ErrorMessage;
  steering: SteeringMessage;
  baseline: BaselineMessage;
}

export type ControlKind = keyof ControlMessages;
export const CONTROL_KINDS: readonly ControlKind[] = ['status', 'assignment', 'session', 'ack', 'telemetry', 'token', 'error', 'steering', 'baseline'];

/** schemas/ of the package. */
export function schemaDir(): string {
  return path.join(packageRoot(), 'schemas');
}

const ajv = new Ajv({ allErrors: false, strict: true });
const validators = new Map<ControlKind, ValidateFunction>();

/** The compiled schema of a kind, compiled on first use (a node needs only a few). */
function validatorFor(kind: ControlKind): ValidateFunction {
  let v = validators.get(kind);
  if (!v) {
    v = ajv.compile(JSON.parse(fs.readFileSync(path.join(schemaDir(), `${kind}.json`), 'utf8')));
    validators.set(kind, v);
  }
  return v;
}

/** A JSON message that is not valid JSON or fails its schema; the message says why. */
export class ControlMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlMessageError';
  }
}

/** Parses and validates a received control message against schemas/{kind}.json. */
export function parseControl<K extends ControlKind>(kind: K, payload: Buffer | string): ControlMessages[K] {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch (e) {
    throw new ControlMessageError(`${kind} message is not JSON: ${(e as Error).message}`);
  }
  const validate = validatorFor(kind);
  if (!validate(value)) {
    const first = validate.errors?.[0];
    const where = first?.instancePath || '(root)';
    throw new ControlMessageError(`${kind} message fails schemas/${kind}.json: ${where} ${first?.message ?? 'is invalid'}`);
  }
  return value as ControlMessages[K];
}

/** Serialises a control message; the sender validates too, so a bug shows up where it is made. */
export function encodeControl<K extends ControlKind>(kind: K, message: ControlMessages[K]): string {
  const text = JSON.stringify(message);
  parseControl(kind, text);
  return text;
}

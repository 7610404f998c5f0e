/**
 * Weight shards: what one head node holds in flash instead of the whole checkpoint. One file
 * per node: a small versioned header (the model's geometry, the node's place in the mesh, its
 * query and key/value heads, the weight format and a CRC-32 of the whole file), then the node's
 * W_Q, W_K and W_V rows, layer by layer, in the layout the firmware's head step computes from
 * (firmware/core/shard.cpp reads it, in place where the shard is mapped; docs/FIRMWARE.md,
 * "Weight shards", states it for people).
 *
 *   byte  size  field
 *   0     4     magic "MLSH"
 *   4     2     version (2; version 1 shards, float32 and int8 only, still load)
 *   6     1     weight format (SHARD_FORMAT_CODES: 0 float32, 1 int8, 2 int4, 3 int2)
 *   7     1     reserved (0)
 *   8     2     node (1..nodes: its place in partitionHeads(nHeads, nodes), its radio address)
 *   10    2     nodes
 *   12    4x7   dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen
 *   40    2     head count, 42 2 kv head count
 *   44    2     group size of the rows (head.ts weightGroupSize: int8, int4 32; int2 128, at most dim; 0 for float32)
 *   46    2     header bytes (56 + 2 x (heads + kv heads), rounded up to 4)
 *   48    4     payload bytes
 *   52    4     CRC-32 (IEEE, zlib's) of the whole file with these 4 bytes zero
 *   56    2xH   query head ids, then 2xK kv head ids, then zero padding to the header's end
 *
 * Payload, for each layer: W_Q's rows of the node's query heads [H x headSize, dim], then W_K's
 * and W_V's rows of its kv heads [K x headSize, dim]; each such block of n weights is
 * - float32: the values [n];
 * - int8: the codes one a byte [n], then the float32 scales [n / groupSize];
 * - int4: the codes -7..7 two a byte, the first in the low nibble (quant.ts packInt4) [n / 2],
 *   then the float32 scales [n / groupSize];
 * - int2: the codes 0..3 four a byte, the first in the low bits (quant.ts packCodes(q, 2))
 *   [n / 4], then the float32 scales [n / groupSize], then the float32 offsets [n / groupSize];
 * the group-wise codes of lib/llm/quant.ts. Each block's codes are a multiple of 4 bytes, so the
 * float32 parameters are aligned where the shard lies. The payload's size is the weight bytes
 * `mesh-llm plan` gives the node for that format (quant.ts storageBytes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, ModelConfig, geometry } from '../llm/config';
import { InputError, MeshLlmError } from '../llm/errors';
import { Projection, kvHeadsFor, loadHeadSlices, partitionHeads, weightGroupSize } from '../llm/head';
import { WEIGHT_FORMATS, WeightFormat, packCodes, storageBytes } from '../llm/quant';

export const SHARD_MAGIC = 'MLSH';
/** The version mesh-llm shard writes; readers also take SHARD_OLDEST_VERSION and up. */
export const SHARD_VERSION = 2;
/** Version 1: float32 and int8 shards only (the same layout, byte 6 codes 0 and 1). */
export const SHARD_OLDEST_VERSION = 1;
/** Byte 6 of the header: the weight format of the rows. */
export const SHARD_FORMAT_CODES: Readonly<Record<WeightFormat, number>> = { f32: 0, int8: 1, int4: 2, int2: 3 };
export const SHARD_FIXED_HEADER_BYTES = 56;
const CRC_OFFSET = 52;

/** The geometry fields of the header, in order from byte 12. */
const GEOMETRY_FIELDS = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'] as const;

export interface ShardHeader {
  version: number;
  format: WeightFormat;
  node: number;
  nodes: number;
  model: Pick<ModelConfig, (typeof GEOMETRY_FIELDS)[number]>;
  heads: number[];
  kvHeads: number[];
  groupSize: number;
  headerBytes: number;
  payloadBytes: number;
  crc: number;
}

/** Header bytes for a node of `heads` query and `kvHeads` kv heads. */
export function shardHeaderBytes(heads: number, kvHeads: number): number {
  return Math.ceil((SHARD_FIXED_HEADER_BYTES + 2 * (heads + kvHeads)) / 4) * 4;
}

/** Bytes of one block of n weights as a shard stores it (its codes, then group parameters): quant.ts storageBytes. */
function blockBytes(n: number, format: WeightFormat, dim: number): number {
  return format === 'f32' ? 4 * n : storageBytes(n, format, weightGroupSize(format, dim));
}

/** Payload bytes of a node's rows: per layer a block of heads x headSize rows of dim, and two of kv heads x headSize. */
export function shardPayloadBytes(g: Geometry, heads: number, kvHeads: number, format: WeightFormat): number {
  return g.nLayers * (blockBytes(heads * g.headSize * g.dim, format, g.dim) + 2 * blockBytes(kvHeads * g.headSize * g.dim, format, g.dim));
}

const bytesOf = (a: Float32Array | Int8Array | Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A projection's block: float32 values, or codes (int4 and int2 packed) then scales (int2 then offsets). */
function projectionBytes(p: Projection): Buffer[] {
  if (p.kind === 'f32') return [bytesOf(p.w)];
  const codes = p.kind === 'int8' ? bytesOf(p.m.q) : Buffer.from(packCodes(p.m.q, p.kind === 'int4' ? 4 : 2));
  if (codes.length % 4 !== 0) throw new InputError(`shard: ${p.kind} codes of ${p.m.rows} rows of ${p.m.cols} take ${codes.length} bytes, not a multiple of 4 (their scales would be unaligned in place)`);
  return [codes, bytesOf(p.m.scales), ...(p.m.offsets ? [bytesOf(p.m.offsets)] : [])];
}

/** The shard file of node `node` (1-based) of a mesh of `nodes`, from an open checkpoint. */
export function buildShard(ckpt: Checkpoint, node: number, nodes: number, format: WeightFormat): Buffer {
  const g = geometry(ckpt.info.config);
  const groups = partitionHeads(g.nHeads, nodes);
  if (!Number.isInteger(node) || node < 1 || node > groups.length) throw new InputError(`shard: node ${node} is not one of the mesh's ${groups.length} nodes`);
  const heads = groups[node - 1];
  const kvHeads = kvHeadsFor(heads, g.kvMul);
  const slices = loadHeadSlices(ckpt, g, heads, format);
  const payload: Buffer[] = [];
  for (let l = 0; l < g.nLayers; l++) payload.push(...projectionBytes(slices.wq[l]), ...projectionBytes(slices.wk[l]), ...projectionBytes(slices.wv[l]));
  const payloadBytes = payload.reduce((n, b) => n + b.length, 0);
  const headerBytes = shardHeaderBytes(heads.length, kvHeads.length);
  const h = Buffer.alloc(headerBytes);
  h.write(SHARD_MAGIC, 0, 'latin1');
  h.writeUInt16LE(SHARD_VERSION, 4);
  h.writeUInt8(SHARD_FORMAT_CODES[format], 6);
  h.writeUInt16LE(node, 8);
  h.writeUInt16LE(nodes, 10);
  GEOMETRY_FIELDS.forEach((k, i) => h.writeUInt32LE(g[k], 12 + 4 * i));
  h.writeUInt16LE(heads.length, 40);
  h.writeUInt16LE(kvHeads.length, 42);
  h.writeUInt16LE(format === 'f32' ? 0 : weightGroupSize(format, g.dim), 44);
  h.writeUInt16LE(headerBytes, 46);
  h.writeUInt32LE(payloadBytes, 48);
  [...heads, ...kvHeads].forEach((id, i) => h.writeUInt16LE(id, SHARD_FIXED_HEADER_BYTES + 2 * i));
  const file = Buffer.concat([h, ...payload]);
  file.writeUInt32LE(crc32(file), CRC_OFFSET);
  return file;
}

/** Reads a shard's header (no payload check beyond its length and the CRC); throws a MeshLlmError naming the fault. */
export function readShardHeader(file: Buffer, name = 'shard'): ShardHeader {
  const fail = (why: string): never => {
    throw new MeshLlmError(`${name}: ${why}`);
  };
  if (file.length < SHARD_FIXED_HEADER_BYTES) fail(`${file.length} bytes is shorter than a shard header (${SHARD_FIXED_HEADER_BYTES})`);
  if (file.toString('latin1', 0, 4) !== SHARD_MAGIC) fail('not a weight shard (no MLSH magic)');
  const version = file.readUInt16LE(4);
  if (version < SHARD_OLDEST_VERSION || version > SHARD_VERSION) fail(`shard version ${version} (this build reads versions ${SHARD_OLDEST_VERSION} to ${SHARD_VERSION}; cut it again with mesh-llm shard)`);
  const code = file.readUInt8(6);
  const format = WEIGHT_FORMATS.find((f) => SHARD_FORMAT_CODES[f] === code && (version > 1 || code <= 1));
  if (!format) fail(`unknown weight format code ${code} in a version ${version} shard`);
  const model = Object.fromEntries(GEOMETRY_FIELDS.map((k, i) => [k, file.readUInt32LE(12 + 4 * i)])) as ShardHeader['model'];
  const nHeads = file.readUInt16LE(40);
  const nKv = file.readUInt16LE(42);
  const headerBytes = file.readUInt16LE(46);
  const payloadBytes = file.readUInt32LE(48);
  if (headerBytes !== shardHeaderBytes(nHeads, nKv) || file.length !== headerBytes + payloadBytes) {
    fail(`${file.length} bytes; its header says ${headerBytes} + ${payloadBytes}`);
  }
  const crc = file.readUInt32LE(CRC_OFFSET);
  const zeroed = Buffer.from(file);
  zeroed.writeUInt32LE(0, CRC_OFFSET);
  if (crc32(zeroed) !== crc) fail(`checksum mismatch (CRC-32 ${crc32(zeroed).toString(16)}, the header says ${crc.toString(16)}): the shard is damaged`);
  const ids = Array.from({ length: nHeads + nKv }, (_, i) => file.readUInt16LE(SHARD_FIXED_HEADER_BYTES + 2 * i));
  return {
    version,
    format: format as WeightFormat,
    node: file.readUInt16LE(8),
    nodes: file.readUInt16LE(10),
    model,
    heads: ids.slice(0, nHeads),
    kvHeads: ids.slice(nHeads),
    groupSize: file.readUInt16LE(44),
    headerBytes,
    payloadBytes,
    crc,
  };
}

/** The file name of node k's shard. */
export function shardFileName(node: number): string {
  return `node-${node}.shard`;
}

export interface WrittenShard {
  node: number;
  file: string;
  heads: number[];
  kvHeads: number[];
  bytes: number;
  payloadBytes: number;
}

/** Writes one shard per node into `outDir`; `onShard` reports each as it is written. */
export function writeShards(modelPath: string, nodes: number, format: WeightFormat, outDir: string, onShard: (s: WrittenShard) => void = () => undefined): WrittenShard[] {
  const ckpt = Checkpoint.open(modelPath);
  try {
    const nHeads = ckpt.info.config.nHeads;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > nHeads) throw new InputError(`shard: --nodes ${nodes}: between 1 and the model's ${nHeads} heads`);
    fs.mkdirSync(outDir, { recursive: true });
    const written: WrittenShard[] = [];
    for (let node = 1; node <= nodes; node++) {
      const buf = buildShard(ckpt, node, nodes, format);
      const h = readShardHeader(buf);
      const file = path.join(outDir, shardFileName(node));
      fs.writeFileSync(file, buf);
      const s = { node, file, heads: h.heads, kvHeads: h.kvHeads, bytes: buf.length, payloadBytes: h.payloadBytes };
      written.push(s);
      onShard(s);
    }
    return written;
  } finally {
    ckpt.close();
  }
}

/**
 * The join record: what an ESP32 head node must know to join its radio mesh, written by
 * `mesh-llm provision` as a binary image for the node's small `join` data partition
 * (firmware/partitions_*.csv), read by firmware/core/join_record.cpp (the host's radio node
 * loads it from a file with --join FILE). docs/FIRMWARE.md, "Provisioning", states it for people.
 *
 *   byte  size  field
 *   0     4     magic "MLJR"
 *   4     2     version (1)
 *   6     2     record bytes (JOIN_FIXED_BYTES + plan bytes)
 *   8     1     radio mesh id (the frame header's mesh id)
 *   9     1     node address (1..254: its slot, its shard's node number)
 *   10    2     plan bytes
 *   12    16    the mesh's network key (AES-128; any per-node key is derived from it)
 *   28    4     CRC-32 (IEEE, zlib's) of the record with these 4 bytes zero
 *   32    P     the join plan, UTF-8 JSON: the node's part of the gateway MAC's plan and what the
 *               mesh expects of it (lib/radio/sim-socket.ts nodeJoinPlan, the WELCOME the
 *               simulated channel sends; firmware/core/radio_join.cpp parses it)
 */
import { crc32 } from 'node:zlib';
import { InputError, MeshLlmError } from '../llm/errors';
import { SimWelcome } from '../radio/sim-socket';

export const JOIN_MAGIC = 'MLJR';
export const JOIN_VERSION = 1;
export const JOIN_FIXED_BYTES = 32;
export const JOIN_KEY_BYTES = 16;
const CRC_OFFSET = 28;
/** The `join` partition's size on the smallest layout (partitions_16MB.csv): a record must fit it. */
export const JOIN_PARTITION_BYTES = 0x1000;

export interface JoinRecord {
  version: number;
  meshId: number;
  address: number;
  key: Buffer;
  plan: SimWelcome;
}

/** The binary record of a node's join plan, mesh id and network key. */
export function encodeJoinRecord(r: { meshId: number; key: Buffer; plan: SimWelcome }): Buffer {
  const { meshId, key, plan } = r;
  if (!Number.isInteger(meshId) || meshId < 0 || meshId > 255) throw new InputError(`provision: mesh id ${meshId}: expected 0..255`);
  if (key.length !== JOIN_KEY_BYTES) throw new InputError(`provision: the network key is ${key.length} bytes, not ${JOIN_KEY_BYTES}`);
  const json = Buffer.from(JSON.stringify(plan), 'utf8');
  const total = JOIN_FIXED_BYTES + json.length;
  if (total > JOIN_PARTITION_BYTES) throw new InputError(`provision: a join record of ${total} bytes does not fit the ${JOIN_PARTITION_BYTES}-byte join partition`);
  const b = Buffer.alloc(total);
  b.write(JOIN_MAGIC, 0, 'latin1');
  b.writeUInt16LE(JOIN_VERSION, 4);
  b.writeUInt16LE(total, 6);
  b.writeUInt8(meshId, 8);
  b.writeUInt8(plan.address, 9);
  b.writeUInt16LE(json.length, 10);
  key.copy(b, 12);
  json.copy(b, JOIN_FIXED_BYTES);
  b.writeUInt32LE(crc32(b), CRC_OFFSET);
  return b;
}

/** Reads a join record (a partition image may run on past it: 0xff padding); throws naming the fault. */
export function decodeJoinRecord(b: Buffer, name = 'join record'): JoinRecord {
  const fail = (why: string): never => {
    throw new MeshLlmError(`${name}: ${why}`);
  };
  if (b.length < JOIN_FIXED_BYTES) fail(`${b.length} bytes is shorter than a join record header (${JOIN_FIXED_BYTES})`);
  if (b.toString('latin1', 0, 4) !== JOIN_MAGIC) fail('not a join record (no MLJR magic): provision the node with mesh-llm provision');
  const version = b.readUInt16LE(4);
  if (version !== JOIN_VERSION) fail(`join record version ${version} (this build reads ${JOIN_VERSION})`);
  const total = b.readUInt16LE(6);
  const planBytes = b.readUInt16LE(10);
  if (total !== JOIN_FIXED_BYTES + planBytes || total > b.length) fail(`record of ${total} bytes with a ${planBytes}-byte plan in ${b.length} bytes`);
  const rec = Buffer.from(b.subarray(0, total));
  const crc = rec.readUInt32LE(CRC_OFFSET);
  rec.writeUInt32LE(0, CRC_OFFSET);
  if (crc32(rec) !== crc) fail(`checksum mismatch (CRC-32 ${crc32(rec).toString(16)}, the record says ${crc.toString(16)}): the record is damaged`);
  let plan: SimWelcome;
  try {
    plan = JSON.parse(rec.toString('utf8', JOIN_FIXED_BYTES, total)) as SimWelcome;
  } catch (e) {
    return fail(`its plan is not JSON: ${(e as Error).message}`);
  }
  if (plan.address !== b.readUInt8(9)) fail(`address ${b.readUInt8(9)} in the header, ${plan.address} in the plan`);
  return { version, meshId: b.readUInt8(8), address: b.readUInt8(9), key: Buffer.from(b.subarray(12, 12 + JOIN_KEY_BYTES)), plan };
}

/**
 * Reader for GGUF model files (llama.cpp's format, version 3) holding a Llama-architecture
 * model. The header (metadata and tensor table) is parsed by our own reader, so that every
 * bad file is named by the key or tensor at fault; tensor data is then read positionally, a
 * row range at a time, and decoded to float32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1): nothing is
 * held but what is read, so a 1.1B-parameter file never needs its size in RAM twice.
 *
 * Layout: a GGUF tensor's dims are ne = [cols, rows] (ne[0] varies fastest), so a llama2.c
 * matrix [rows, cols] is stored as ne [cols, rows] in the same row-major order. W_Q and W_K
 * are stored in the interleaved-pair RoPE layout that llama2.c rotates (llama.cpp's converter
 * permutes Hugging Face's rotate-half rows back into it), so no permutation is applied here.
 */
import * as fs from 'node:fs';
import { BOS, EOS, ModelConfig, RMS_EPS, ROPE_THETA } from './config';
import { MeshLlmError } from './errors';
import { halfToFloatTable } from './halfs';
import { CheckpointInfo, TensorName, TensorSource, isPerLayer, tensorShape } from './tensors';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types (gguf.h). */
export const GgufValueType = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 } as const;
const VALUE_TYPE_NAMES = Object.fromEntries(Object.entries(GgufValueType).map(([k, v]) => [v, k.toLowerCase()])) as Record<number, string>;

/** ggml tensor types mesh-llm decodes: values per block and bytes per block. */
export const GGML_TYPES = {
  F32: { id: 0, blockValues: 1, blockBytes: 4 },
  F16: { id: 1, blockValues: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockValues: 32, blockBytes: 18 },
  Q4_1: { id: 3, blockValues: 32, blockBytes: 20 },
  Q8_0: { id: 8, blockValues: 32, blockBytes: 34 },
  BF16: { id: 30, blockValues: 1, blockBytes: 2 },
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;
/** Names of the ggml types mesh-llm does not decode, for error lines. */
const OTHER_GGML_TYPES: Record<number, string> = { 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64' };
const TYPE_BY_ID = new Map<number, GgmlTypeName>(Object.entries(GGML_TYPES).map(([name, t]) => [t.id, name as GgmlTypeName]));
const SUPPORTED_TYPES = Object.keys(GGML_TYPES).join(', ');

/** Bytes of `values` consecutive values of a type (values a multiple of its block). */
export function ggmlBytes(type: GgmlTypeName, values: number): number {
  const t = GGML_TYPES[type];
  return (values / t.blockValues) * t.blockBytes;
}

/** The GGUF tensor name of each engine tensor (llama.cpp's names). */
export function ggufTensorName(name: TensorName, layer: number): string {
  const perLayer: Partial<Record<TensorName, string>> = {
    rmsAtt: 'attn_norm', wq: 'attn_q', wk: 'attn_k', wv: 'attn_v', wo: 'attn_output',
    rmsFfn: 'ffn_norm', w1: 'ffn_gate', w2: 'ffn_down', w3: 'ffn_up',
  };
  if (name === 'tokenEmbedding') return 'token_embd.weight';
  if (name === 'rmsFinal') return 'output_norm.weight';
  if (name === 'wcls') return 'output.weight';
  return `blk.${layer}.${perLayer[name]}.weight`;
}

export type GgufValue = number | bigint | string | boolean | GgufValue[];
export interface GgufEntry {
  type: number;
  /** For arrays, the element type. */
  elementType?: number;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** ne: ne[0] is the fastest-varying dimension (the columns of a matrix). */
  dims: number[];
  type: GgmlTypeName;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  bytes: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufEntry>;
  tensors: Map<string, GgufTensorInfo>;
  dataOffset: number;
  fileBytes: number;
}

/** True when the file at path starts with the GGUF magic. */
export function isGguf(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, 'r');
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === GGUF_MAGIC;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function fail(path: string, what: string): never {
  throw new MeshLlmError(`model file ${path}: ${what}`);
}

/** Reads the header through a window of the file, so only the header is held in memory. */
class HeaderCursor {
  pos = 0;
  /** What is being read, for the message of a truncated file. */
  context = 'the header';
  private buf = Buffer.alloc(0);
  private bufStart = 0;

  constructor(private readonly path: string, private readonly fd: number, readonly fileBytes: number) {}

  private ensure(n: number): void {
    if (this.pos + n <= this.bufStart + this.buf.length) return;
    if (this.pos + n > this.fileBytes) fail(this.path, `is truncated: it ends at byte ${this.fileBytes}, inside ${this.context} (${n} more bytes needed at byte ${this.pos})`);
    const length = Math.min(Math.max(n, 1 << 20), this.fileBytes - this.pos);
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const got = fs.readSync(this.fd, buf, done, length - done, this.pos + done);
      if (got === 0) break;
      done += got;
    }
    this.buf = buf.subarray(0, done);
    this.bufStart = this.pos;
    if (done < n) fail(this.path, `is truncated: it ends at byte ${this.pos + done}, inside ${this.context}`);
  }

  private take(n: number): number {
    this.ensure(n);
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  // take() may replace the window, so it runs before the window is read
  u8(): number { const at = this.take(1); return this.buf.readUInt8(at); }
  i8(): number { const at = this.take(1); return this.buf.readInt8(at); }
  u16(): number { const at = this.take(2); return this.buf.readUInt16LE(at); }
  i16(): number { const at = this.take(2); return this.buf.readInt16LE(at); }
  u32(): number { const at = this.take(4); return this.buf.readUInt32LE(at); }
  i32(): number { const at = this.take(4); return this.buf.readInt32LE(at); }
  f32(): number { const at = this.take(4); return this.buf.readFloatLE(at); }
  f64(): number { const at = this.take(8); return this.buf.readDoubleLE(at); }
  u64big(): bigint { const at = this.take(8); return this.buf.readBigUInt64LE(at); }
  i64big(): bigint { const at = this.take(8); return this.buf.readBigInt64LE(at); }

  /** A uint64 that must fit a JavaScript number (sizes, counts, offsets). */
  size(what: string): number {
    const v = this.u64big();
    if (v > BigInt(this.fileBytes)) fail(this.path, `${what} is ${v}, more than the file's ${this.fileBytes} bytes could hold (a corrupt header?)`);
    return Number(v);
  }

  string(what: string): string {
    const n = this.size(`the length of ${what}`);
    const at = this.take(n);
    return this.buf.toString('utf8', at, at + n);
  }
}

function readValue(c: HeaderCursor, type: number, key: string, path: string): GgufValue {
  const T = GgufValueType;
  switch (type) {
    case T.UINT8: return c.u8();
    case T.INT8: return c.i8();
    case T.UINT16: return c.u16();
    case T.INT16: return c.i16();
    case T.UINT32: return c.u32();
    case T.INT32: return c.i32();
    case T.FLOAT32: return c.f32();
    case T.BOOL: return c.u8() !== 0;
    case T.STRING: return c.string(`the string of key ${key}`);
    case T.UINT64: return c.u64big();
    case T.INT64: return c.i64big();
    case T.FLOAT64: return c.f64();
    default: return fail(path, `metadata key ${key} has value type ${type}; GGUF value types are 0..12`);
  }
}

/** Parses and checks the header of a GGUF file: version, metadata, tensor table, data offset. */
export function readGgufHeader(path: string, fd: number, fileBytes: number): GgufHeader {
  const c = new HeaderCursor(path, fd, fileBytes);
  c.context = 'the 24-byte GGUF header';
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) fail(path, `is not a GGUF file: magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x${GGUF_MAGIC.toString(16)} ("GGUF")`);
  const version = c.u32();
  if (version !== GGUF_VERSION) fail(path, `is GGUF version ${version}; mesh-llm reads GGUF version ${GGUF_VERSION}`);
  const tensorCount = c.size('the tensor count');
  const kvCount = c.size('the metadata count');
  const metadata = new Map<string, GgufEntry>();
  for (let i = 0; i < kvCount; i++) {
    c.context = `metadata entry ${i} of ${kvCount}`;
    const key = c.string(`metadata key ${i}`);
    c.context = `metadata key ${key}`;
    const type = c.u32();
    if (type === GgufValueType.ARRAY) {
      const elementType = c.u32();
      if (elementType === GgufValueType.ARRAY) fail(path, `metadata key ${key} is an array of arrays, which mesh-llm does not read`);
      const n = c.size(`the length of array ${key}`);
      const value: GgufValue[] = new Array(n);
      for (let j = 0; j < n; j++) value[j] = readValue(c, elementType, key, path);
      metadata.set(key, { type, elementType, value });
    } else {
      metadata.set(key, { type, value: readValue(c, type, key, path) });
    }
  }
  const alignment = metadata.has('general.alignment') ? Number(metadata.get('general.alignment')?.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) fail(path, `metadata key general.alignment is ${alignment}, expected a positive multiple of 8`);
  const raw: { name: string; dims: number[]; typeId: number; offset: number }[] = [];
  for (let i = 0; i < tensorCount; i++) {
    c.context = `tensor info ${i} of ${tensorCount}`;
    const name = c.string(`tensor name ${i}`);
    c.context = `the tensor info of ${name}`;
    const nDims = c.u32();
    if (nDims < 1 || nDims > 4) fail(path, `tensor ${name} has ${nDims} dimensions, expected 1 to 4`);
    const dims = Array.from({ length: nDims }, () => c.size(`a dimension of tensor ${name}`));
    const typeId = c.u32();
    const offset = c.size(`the offset of tensor ${name}`);
    raw.push({ name, dims, typeId, offset });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const tensors = new Map<string, GgufTensorInfo>();
  for (const t of raw) {
    const type = TYPE_BY_ID.get(t.typeId);
    const values = t.dims.reduce((a, b) => a * b, 1);
    if (type === undefined) {
      tensors.set(t.name, { name: t.name, dims: t.dims, type: `#${t.typeId}` as GgmlTypeName, offset: dataOffset + t.offset, bytes: 0 });
      continue;
    }
    const { blockValues } = GGML_TYPES[type];
    if (t.dims[0] % blockValues !== 0) fail(path, `tensor ${t.name} of type ${type} has rows of ${t.dims[0]} values, not a multiple of its block of ${blockValues}`);
    const bytes = ggmlBytes(type, values);
    const offset = dataOffset + t.offset;
    if (t.offset % alignment !== 0) fail(path, `tensor ${t.name} starts at data offset ${t.offset}, not a multiple of the alignment ${alignment}`);
    if (offset + bytes > fileBytes) fail(path, `is truncated: ${fileBytes} bytes, but tensor ${t.name} (${type} [${t.dims.join(', ')}]) ends at byte ${offset + bytes}`);
    tensors.set(t.name, { name: t.name, dims: t.dims, type, offset, bytes });
  }
  return { version, metadata, tensors, dataOffset, fileBytes };
}

/** Typed access to metadata values, each failure naming the key and what was expected. */
class Metadata {
  constructor(private readonly path: string, private readonly m: Map<string, GgufEntry>) {}

  has(key: string): boolean {
    return this.m.has(key);
  }

  private entry(key: string, expected: string): GgufEntry {
    const e = this.m.get(key);
    if (!e) fail(this.path, `metadata key ${key} is missing (expected ${expected})`);
    return e;
  }

  /** A whole number of any integer type. */
  int(key: string, expected: string): number {
    const e = this.entry(key, expected);
    const v = typeof e.value === 'bigint' ? Number(e.value) : e.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || e.type === GgufValueType.FLOAT32 || e.type === GgufValueType.FLOAT64) {
      fail(this.path, `metadata key ${key} is a ${VALUE_TYPE_NAMES[e.type] ?? e.type}, expected an integer: ${expected}`);
    }
    return v;
  }

  float(key: string, expected: string): number {
    const e = this.entry(key, expected);
    const v = typeof e.value === 'bigint' ? Number(e.value) : e.value;
    if (typeof v !== 'number') fail(this.path, `metadata key ${key} is a ${VALUE_TYPE_NAMES[e.type] ?? e.type}, expected a number: ${expected}`);
    return v;
  }

  string(key: string, expected: string): string {
    const e = this.entry(key, expected);
    if (typeof e.value !== 'string') fail(this.path, `metadata key ${key} is a ${VALUE_TYPE_NAMES[e.type] ?? e.type}, expected a string: ${expected}`);
    return e.value;
  }

  array(key: string, elementType: number, expected: string): GgufValue[] {
    const e = this.entry(key, expected);
    if (e.type !== GgufValueType.ARRAY || e.elementType !== elementType) {
      const got = e.type === GgufValueType.ARRAY ? `an array of ${VALUE_TYPE_NAMES[e.elementType as number]}` : `a ${VALUE_TYPE_NAMES[e.type]}`;
      fail(this.path, `metadata key ${key} is ${got}, expected an array of ${VALUE_TYPE_NAMES[elementType]}: ${expected}`);
    }
    return e.value as GgufValue[];
  }
}

/** The model config a Llama GGUF file states, checked against what the engine computes. */
function llamaConfig(path: string, h: GgufHeader): ModelConfig {
  const md = new Metadata(path, h.metadata);
  const arch = md.string('general.architecture', '"llama"');
  if (arch !== 'llama') fail(path, `metadata key general.architecture is "${arch}", expected "llama" (mesh-llm runs Llama-architecture models)`);
  const dim = md.int('llama.embedding_length', 'the width of the residual stream');
  const hiddenDim = md.int('llama.feed_forward_length', 'the width of the feed-forward layer');
  const nLayers = md.int('llama.block_count', 'the number of layers');
  const nHeads = md.int('llama.attention.head_count', 'the number of query heads');
  const nKvHeads = md.has('llama.attention.head_count_kv') ? md.int('llama.attention.head_count_kv', 'the number of key/value heads') : nHeads;
  const seqLen = md.int('llama.context_length', 'the context length');
  const embd = h.tensors.get('token_embd.weight');
  if (!embd) fail(path, `tensor token_embd.weight is missing (expected [${dim}, vocab])`);
  const vocabSize = embd.dims[1] ?? 0;
  const sane = dim > 0 && hiddenDim > 0 && nLayers > 0 && nHeads > 0 && nKvHeads > 0 && nHeads % nKvHeads === 0 && dim % nHeads === 0 && (dim / nHeads) % 2 === 0 && seqLen > 0 && vocabSize > 0;
  if (!sane) fail(path, `has an impossible geometry: embedding_length ${dim}, feed_forward_length ${hiddenDim}, block_count ${nLayers}, head_count ${nHeads}, head_count_kv ${nKvHeads}, context_length ${seqLen}, vocab ${vocabSize}`);
  const headSize = dim / nHeads;
  if (md.has('llama.rope.dimension_count')) {
    const rot = md.int('llama.rope.dimension_count', `${headSize}`);
    if (rot !== headSize) fail(path, `metadata key llama.rope.dimension_count is ${rot}, expected ${headSize} (RoPE over the whole head)`);
  }
  if (md.has('llama.rope.freq_base')) {
    const theta = md.float('llama.rope.freq_base', `${ROPE_THETA}`);
    if (theta !== ROPE_THETA) fail(path, `metadata key llama.rope.freq_base is ${theta}, expected ${ROPE_THETA} (the engine's RoPE base)`);
  }
  if (md.has('llama.attention.layer_norm_rms_epsilon')) {
    const eps = md.float('llama.attention.layer_norm_rms_epsilon', `${RMS_EPS}`);
    if (Math.abs(eps - RMS_EPS) > 1e-9) fail(path, `metadata key llama.attention.layer_norm_rms_epsilon is ${eps}, expected ${RMS_EPS} (the engine's RMSNorm epsilon)`);
  }
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier: !h.tensors.has('output.weight') };
}

/** Checks that every tensor the engine reads is there, with its shape and a type we decode. */
function checkTensors(path: string, h: GgufHeader, c: ModelConfig): void {
  for (const name of ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'] as TensorName[]) {
    if (name === 'wcls' && c.sharedClassifier) continue;
    const [rows, cols] = tensorShape(c, name);
    const expected = rows === 1 ? [cols] : [cols, rows];
    for (let l = 0; l < (isPerLayer(name) ? c.nLayers : 1); l++) {
      const gname = ggufTensorName(name, l);
      const t = h.tensors.get(gname);
      if (!t) fail(path, `tensor ${gname} is missing (expected ne [${expected.join(', ')}])`);
      const dims = t.dims.length > expected.length && t.dims.slice(expected.length).every((d) => d === 1) ? t.dims.slice(0, expected.length) : t.dims;
      if (dims.length !== expected.length || dims.some((d, i) => d !== expected[i])) {
        fail(path, `tensor ${gname} has ne [${t.dims.join(', ')}], expected [${expected.join(', ')}]`);
      }
      if (!(t.type in GGML_TYPES)) {
        const id = Number(String(t.type).slice(1));
        fail(path, `tensor ${gname} has type ${OTHER_GGML_TYPES[id] ?? 'unknown'} (${id}); mesh-llm reads ${SUPPORTED_TYPES}`);
      }
    }
  }
}

/** Decodes `n` values of a ggml type from src (a Uint8Array starting on its own buffer) into out[outOffset..]. */
export function decodeGgml(type: GgmlTypeName, src: Uint8Array, n: number, out: Float32Array, outOffset = 0): void {
  const half = halfToFloatTable();
  const u16 = (at: number): number => src[at] | (src[at + 1] << 8);
  switch (type) {
    case 'F32':
      out.set(new Float32Array(src.buffer, src.byteOffset, n), outOffset);
      return;
    case 'F16': {
      const h = new Uint16Array(src.buffer, src.byteOffset, n);
      for (let i = 0; i < n; i++) out[outOffset + i] = half[h[i]];
      return;
    }
    case 'BF16': {
      const h = new Uint16Array(src.buffer, src.byteOffset, n);
      const bits = new Uint32Array(out.buffer, out.byteOffset + 4 * outOffset, n);
      for (let i = 0; i < n; i++) bits[i] = h[i] << 16;
      return;
    }
    case 'Q8_0': {
      // block: f16 scale d, then 32 int8 values q; x = q * d
      const q = new Int8Array(src.buffer, src.byteOffset, src.length);
      for (let b = 0; b < n / 32; b++) {
        const at = 34 * b;
        const d = half[u16(at)];
        const o = outOffset + 32 * b;
        for (let i = 0; i < 32; i++) out[o + i] = q[at + 2 + i] * d;
      }
      return;
    }
    case 'Q4_0':
      // block: f16 scale d, then 16 bytes; value j < 16 is the low nibble of byte j, value j + 16 its high nibble; x = (nibble - 8) * d
      for (let b = 0; b < n / 32; b++) {
        const at = 18 * b;
        const d = half[u16(at)];
        const o = outOffset + 32 * b;
        for (let j = 0; j < 16; j++) {
          const byte = src[at + 2 + j];
          out[o + j] = ((byte & 0x0f) - 8) * d;
          out[o + j + 16] = ((byte >> 4) - 8) * d;
        }
      }
      return;
    case 'Q4_1':
      // block: f16 scale d, f16 minimum m, then 16 bytes of nibbles as Q4_0; x = nibble * d + m
      for (let b = 0; b < n / 32; b++) {
        const at = 20 * b;
        const d = half[u16(at)];
        const m = half[u16(at + 2)];
        const o = outOffset + 32 * b;
        for (let j = 0; j < 16; j++) {
          const byte = src[at + 4 + j];
          out[o + j] = Math.fround((byte & 0x0f) * d) + m;
          out[o + j + 16] = Math.fround((byte >> 4) * d) + m;
        }
      }
      return;
  }
}

/** An open, checked GGUF model: tensor rows are read and decoded on demand. */
export class GgufSource implements TensorSource {
  readonly info: CheckpointInfo;
  readonly header: GgufHeader;
  private readonly fd: number;

  private constructor(info: CheckpointInfo, header: GgufHeader, fd: number) {
    this.info = info;
    this.header = header;
    this.fd = fd;
  }

  static open(path: string): GgufSource {
    const fd = openModelFile(path);
    try {
      const fileBytes = fs.fstatSync(fd).size;
      const header = readGgufHeader(path, fd, fileBytes);
      const config = llamaConfig(path, header);
      checkTensors(path, header, config);
      const storedTypes: Record<string, number> = {};
      for (const t of header.tensors.values()) storedTypes[t.type] = (storedTypes[t.type] ?? 0) + 1;
      return new GgufSource({ path, format: 'gguf', version: header.version, config, fileBytes, storedTypes }, header, fd);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** The stored type of one layer of a tensor. */
  typeOf(name: TensorName, layer = 0): GgmlTypeName {
    return this.tensor(name, layer).type;
  }

  readRows(name: TensorName, layer: number, row0: number, nRows: number): Float32Array {
    const t = this.tensor(name, layer);
    const cols = t.dims[0];
    const rowBytes = ggmlBytes(t.type, cols);
    const src = new Uint8Array(nRows * rowBytes);
    let done = 0;
    while (done < src.length) {
      const got = fs.readSync(this.fd, src, done, src.length - done, t.offset + row0 * rowBytes + done);
      if (got === 0) fail(this.info.path, `ended early while reading tensor ${t.name}`);
      done += got;
    }
    const out = new Float32Array(nRows * cols);
    decodeGgml(t.type, src, nRows * cols, out);
    return out;
  }

  private tensor(name: TensorName, layer: number): GgufTensorInfo {
    const stored = name === 'wcls' && this.info.config.sharedClassifier ? 'tokenEmbedding' : name;
    return this.header.tensors.get(ggufTensorName(stored, layer)) as GgufTensorInfo;
  }
}

/** Opens a model file for reading; a missing or unreadable file is a one-line error. */
export function openModelFile(path: string): number {
  try {
    const fd = fs.openSync(path, 'r');
    if (!fs.fstatSync(fd).isFile()) {
      fs.closeSync(fd);
      fail(path, 'is not a regular file');
    }
    return fd;
  } catch (e) {
    if (e instanceof MeshLlmError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(path, 'does not exist');
    return fail(path, `cannot be opened (${code ?? String(e)})`);
  }
}

/** A SentencePiece vocabulary as the llama2.c tokenizer holds it: byte-string pieces and scores. */
export interface Vocabulary {
  pieces: string[];
  scores: Float32Array;
}

/**
 * A SentencePiece piece as llama2.c's tokenizer export writes it: "▁" becomes a space, and
 * BOS and EOS become "\n<s>\n" and "\n</s>\n" (what run.c prints for them); as a byte string.
 */
export function llama2cPiece(piece: string, id: number): string {
  if (id === BOS) return '\n<s>\n';
  if (id === EOS) return '\n</s>\n';
  return Buffer.from(piece.replace(/\u2581/g, ' '), 'utf8').toString('latin1');
}

/** The SentencePiece vocabulary of a GGUF file (tokenizer.ggml.*), for lib/llm/tokenizer.ts. */
export function ggufVocabulary(path: string): Vocabulary {
  const fd = openModelFile(path);
  try {
    const header = readGgufHeader(path, fd, fs.fstatSync(fd).size);
    const md = new Metadata(path, header.metadata);
    const model = md.string('tokenizer.ggml.model', '"llama" (a SentencePiece vocabulary)');
    if (model !== 'llama') fail(path, `metadata key tokenizer.ggml.model is "${model}", expected "llama" (a SentencePiece vocabulary; mesh-llm runs the llama2.c tokenizer)`);
    const tokens = md.array('tokenizer.ggml.tokens', GgufValueType.STRING, 'the vocabulary pieces') as string[];
    const scores = md.array('tokenizer.ggml.scores', GgufValueType.FLOAT32, 'a SentencePiece score per piece') as number[];
    if (scores.length !== tokens.length) fail(path, `metadata key tokenizer.ggml.scores has ${scores.length} entries, expected one per token (${tokens.length})`);
    for (const [key, want] of [['tokenizer.ggml.bos_token_id', BOS], ['tokenizer.ggml.eos_token_id', EOS]] as const) {
      if (md.has(key) && md.int(key, `${want}`) !== want) fail(path, `metadata key ${key} is ${md.int(key, '')}, expected ${want} (the llama2.c vocabulary's id)`);
    }
    return { pieces: tokens.map(llama2cPiece), scores: Float32Array.from(scores) };
  } finally {
    fs.closeSync(fd);
  }
}

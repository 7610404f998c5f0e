/**
 * Writing GGUF (version 3) model files: the inverse of lib/llm/gguf.ts, used by
 * `mesh-llm synth` and by the tests (stories260K written as GGUF in F32, F16, Q8_0, Q4_0).
 * Tensors are encoded and written one at a time, so a 1.1B-parameter file is never held
 * in memory. Quantisers follow llama.cpp's reference (ggml-quants.c quantize_row_*_ref).
 */
import * as fs from 'node:fs';
import { BOS, EOS, ModelConfig, RMS_EPS, ROPE_THETA, geometry } from './config';
import { GGML_TYPES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgmlTypeName, GgufValueType, ggmlBytes, ggufTensorName } from './gguf';
import { floatToBf16, floatToHalf } from './halfs';
import { TensorName, tensorShape } from './tensors';

/** One metadata entry to write: a scalar of a type, or an array of one element type. */
export type GgufWriteEntry =
  | { key: string; type: 'u32' | 'i32' | 'f32' | 'string' | 'bool'; value: number | string | boolean }
  | { key: string; type: 'array'; elementType: 'string' | 'f32' | 'i32'; value: (string | number)[] };

export interface GgufWriteTensor {
  name: string;
  /** ne: ne[0] is the fastest-varying dimension. */
  dims: number[];
  type: GgmlTypeName;
  /** The values, row-major (produced when the tensor is written). */
  data: () => Float32Array;
}

/** A vocabulary in SentencePiece form, as GGUF stores it: "▁" for spaces, a type per token. */
export interface SentencePieceVocabulary {
  tokens: string[];
  scores: number[];
  /** 1 normal, 2 unknown, 3 control, 6 byte (llama.cpp's token types). */
  types: number[];
}

/** A llama2.c vocabulary (byte-string pieces, scores) in SentencePiece form: the inverse of llama2cPiece. */
export function sentencePieceVocabulary(pieces: readonly string[], scores: ArrayLike<number>): SentencePieceVocabulary {
  const tokens = pieces.map((p, id) => (id === 0 ? '<unk>' : id === BOS ? '<s>' : id === EOS ? '</s>' : Buffer.from(p, 'latin1').toString('utf8').replace(/ /g, '\u2581')));
  const types = tokens.map((t, id) => (id === 0 ? 2 : id === BOS || id === EOS ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1));
  return { tokens, scores: Array.from(scores), types };
}

/** The metadata llama.cpp writes for a Llama model, with its vocabulary. */
export function llamaMetadata(c: ModelConfig, vocab: SentencePieceVocabulary, name = 'mesh-llm'): GgufWriteEntry[] {
  const g = geometry(c);
  return [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.name', type: 'string', value: name },
    { key: 'llama.context_length', type: 'u32', value: c.seqLen },
    { key: 'llama.embedding_length', type: 'u32', value: c.dim },
    { key: 'llama.block_count', type: 'u32', value: c.nLayers },
    { key: 'llama.feed_forward_length', type: 'u32', value: c.hiddenDim },
    { key: 'llama.rope.dimension_count', type: 'u32', value: g.headSize },
    { key: 'llama.attention.head_count', type: 'u32', value: c.nHeads },
    { key: 'llama.attention.head_count_kv', type: 'u32', value: c.nKvHeads },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', value: RMS_EPS },
    { key: 'llama.rope.freq_base', type: 'f32', value: ROPE_THETA },
    { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: 'array', elementType: 'string', value: vocab.tokens },
    { key: 'tokenizer.ggml.scores', type: 'array', elementType: 'f32', value: vocab.scores },
    { key: 'tokenizer.ggml.token_type', type: 'array', elementType: 'i32', value: vocab.types },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: BOS },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: EOS },
    { key: 'tokenizer.ggml.unknown_token_id', type: 'u32', value: 0 },
  ];
}

/** Chooses the stored type of each tensor layer from its shape. */
export type TypeChooser = (name: TensorName, rows: number, cols: number) => GgmlTypeName;

/**
 * llama.cpp's choice for a quantised file: vectors (norms) stay F32, and a matrix whose rows
 * are not a whole number of blocks falls back to F32 (stories260K's W_2, 172 columns).
 */
export function quantisedTypes(type: GgmlTypeName): TypeChooser {
  return (_name, rows, cols) => (rows === 1 || cols % GGML_TYPES[type].blockValues !== 0 ? 'F32' : type);
}

/** The tensors of a Llama model in llama.cpp's order, reading each layer from `read` when written. */
export function llamaTensors(c: ModelConfig, read: (name: TensorName, layer: number) => Float32Array, typeOf: TypeChooser): GgufWriteTensor[] {
  const out: GgufWriteTensor[] = [];
  const add = (name: TensorName, layer: number): void => {
    const [rows, cols] = tensorShape(c, name);
    out.push({ name: ggufTensorName(name, layer), dims: rows === 1 ? [cols] : [cols, rows], type: typeOf(name, rows, cols), data: () => read(name, layer) });
  };
  add('tokenEmbedding', 0);
  for (let l = 0; l < c.nLayers; l++) for (const n of ['rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3'] as TensorName[]) add(n, l);
  add('rmsFinal', 0);
  if (!c.sharedClassifier) add('wcls', 0);
  return out;
}

/** Little-endian bytes, appended. */
class ByteWriter {
  private readonly parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const T = GgufValueType;
const SCALAR_TYPE = { u32: T.UINT32, i32: T.INT32, f32: T.FLOAT32, string: T.STRING, bool: T.BOOL } as const;

function writeScalar(w: ByteWriter, type: keyof typeof SCALAR_TYPE, v: number | string | boolean): void {
  if (type === 'u32') w.u32(v as number);
  else if (type === 'i32') w.i32(v as number);
  else if (type === 'f32') w.f32(v as number);
  else if (type === 'bool') w.push(Buffer.of(v ? 1 : 0));
  else w.string(v as string);
}

/** C's roundf: halves away from zero. */
function roundHalfAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Encodes float32 values as a ggml type. */
export function encodeGgml(type: GgmlTypeName, x: Float32Array): Buffer {
  const n = x.length;
  const out = Buffer.alloc(ggmlBytes(type, n)); // never pooled: its own ArrayBuffer
  switch (type) {
    case 'F32':
      Buffer.from(x.buffer, x.byteOffset, x.byteLength).copy(out);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out.writeUInt16LE(floatToHalf(x[i]), 2 * i);
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out.writeUInt16LE(floatToBf16(x[i]), 2 * i);
      break;
    case 'Q8_0': {
      const q = new Int8Array(out.buffer, out.byteOffset, out.length);
      for (let b = 0; b < n / 32; b++) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[32 * b + i]));
        const d = Math.fround(amax / 127);
        const id = d ? Math.fround(1 / d) : 0;
        out.writeUInt16LE(floatToHalf(d), 34 * b);
        for (let i = 0; i < 32; i++) q[34 * b + 2 + i] = roundHalfAway(Math.fround(x[32 * b + i] * id));
      }
      break;
    }
    case 'Q4_0':
      for (let b = 0; b < n / 32; b++) {
        let amax = 0;
        let max = 0;
        for (let i = 0; i < 32; i++) {
          const v = x[32 * b + i];
          if (Math.abs(v) > amax) {
            amax = Math.abs(v);
            max = v;
          }
        }
        const d = Math.fround(max / -8);
        const id = d ? Math.fround(1 / d) : 0;
        out.writeUInt16LE(floatToHalf(d), 18 * b);
        const q = (v: number): number => Math.min(15, Math.trunc(Math.fround(v * id) + 8.5));
        for (let j = 0; j < 16; j++) out[18 * b + 2 + j] = q(x[32 * b + j]) | (q(x[32 * b + j + 16]) << 4);
      }
      break;
    case 'Q4_1':
      for (let b = 0; b < n / 32; b++) {
        let min = Infinity;
        let max = -Infinity;
        for (let i = 0; i < 32; i++) {
          min = Math.min(min, x[32 * b + i]);
          max = Math.max(max, x[32 * b + i]);
        }
        const d = Math.fround((max - min) / 15);
        const id = d ? Math.fround(1 / d) : 0;
        out.writeUInt16LE(floatToHalf(d), 20 * b);
        out.writeUInt16LE(floatToHalf(min), 20 * b + 2);
        const q = (v: number): number => Math.min(15, Math.trunc(Math.fround((v - min) * id) + 0.5));
        for (let j = 0; j < 16; j++) out[20 * b + 4 + j] = q(x[32 * b + j]) | (q(x[32 * b + j + 16]) << 4);
      }
      break;
  }
  return out;
}

/** Writes a GGUF file: header, metadata, tensor table, then each tensor's data, aligned. */
export function writeGguf(path: string, metadata: readonly GgufWriteEntry[], tensors: readonly GgufWriteTensor[], alignment = GGUF_DEFAULT_ALIGNMENT): void {
  const h = new ByteWriter();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(metadata.length);
  for (const e of metadata) {
    h.string(e.key);
    if (e.type === 'array') {
      h.u32(T.ARRAY);
      h.u32(SCALAR_TYPE[e.elementType]);
      h.u64(e.value.length);
      for (const v of e.value) writeScalar(h, e.elementType, v);
    } else {
      h.u32(SCALAR_TYPE[e.type]);
      writeScalar(h, e.type, e.value);
    }
  }
  const align = (n: number): number => Math.ceil(n / alignment) * alignment;
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(GGML_TYPES[t.type].id);
    h.u64(offset);
    offsets.push(offset);
    offset = align(offset + ggmlBytes(t.type, t.dims.reduce((a, b) => a * b, 1)));
  }
  const header = h.finish();
  const fd = fs.openSync(path, 'w');
  try {
    const dataStart = align(header.length);
    fs.writeSync(fd, header);
    fs.writeSync(fd, Buffer.alloc(dataStart - header.length));
    let pos = dataStart;
    tensors.forEach((t, i) => {
      const at = dataStart + offsets[i];
      if (at > pos) fs.writeSync(fd, Buffer.alloc(at - pos));
      const bytes = encodeGgml(t.type, t.data());
      fs.writeSync(fd, bytes);
      pos = at + bytes.length;
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a Llama model as GGUF: llama.cpp's metadata and tensor names, types chosen per tensor. */
export function writeLlamaGguf(path: string, c: ModelConfig, vocab: SentencePieceVocabulary, read: (name: TensorName, layer: number) => Float32Array, typeOf: TypeChooser = () => 'F32'): void {
  writeGguf(path, llamaMetadata(c, vocab), llamaTensors(c, read, typeOf));
}

/**
 * Opening a model file (Checkpoint.open), and the reader for llama2.c checkpoints: the legacy version-0 header and the "ak42" version-1
 * (float32) and version-2 (int8, Q8_0 groups) headers. The file is validated against the
 * size its header implies, then tensors (or row ranges of them) are read on demand, so a
 * head node reads only its own weight slices.
 */
import * as fs from 'node:fs';
import { MeshLlmError } from './errors';
import { ModelConfig, geometry } from './config';
import { GgufSource, isGguf } from './gguf';
import { HfSource } from './hf';
import { CheckpointInfo, TensorName, TensorSource, checkRowRange, tensorShape } from './tensors';

export type { CheckpointInfo, TensorName } from './tensors';

const MAGIC_AK42 = 0x616b3432;
const AK42_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 28;

interface TensorSpan {
  /** Byte offset of layer 0 of the tensor. */
  offset: number;
  /** Rows and columns of one layer's matrix (a vector is one row). */
  rows: number;
  cols: number;
  /** Number of layers stored back to back (1 for whole-model tensors). */
  layers: number;
  /** 'f32', or 'q8' for int8 values of one layer followed by that layer's float32 group scales. */
  kind: 'f32' | 'q8';
}


function fail(path: string, what: string): never {
  throw new MeshLlmError(`model file ${path}: ${what}`);
}

function readHeader(path: string, fd: number, fileBytes: number): { version: 0 | 1 | 2; config: ModelConfig; groupSize?: number } {
  const head = Buffer.alloc(AK42_HEADER_BYTES);
  const got = fs.readSync(fd, head, 0, AK42_HEADER_BYTES, 0);
  if (got < LEGACY_HEADER_BYTES) {
    fail(path, `is ${fileBytes} bytes, too short for a llama2.c header (at least ${LEGACY_HEADER_BYTES} bytes expected)`);
  }
  const magic = head.readUInt32LE(0);
  let version: 0 | 1 | 2;
  let base: number;
  if (magic === MAGIC_AK42) {
    if (got < AK42_HEADER_BYTES) fail(path, `is ${fileBytes} bytes, shorter than the ${AK42_HEADER_BYTES}-byte "ak42" header`);
    const v = head.readInt32LE(4);
    if (v !== 1 && v !== 2) {
      fail(path, `has the "ak42" magic but version ${v}; mesh-llm reads versions 1 (float32) and 2 (int8)`);
    }
    version = v;
    base = 8;
  } else {
    version = 0;
    base = 0;
  }
  const ints = [0, 1, 2, 3, 4, 5, 6].map((i) => head.readInt32LE(base + 4 * i));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = ints;
  let sharedClassifier: boolean;
  let vocabSize: number;
  if (version === 0) {
    sharedClassifier = rawVocab > 0;
    vocabSize = Math.abs(rawVocab);
  } else {
    sharedClassifier = head.readUInt8(36) !== 0;
    vocabSize = rawVocab;
  }
  const sane =
    dim > 0 && dim <= 65536 && hiddenDim > 0 && hiddenDim <= 1 << 20 && nLayers > 0 && nLayers <= 1024 &&
    nHeads > 0 && nKvHeads > 0 && nKvHeads <= nHeads && nHeads % nKvHeads === 0 && dim % nHeads === 0 &&
    (dim / nHeads) % 2 === 0 && vocabSize > 0 && vocabSize <= 1 << 22 && seqLen > 0 && seqLen <= 1 << 20;
  if (!sane) {
    const magicText = `0x${magic.toString(16).padStart(8, '0')}`;
    fail(
      path,
      `is not a llama2.c checkpoint: magic ${magicText} is not "ak42" (0x616b3432), and read as a legacy version-0 header ` +
        `its dimensions are impossible (dim ${dim}, hidden_dim ${hiddenDim}, n_layers ${nLayers}, n_heads ${nHeads}, ` +
        `n_kv_heads ${nKvHeads}, vocab_size ${rawVocab}, seq_len ${seqLen})`,
    );
  }
  const config: ModelConfig = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier };
  if (version === 2) {
    const groupSize = head.readInt32LE(37);
    if (groupSize <= 0 || dim % groupSize !== 0) fail(path, `version-2 header has an invalid group size ${groupSize} for dim ${dim}`);
    return { version, config, groupSize };
  }
  return { version, config };
}

/** Byte layout of every tensor for a header; the total is the size the file must have. */
function layout(version: 0 | 1 | 2, c: ModelConfig, groupSize: number | undefined): { spans: Map<TensorName, TensorSpan>; end: number } {
  const g = geometry(c);
  const shapes: Record<TensorName, [number, number, number]> = {
    tokenEmbedding: [c.vocabSize, c.dim, 1],
    rmsAtt: [1, c.dim, c.nLayers],
    wq: [c.nHeads * g.headSize, c.dim, c.nLayers],
    wk: [g.kvDim, c.dim, c.nLayers],
    wv: [g.kvDim, c.dim, c.nLayers],
    wo: [c.dim, c.nHeads * g.headSize, c.nLayers],
    rmsFfn: [1, c.dim, c.nLayers],
    w1: [c.hiddenDim, c.dim, c.nLayers],
    w2: [c.dim, c.hiddenDim, c.nLayers],
    w3: [c.hiddenDim, c.dim, c.nLayers],
    rmsFinal: [1, c.dim, 1],
    wcls: [c.vocabSize, c.dim, 1],
  };
  const spans = new Map<TensorName, TensorSpan>();
  let offset = version === 0 ? LEGACY_HEADER_BYTES : AK42_HEADER_BYTES;
  const place = (name: TensorName, kind: 'f32' | 'q8'): void => {
    const [rows, cols, layers] = shapes[name];
    spans.set(name, { offset, rows, cols, layers, kind });
    const n = rows * cols;
    offset += kind === 'f32' ? layers * n * 4 : layers * (n + (n / (groupSize as number)) * 4);
  };
  const skip = (bytes: number): void => {
    offset += bytes;
  };
  if (version === 0) {
    for (const name of ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal'] as TensorName[]) place(name, 'f32');
    skip(2 * c.seqLen * (g.headSize / 2) * 4); // freq_cis_real and freq_cis_imag, unused (RoPE is computed)
    if (!c.sharedClassifier) place('wcls', 'f32');
  } else if (version === 1) {
    for (const name of ['rmsAtt', 'rmsFfn', 'rmsFinal', 'tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as TensorName[]) place(name, 'f32');
    if (!c.sharedClassifier) place('wcls', 'f32');
  } else {
    for (const name of ['rmsAtt', 'rmsFfn', 'rmsFinal'] as TensorName[]) place(name, 'f32');
    for (const name of ['tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as TensorName[]) place(name, 'q8');
    if (!c.sharedClassifier) place('wcls', 'q8');
  }
  if (c.sharedClassifier) spans.set('wcls', spans.get('tokenEmbedding') as TensorSpan);
  return { spans, end: offset };
}

/**
 * An open, validated llama2.c checkpoint. Reads are positional, so holding one open costs no
 * memory beyond what is read.
 */
class Llama2cSource implements TensorSource {
  readonly info: CheckpointInfo;
  private readonly fd: number;
  private readonly spans: Map<TensorName, TensorSpan>;

  private constructor(info: CheckpointInfo, fd: number, spans: Map<TensorName, TensorSpan>) {
    this.info = info;
    this.fd = fd;
    this.spans = spans;
  }

  static open(path: string): Llama2cSource {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') fail(path, 'does not exist (expected a llama2.c checkpoint such as stories260K.bin; run `npm run fetch-model`)');
      fail(path, `cannot be opened (${code ?? String(e)})`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) fail(path, 'is not a regular file');
      const fileBytes = st.size;
      const { version, config, groupSize } = readHeader(path, fd, fileBytes);
      const { spans, end } = layout(version, config, groupSize);
      if (fileBytes !== end) {
        const c = config;
        const dims = `dim ${c.dim}, hidden_dim ${c.hiddenDim}, n_layers ${c.nLayers}, n_heads ${c.nHeads}, n_kv_heads ${c.nKvHeads}, vocab ${c.vocabSize}, seq_len ${c.seqLen}, ${c.sharedClassifier ? 'shared' : 'separate'} classifier`;
        const verb = fileBytes < end ? 'is truncated' : 'has trailing bytes';
        fail(path, `${verb}: ${fileBytes} bytes, but its version-${version} header (${dims}) implies ${end} bytes`);
      }
      return new Llama2cSource({ path, format: 'llama2c', version, config, groupSize, fileBytes }, fd, spans);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** Rows [row0, row0 + nRows) of one layer's matrix, as float32 (int8 files are dequantised). */
  readRows(name: TensorName, layer: number, row0: number, nRows: number): Float32Array {
    const s = this.span(name);
    const n = s.rows * s.cols;
    const e0 = row0 * s.cols;
    const count = nRows * s.cols;
    if (s.kind === 'f32') {
      return this.readF32(s.offset + (layer * n + e0) * 4, count);
    }
    const gs = this.info.groupSize as number;
    const layerBytes = n + (n / gs) * 4;
    const base = s.offset + layer * layerBytes;
    const g0 = Math.floor(e0 / gs);
    const g1 = Math.ceil((e0 + count) / gs);
    const q = new Int8Array(this.readBytes(base + g0 * gs, (g1 - g0) * gs));
    const scales = this.readF32(base + n + g0 * 4, g1 - g0);
    const out = new Float32Array(count);
    const skip = e0 - g0 * gs;
    for (let i = 0; i < count; i++) {
      const k = i + skip;
      out[i] = q[k] * scales[Math.floor(k / gs)];
    }
    return out;
  }

  private span(name: TensorName): TensorSpan {
    return this.spans.get(name) as TensorSpan;
  }

  private readBytes(position: number, length: number): ArrayBuffer {
    const buf = new ArrayBuffer(length);
    const view = new Uint8Array(buf);
    let done = 0;
    while (done < length) {
      const got = fs.readSync(this.fd, view, done, length - done, position + done);
      if (got === 0) fail(this.info.path, `ended early while reading ${length} bytes at offset ${position}`);
      done += got;
    }
    return buf;
  }

  private readF32(position: number, count: number): Float32Array {
    return new Float32Array(this.readBytes(position, count * 4));
  }
}

/**
 * An open, validated model file of any format mesh-llm reads: a llama2.c checkpoint, a GGUF
 * file (lib/llm/gguf.ts) or a Hugging Face folder (lib/llm/hf.ts), chosen by what the path
 * is. Every reader gives float32 rows in llama2.c's layout, on demand.
 */
export class Checkpoint {
  readonly info: CheckpointInfo;
  private readonly source: TensorSource;

  private constructor(source: TensorSource) {
    this.source = source;
    this.info = source.info;
  }

  static open(path: string): Checkpoint {
    if (isDirectory(path)) return new Checkpoint(HfSource.open(path));
    if (isGguf(path)) return new Checkpoint(GgufSource.open(path));
    return new Checkpoint(Llama2cSource.open(path));
  }

  close(): void {
    this.source.close();
  }

  /** Shape [rows, cols] of one layer of a tensor. */
  shape(name: TensorName): [number, number] {
    return tensorShape(this.info.config, name);
  }

  /** The whole of one layer's tensor (layer 0 for whole-model tensors), as float32. */
  read(name: TensorName, layer = 0): Float32Array {
    return this.readRows(name, layer, 0, this.shape(name)[0]);
  }

  /** Rows [row0, row0 + nRows) of one layer's matrix, as float32 (quantised files are dequantised). */
  readRows(name: TensorName, layer: number, row0: number, nRows: number): Float32Array {
    checkRowRange(this.info.config, name, layer, row0, nRows);
    return this.source.readRows(name, layer, row0, nRows);
  }
}

function isDirectory(path: string): boolean {
  try {
    return fs.statSync(path).isDirectory();
  } catch {
    return false;
  }
}

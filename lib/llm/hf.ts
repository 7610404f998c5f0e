/**
 * Reader for Hugging Face Llama checkpoints: a folder with config.json and
 * model.safetensors (F32, F16 or BF16 tensors), as TinyLlama-1.1B-Chat is published. The
 * safetensors header is parsed and checked at open; tensor rows are read positionally on
 * demand. Hugging Face holds W_Q and W_K in the rotate-half RoPE layout: their rows are
 * permuted into llama2.c's interleaved layout as they are read (lib/llm/rope-layout.ts),
 * giving the same rows llama.cpp's converter writes to GGUF.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelConfig, RMS_EPS, ROPE_THETA, geometry } from './config';
import { MeshLlmError } from './errors';
import { decodeGgml, openModelFile } from './gguf';
import { interleaveFromRotateHalf } from './rope-layout';
import { CheckpointInfo, TensorName, TensorSource, isPerLayer, tensorShape } from './tensors';

export const HF_CONFIG = 'config.json';
export const HF_WEIGHTS = 'model.safetensors';
export const HF_TOKENIZER = 'tokenizer.json';

/** safetensors dtypes mesh-llm reads, with their bytes per value. */
export const SAFETENSORS_DTYPES = { F32: 4, F16: 2, BF16: 2 } as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

/** The Hugging Face name of each engine tensor (transformers' LlamaForCausalLM). */
export function hfTensorName(name: TensorName, layer: number): string {
  const perLayer: Partial<Record<TensorName, string>> = {
    rmsAtt: 'input_layernorm', wq: 'self_attn.q_proj', wk: 'self_attn.k_proj', wv: 'self_attn.v_proj', wo: 'self_attn.o_proj',
    rmsFfn: 'post_attention_layernorm', w1: 'mlp.gate_proj', w2: 'mlp.down_proj', w3: 'mlp.up_proj',
  };
  if (name === 'tokenEmbedding') return 'model.embed_tokens.weight';
  if (name === 'rmsFinal') return 'model.norm.weight';
  if (name === 'wcls') return 'lm_head.weight';
  return `model.layers.${layer}.${perLayer[name]}.weight`;
}

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  bytes: number;
}

function failIn(file: string, what: string): never {
  throw new MeshLlmError(`model file ${file}: ${what}`);
}

/** Parses and checks a safetensors header: every tensor's dtype, shape and byte range. */
export function readSafetensorsHeader(file: string, fd: number, fileBytes: number): Map<string, SafetensorsTensor> {
  const lenBuf = Buffer.alloc(8);
  if (fs.readSync(fd, lenBuf, 0, 8, 0) < 8) failIn(file, `is ${fileBytes} bytes, too short for the 8-byte safetensors header length`);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(Math.min(fileBytes - 8, 100 << 20))) failIn(file, `states a safetensors header of ${headerLen} bytes, but the file has ${fileBytes - 8} bytes after the length (expected a JSON header of at most 100 MB)`);
  const n = Number(headerLen);
  const json = Buffer.alloc(n);
  fs.readSync(fd, json, 0, n, 8);
  let header: unknown;
  try {
    header = JSON.parse(json.toString('utf8'));
  } catch (e) {
    failIn(file, `safetensors header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) failIn(file, 'safetensors header is not a JSON object of tensors');
  const dataStart = 8 + n;
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null || typeof t.dtype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) {
      failIn(file, `safetensors header entry ${name} is not {"dtype", "shape", "data_offsets": [begin, end]}`);
    }
    if (!(t.dtype in SAFETENSORS_DTYPES)) failIn(file, `tensor ${name} has dtype ${t.dtype}; mesh-llm reads ${Object.keys(SAFETENSORS_DTYPES).join(', ')}`);
    const dtype = t.dtype as SafetensorsDtype;
    const shape = t.shape as number[];
    const [begin, end] = t.data_offsets as number[];
    const values = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(begin) || !Number.isInteger(end) || end - begin !== values * SAFETENSORS_DTYPES[dtype]) {
      failIn(file, `tensor ${name} has data_offsets [${begin}, ${end}], expected ${values * SAFETENSORS_DTYPES[dtype]} bytes for ${dtype} [${shape.join(', ')}]`);
    }
    if (dataStart + end > fileBytes) failIn(file, `is truncated: ${fileBytes} bytes, but tensor ${name} ends at byte ${dataStart + end}`);
    tensors.set(name, { dtype, shape, offset: dataStart + begin, bytes: end - begin });
  }
  return tensors;
}

/** The model config of a Hugging Face config.json, each missing or wrong key named. */
export function readHfConfig(file: string, vocabFromWeights: number | undefined, tied: boolean): ModelConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    failIn(file, code === 'ENOENT' ? 'does not exist (a Hugging Face model folder holds config.json, model.safetensors and tokenizer.json)' : `cannot be read (${code})`);
  }
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text);
  } catch (e) {
    failIn(file, `is not JSON (${(e as Error).message})`);
  }
  const int = (key: string, what: string, fallback?: number): number => {
    const v = j[key] ?? fallback;
    if (v === undefined) failIn(file, `key ${key} is missing (expected ${what})`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) failIn(file, `key ${key} is ${JSON.stringify(v)}, expected a positive integer: ${what}`);
    return v;
  };
  if (j.model_type !== undefined && j.model_type !== 'llama') failIn(file, `key model_type is ${JSON.stringify(j.model_type)}, expected "llama"`);
  const nHeads = int('num_attention_heads', 'the number of query heads');
  const c: ModelConfig = {
    dim: int('hidden_size', 'the width of the residual stream'),
    hiddenDim: int('intermediate_size', 'the width of the feed-forward layer'),
    nLayers: int('num_hidden_layers', 'the number of layers'),
    nHeads,
    nKvHeads: int('num_key_value_heads', 'the number of key/value heads', nHeads),
    vocabSize: int('vocab_size', 'the vocabulary size', vocabFromWeights),
    seqLen: int('max_position_embeddings', 'the context length'),
    sharedClassifier: tied,
  };
  if (c.dim % c.nHeads !== 0 || c.nHeads % c.nKvHeads !== 0 || (c.dim / c.nHeads) % 2 !== 0) {
    failIn(file, `has an impossible geometry: hidden_size ${c.dim}, num_attention_heads ${c.nHeads}, num_key_value_heads ${c.nKvHeads}`);
  }
  const theta = j.rope_theta ?? ROPE_THETA;
  if (theta !== ROPE_THETA) failIn(file, `key rope_theta is ${JSON.stringify(theta)}, expected ${ROPE_THETA} (the engine's RoPE base)`);
  const eps = j.rms_norm_eps ?? RMS_EPS;
  if (typeof eps !== 'number' || Math.abs(eps - RMS_EPS) > 1e-9) failIn(file, `key rms_norm_eps is ${JSON.stringify(eps)}, expected ${RMS_EPS} (the engine's RMSNorm epsilon)`);
  if (j.rope_scaling !== undefined && j.rope_scaling !== null) failIn(file, `key rope_scaling is ${JSON.stringify(j.rope_scaling)}, expected null (the engine runs plain RoPE)`);
  return c;
}

/** An open, checked Hugging Face model folder. */
export class HfSource implements TensorSource {
  readonly info: CheckpointInfo;
  private readonly fd: number;
  private readonly tensors: Map<string, SafetensorsTensor>;
  private readonly weightsPath: string;

  private constructor(info: CheckpointInfo, fd: number, weightsPath: string, tensors: Map<string, SafetensorsTensor>) {
    this.info = info;
    this.fd = fd;
    this.weightsPath = weightsPath;
    this.tensors = tensors;
  }

  static open(dir: string): HfSource {
    const weightsPath = path.join(dir, HF_WEIGHTS);
    if (!fs.existsSync(weightsPath)) failIn(weightsPath, 'does not exist (a Hugging Face model folder holds config.json, model.safetensors and tokenizer.json; sharded checkpoints are not read)');
    const fd = openModelFile(weightsPath);
    try {
      const fileBytes = fs.fstatSync(fd).size;
      const tensors = readSafetensorsHeader(weightsPath, fd, fileBytes);
      const embed = tensors.get(hfTensorName('tokenEmbedding', 0));
      const configPath = path.join(dir, HF_CONFIG);
      const tiedKey = readTieFlag(configPath);
      const tied = tiedKey ?? !tensors.has(hfTensorName('wcls', 0));
      const config = readHfConfig(configPath, embed?.shape[0], tied);
      checkHfTensors(weightsPath, tensors, config);
      const storedTypes: Record<string, number> = {};
      for (const t of tensors.values()) storedTypes[t.dtype] = (storedTypes[t.dtype] ?? 0) + 1;
      return new HfSource({ path: dir, format: 'hf', version: 0, config, fileBytes, storedTypes }, fd, weightsPath, tensors);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  readRows(name: TensorName, layer: number, row0: number, nRows: number): Float32Array {
    if (name !== 'wq' && name !== 'wk') return this.readStored(name, layer, row0, nRows);
    // whole heads in the rotate-half layout, permuted to the interleaved one, then the rows asked for
    const { headSize, dim } = geometry(this.info.config);
    const h0 = Math.floor(row0 / headSize);
    const h1 = Math.ceil((row0 + nRows) / headSize);
    const heads = interleaveFromRotateHalf(this.readStored(name, layer, h0 * headSize, (h1 - h0) * headSize), headSize, dim);
    const skip = (row0 - h0 * headSize) * dim;
    return heads.subarray(skip, skip + nRows * dim);
  }

  private readStored(name: TensorName, layer: number, row0: number, nRows: number): Float32Array {
    const stored = name === 'wcls' && this.info.config.sharedClassifier ? 'tokenEmbedding' : name;
    const t = this.tensors.get(hfTensorName(stored, layer)) as SafetensorsTensor;
    const cols = tensorShape(this.info.config, stored)[1];
    const size = SAFETENSORS_DTYPES[t.dtype];
    const src = new Uint8Array(nRows * cols * size);
    let done = 0;
    while (done < src.length) {
      const got = fs.readSync(this.fd, src, done, src.length - done, t.offset + row0 * cols * size + done);
      if (got === 0) failIn(this.weightsPath, `ended early while reading tensor ${hfTensorName(stored, layer)}`);
      done += got;
    }
    const out = new Float32Array(nRows * cols);
    decodeGgml(t.dtype, src, nRows * cols, out);
    return out;
  }
}

/** tie_word_embeddings of a config.json, when it states one (read before the rest is checked). */
function readTieFlag(configPath: string): boolean | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(configPath, 'utf8')).tie_word_embeddings;
    return typeof v === 'boolean' ? v : undefined;
  } catch {
    return undefined; // readHfConfig names the problem
  }
}

function checkHfTensors(file: string, tensors: Map<string, SafetensorsTensor>, c: ModelConfig): void {
  for (const name of ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'] as TensorName[]) {
    if (name === 'wcls' && c.sharedClassifier) continue;
    const [rows, cols] = tensorShape(c, name);
    const expected = rows === 1 ? [cols] : [rows, cols];
    for (let l = 0; l < (isPerLayer(name) ? c.nLayers : 1); l++) {
      const hname = hfTensorName(name, l);
      const t = tensors.get(hname);
      if (!t) failIn(file, `tensor ${hname} is missing (expected [${expected.join(', ')}])`);
      if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) failIn(file, `tensor ${hname} has shape [${t.shape.join(', ')}], expected [${expected.join(', ')}]`);
    }
  }
}

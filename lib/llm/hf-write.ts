/**
 * Writing Hugging Face Llama checkpoints: config.json, model.safetensors (F32, F16 or BF16)
 * and tokenizer.json, with W_Q/W_K rows permuted into the rotate-half layout as
 * transformers holds them. The inverse of lib/llm/hf.ts, for `mesh-llm synth` and the tests.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelConfig, RMS_EPS, ROPE_THETA, geometry } from './config';
import { encodeGgml } from './gguf-write';
import { HF_CONFIG, HF_TOKENIZER, HF_WEIGHTS, SAFETENSORS_DTYPES, SafetensorsDtype, hfTensorName } from './hf';
import { rotateHalfFromInterleaved } from './rope-layout';
import { TensorName, tensorShape } from './tensors';
import { tokenizerJson } from './tokenizer-json';

export interface SafetensorsWriteTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: () => Float32Array;
}

/** Writes a safetensors file: the 8-byte header length, the JSON header, then each tensor, one at a time. */
export function writeSafetensors(file: string, tensors: readonly SafetensorsWriteTensor[], metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data starts 8-byte aligned
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const t of tensors) fs.writeSync(fd, encodeGgml(t.dtype, t.data()));
  } finally {
    fs.closeSync(fd);
  }
}

/** transformers' config.json for a Llama model. */
export function hfConfig(c: ModelConfig, dtype: SafetensorsDtype): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen,
    rms_norm_eps: RMS_EPS,
    rope_theta: ROPE_THETA,
    rope_scaling: null,
    hidden_act: 'silu',
    tie_word_embeddings: c.sharedClassifier,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
  };
}

/** The tensors of a Llama model under transformers' names, W_Q/W_K in the rotate-half layout. */
export function hfTensors(c: ModelConfig, read: (name: TensorName, layer: number) => Float32Array, dtype: SafetensorsDtype): SafetensorsWriteTensor[] {
  const { headSize } = geometry(c);
  const out: SafetensorsWriteTensor[] = [];
  const add = (name: TensorName, layer: number): void => {
    const [rows, cols] = tensorShape(c, name);
    const data = name === 'wq' || name === 'wk' ? () => rotateHalfFromInterleaved(read(name, layer), headSize, cols) : () => read(name, layer);
    out.push({ name: hfTensorName(name, layer), dtype: rows === 1 ? 'F32' : dtype, shape: rows === 1 ? [cols] : [rows, cols], data });
  };
  add('tokenEmbedding', 0);
  for (let l = 0; l < c.nLayers; l++) for (const n of ['rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3'] as TensorName[]) add(n, l);
  add('rmsFinal', 0);
  if (!c.sharedClassifier) add('wcls', 0);
  return out;
}

/** Writes a Hugging Face model folder: config.json, model.safetensors, tokenizer.json. */
export function writeHfModel(dir: string, c: ModelConfig, read: (name: TensorName, layer: number) => Float32Array, vocab: { pieces: readonly string[]; scores: ArrayLike<number> }, dtype: SafetensorsDtype = 'F32'): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, HF_CONFIG), JSON.stringify(hfConfig(c, dtype), null, 2) + '\n');
  writeSafetensors(path.join(dir, HF_WEIGHTS), hfTensors(c, read, dtype));
  fs.writeFileSync(path.join(dir, HF_TOKENIZER), JSON.stringify(tokenizerJson(vocab.pieces, vocab.scores)));
}

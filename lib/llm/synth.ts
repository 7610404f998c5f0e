/**
 * Synthetic models: seeded random weights of a given geometry (TinyLlama-1.1B's, for the
 * benchmarks and the full-size mesh run), written in any format mesh-llm reads. Each tensor
 * layer is drawn from its own stream (seed, tensor, layer), so the same seed gives the same
 * model in every format and a reader of one slice sees the values the writer drew.
 *
 * Scales are chosen so that the forward pass stays well-conditioned: RMSNorm gains 1 +/- 0.1;
 * a matrix with `cols` inputs (the embedding table too: its rows are dim wide) draws from a
 * uniform distribution of standard deviation 1/sqrt(cols), so a product with a normalised
 * vector has outputs of unit variance (a tied classifier too); the two that write into the
 * residual stream (W_O, W_2) a further 1/sqrt(2 nLayers), as GPT-2's initialisation does.
 */
import * as fs from 'node:fs';
import { ModelConfig } from './config';
import { GgmlTypeName } from './gguf';
import { quantisedTypes, sentencePieceVocabulary, writeLlamaGguf } from './gguf-write';
import { SafetensorsDtype } from './hf';
import { writeHfModel } from './hf-write';
import { TENSOR_NAMES, TensorName, isPerLayer, tensorShape } from './tensors';

/** A 32-bit hash step (murmur3's finaliser). */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The standard deviation of a tensor's values; RMSNorm gains are 1 + this. */
export function synthScale(c: ModelConfig, name: TensorName): number {
  const cols = tensorShape(c, name)[1];
  if (name === 'rmsAtt' || name === 'rmsFfn' || name === 'rmsFinal') return 0.1 / Math.sqrt(3);
  const residual = name === 'wo' || name === 'w2' ? 1 / Math.sqrt(2 * c.nLayers) : 1;
  return residual / Math.sqrt(cols);
}

/** One layer of a synthetic tensor [rows, cols]: uniform values of the tensor's scale, from stream (seed, name, layer). */
export function synthTensor(c: ModelConfig, seed: number, name: TensorName, layer: number): Float32Array {
  const [rows, cols] = tensorShape(c, name);
  const out = new Float32Array(rows * cols);
  const half = Math.sqrt(3) * synthScale(c, name); // uniform on [-half, half] has this standard deviation
  const offset = name === 'rmsAtt' || name === 'rmsFfn' || name === 'rmsFinal' ? 1 : 0;
  // xorshift32 seeded from (seed, tensor, layer)
  let s = mix(mix(seed >>> 0) ^ mix(TENSOR_NAMES.indexOf(name) * 0x9e3779b9 + layer)) || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = offset + ((s >>> 0) / 4294967296 - 0.5) * 2 * half;
  }
  return out;
}

export type SynthFormat = 'llama2c' | 'gguf' | 'hf';

export interface SynthOptions {
  config: ModelConfig;
  seed: number;
  format: SynthFormat;
  out: string;
  /** gguf: F32, F16, Q8_0, Q4_0 (matrices; norms stay F32); hf: F32, F16, BF16; llama2c: F32. */
  type: string;
  /** The vocabulary written into a GGUF file or tokenizer.json (vocabSize pieces). */
  vocab?: { pieces: readonly string[]; scores: ArrayLike<number> };
  /** Called after each tensor layer is written. */
  progress?: (done: number, total: number) => void;
}

export const SYNTH_TYPES: Record<SynthFormat, readonly string[]> = { llama2c: ['F32'], gguf: ['F32', 'F16', 'Q8_0', 'Q4_0'], hf: ['F32', 'F16', 'BF16'] };

/** Number of tensor layers a model has (for progress). */
export function tensorLayerCount(c: ModelConfig): number {
  return TENSOR_NAMES.filter((n) => n !== 'wcls' || !c.sharedClassifier).reduce((k, n) => k + (isPerLayer(n) ? c.nLayers : 1), 0);
}

/** The llama2.c version-1 ("ak42", float32) file of a model, written tensor layer by tensor layer. */
export function writeLlama2cVersion1(file: string, c: ModelConfig, read: (name: TensorName, layer: number) => Float32Array): void {
  const header = Buffer.alloc(256);
  header.writeUInt32LE(0x616b3432, 0);
  header.writeInt32LE(1, 4);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.seqLen].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
  header.writeUInt8(c.sharedClassifier ? 1 : 0, 36);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    const order: TensorName[] = ['rmsAtt', 'rmsFfn', 'rmsFinal', 'tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'];
    if (!c.sharedClassifier) order.push('wcls');
    for (const name of order) {
      for (let l = 0; l < (isPerLayer(name) ? c.nLayers : 1); l++) {
        const w = read(name, l);
        fs.writeSync(fd, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a synthetic model in the chosen format. */
export function writeSynthModel(o: SynthOptions): void {
  const total = tensorLayerCount(o.config);
  let done = 0;
  const read = (name: TensorName, layer: number): Float32Array => {
    const w = synthTensor(o.config, o.seed, name, layer);
    o.progress?.(++done, total);
    return w;
  };
  if (o.format === 'llama2c') return writeLlama2cVersion1(o.out, o.config, read);
  if (!o.vocab) throw new Error(`a ${o.format} file holds its vocabulary: give one of ${o.config.vocabSize} tokens`);
  if (o.format === 'gguf') return writeLlamaGguf(o.out, o.config, sentencePieceVocabulary(o.vocab.pieces, o.vocab.scores), read, quantisedTypes(o.type as GgmlTypeName));
  return writeHfModel(o.out, o.config, read, o.vocab, o.type as SafetensorsDtype);
}

/**
 * What every model-file reader gives the engine: the config, and the rows of each weight
 * tensor as float32, in llama2.c's layout (row-major [rows, cols], W_Q/W_K rows in the
 * interleaved-pair RoPE layout). lib/llm/checkpoint.ts picks the reader for a path.
 */
import { ModelConfig, geometry } from './config';

/** Every weight tensor of the model, by the name the rest of the engine uses. */
export type TensorName =
  | 'tokenEmbedding' // [vocab, dim]
  | 'rmsAtt'         // per layer [dim]
  | 'wq'             // per layer [nHeads*headSize, dim]
  | 'wk'             // per layer [kvDim, dim]
  | 'wv'             // per layer [kvDim, dim]
  | 'wo'             // per layer [dim, nHeads*headSize]
  | 'rmsFfn'         // per layer [dim]
  | 'w1'             // per layer [hiddenDim, dim]
  | 'w2'             // per layer [dim, hiddenDim]
  | 'w3'             // per layer [hiddenDim, dim]
  | 'rmsFinal'       // [dim]
  | 'wcls';          // [vocab, dim]

export const TENSOR_NAMES: readonly TensorName[] = ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'];

/** True for tensors stored once per layer. */
export function isPerLayer(name: TensorName): boolean {
  return !['tokenEmbedding', 'rmsFinal', 'wcls'].includes(name);
}

/** The [rows, cols] of one layer of each tensor (a vector is one row). */
export function tensorShape(c: ModelConfig, name: TensorName): [number, number] {
  const g = geometry(c);
  const shapes: Record<TensorName, [number, number]> = {
    tokenEmbedding: [c.vocabSize, c.dim],
    rmsAtt: [1, c.dim],
    wq: [c.nHeads * g.headSize, c.dim],
    wk: [g.kvDim, c.dim],
    wv: [g.kvDim, c.dim],
    wo: [c.dim, c.nHeads * g.headSize],
    rmsFfn: [1, c.dim],
    w1: [c.hiddenDim, c.dim],
    w2: [c.dim, c.hiddenDim],
    w3: [c.hiddenDim, c.dim],
    rmsFinal: [1, c.dim],
    wcls: [c.vocabSize, c.dim],
  };
  return shapes[name];
}

/** The model file formats mesh-llm reads. */
export type ModelFormat = 'llama2c' | 'gguf' | 'hf';

export interface CheckpointInfo {
  path: string;
  format: ModelFormat;
  /** llama2.c: header version 0, 1 or 2; GGUF: the file's version (3); Hugging Face: 0. */
  version: number;
  config: ModelConfig;
  /** Q8_0 group size of a llama2.c version-2 file. */
  groupSize?: number;
  fileBytes: number;
  /** How each stored tensor type is read, e.g. {"F32": 2, "Q8_0": 40} (GGUF, safetensors). */
  storedTypes?: Record<string, number>;
}

/** A reader of one model file: rows of tensors on demand, so a head node reads only its slices. */
export interface TensorSource {
  readonly info: CheckpointInfo;
  /** Rows [row0, row0 + nRows) of one layer's matrix, as float32 (quantised types are dequantised). */
  readRows(name: TensorName, layer: number, row0: number, nRows: number): Float32Array;
  close(): void;
}

/** The RangeError of a row read outside a tensor. */
export function checkRowRange(c: ModelConfig, name: TensorName, layer: number, row0: number, nRows: number): void {
  const [rows, cols] = tensorShape(c, name);
  const layers = isPerLayer(name) ? c.nLayers : 1;
  if (layer < 0 || layer >= layers || row0 < 0 || nRows < 0 || row0 + nRows > rows) {
    throw new RangeError(`${name}: rows ${row0}..${row0 + nRows} of layer ${layer} are outside [${rows} x ${cols}] x ${layers}`);
  }
}

/** Hyper-parameters of a Llama-2 architecture model, as a llama2.c checkpoint header states them. */
export interface ModelConfig {
  /** Width of the residual stream. */
  dim: number;
  /** Width of the SwiGLU feed-forward layer. */
  hiddenDim: number;
  nLayers: number;
  /** Number of query heads. */
  nHeads: number;
  /** Number of key/value heads (grouped-query attention when fewer than nHeads). */
  nKvHeads: number;
  vocabSize: number;
  /** Longest context the model was trained for; also the KV cache length. */
  seqLen: number;
  /** True when the classifier reuses the token embedding table. */
  sharedClassifier: boolean;
}

/** Quantities every step derives from the config. */
export interface Geometry extends ModelConfig {
  /** dim / nHeads: the width of one head. */
  headSize: number;
  /** nKvHeads * headSize: the width of the key and value projections. */
  kvDim: number;
  /** nHeads / nKvHeads: how many query heads share one key/value head. */
  kvMul: number;
}

export function geometry(c: ModelConfig): Geometry {
  const headSize = c.dim / c.nHeads;
  return { ...c, headSize, kvDim: c.nKvHeads * headSize, kvMul: c.nHeads / c.nKvHeads };
}

/** RMSNorm epsilon of the Llama-2 family (llama2.c hard-codes it). */
export const RMS_EPS = 1e-5;
/** RoPE base frequency of the Llama-2 family. */
export const ROPE_THETA = 10000;
/** Token ids fixed by the llama2.c tokenizers. */
export const BOS = 1;
export const EOS = 2;

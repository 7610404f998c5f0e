/** Model geometries the radio planner knows by name (the header of their llama2.c checkpoints). */
import { ModelConfig } from '../llm/config';

export const MODEL_PRESETS = {
  /** TinyLlama-1.1B: the seed's target model. */
  tinyllama: { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, vocabSize: 32000, seqLen: 2048, sharedClassifier: false },
  /** stories260K from llama2.c: the model the tests run. */
  stories260k: { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true },
} as const satisfies Record<string, ModelConfig>;

export type PresetName = keyof typeof MODEL_PRESETS;
export const PRESET_NAMES = Object.keys(MODEL_PRESETS) as PresetName[];

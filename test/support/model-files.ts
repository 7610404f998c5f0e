/**
 * Writes stories260K (the llama2.c checkpoint and tok512.bin) as GGUF files and as a
 * Hugging Face folder, with the project's writers (lib/llm/gguf-write.ts, hf-write.ts), so
 * the readers are tested on files made here, not downloaded.
 */
import { Checkpoint } from '../../lib/llm/checkpoint';
import { GgmlTypeName } from '../../lib/llm/gguf';
import { GgufWriteEntry, GgufWriteTensor, TypeChooser, llamaMetadata, llamaTensors, quantisedTypes, sentencePieceVocabulary, writeGguf } from '../../lib/llm/gguf-write';
import { SafetensorsDtype } from '../../lib/llm/hf';
import { writeHfModel } from '../../lib/llm/hf-write';
import { Tokenizer } from '../../lib/llm/tokenizer';
import { modelPaths } from './fixtures';

export interface GgufEdits {
  /** Changes the metadata entries before they are written (drop a key, change a value). */
  metadata?: (entries: GgufWriteEntry[]) => GgufWriteEntry[];
  /** Changes the tensor table before it is written. */
  tensors?: (tensors: GgufWriteTensor[]) => GgufWriteTensor[];
}

/** stories260K as GGUF: every matrix in `type` where its rows are whole blocks, else F32; norms F32. */
export function writeStoriesGguf(dest: string, type: GgmlTypeName | TypeChooser = 'F32', edits: GgufEdits = {}): void {
  const ckpt = Checkpoint.open(modelPaths.model);
  try {
    const tok = Tokenizer.load(modelPaths.tokenizer, ckpt.info.config.vocabSize);
    const c = ckpt.info.config;
    const typeOf = typeof type === 'function' ? type : quantisedTypes(type);
    const metadata = llamaMetadata(c, sentencePieceVocabulary(tok.pieces, tok.scores), 'stories260K');
    const tensors = llamaTensors(c, (name, layer) => ckpt.read(name, layer), typeOf);
    writeGguf(dest, (edits.metadata ?? ((m) => m))(metadata), (edits.tensors ?? ((t) => t))(tensors));
  } finally {
    ckpt.close();
  }
}

/** stories260K as a Hugging Face folder (config.json, model.safetensors, tokenizer.json). */
export function writeStoriesHf(dir: string, dtype: SafetensorsDtype = 'F32'): void {
  const ckpt = Checkpoint.open(modelPaths.model);
  try {
    const tok = Tokenizer.load(modelPaths.tokenizer, ckpt.info.config.vocabSize);
    writeHfModel(dir, ckpt.info.config, (name, layer) => ckpt.read(name, layer), tok, dtype);
  } finally {
    ckpt.close();
  }
}

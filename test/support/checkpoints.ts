/** Writes llama2.c checkpoint variants of a model, for testing the reader on every header. */
import * as fs from 'node:fs';
import { Checkpoint, TensorName } from '../../lib/llm/checkpoint';
import { tensorLayers } from '../../lib/llm/export';

function tensor(ckpt: Checkpoint, name: TensorName): Buffer[] {
  return tensorLayers(ckpt, name).map((layer) => Buffer.from(layer.buffer));
}

function configInts(ckpt: Checkpoint, vocab: number): Buffer {
  const c = ckpt.info.config;
  const b = Buffer.alloc(28);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, vocab, c.seqLen].forEach((v, i) => b.writeInt32LE(v, 4 * i));
  return b;
}

/** The "ak42" version-1 float32 export (shared classifier unless `separateClassifier`). */
export function writeVersion1(source: string, dest: string, separateClassifier = false): void {
  const ckpt = Checkpoint.open(source);
  const header = Buffer.alloc(256);
  header.writeUInt32LE(0x616b3432, 0);
  header.writeInt32LE(1, 4);
  configInts(ckpt, ckpt.info.config.vocabSize).copy(header, 8);
  header.writeUInt8(separateClassifier ? 0 : 1, 36);
  const order: TensorName[] = ['rmsAtt', 'rmsFfn', 'rmsFinal', 'tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'];
  if (separateClassifier) order.push('wcls');
  fs.writeFileSync(dest, Buffer.concat([header, ...order.flatMap((n) => tensor(ckpt, n))]));
  ckpt.close();
}

/** The legacy version-0 export with a separate classifier: negative vocab_size, wcls at the end. */
export function writeLegacyUnshared(source: string, dest: string, classifier?: Float32Array): void {
  const ckpt = Checkpoint.open(source);
  const c = ckpt.info.config;
  const order: TensorName[] = ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal'];
  const headSize = c.dim / c.nHeads;
  const freqCis = Buffer.alloc(2 * c.seqLen * (headSize / 2) * 4);
  const wcls = Buffer.from((classifier ?? ckpt.read('wcls')).buffer);
  fs.writeFileSync(dest, Buffer.concat([configInts(ckpt, -c.vocabSize), ...order.flatMap((n) => tensor(ckpt, n)), freqCis, wcls]));
  ckpt.close();
}

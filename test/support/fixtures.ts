/**
 * Shared test fixtures: the model files through the project's one resolution order (the
 * jest global setup, test/support/global-setup.ts, fetched any that were missing), and the
 * golden files.
 */
import * as fs from 'node:fs';
import { goldenFile } from '../../lib/llm/golden';
import { locateModelFile, resolveModelPaths } from '../../lib/llm/resolve';

export { goldenIds } from '../../lib/llm/golden';

export const modelPaths = resolveModelPaths({});

/** stories260K_q8.bin: the model in llama2.c's int8 (version-2) format. */
export const int8ModelPath = (): string => locateModelFile('stories260K_q8.bin');

/** tokenizer.bin: the 32k-token Llama 2 vocabulary. */
export const tokenizer32kPath = (): string => locateModelFile('tokenizer.bin');

/** What run.c printed, without the newline it prints after the loop. */
export function goldenText(name: string): string {
  return fs.readFileSync(goldenFile(name, 'txt'), 'utf8').replace(/\n$/, '');
}

/** The golden logits: positions x vocab float32. */
export function goldenLogits(name: string, vocab: number): Float32Array[] {
  const buf = fs.readFileSync(goldenFile(name, 'logits'));
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const out: Float32Array[] = [];
  for (let p = 0; p * vocab < all.length; p++) out.push(all.slice(p * vocab, (p + 1) * vocab));
  return out;
}

export const GOLDEN_RUNS = [
  { name: 'once-greedy-64', prompt: 'Once upon a time', steps: 64 },
  { name: 'bos-greedy-256', prompt: '', steps: 256 },
] as const;

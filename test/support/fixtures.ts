/** Shared test fixtures: the model through the project's one resolution order, and the golden files. */
import * as fs from 'node:fs';
import { goldenFile, goldenFolder } from '../../lib/llm/golden';
import { resolveModelPaths } from '../../lib/llm/resolve';

export { goldenIds } from '../../lib/llm/golden';

export const modelPaths = resolveModelPaths({});

/** ../shared/golden beside the project (or MESH_LLM_GOLDEN_DIR). */
export const goldenDir = goldenFolder();

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

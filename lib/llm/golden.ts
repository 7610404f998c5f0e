/**
 * The golden outputs of the C reference implementation (llama2.c's run.c) that tests and
 * benchmarks compare with: where their folder is, and reading a run's token ids.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from './resolve';

/** The golden folder: MESH_LLM_GOLDEN_DIR, else ../shared/golden beside the project. */
export function goldenFolder(): string {
  return process.env.MESH_LLM_GOLDEN_DIR ?? path.resolve(packageRoot(), '..', 'shared', 'golden');
}

/** The golden file of a run: `<name>.<ext>` in the golden folder (ids, txt, logits, ...). */
export function goldenFile(name: string, ext: string): string {
  return path.join(goldenFolder(), `${name}.${ext}`);
}

/** A run's token ids (`<name>.ids`: BOS, then every token fed or sampled). */
export function goldenIds(name: string): number[] {
  return fs.readFileSync(goldenFile(name, 'ids'), 'utf8').trim().split(/\s+/).map(Number);
}

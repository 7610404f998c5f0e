/**
 * The golden outputs of the C reference implementation (llama2.c's run.c) that tests and
 * benchmarks compare with: where their folder is, and reading a run's token ids. The
 * repository holds a copy (test/fixtures/golden) of the shared folder ../shared/golden.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from './resolve';

export const GOLDEN_DIR_ENV = 'MESH_LLM_GOLDEN_DIR';

/** The copy in the repository: test/fixtures/golden. */
export function goldenFixturesFolder(): string {
  return path.join(packageRoot(), 'test', 'fixtures', 'golden');
}

/** The shared folder the fixtures are copies of: ../shared/golden beside the project. */
export function sharedGoldenFolder(): string {
  return path.resolve(packageRoot(), '..', 'shared', 'golden');
}

/** The golden folder: MESH_LLM_GOLDEN_DIR when set, else the fixtures in the repository. */
export function goldenFolder(): string {
  return process.env[GOLDEN_DIR_ENV] || goldenFixturesFolder();
}

/** The golden file of a run: `<name>.<ext>` in the golden folder (ids, txt, logits, ...). */
export function goldenFile(name: string, ext: string): string {
  return path.join(goldenFolder(), `${name}.${ext}`);
}

/** A run's token ids (`<name>.ids`: BOS, then every token fed or sampled). */
export function goldenIds(name: string): number[] {
  return fs.readFileSync(goldenFile(name, 'ids'), 'utf8').trim().split(/\s+/).map(Number);
}

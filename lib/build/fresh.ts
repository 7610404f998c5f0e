/**
 * Freshness of build outputs, so that each build step does nothing when dist/ is current:
 * an output is fresh when it exists and is newer than every one of its inputs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The newest modification time of the files (0 for none). */
export function newestMtime(files: readonly string[]): number {
  return Math.max(0, ...files.map((f) => fs.statSync(f).mtimeMs));
}

/** Whether every output exists and is newer than (or as new as) every input. */
export function isFresh(outputs: readonly string[], inputs: readonly string[]): boolean {
  const newestInput = newestMtime(inputs);
  return outputs.every((o) => fs.existsSync(o) && fs.statSync(o).mtimeMs >= newestInput);
}

/** Copies src to dest unless dest is fresh; returns whether it copied. */
export function copyIfStale(src: string, dest: string): boolean {
  if (isFresh([dest], [src])) return false;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(src, dest);
  return true;
}

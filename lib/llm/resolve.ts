/**
 * Where the model and tokenizer come from. One resolution order, used by the CLI, the
 * benchmarks and the tests:
 *   1. the --model / --tokenizer flags;
 *   2. the folder named by MESH_LLM_MODEL_DIR;
 *   3. ./models (where `npm run fetch-model` puts them), then the package's own models/;
 *   4. ../shared/models beside the working directory, then beside the package.
 * Without --tokenizer, a tokenizer beside the chosen model is preferred.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from './errors';

export const DEFAULT_MODEL = 'stories260K.bin';
export const DEFAULT_TOKENIZER = 'tok512.bin';
export const MODEL_DIR_ENV = 'MESH_LLM_MODEL_DIR';

/** The package root (the folder holding package.json), found from this compiled file. */
export function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

/** The folders searched, in order, after the flags. */
export function modelSearchDirs(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string[] {
  const root = packageRoot();
  const dirs: string[] = [];
  if (env[MODEL_DIR_ENV]) dirs.push(path.resolve(cwd, env[MODEL_DIR_ENV] as string));
  dirs.push(path.resolve(cwd, 'models'), path.join(root, 'models'), path.resolve(cwd, '..', 'shared', 'models'), path.resolve(root, '..', 'shared', 'models'));
  return [...new Set(dirs)];
}

export interface ModelPaths {
  model: string;
  tokenizer: string;
}

export function resolveModelPaths(flags: { model?: string; tokenizer?: string }, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ModelPaths {
  const dirs = modelSearchDirs(env, cwd);
  const find = (file: string, what: string, flag: string): string => {
    for (const d of dirs) {
      const p = path.join(d, file);
      if (fs.existsSync(p)) return p;
    }
    throw new MeshLlmError(
      `no ${what} given and ${file} was not found in: ${dirs.join(', ')}. ` +
        `Pass ${flag} PATH, set ${MODEL_DIR_ENV}, or run \`npm run fetch-model -- --from DIR\``,
    );
  };
  const model = flags.model ? path.resolve(cwd, flags.model) : find(DEFAULT_MODEL, 'model', '--model');
  let tokenizer: string;
  if (flags.tokenizer) tokenizer = path.resolve(cwd, flags.tokenizer);
  else {
    const beside = path.join(path.dirname(model), DEFAULT_TOKENIZER);
    tokenizer = fs.existsSync(beside) ? beside : find(DEFAULT_TOKENIZER, 'tokenizer', '--tokenizer');
  }
  return { model, tokenizer };
}

/**
 * Where the model files are found. One resolution order, used by the CLI, the benchmarks
 * and the tests:
 *   1. the --model / --tokenizer flags;
 *   2. the folder named by MESH_LLM_MODEL_DIR;
 *   3. ./models (where fetched files go), then the package's own models/;
 *   4. ../shared/models beside the working directory, then beside the package.
 * Without --tokenizer, a tokenizer beside the chosen model is preferred. A file found in
 * none of them is fetched once into ./models (lib/llm/provide.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from './errors';
import { isGguf } from './gguf';
import { HF_TOKENIZER } from './hf';

export const DEFAULT_MODEL = 'stories260K.bin';
export const DEFAULT_TOKENIZER = 'tok512.bin';
export const MODEL_DIR_ENV = 'MESH_LLM_MODEL_DIR';
export const MIRROR_ENV = 'MESH_LLM_MIRROR';

/** How to provide model files that are neither found nor fetched: one sentence for error lines. */
export const PROVIDE_HINT =
  `pass --model PATH (and --tokenizer PATH), set ${MODEL_DIR_ENV} to a folder holding them, ` +
  `set ${MIRROR_ENV} to a folder or URL to fetch them from (or run \`npm run fetch-model -- --from DIR|URL\`), ` +
  'or copy them into ./models or ../shared/models';

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

/** What the search depends on: the environment, the working directory and the package root. */
export interface SearchContext {
  env: NodeJS.ProcessEnv;
  cwd: string;
  root: string;
}

/** The context of this process, with any part replaced. */
export function searchContext(given: Partial<SearchContext> = {}): SearchContext {
  return { env: given.env ?? process.env, cwd: given.cwd ?? process.cwd(), root: given.root ?? packageRoot() };
}

/** ./models of the working directory: where fetched files go. */
export function fetchedModelsDir(given: Partial<SearchContext> = {}): string {
  return path.resolve(searchContext(given).cwd, 'models');
}

/** The folders searched, in order, after the flags. */
export function modelSearchDirs(given: Partial<SearchContext> = {}): string[] {
  const { env, cwd, root } = searchContext(given);
  const dirs: string[] = [];
  if (env[MODEL_DIR_ENV]) dirs.push(path.resolve(cwd, env[MODEL_DIR_ENV] as string));
  dirs.push(fetchedModelsDir({ cwd }), path.join(root, 'models'), path.resolve(cwd, '..', 'shared', 'models'), path.resolve(root, '..', 'shared', 'models'));
  return [...new Set(dirs)];
}

/** The first file of that name in the search folders, or undefined. */
export function findModelFile(file: string, given: Partial<SearchContext> = {}): string | undefined {
  return modelSearchDirs(given)
    .map((d) => path.join(d, file))
    .find((p) => fs.existsSync(p));
}

/** The first file of that name in the search folders; not found, an error naming the folders and how to provide it. */
export function locateModelFile(file: string, given: Partial<SearchContext> = {}): string {
  const found = findModelFile(file, given);
  if (found) return found;
  throw new MeshLlmError(`${file} was not found in: ${modelSearchDirs(given).join(', ')}. To provide it, ${PROVIDE_HINT}`);
}

export interface ModelPaths {
  model: string;
  tokenizer: string;
}

/**
 * The tokenizer that goes with a model, when there is one: a GGUF file is its own tokenizer
 * (its metadata holds the vocabulary), a Hugging Face folder holds tokenizer.json, and a
 * llama2.c checkpoint may have tok512.bin beside it.
 */
export function tokenizerBeside(model: string): string | undefined {
  if (isGguf(model)) return model;
  if (fs.existsSync(path.join(model, HF_TOKENIZER))) return path.join(model, HF_TOKENIZER);
  const beside = path.join(path.dirname(model), DEFAULT_TOKENIZER);
  return fs.existsSync(beside) ? beside : undefined;
}

/** The model and tokenizer paths, by the flags, then the search folders (without fetching). */
export function resolveModelPaths(flags: { model?: string; tokenizer?: string }, given: Partial<SearchContext> = {}): ModelPaths {
  const { cwd } = searchContext(given);
  const model = flags.model ? path.resolve(cwd, flags.model) : locateModelFile(DEFAULT_MODEL, given);
  const tokenizer = flags.tokenizer ? path.resolve(cwd, flags.tokenizer) : (tokenizerBeside(model) ?? locateModelFile(DEFAULT_TOKENIZER, given));
  return { model, tokenizer };
}

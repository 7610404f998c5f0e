/**
 * The model files a command or the tests need: found in the one resolution order
 * (lib/llm/resolve.ts) or, when they are not, fetched once into ./models (lib/llm/fetch.ts):
 * from `--from` or MESH_LLM_MIRROR (a folder or a URL base holding the files), else from
 * where each original is published. The next run finds them in ./models.
 */
import * as path from 'node:path';
import { FetchSource, Progress, fetchModelFiles, isUrl, progressLines } from './fetch';
import { MeshLlmError } from './errors';
import { DEFAULT_MODEL, DEFAULT_TOKENIZER, MIRROR_ENV, ModelPaths, SearchContext, fetchedModelsDir, findModelFile, modelSearchDirs, resolveModelPaths, searchContext, tokenizerBeside } from './resolve';

export interface ProvideOptions extends Partial<SearchContext> {
  /** A mirror named on the command line; it comes before MESH_LLM_MIRROR. */
  from?: string;
  /** Progress of fetched files (default: lines on stderr). */
  progress?: Progress;
}

/**
 * Where missing files are fetched from: --from, else MESH_LLM_MIRROR, else each file's public
 * location. A mirror folder is made absolute against the working directory.
 */
export function fetchSource(from: string | undefined, given: Partial<SearchContext> = {}): FetchSource {
  const { env, cwd } = searchContext(given);
  const named = from ? { mirror: from, via: '--from' } : env[MIRROR_ENV] ? { mirror: env[MIRROR_ENV] as string, via: MIRROR_ENV } : undefined;
  if (!named) return {};
  return { mirror: isUrl(named.mirror) ? named.mirror : path.resolve(cwd, named.mirror), via: named.via };
}

/** The paths of the named files: found in the search folders, or fetched into ./models. */
export async function provideModelFiles(names: readonly string[], o: ProvideOptions = {}): Promise<string[]> {
  const context = searchContext(o);
  const options = {
    source: fetchSource(o.from, context),
    dest: fetchedModelsDir(context),
    progress: o.progress ?? progressLines(),
    find: (name: string) => findModelFile(name, context),
  };
  const paths: string[] = [];
  for (const name of names) {
    try {
      paths.push(...(await fetchModelFiles([name], options)));
    } catch (e) {
      if (!(e instanceof MeshLlmError)) throw e;
      throw new MeshLlmError(`${name} was not found in ${modelSearchDirs(context).join(', ')} and could not be fetched: ${e.message}`);
    }
  }
  return paths;
}

/** resolveModelPaths, after fetching the default model and tokenizer if the flags do not name them and they are not found. */
export async function resolveOrFetchModelPaths(flags: { model?: string; tokenizer?: string }, o: ProvideOptions = {}): Promise<ModelPaths> {
  const { cwd } = searchContext(o);
  const needed: string[] = [];
  if (!flags.model) needed.push(DEFAULT_MODEL);
  if (!flags.tokenizer && !(flags.model && tokenizerBeside(path.resolve(cwd, flags.model)))) needed.push(DEFAULT_TOKENIZER);
  await provideModelFiles(needed, o);
  return resolveModelPaths(flags, o);
}

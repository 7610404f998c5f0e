/**
 * jest's global setup: every model file a test needs (lib/llm/fetch.ts MODEL_FILES), found
 * in the one resolution order or fetched once into ./models, before any test file runs. CI
 * finds them in ../shared/models and fetches nothing. A file that can be neither found nor
 * fetched stops the run with one line saying how to provide it.
 */
import { MeshLlmError } from '../../lib/llm/errors';
import { MODEL_FILES } from '../../lib/llm/fetch';
import { provideModelFiles } from '../../lib/llm/provide';

export default async function globalSetup(): Promise<void> {
  try {
    await provideModelFiles(MODEL_FILES.map((f) => f.name));
  } catch (e) {
    if (!(e instanceof MeshLlmError)) throw e;
    process.stderr.write(`\nmesh-llm tests: ${e.message}\n`);
    process.exit(1);
  }
}

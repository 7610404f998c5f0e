/**
 * `npm run fetch-model -- [--from DIR|URL] [--to DIR] [--json]`: puts every model file a
 * command or a test needs (lib/llm/fetch.ts MODEL_FILES) into ./models, checked against its
 * SHA-256 digest. Source: --from, else MESH_LLM_MIRROR, else where each original is published.
 * Files already there and intact are kept.
 */
import * as path from 'node:path';
import { parseOptions, UsageError } from '../cli/args';
import { MeshLlmError } from '../lib/llm/errors';
import { MODEL_FILES, PUBLIC_MODEL_URL, fetchModelFiles, progressLines } from '../lib/llm/fetch';
import { fetchSource } from '../lib/llm/provide';
import { MIRROR_ENV } from '../lib/llm/resolve';

const USAGE = `usage: npm run fetch-model -- [--from DIR|URL] [--to DIR] [--json]
  puts ${MODEL_FILES.map((f) => f.name).join(', ')} into the destination, sha256-checked
  --from  a mirror folder (e.g. ../shared/models) or a URL holding the files
          (default: $${MIRROR_ENV}, else where each is published: ${PUBLIC_MODEL_URL}...)
  --to    destination folder (default ./models)
  --json  print {"files": [paths]} instead of a list
`;

async function main(argv: string[]): Promise<number> {
  const values = parseOptions(argv, { from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } }, 'fetch-model');
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const source = fetchSource(values.from);
  const files = await fetchModelFiles(
    MODEL_FILES.map((f) => f.name),
    { source, dest: path.resolve(values.to ?? 'models'), progress: values.json ? undefined : progressLines() },
  );
  if (values.json) process.stdout.write(`${JSON.stringify({ files })}\n`);
  else process.stdout.write(`model files ready:\n${files.map((w) => `  ${w}`).join('\n')}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e) => {
    if (e instanceof MeshLlmError) {
      process.stderr.write(`mesh-llm: error: ${e.message}\n`);
      process.exitCode = e instanceof UsageError ? 2 : 1;
    } else throw e;
  },
);

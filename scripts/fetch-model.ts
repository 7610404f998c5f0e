/**
 * `npm run fetch-model -- [--from DIR|URL] [--to DIR] [--json]`: puts stories260K.bin and
 * tok512.bin into ./models. Default source: the public tinyllamas location.
 */
import * as path from 'node:path';
import { parseOptions, UsageError } from '../cli/args';
import { MeshLlmError } from '../lib/llm/errors';
import { PUBLIC_MODEL_URL, fetchModel } from '../lib/llm/fetch';

async function main(argv: string[]): Promise<number> {
  const values = parseOptions(argv, { from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } }, 'fetch-model');
  if (values.help) {
    process.stdout.write('usage: npm run fetch-model -- [--from DIR|URL] [--to DIR] [--json]\n  --from  a mirror folder (e.g. ../shared/models) or a URL (default ' + PUBLIC_MODEL_URL + ')\n  --to    destination folder (default ./models)\n');
    return 0;
  }
  const source = values.from ?? PUBLIC_MODEL_URL;
  const dest = path.resolve(values.to ?? 'models');
  const json = values.json ?? false;
  let last = '';
  const written = await fetchModel(/^https?:/i.test(source) ? source : path.resolve(source), dest, (file, done, total) => {
    if (json) return;
    const line = `${file}: ${((100 * done) / total).toFixed(0)}% (${done} of ${total} bytes)`;
    if (line !== last) process.stderr.write(`\r${line}`);
    if (done >= total) process.stderr.write('\n');
    last = line;
  });
  if (json) process.stdout.write(`${JSON.stringify({ files: written })}\n`);
  else process.stdout.write(`model files ready:\n${written.map((w) => `  ${w}`).join('\n')}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e) => {
    if (e instanceof MeshLlmError) {
      process.stderr.write(`\nmesh-llm: error: ${e.message}\n`);
      process.exitCode = e instanceof UsageError ? 2 : 1;
    } else throw e;
  },
);

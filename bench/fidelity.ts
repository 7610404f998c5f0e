/**
 * `npm run bench:fidelity [-- --json]`: int8 fidelity on the real model. Teacher-forces the
 * 256-token golden story through float32 and through int8 head weights, int8 transport and
 * both, and reports top-1 agreement with float32 and the mean KL divergence.
 */
import { Engine } from '../lib/llm/engine';
import { compareLogits } from '../lib/llm/fidelity';
import { goldenIds } from '../lib/llm/golden';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { Encoding } from '../lib/llm/quant';

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const paths = await resolveOrFetchModelPaths({});
  const ids = goldenIds('bos-greedy-256');
  const load = (quant: Encoding, transport: Encoding) => Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer, groups: 8, quant, transport });
  process.stderr.write(`teacher forcing ${ids.length} tokens of bos-greedy-256 (float32 reference)...\n`);
  const reference = await load('f32', 'f32').teacherForce(ids);
  const cases = [
    { name: 'int8 weights, f32 transport', quant: 'int8' as const, transport: 'f32' as const },
    { name: 'f32 weights, int8 transport', quant: 'f32' as const, transport: 'int8' as const },
    { name: 'int8 weights, int8 transport', quant: 'int8' as const, transport: 'int8' as const },
  ];
  const rows = [];
  for (const c of cases) {
    process.stderr.write(`  ${c.name}...\n`);
    rows.push({ case: c.name, ...compareLogits(reference, await load(c.quant, c.transport).teacherForce(ids)) });
  }
  if (!json) {
    console.log('| case | positions | top-1 agreement | mean KL (nats) | max KL (nats) |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.case} | ${r.positions} | ${(100 * r.top1Agreement).toFixed(1)}% | ${r.meanKl.toExponential(2)} | ${r.maxKl.toExponential(2)} |`);
  }
  const both = rows[2];
  console.log(JSON.stringify({ top1Agreement: both.top1Agreement, meanKl: both.meanKl, cases: rows }));
}

main();

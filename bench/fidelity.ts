/**
 * `npm run bench:fidelity [-- --json]`: fidelity of every weight format and transport on the
 * real model (stories260K), by teacher forcing. The sequences are the 256-token golden story
 * (bos-greedy-256) and four held-out stories the float32 model wrote (temperature 1, top-p 0.9,
 * seeds 101..104, 256 positions from BOS); each is fed through float32 and through every
 * weight format (f32, int8, int4, int2) x transport (f32, int8, int4), and the next-token
 * distributions compared at every position: top-1 agreement with float32, mean and max KL
 * divergence, and the perplexity of the sequences under the quantised model. Prints the table,
 * writes it to lib/radio/fidelity-table.json (the planner reads it) and the plot to
 * docs/quantisation-fidelity.png; the last line is one JSON object.
 *
 * GPTQ rows (lib/llm/gptq.ts, Frantar et al. 2022): the int8, int4 and int2 weights rounded by
 * GPTQ instead of to nearest, calibrated on eight other stories the float32 model wrote (seeds
 * 201..208, never the evaluation's), beside round-to-nearest; in the table's `gptq` rows.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { geometry } from '../lib/llm/config';
import { Engine } from '../lib/llm/engine';
import { attentionInputHessians } from '../lib/llm/calibration';
import { PooledFidelity, pooledFidelity } from '../lib/llm/fidelity';
import { fidelityChart } from '../lib/llm/fidelity-plot';
import { goldenIds } from '../lib/llm/golden';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { Encoding, TRANSPORT_ENCODINGS, WEIGHT_FORMATS, WeightFormat } from '../lib/llm/quant';
import { packageRoot } from '../lib/llm/resolve';
import { meshBodyBytes } from '../lib/radio/mac';
import { MODEL_PRESETS } from '../lib/radio/presets';

export const HELD_OUT_SEEDS = [101n, 102n, 103n, 104n];
/** The stories GPTQ is calibrated on: written by the float32 model like the held-out ones, other seeds. */
export const CALIBRATION_SEEDS = [201n, 202n, 203n, 204n, 205n, 206n, 207n, 208n];

export interface FidelityRow extends PooledFidelity {
  weights: WeightFormat;
  transport: Encoding;
  /** How the weights were rounded: to nearest, or by GPTQ. */
  rounding?: 'rtn' | 'gptq';
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const paths = await resolveOrFetchModelPaths({});
  const load = (quant: WeightFormat, transport: Encoding, gptqHessians?: Float64Array[]) => Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer, groups: 8, quant, transport, gptqHessians });
  const f32 = load('f32', 'f32');
  const sequences: { name: string; tokens: number[] }[] = [{ name: 'bos-greedy-256', tokens: goldenIds('bos-greedy-256') }];
  for (const seed of HELD_OUT_SEEDS) {
    const r = await f32.generate({ prompt: '', steps: 256, temperature: 1, topP: 0.9, seed });
    sequences.push({ name: `held-out seed ${seed}`, tokens: r.tokens });
  }
  process.stderr.write(`teacher forcing ${sequences.length} sequences (${sequences.map((s) => s.tokens.length).join(', ')} tokens) through float32...\n`);
  const reference = [];
  for (const s of sequences) reference.push(await f32.teacherForce(s.tokens));
  const rows: FidelityRow[] = [];
  for (const weights of WEIGHT_FORMATS) {
    for (const transport of TRANSPORT_ENCODINGS) {
      process.stderr.write(`  ${weights} weights, ${transport} transport...\n`);
      const engine = weights === 'f32' && transport === 'f32' ? f32 : load(weights, transport);
      const runs = [];
      for (let i = 0; i < sequences.length; i++) runs.push({ tokens: sequences[i].tokens, reference: reference[i], candidate: await engine.teacherForce(sequences[i].tokens) });
      rows.push({ weights, transport, ...pooledFidelity(runs) });
    }
  }
  const calibration = [];
  for (const seed of CALIBRATION_SEEDS) calibration.push((await f32.generate({ prompt: '', steps: 256, temperature: 1, topP: 0.9, seed })).tokens);
  process.stderr.write(`GPTQ: calibrating on ${calibration.length} stories (seeds ${CALIBRATION_SEEDS.join(', ')})...\n`);
  const hessians = await attentionInputHessians(f32.g, f32.gateway, f32.heads, calibration);
  const gptqRows: FidelityRow[] = [];
  for (const weights of WEIGHT_FORMATS.filter((w) => w !== 'f32')) {
    for (const transport of TRANSPORT_ENCODINGS) {
      process.stderr.write(`  ${weights} weights by GPTQ, ${transport} transport...\n`);
      const engine = load(weights, transport, hessians);
      const runs = [];
      for (let i = 0; i < sequences.length; i++) runs.push({ tokens: sequences[i].tokens, reference: reference[i], candidate: await engine.teacherForce(sequences[i].tokens) });
      gptqRows.push({ weights, transport, rounding: 'gptq', ...pooledFidelity(runs) });
    }
  }
  const tiny = geometry(MODEL_PRESETS.tinyllama);
  const layerBytes = (t: Encoding) => {
    const b = meshBodyBytes(tiny, t);
    return b.broadcast + 16 * b.result(2);
  };
  if (!json) {
    console.log('| weights | transport | positions | top-1 agreement | mean KL (nats) | max KL (nats) | perplexity (f32 %s) | TinyLlama 16x2 body bytes per layer |'.replace('%s', rows[0].referencePerplexity.toFixed(3)));
    console.log('|---|---|---|---|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.weights} | ${r.transport} | ${r.positions} | ${(100 * r.top1Agreement).toFixed(2)}% | ${r.meanKl.toExponential(2)} | ${r.maxKl.toExponential(2)} | ${r.perplexity.toFixed(3)} | ${layerBytes(r.transport)} |`);
    console.log('');
    console.log('GPTQ against round-to-nearest (same weights format and transport):');
    console.log('');
    console.log('| weights | transport | RTN top-1 | GPTQ top-1 | RTN mean KL | GPTQ mean KL | RTN perplexity | GPTQ perplexity |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const q of gptqRows) {
      const r = rows.find((x) => x.weights === q.weights && x.transport === q.transport)!;
      console.log(`| ${q.weights} | ${q.transport} | ${(100 * r.top1Agreement).toFixed(2)}% | ${(100 * q.top1Agreement).toFixed(2)}% | ${r.meanKl.toExponential(2)} | ${q.meanKl.toExponential(2)} | ${r.perplexity.toFixed(3)} | ${q.perplexity.toFixed(3)} |`);
    }
  }
  const table = {
    model: 'stories260K',
    measuredBy: 'npm run bench:fidelity',
    sequences: sequences.map((s) => ({ name: s.name, tokens: s.tokens.length })),
    referencePerplexity: rows[0].referencePerplexity,
    rows: rows.map(({ weights, transport, positions, top1Agreement, meanKl, maxKl, perplexity }) => ({ weights, transport, positions, top1Agreement, meanKl, maxKl, perplexity })),
    gptq: {
      method: 'GPTQ (Frantar et al. 2022, arXiv:2210.17323), lib/llm/gptq.ts',
      calibration: CALIBRATION_SEEDS.map((s) => `float32 story seed ${s}`),
      rows: gptqRows.map(({ weights, transport, positions, top1Agreement, meanKl, maxKl, perplexity }) => ({ weights, transport, positions, top1Agreement, meanKl, maxKl, perplexity })),
    },
  };
  const root = packageRoot();
  fs.writeFileSync(path.join(root, 'lib', 'radio', 'fidelity-table.json'), `${JSON.stringify(table, null, 2)}\n`);
  const series = WEIGHT_FORMATS.map((w) => ({ name: `${w} weights`, points: rows.filter((r) => r.weights === w).map((r) => ({ label: r.transport, bytes: layerBytes(r.transport), top1: r.top1Agreement })) }));
  fs.writeFileSync(path.join(root, 'docs', 'quantisation-fidelity.png'), fidelityChart(series, { title: 'Top-1 agreement with float32 vs radio bytes per layer', xLabel: 'body bytes per layer (TinyLlama, 16 nodes x 2 heads)', yLabel: 'top-1 agreement (stories260K)', yMin: 0.4, floor: 0.99 }));
  process.stderr.write('wrote lib/radio/fidelity-table.json and docs/quantisation-fidelity.png\n');
  const best = rows.find((r) => r.weights === 'int8' && r.transport === 'int8')!;
  console.log(JSON.stringify({ top1Agreement: best.top1Agreement, meanKl: best.meanKl, cases: table.rows, gptq: table.gptq.rows }));
}

main();

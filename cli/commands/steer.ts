/**
 * `mesh-llm steer`: the steering data and its measurement.
 *   calibrate  recompute every channel's direction in steering/ from its prompts
 *   measure    lexicon mass against reading, perplexity, attribution (the figures of docs/STEERING.md)
 *   readings   the normalised readings of every node for a scenario or a CSV trace
 *   simulate   a scenario's sensor trace as CSV (to replay with --sensors)
 */
import * as fs from 'node:fs';
import { UsageError, floatOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { Engine } from '../../lib/llm/engine';
import { resolveOrFetchModelPaths } from '../../lib/llm/provide';
import * as path from 'node:path';
import { recomputeDirections, steeringDir } from '../../lib/steering/directions';
import { REPETITION_LIMITS, SteeringMeasure, VarietyMeasure, measureSteering, repetitionOk } from '../../lib/steering/measure';
import { lineChart } from '../../lib/steering/plot';
import { readingsFor, scenarioName } from '../../lib/steering/run';
import { simulate, toSensorCsv } from '../../lib/steering/sensors';

export const usage = `mesh-llm steer calibrate [--layer L] [--model PATH] [--tokenizer PATH]
mesh-llm steer measure [--alpha A] [--trials N] [--samples N] [--plot FILE.png] [--json] [--model PATH] [--tokenizer PATH]
mesh-llm steer readings (--scenario NAME | --sensors FILE) [--nodes N]
mesh-llm steer simulate --scenario NAME [--nodes N] [--seed S] [--affected NODE] [--out FILE]

  calibrate          sample the corpus of steering/steering.json from the model and recompute each
                     channel's direction (steering/<channel>.json) by its method (contrastive
                     activation addition, or the lexicon gradient) at the layer of
                     steering/steering.json (or --layer L, which is then written there); a few
                     minutes on stories260K
  measure            per channel: lexicon mass at readings 0..1, its ratio at full reading, whether
                     it rises monotonically, the perplexity increase of steered text; per channel at
                     full reading and per scenario: repeated-4-gram rate and distinct-2 of steered
                     text, greedy and sampled; the share of attribution trials naming the one
                     stimulated node of eight, and both of two; the novelty detector's ROC AUC
  readings           print every node's normalised readings (JSON)
  simulate           write a scenario's sensor trace as CSV (stdout or --out)
  --alpha A          steering strength (default: steering/steering.json)
  --trials N         attribution trials (default 80)
  --samples N        sampled texts per evaluation context behind each perplexity (default 4)
  --plot FILE.png    also draw the lexicon mass curves
  --scenario NAME    calm, explosion, bright-flash or earthquake
  --sensors FILE     a CSV trace (at,node,<channels>...), calibrated on its first minute
  --nodes N          head nodes node-1..node-N (default 8)
  --affected NODE    only this node feels the scenario's event
  The steering data directory is steering/ of the package, or MESH_LLM_STEERING_DIR.`;

const optionSpec = {
  layer: { type: 'string' },
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  alpha: { type: 'string' },
  trials: { type: 'string' },
  samples: { type: 'string' },
  plot: { type: 'string' },
  json: { type: 'boolean' },
  scenario: { type: 'string' },
  sensors: { type: 'string' },
  nodes: { type: 'string' },
  seed: { type: 'string' },
  affected: { type: 'string' },
  out: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseOptions<typeof optionSpec>>;

const nodeIds = (values: Values) => Array.from({ length: intOption('nodes', values.nodes, 8, 1, 1024) }, (_, i) => `node-${i + 1}`);

async function calibrate(values: Values): Promise<number> {
  const paths = await resolveOrFetchModelPaths({ model: values.model, tokenizer: values.tokenizer });
  const engine = Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer });
  const layer = values.layer === undefined ? undefined : intOption('layer', values.layer, 0, 0, engine.g.nLayers - 1);
  const started = Date.now();
  let shown = 0;
  const onProgress = (done: number, total: number) => {
    const step = Math.max(1, Math.round(total / 20)); // every 5 %
    if (done !== total && done - shown < step) return;
    shown = done;
    process.stderr.write(`steer calibrate: the model writes its corpus: ${done}/${total} stories (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  };
  let gradientShown = 0;
  const onGradientProgress = (done: number, total: number) => {
    if (done !== total && done - gradientShown < Math.max(1, Math.round(total / 10))) return;
    gradientShown = done;
    process.stderr.write(`steer calibrate: lexicon gradient: ${done}/${total} directions of the writable subspace (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  };
  const written = await recomputeDirections(engine, path.basename(paths.model), steeringDir(), layer, { onProgress, onGradientProgress });
  for (const w of written) {
    let how: string;
    if (w.counts) {
      const seen = Object.entries(w.counts.occurrences).map(([word, n]) => `${word} ${n}`).join(', ');
      how = `contrastive activation addition; lexicon in the corpus: ${seen}; ${w.counts.positive} positions near it, ${w.counts.negative} others`;
    } else {
      how = `lexicon gradient on ${w.contexts} contexts from the corpus`;
    }
    process.stdout.write(`${w.channel}: |direction| ${w.norm.toFixed(3)} -> ${w.file} (${how})\n`);
  }
  return 0;
}

function formatMeasure(m: SteeringMeasure): string {
  const lines = [`layer ${m.layer}, alpha ${m.alpha}; per-node shares reproduce each direction to ${m.reconstructionError.toExponential(1)}; perplexity on ${m.perplexitySamples} samples per context`];
  lines.push('channel        mass at readings 0 .. 1                          ratio  monotonic  perplexity');
  for (const c of m.channels) {
    const curve = c.curve.map((p) => p.mass.toFixed(5)).join(' ');
    lines.push(`${c.name.padEnd(14)} ${curve.padEnd(48)} ${c.massRatioAtFull.toFixed(2).padStart(5)}  ${String(c.monotonic).padEnd(9)}  ${c.perplexityUnsteered.toFixed(3)} -> ${c.perplexitySteered.toFixed(3)} (${(100 * c.perplexityIncrease).toFixed(1)}%)`);
  }
  lines.push(`variety (repeated 4-grams / distinct-2; greedy, sampled at ${m.varietyOptions.temperature} x ${m.varietyOptions.seeds.length} seeds; ${m.varietyOptions.starts.length * m.varietyOptions.promptsPerStart} model-written prompts, ${m.varietyOptions.steps} positions)`);
  const row = (name: string, v: VarietyMeasure, extra = '') =>
    lines.push(`${name.padEnd(14)} greedy ${v.greedy.repeated4.toFixed(3)} / ${v.greedy.distinct2.toFixed(3)}   sampled ${v.sampled.repeated4.toFixed(3)} / ${v.sampled.distinct2.toFixed(3)}   ${v === m.unsteeredVariety ? '' : repetitionOk(v, m.unsteeredVariety) ? 'ok' : 'LOOPS'}${extra}`);
  row('unsteered', m.unsteeredVariety);
  for (const c of m.channels) row(c.name, c.variety);
  for (const s of m.scenarios) row(s.name, s.variety, `   (|push| ${s.pushNorm.toFixed(2)}, alpha ${s.alpha.toFixed(3)})`);
  lines.push(`attribution: the stimulated node is top-1 in ${(100 * m.attributionTop1).toFixed(1)}% of ${m.attributionTrials} trials; both stimulated nodes are the top 2 in ${(100 * m.attributionPairTop2).toFixed(1)}% of ${m.pairTrials} two-stimulus trials`);
  lines.push(`novelty from the divergences alone: ROC AUC ${m.noveltyAuc.toFixed(3)} (${m.noveltyWindows.stimulus} stimulus, ${m.noveltyWindows.none} drift windows)`);
  return `${lines.join('\n')}\n`;
}

/** The `--json` summary: per channel and scenario the figures the targets name, then everything under `details`. */
function measureJson(m: SteeringMeasure) {
  const u = m.unsteeredVariety;
  const repetition = (v: VarietyMeasure) => ({ greedyRepeated4: v.greedy.repeated4, sampledRepeated4: v.sampled.repeated4, greedyDistinct2: v.greedy.distinct2, sampledDistinct2: v.sampled.distinct2, repetitionOk: repetitionOk(v, u) });
  return {
    channels: m.channels.map((c) => ({ name: c.name, massRatioAtFull: c.massRatioAtFull, monotonic: c.monotonic, perplexityIncrease: c.perplexityIncrease, ...repetition(c.variety) })),
    scenarios: m.scenarios.map((s) => ({ name: s.name, pushNorm: s.pushNorm, alpha: s.alpha, ...repetition(s.variety) })),
    unsteered: repetition(u),
    repetitionLimits: { sampledRepeated4: REPETITION_LIMITS.sampledRatio * u.sampled.repeated4, greedyRepeated4: u.greedy.repeated4 + REPETITION_LIMITS.greedyExcess },
    attributionTop1: m.attributionTop1,
    attributionPairTop2: m.attributionPairTop2,
    noveltyAuc: m.noveltyAuc,
    details: m,
  };
}

async function measure(values: Values): Promise<number> {
  const started = Date.now();
  const paths = await resolveOrFetchModelPaths({ model: values.model, tokenizer: values.tokenizer });
  const m = await measureSteering({
    modelPath: paths.model,
    tokenizerPath: paths.tokenizer,
    alpha: values.alpha === undefined ? undefined : floatOption('alpha', values.alpha, 0, -100, 100),
    attributionTrials: intOption('trials', values.trials, 80, 1, 100000),
    perplexitySamples: intOption('samples', values.samples, 4, 1, 1000),
    onProgress: (done, total, what) => process.stderr.write(done < total ? `steer measure: ${what} (${done + 1}/${total})\n` : `steer measure: done in ${((Date.now() - started) / 1000).toFixed(0)} s\n`),
  });
  if (values.plot) {
    const series = m.channels.map((c) => ({ name: c.name, points: c.curve.map((p) => ({ x: p.reading, y: p.mass / c.curve[0].mass })) }));
    fs.writeFileSync(values.plot, lineChart(series, { title: `Lexicon mass vs reading (layer ${m.layer}, alpha ${m.alpha})`, xLabel: 'normalised reading', yLabel: 'mass / mass at 0', reference: 2 }));
  }
  if (values.json) {
    printJson(measureJson(m));
  } else {
    process.stdout.write(formatMeasure(m));
  }
  return 0;
}

function readings(values: Values): number {
  if ((values.scenario === undefined) === (values.sensors === undefined)) throw new UsageError('steer readings: give exactly one of --scenario NAME and --sensors FILE');
  printJson(readingsFor({ scenario: values.scenario, sensors: values.sensors }, nodeIds(values)), 2);
  return 0;
}

function simulateCommand(values: Values): number {
  if (values.scenario === undefined) throw new UsageError('steer simulate: --scenario NAME is required');
  const nodes = nodeIds(values);
  const affected = values.affected === undefined ? undefined : [values.affected];
  const trace = simulate({ scenario: scenarioName(values.scenario), nodes, seed: intOption('seed', values.seed, 1, 0, 2 ** 31), affected, epicentre: values.affected });
  const csv = toSensorCsv(trace);
  if (values.out) fs.writeFileSync(values.out, csv);
  else process.stdout.write(csv);
  return 0;
}

const SUBCOMMANDS: Record<string, (values: Values) => number | Promise<number>> = { calibrate, measure, readings, simulate: simulateCommand };

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const handler = sub === undefined ? undefined : SUBCOMMANDS[sub];
  if (!handler) throw new UsageError(`steer: expected one of ${Object.keys(SUBCOMMANDS).join(', ')}${sub === undefined ? '' : ` (got "${sub}")`}`);
  return handler(parseOptions(rest, optionSpec, `steer ${sub}`));
}

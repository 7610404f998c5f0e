/** `mesh-llm runs list|show ID|export ID`: the recorded runs and jobs of a --data folder's run store. */
import * as path from 'node:path';
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { MeshLlmError } from '../../lib/llm/errors';
import { EXPORT_FORMATS, toCsv, toJsonl } from '../../lib/runs/export';
import { JobRow, RUN_STORE_FILE, RunStore } from '../../lib/runs/store';
import { defaultSettingsOptions } from '../../settings';
import { floatOption } from '../args';
import { resolveOrFetchModelPaths } from '../../lib/llm/provide';
import { modelDigest } from '../../lib/runs/jobs';
import { diffRuns, replayRun } from '../../lib/runs/replay';
import { RunRecord } from '../../lib/runs/store';
import { readingsFor } from '../../lib/steering/run';
import { parseRadioSettings, radioOptionSpec } from './radio-options';

type Values = ReturnType<typeof parseOptions<typeof spec>>;

async function replay(store: RunStore, record: RunRecord, v: Values): Promise<number> {
  const paths = await resolveOrFetchModelPaths({});
  const nodes = (record.job.mesh?.nodes.length ? record.job.mesh.nodes : [{ node: 'node-1' }]).map((_, i) => `node-${i + 1}`);
  const readings = v.scenario !== undefined || v.sensors !== undefined ? readingsFor({ scenario: v.scenario, sensors: v.sensors }, nodes) : undefined;
  const alpha = v.alpha === undefined ? undefined : floatOption('alpha', v.alpha, 0, -1e6, 1e6);
  if (v.radio !== undefined) choiceOption('radio', v.radio, 'sim', ['sim'] as const);
  const radio = v.radio === undefined ? undefined : parseRadioSettings({ ...v, nodes: undefined });
  process.stderr.write(`mesh-llm: replaying run ${record.job.id} (${record.tokens.length} tokens) on ${radio ? `${nodes.length} radio head nodes (simulated channel, ${radio.region} SF${radio.sf})` : v.mesh ? `${v.mesh} head-node processes` : 'the engine'}${readings || alpha !== undefined ? ', counterfactual' : ''}\n`);
  const r = await replayRun(store, record, {
    modelPath: paths.model,
    tokenizerPath: paths.tokenizer,
    model: { path: paths.model, digest: modelDigest(paths.model, paths.tokenizer) },
    mesh: v.mesh === undefined ? undefined : intOption('mesh', v.mesh, 1, 1, 4096),
    native: v.native,
    alpha,
    readings,
    radio: radio && { region: radio.region, sf: radio.sf, bandwidthKHz: radio.bandwidthKHz, channels: radio.channels, channelPlan: radio.channelPlan, loss: radio.loss, timeScale: radio.timeScale },
  });
  if (v.json) printJson({ ...r, of: record.job.id, same: r.differences.length === 0 });
  else if (r.counterfactual) process.stdout.write(`counterfactual run ${r.id} of ${record.job.id}: ${r.tokens} tokens${r.differences.length ? `; first difference: ${r.differences[0]}` : '; the same tokens'} (mesh-llm runs diff ${record.job.id.slice(0, 8)} ${r.id.slice(0, 8)})\n`);
  else process.stdout.write(r.differences.length ? `replay ${r.id} differs from run ${record.job.id}:\n  ${r.differences.join('\n  ')}\n` : `replay ${r.id}: the same ${r.tokens} tokens, probabilities and attributions as run ${record.job.id}\n`);
  return r.counterfactual || r.differences.length === 0 ? 0 : 1;
}

function diff(a: RunRecord, b: RunRecord, json: boolean): number {
  const d = diffRuns(a, b);
  if (json) {
    printJson({ runA: a.job.id, runB: b.job.id, ...d });
    return 0;
  }
  const lines = [d.pos === null ? `runs ${a.job.id} and ${b.job.id} have the same tokens` : `runs diverge at position ${d.pos}, after ${JSON.stringify(d.common)}`];
  if (d.pos !== null) lines.push(`  ${a.job.id.slice(0, 8)}: …${JSON.stringify(d.a)}`, `  ${b.job.id.slice(0, 8)}: …${JSON.stringify(d.b)}`);
  if (d.alpha.a !== d.alpha.b) lines.push(`alpha: ${d.alpha.a ?? 'none'} vs ${d.alpha.b ?? 'none'}`);
  lines.push(d.readings.length ? 'readings that differ there:' : 'the readings in force are the same');
  for (const r of d.readings) lines.push(`  ${r.node}: ${JSON.stringify(r.a)} vs ${JSON.stringify(r.b)}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

export const usage = `mesh-llm runs list [--data DIR] [--limit N] [--json]
mesh-llm runs show ID [--data DIR] [--json]
mesh-llm runs export ID --format csv|jsonl [--data DIR]
mesh-llm runs replay ID [--mesh N [--native] | --radio sim [--region R] [--sf S] [--bw B] [--loss P]] [--alpha A] [--scenario NAME | --sensors FILE] [--data DIR] [--json]
mesh-llm runs diff A B [--data DIR] [--json]

  list             the newest jobs first: id, state, source, position reached, prompt
  show ID          one run: its request, model, mesh, text and a row per token (probability,
                   KL steered vs unsteered and the node it is attributed to, when recorded)
  export ID        the whole run on stdout: jsonl (every record, one object a line) or csv (a row per token)
  replay ID        run the recorded request again from its recorded sensor readings, on the engine (its heads
                   cut as the run's nodes were) or on N head-node processes (--mesh N), record it as a new
                   run, and check its tokens, probabilities and attributions are the recorded ones (exit 1 if not);
                   --alpha, --scenario or --sensors override the recorded steering: a counterfactual run;
                   --radio sim: on as many radio head nodes behind the LoRa bridge, on the simulated channel
                   (--region, --sf, --bw, --channels, --loss as generate --radio takes them; a steered run's
                   steering goes to each radio node over the radio)
  diff A B         where the texts of two runs diverge, and which node's readings differ there
  ID               a job id or an unambiguous prefix of it
  --data DIR       the data folder of mesh-llm start (default ./data): its run store is DIR/${RUN_STORE_FILE}
  --limit N        list at most N jobs (default 50)
  --json           one JSON value instead of the table`;

const spec = {
  data: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  format: { type: 'string' },
  mesh: { type: 'string' },
  native: { type: 'boolean' },
  alpha: { type: 'string' },
  scenario: { type: 'string' },
  sensors: { type: 'string' },
  ...radioOptionSpec,
} as const;

function openStore(data: string | undefined, write = false): RunStore {
  return RunStore.open(path.join(data ?? defaultSettingsOptions().dataDir, RUN_STORE_FILE), { readonly: !write });
}

function runOf(store: RunStore, id: string | undefined, sub: string) {
  if (!id || id.startsWith('--')) throw new UsageError(`runs ${sub}: expected a run id (see mesh-llm runs list)`);
  const run = store.run(id);
  if (!run) throw new MeshLlmError(`no run "${id}" in ${store.file}`);
  return run;
}

const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

function listTable(jobs: JobRow[]): string {
  if (!jobs.length) return 'no runs recorded yet\n';
  const rows = jobs.map((j) => [j.id.slice(0, 8), j.state, j.source, `${j.position}/${j.settings.steps}`, when(j.createdMs), JSON.stringify(j.settings.prompt).slice(0, 40)]);
  const head = ['id', 'state', 'source', 'position', 'created (UTC)', 'prompt'];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]))).join('  ')).join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const positionals: string[] = [];
  while (rest.length && !rest[0].startsWith('--')) positionals.push(rest.shift() as string);
  const id = positionals[0];
  const v = parseOptions(rest, spec, `runs ${sub ?? ''}`.trim());
  if (!['list', 'show', 'export', 'replay', 'diff'].includes(sub)) throw new UsageError(`runs: expected list, show ID, export ID, replay ID or diff A B${sub ? `, not "${sub}"` : ''}`);
  if (positionals.length > (sub === 'diff' ? 2 : sub === 'list' ? 0 : 1)) throw new UsageError(`runs ${sub}: unexpected argument "${positionals.at(-1)}"`);
  const store = openStore(v.data, sub === 'replay');
  try {
    if (sub === 'replay') return await replay(store, runOf(store, id, sub), v);
    if (sub === 'diff') return diff(runOf(store, id, sub), runOf(store, positionals[1], sub), v.json ?? false);
    if (sub === 'list') {
      const jobs = store.jobs(intOption('limit', v.limit, 50, 1, 1 << 20));
      if (v.json) printJson(jobs);
      else process.stdout.write(listTable(jobs));
      return 0;
    }
    const record = runOf(store, id, sub);
    if (sub === 'export') {
      if (v.format === undefined) throw new UsageError('runs export: --format csv|jsonl is required');
      const format = choiceOption('format', v.format, 'jsonl', EXPORT_FORMATS);
      process.stdout.write(format === 'csv' ? toCsv(record) : toJsonl(record));
      return 0;
    }
    if (v.json) {
      printJson(record);
      return 0;
    }
    const j = record.job;
    const s = j.settings;
    const out = [
      `run ${j.id}: ${j.state}${j.error ? ` (${j.error})` : ''}, from ${j.source}, ${when(j.createdMs)} UTC`,
      `request: ${JSON.stringify(s.prompt)}, ${s.steps} steps, temperature ${s.temperature}, top-p ${s.topP}, seed ${s.seed}`,
      `model:   ${j.model} (sha256 ${j.modelDigest.slice(0, 16)}…)`,
      `mesh:    ${j.mesh ? `${j.mesh.kind}, ${j.mesh.nodes.length} node(s)${j.mesh.quant ? `, ${j.mesh.quant}` : ''}: ${j.mesh.nodes.map((n) => `${n.node} [${n.heads.join(',')}]`).join(' ')}` : 'not started'}`,
      `text:    ${JSON.stringify(j.text ?? record.tokens.map((t) => t.piece).join(''))}`,
      `${record.tokens.length} token(s), ${record.gathers.length} gather(s), ${record.readings.length} reading(s), ${record.alerts.length} alert(s)`,
      '',
      ['pos', 'token', 'piece', 'fed/sampled', 'p', 'KL', 'node'].join('\t'),
      ...record.tokens.map((t) => [t.pos, t.token, JSON.stringify(t.piece), t.sampled ? 'sampled' : 'fed', t.probability?.toFixed(4) ?? '-', t.kl?.toExponential(2) ?? '-', t.node ?? '-'].join('\t')),
    ];
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  } finally {
    store.close();
  }
}

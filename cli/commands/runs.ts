/** `mesh-llm runs list|show ID|export ID`: the recorded runs and jobs of a --data folder's run store. */
import * as path from 'node:path';
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { MeshLlmError } from '../../lib/llm/errors';
import { EXPORT_FORMATS, toCsv, toJsonl } from '../../lib/runs/export';
import { JobRow, RUN_STORE_FILE, RunStore } from '../../lib/runs/store';
import { defaultSettingsOptions } from '../../settings';

export const usage = `mesh-llm runs list [--data DIR] [--limit N] [--json]
mesh-llm runs show ID [--data DIR] [--json]
mesh-llm runs export ID --format csv|jsonl [--data DIR]

  list             the newest jobs first: id, state, source, position reached, prompt
  show ID          one run: its request, model, mesh, text and a row per token (probability,
                   KL steered vs unsteered and the node it is attributed to, when recorded)
  export ID        the whole run on stdout: jsonl (every record, one object a line) or csv (a row per token)
  ID               a job id or an unambiguous prefix of it
  --data DIR       the data folder of mesh-llm start (default ./data): its run store is DIR/${RUN_STORE_FILE}
  --limit N        list at most N jobs (default 50)
  --json           one JSON value instead of the table`;

const spec = { data: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' }, format: { type: 'string' } } as const;

function openStore(data: string | undefined): RunStore {
  return RunStore.open(path.join(data ?? defaultSettingsOptions().dataDir, RUN_STORE_FILE), { readonly: true });
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
  const id = rest[0] && !rest[0].startsWith('--') ? rest[0] : undefined;
  const v = parseOptions(id ? rest.slice(1) : rest, spec, `runs ${sub ?? ''}`.trim());
  if (sub !== 'list' && sub !== 'show' && sub !== 'export') throw new UsageError(`runs: expected list, show ID or export ID${sub ? `, not "${sub}"` : ''}`);
  const store = openStore(v.data);
  try {
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

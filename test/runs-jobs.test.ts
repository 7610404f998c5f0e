/**
 * Durable jobs on the server `npm start` runs: five jobs queued over POST /jobs, the gateway
 * SIGKILLed after the second job's 10th token, started again on the same --data: every job
 * completes with the tokens of an uninterrupted run, and GET /jobs/:id tells each job's state
 * and tokens so far.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { Engine } from '../lib/llm/engine';
import { parseControl, topicsFor } from '../lib/mesh/wire';
import { fromJsonl, tokensFromCsv } from '../lib/runs/export';
import { RunStore } from '../lib/runs/store';
import { binPath, runCli } from './support/cli';
import { modelPaths } from './support/fixtures';
import { StartedServer as Server, startServer, stopServer } from './support/start';




/** Waits until the deployed flow answers GET /jobs/:id (its own 404 {error} for an unknown id, not the server's). */
async function flowServes(url: string): Promise<void> {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/jobs/probe`);
    if ((res.headers.get('content-type') ?? '').includes('application/json')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the flow on ${url} does not serve GET /jobs/:id`);
}

const requests = [
  { prompt: 'Once upon a time', steps: 48, temperature: 0 },
  { prompt: 'The little dog', steps: 64, temperature: 0.9, topP: 0.9, seed: 42 },
  { prompt: 'Lily had a red ball', steps: 40, temperature: 0 },
  { prompt: 'One day', steps: 40, temperature: 1, seed: 7 },
  { prompt: 'Tom and Sue', steps: 32, temperature: 0.5, topP: 0.8, seed: 3 },
];

describe('durable jobs on mesh-llm start', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-jobs-'));
  let server: Server | undefined;
  let ids: string[] = [];

  afterAll(async () => {
    await stopServer(server, 'SIGTERM');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 30000);

  test("5 queued jobs, the gateway SIGKILLed after the second job's 10th token, started again: every job completes with an uninterrupted run's tokens", async () => {
    server = await startServer(['--nodes', '4', '--data', dataDir, '--scenario', 'none']);
    const first = server;
    await flowServes(first.url);
    // the second job's session is the second one seen on the tokens topic
    const listener = await mqtt.connectAsync(first.broker);
    const sessions: number[] = [];
    const counts = new Map<number, number>();
    let killedAt: { session: number; tokens: number } | null = null;
    const killed = new Promise<void>((resolve) => {
      listener.on('message', (_topic, payload) => {
        const t = parseControl('token', payload);
        if (!counts.has(t.session)) sessions.push(t.session);
        counts.set(t.session, (counts.get(t.session) ?? 0) + 1);
        if (!killedAt && sessions.length === 2 && counts.get(sessions[1]) === 10) {
          killedAt = { session: sessions[1], tokens: 10 };
          first.child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await listener.subscribeAsync(topicsFor('default').tokens);

    for (const r of requests) {
      const res = await fetch(`${first.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(r) });
      const body = await res.json();
      expect({ status: res.status, state: body.state }).toEqual({ status: 202, state: 'queued' });
      ids.push(body.job);
    }
    await killed;
    await new Promise((r) => first.child.once('exit', r));
    await listener.endAsync().catch(() => undefined);

    // what the store holds after the kill: job 1 done, job 2 cut short with at least 10 tokens, 3-5 queued
    const store = RunStore.inDataDir(dataDir, { readonly: true });
    const cut = ids.map((id) => store.job(id)!);
    store.close();
    expect(cut.map((j) => j.state)).toEqual(['done', 'running', 'queued', 'queued', 'queued']);
    expect(cut[1].position).toBeGreaterThanOrEqual(10);
    expect(cut[1].position).toBeLessThan(requests[1].steps);

    server = await startServer(['--nodes', '4', '--data', dataDir, '--scenario', 'none']);
    const second = server;
    await flowServes(second.url);
    const deadline = Date.now() + 120000;
    const jobs: { state: string; tokens: number[]; text: string }[] = [];
    for (const id of ids) {
      for (;;) {
        const res = await fetch(`${second.url}/jobs/${id}`);
        expect(res.status).toBe(200);
        const job = await res.json();
        if (job.state === 'done' || job.state === 'failed' || Date.now() > deadline) {
          jobs.push(job);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer });
    for (const [i, r] of requests.entries()) {
      const expected = await engine.generate({ prompt: r.prompt, steps: r.steps, temperature: r.temperature, topP: r.topP ?? 0.9, seed: BigInt(r.seed ?? 0) });
      expect({ job: i + 1, state: jobs[i].state, tokens: jobs[i].tokens }).toEqual({ job: i + 1, state: 'done', tokens: expected.tokens });
      expect(jobs[i].text).toBe(expected.text);
    }
    expect(second.output()).toMatch(new RegExp(`resuming job ${ids[1]} from position \\d+`));
  }, 280000);

  test('GET /jobs/:id of an unknown job answers 404 {error}', async () => {
    if (!server) throw new Error('the server did not start');
    const res = await fetch(`${server.url}/jobs/no-such-job`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'no job "no-such-job" in the run store' });
  });

  test('runs list shows every job, newest first; --json gives the rows', async () => {
    const table = await runCli(['runs', 'list', '--data', dataDir]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^id\s+state\s+source\s+position\s+created \(UTC\)\s+prompt$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3).join(' '))).toEqual([...ids].reverse().map((id) => `${id.slice(0, 8)} done http`));
    const json = await runCli(['runs', 'list', '--data', dataDir, '--json']);
    const rows = JSON.parse(json.stdout);
    expect(rows.map((r: { id: string }) => r.id)).toEqual([...ids].reverse());
    expect(rows[4]).toMatchObject({ state: 'done', settings: { prompt: 'Once upon a time', steps: 48, temperature: 0 }, position: 48, mesh: { kind: 'mqtt', quant: 'f32' } });
    expect(rows[4].mesh.nodes).toHaveLength(4);
  });

  test('runs show ID (a prefix) tells the request, model, mesh and text, and a row per token; --json the whole record', async () => {
    const store = RunStore.inDataDir(dataDir, { readonly: true });
    const record = store.run(ids[1])!;
    store.close();
    const shown = await runCli(['runs', 'show', ids[1].slice(0, 8), '--data', dataDir]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`run ${ids[1]}: done, from http`);
    expect(shown.stdout).toContain('request: "The little dog", 64 steps, temperature 0.9, top-p 0.9, seed 42');
    expect(shown.stdout).toContain(`text:    ${JSON.stringify(record.job.text)}`);
    expect(shown.stdout.trim().split('\n').filter((l) => /^\d+\t\d+\t/.test(l))).toHaveLength(64);
    const json = await runCli(['runs', 'show', ids[1], '--data', dataDir, '--json']);
    expect(JSON.parse(json.stdout)).toEqual(record);
    expect(record.tokens.filter((t) => !t.sampled).map((t) => t.pos)).toEqual([1, 2, 3, 4]); // BOS, then The, little, do, g
    expect(record.gathers.length).toBeGreaterThanOrEqual(64 * 5);
    const missing = await runCli(['runs', 'show', 'zzzz', '--data', dataDir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^mesh-llm: error: no run "zzzz" in .*runs\.sqlite/);
  });

  test('runs export: jsonl reads back into the same record (and imports into another store unchanged), csv into the same token rows', async () => {
    const store = RunStore.inDataDir(dataDir, { readonly: true });
    const record = store.run(ids[3])!;
    store.close();
    const jsonl = await runCli(['runs', 'export', ids[3], '--format', 'jsonl', '--data', dataDir]);
    expect(jsonl.code).toBe(0);
    expect(fromJsonl(jsonl.stdout)).toEqual(record);
    const other = RunStore.open(path.join(dataDir, 'imported.sqlite'));
    other.importRun(fromJsonl(jsonl.stdout));
    expect(other.run(ids[3])).toEqual({ ...record, job: { ...record.job, seq: 1 } }); // seq numbers a store's own jobs
    other.close();
    const csv = await runCli(['runs', 'export', ids[3], '--format', 'csv', '--data', dataDir]);
    expect(csv.code).toBe(0);
    expect(csv.stdout.split('\n')[0]).toBe('pos,token,piece,sampled,probability,top_k,kl,node,round_trip_ms');
    expect(tokensFromCsv(csv.stdout)).toEqual(record.tokens);
    const bad = await runCli(['runs', 'export', ids[3], '--format', 'xml', '--data', dataDir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--format "xml": expected one of jsonl, csv/);
  });

  test('runs replay re-runs a recorded run on the engine and on a mesh of head-node processes: the same tokens; a replay is recorded as a run of its own', async () => {
    const engine = await runCli(['runs', 'replay', ids[1].slice(0, 8), '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(engine.stderr).toMatch(/replaying run .* on the engine/);
    expect(engine.code).toBe(0);
    const e = JSON.parse(engine.stdout);
    expect(e).toMatchObject({ of: ids[1], same: true, counterfactual: false, differences: [], tokens: 64 });
    const mesh = await runCli(['runs', 'replay', ids[2], '--mesh', '4', '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(mesh.code).toBe(0);
    expect(JSON.parse(mesh.stdout)).toMatchObject({ of: ids[2], same: true, differences: [], tokens: 40 });
    const store = RunStore.inDataDir(dataDir, { readonly: true });
    const replayed = store.run(e.id)!;
    const original = store.run(ids[1])!;
    store.close();
    expect(replayed.job).toMatchObject({ source: `replay:${ids[1]}`, state: 'done', text: original.job.text, mesh: { kind: 'engine' } });
    expect(replayed.tokens.map((t) => [t.pos, t.token, t.sampled])).toEqual(original.tokens.map((t) => [t.pos, t.token, t.sampled]));
  });

  test('a counterfactual replay (--scenario explosion --alpha 4) steers the run; replaying it gives its tokens and attributions again; runs diff tells where the texts diverge and whose readings differ', async () => {
    const cf = await runCli(['runs', 'replay', ids[0], '--scenario', 'explosion', '--alpha', '4', '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(cf.code).toBe(0);
    const counterfactual = JSON.parse(cf.stdout);
    expect(counterfactual).toMatchObject({ of: ids[0], counterfactual: true });
    expect(counterfactual.differences.length).toBeGreaterThan(0);
    const again = await runCli(['runs', 'replay', counterfactual.id, '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ of: counterfactual.id, counterfactual: false, same: true, differences: [] });
    const store = RunStore.inDataDir(dataDir, { readonly: true });
    const steered = store.run(counterfactual.id)!;
    store.close();
    expect(steered.job.settings.alpha).toBe(4);
    expect(steered.readings.map((r) => r.node)).toEqual(['node-1', 'node-2', 'node-3', 'node-4']);
    expect(steered.tokens.filter((t) => t.sampled).every((t) => typeof t.kl === 'number')).toBe(true);
    expect(steered.tokens.some((t) => t.node !== null)).toBe(true);
    const diff = await runCli(['runs', 'diff', ids[0], counterfactual.id, '--data', dataDir, '--json']);
    expect(diff.code).toBe(0);
    const d = JSON.parse(diff.stdout);
    expect(d.pos).toBe(Number(/^position (\d+)/.exec(counterfactual.differences[0])![1]));
    expect(d.readings.map((r: { node: string; a: unknown }) => [r.node, r.a])).toEqual([['node-1', null], ['node-2', null], ['node-3', null], ['node-4', null]]);
    expect(d.alpha).toEqual({ a: null, b: 4 });
    const text = await runCli(['runs', 'diff', ids[0], counterfactual.id, '--data', dataDir]);
    expect(text.stdout).toMatch(new RegExp(`^runs diverge at position ${d.pos}, after "Once upon a time`));
    expect(text.stdout).toMatch(/readings that differ there:\n  node-1: null vs \{/);
  });
});

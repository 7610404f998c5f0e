/**
 * The run store (lib/runs/store.ts) and durable jobs (lib/runs/jobs.ts) on a real SQLite
 * file: what is committed survives a SIGKILL in the middle of a write loop; a corrupt, foreign
 * or locked database is a clear error, never an empty store in memory; a resumed generation
 * gives an uninterrupted one's tokens; a job for another model is refused with the reason.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { Engine, Generation, forward } from '../lib/llm/engine';
import { MeshLlmError } from '../lib/llm/errors';
import { packageRoot } from '../lib/llm/resolve';
import { Jobs, modelDigest } from '../lib/runs/jobs';
import { RunStore } from '../lib/runs/store';
import { modelPaths } from './support/fixtures';
import { runCli } from './support/cli';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-runs-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const file = (name: string) => path.join(tmp, name);

const settings = { prompt: 'Once upon a time', steps: 32, temperature: 0.8, topP: 0.9, seed: '7' };

describe('the run store', () => {
  test('a job, its tokens, gathers, readings and alerts read back as written; the store is in WAL mode', () => {
    const store = RunStore.open(file('basic.sqlite'));
    try {
      const job = store.addJob({ id: 'job-1', source: 'http', settings, model: 'stories260K.bin', modelDigest: 'abc' });
      expect(job).toMatchObject({ id: 'job-1', state: 'queued', position: 0, settings });
      store.started('job-1', { kind: 'mqtt', nodes: [{ node: 'node-1', heads: [0, 1] }], quant: 'f32' });
      store.addToken('job-1', { pos: 1, token: 403, piece: ' Once', sampled: false }, [{ pos: 0, layer: 0, node: '', ms: 1.5 }]);
      store.addToken('job-1', { pos: 2, token: 407, piece: ' upon', sampled: true, probability: 0.5, topK: [[407, 0.5], [9, 0.25]], kl: 0.01, node: 'node-1' });
      store.addReading('job-1', { pos: 2, node: 'node-1', readings: { temperature: 0.3 }, baselines: { temperature: 21 }, vector: [0.1, 0.2] });
      store.addAlert('job-1', { pos: 2, atMs: 123, alert: { kind: 'sound', node: 'node-1' } });
      const run = store.run('job')!;
      expect(run.job).toMatchObject({ state: 'running', position: 2, mesh: { kind: 'mqtt', nodes: [{ node: 'node-1', heads: [0, 1] }], quant: 'f32' } });
      expect(run.tokens).toEqual([
        { pos: 1, token: 403, piece: ' Once', sampled: false, probability: null, topK: null, kl: null, node: null },
        { pos: 2, token: 407, piece: ' upon', sampled: true, probability: 0.5, topK: [[407, 0.5], [9, 0.25]], kl: 0.01, node: 'node-1' },
      ]);
      expect(run.gathers).toEqual([{ pos: 0, layer: 0, node: '', ms: 1.5, airtimeMs: null }]);
      expect(run.readings).toEqual([{ pos: 2, node: 'node-1', readings: { temperature: 0.3 }, baselines: { temperature: 21 }, vector: [0.1, 0.2] }]);
      expect(run.alerts).toEqual([{ pos: 2, atMs: 123, alert: { kind: 'sound', node: 'node-1' } }]);
      store.finish('job-1', ' Once upon');
      expect(store.unfinished()).toEqual([]);
    } finally {
      store.close();
    }
    const raw = new Database(file('basic.sqlite'), { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
  });

  test('a file that is not an SQLite database, or a corrupt one, is a clear error naming it', () => {
    fs.writeFileSync(file('text.sqlite'), 'this is a text file, not a database\n'.repeat(200));
    expect(() => RunStore.open(file('text.sqlite'))).toThrow(MeshLlmError);
    expect(() => RunStore.open(file('text.sqlite'))).toThrow(/run store .*text\.sqlite is corrupt or not an SQLite database/);
    const store = RunStore.open(file('corrupt.sqlite'));
    for (let i = 0; i < 200; i++) store.addJob({ id: `job-${i}`, source: 'flow', settings, model: 'm', modelDigest: 'd'.repeat(64) });
    store.close();
    const bytes = fs.readFileSync(file('corrupt.sqlite'));
    bytes.fill(0x55, 4096, bytes.length); // every page after the first overwritten
    fs.writeFileSync(file('corrupt.sqlite'), bytes);
    expect(() => RunStore.open(file('corrupt.sqlite'))).toThrow(/run store .*corrupt\.sqlite is corrupt or not an SQLite database/);
  });

  test('a store another process holds locked is a clear error after the busy timeout', async () => {
    RunStore.open(file('locked.sqlite')).close();
    const holder = spawn(process.execPath, ['-e', `const D = require('better-sqlite3'); const d = new D(${JSON.stringify(file('locked.sqlite'))}); d.exec('BEGIN EXCLUSIVE'); process.stdout.write('locked\\n'); setTimeout(() => {}, 60000);`], { cwd: packageRoot(), stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      expect(() => RunStore.open(file('locked.sqlite'), { busyMs: 200 })).toThrow(/run store .*locked\.sqlite is locked by another process/);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('mesh-llm start with a corrupt run store in --data stops at once with exit code 1 and the reason', async () => {
    const data = file('start-data');
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'runs.sqlite'), 'not a database'.repeat(500));
    const r = await runCli(['start', '--port', '0', '--nodes', '1', '--data', data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mesh-llm: error: the run store .*runs\.sqlite is corrupt or not an SQLite database/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  test('SIGKILL in the middle of a write loop loses nothing that was committed', async () => {
    const db = file('killed.sqlite');
    // a child commits a job and then tokens as fast as it can, saying each commit on stdout
    const script = `
      const { RunStore } = require(${JSON.stringify(path.join(packageRoot(), 'dist', 'lib', 'runs', 'store.js'))});
      const s = RunStore.open(${JSON.stringify(db)});
      for (let j = 0; ; j++) {
        s.addJob({ id: 'job-' + j, source: 'flow', settings: ${JSON.stringify(settings)}, model: 'm', modelDigest: 'd' });
        for (let p = 1; p <= 20; p++) {
          s.addToken('job-' + j, { pos: p, token: p, piece: 't' + p, sampled: true }, [{ pos: p - 1, layer: 0, node: '', ms: 1 }]);
          process.stdout.write('job-' + j + ' ' + p + '\\n');
        }
      }`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let said = '';
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d) => {
        said += d;
        if (said.split('\n').length > 300 && !child.killed) {
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    const committed = said.split('\n').filter((l) => /^job-\d+ \d+$/.test(l));
    const store = RunStore.open(db);
    try {
      for (const line of committed) {
        const [job, pos] = line.split(' ');
        expect(store.job(job)?.position).toBeGreaterThanOrEqual(Number(pos));
        expect(store.tokens(job).find((t) => t.pos === Number(pos))).toMatchObject({ token: Number(pos), piece: `t${pos}` });
      }
      // every job's tokens are a whole prefix, and its position is its last token
      for (const job of store.jobs(1000)) {
        const tokens = store.tokens(job.id);
        expect(tokens.map((t) => t.pos)).toEqual(tokens.map((_, i) => i + 1));
        expect(job.position).toBe(tokens.length);
      }
    } finally {
      store.close();
    }
  });
});

describe('durable jobs', () => {
  const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer });

  /** run.c's loop, stopping after `stopAfter` positions (an interrupted run) or resuming from recorded tokens. */
  async function generateFrom(options: Parameters<Engine['generate']>[0], recorded: number[] = [], stopAfter = Infinity): Promise<number[]> {
    const headOut = new Float32Array(engine.g.dim);
    await engine.heads.reset();
    const gen = new Generation(engine.tokenizer, options, engine.g.seqLen);
    if (recorded.length) gen.resume(recorded);
    while (!gen.done && gen.pos < stopAfter) {
      const logits = await forward(engine.gateway, engine.heads, gen.token, gen.pos, headOut, gen.needsLogits);
      gen.advance(logits);
    }
    return gen.result().tokens;
  }

  test.each([
    ['greedy', { prompt: 'Once upon a time', steps: 48, temperature: 0, topP: 0.9, seed: 0n }, 20],
    ['sampled, cut inside the prompt', { prompt: 'The little dog ran to the park', steps: 48, temperature: 1, topP: 0.9, seed: 42n }, 3],
    ['sampled with top-p, cut after sampled tokens', { prompt: 'Lily', steps: 64, temperature: 0.9, topP: 0.8, seed: 1234n }, 30],
  ])('a %s run resumed from its recorded tokens gives the uninterrupted run’s tokens', async (_name, options, cut) => {
    const whole = (await engine.generate(options)).tokens;
    const partial = await generateFrom(options, [], cut);
    expect(partial).toEqual(whole.slice(0, cut + 1));
    expect(await generateFrom(options, partial.slice(1))).toEqual(whole);
  });

  test('a job accepted for another model is refused on resume, with the reason, and is no longer unfinished', () => {
    const store = RunStore.open(file('refuse.sqlite'));
    try {
      const digest = modelDigest(modelPaths.model, modelPaths.tokenizer);
      const jobs = new Jobs(store);
      const job = jobs.accept({ prompt: 'Hi', steps: 16, temperature: 0, topP: 0.9, seed: 0n }, 'http', { path: 'old.bin', digest: 'f'.repeat(64) });
      const fresh = new Jobs(store);
      const resume = fresh.resumeOf(store.job(job.id)!, { path: modelPaths.model, digest });
      expect(resume).toEqual({ refused: expect.stringMatching(/accepted for the model with digest ffffffffffff… \(old\.bin\); this gateway runs [0-9a-f]{12}… .*refused/) });
      expect(store.job(job.id)).toMatchObject({ state: 'refused', error: (resume as { refused: string }).refused });
      expect(store.unfinished()).toEqual([]);
    } finally {
      store.close();
    }
  });
});

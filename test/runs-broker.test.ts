/**
 * `mesh-llm generate --broker URL` with `mesh-llm start --broker URL` running on the mesh: the
 * request becomes a durable job on that gateway, which the command follows to its end; the
 * gateway SIGKILLed mid-job and started again resumes it, and the command still ends with the
 * tokens of an uninterrupted run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { Engine } from '../lib/llm/engine';
import { NodeProcesses, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { parseControl, topicsFor } from '../lib/mesh/wire';
import { RunStore } from '../lib/runs/store';
import { binPath, runCli } from './support/cli';
import { modelPaths } from './support/fixtures';
import { StartedServer as Server, startServer, stopServer } from './support/start';


/** `mesh-llm start` on the shared broker (its 4 head nodes), editor on a free port; resolves once its flow serves GET /jobs/:id. */
async function startOnBroker(dataDir: string, broker: string): Promise<Server> {
  const server = await startServer(['--broker', broker, '--nodes', '4', '--data', dataDir, '--scenario', 'none']);
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const res = await fetch(`${server.url}/jobs/probe`);
    if ((res.headers.get('content-type') ?? '').includes('application/json')) return server;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the flow on ${server.url} does not serve GET /jobs/:id`);
}


describe('generate --broker enqueues a durable job on the running gateway', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-broker-jobs-'));
  let broker: Awaited<ReturnType<typeof spawnBroker>>;
  let nodes: NodeProcesses;
  let server: Server | undefined;
  const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer });

  beforeAll(async () => {
    broker = await spawnBroker(0);
    nodes = spawnHeadNodes({ count: 4, brokerUrl: broker.url, meshId: 'default', modelPath: modelPaths.model, onLog: () => undefined });
    server = await startOnBroker(dataDir, broker.url);
  }, 120000);

  afterAll(async () => {
    await stopServer(server, 'SIGTERM');
    await nodes?.stop();
    await broker?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 30000);

  test('the gateway SIGKILLed after the job\'s 10th token and started again: the command ends with the tokens of an uninterrupted run, and the job is recorded as done', async () => {
    const request = { prompt: 'The little dog', steps: 80, temperature: 0.9, seed: 42 };
    const bus = await mqtt.connectAsync(broker.url);
    let tokens = 0;
    const first = server!;
    const killed = new Promise<void>((resolve) => {
      bus.on('message', (_topic, payload) => {
        const m = parseControl('job', payload);
        if (m.token && ++tokens === 10) {
          first.child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await bus.subscribeAsync(topicsFor('default').jobs, { qos: 1 });
    const cli = runCli(['generate', '--broker', broker.url, '--prompt', request.prompt, '--steps', String(request.steps), '--temperature', String(request.temperature), '--seed', String(request.seed), '--json'], { timeoutMs: 200000 });
    await killed;
    await new Promise((r) => (first.child.exitCode !== null || first.child.signalCode !== null ? r(null) : first.child.once('exit', r)));
    await bus.endAsync();
    server = await startOnBroker(dataDir, broker.url);
    const r = await cli;
    expect(r.stderr).toMatch(/job [0-9a-f-]{36} accepted by the gateway on mesh "default"/);
    expect(r.stderr).toContain('the gateway went offline; waiting for it');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const expected = await engine.generate({ prompt: request.prompt, steps: request.steps, temperature: request.temperature, topP: 0.9, seed: BigInt(request.seed) });
    expect(out.tokens).toEqual(expected.tokens);
    expect(out.text).toBe(expected.text);
    const store = RunStore.inDataDir(dataDir, { readonly: true });
    const job = store.job(out.job)!;
    store.close();
    expect(job).toMatchObject({ state: 'done', source: 'mqtt', position: request.steps, text: expected.text });
  }, 240000);

  test('without --json the text streams as the job runs, the same text as the engine gives', async () => {
    const r = await runCli(['generate', '--broker', broker.url, '--prompt', 'Once upon a time', '--steps', '40', '--temperature', '0'], { timeoutMs: 60000 });
    expect(r.code).toBe(0);
    const expected = await engine.generate({ prompt: 'Once upon a time', steps: 40, temperature: 0, topP: 0.9, seed: 0n });
    expect(r.stdout).toBe(`${expected.text}\n`);
    expect(r.stderr).toMatch(/job [0-9a-f-]{36} done/);
  });

  test('runs replay --radio sim: the short run recorded through the flow, replayed on 4 radio head nodes on the simulated channel, gives the same tokens and probabilities', async () => {
    let store = RunStore.inDataDir(dataDir, { readonly: true });
    const recorded = store.run(store.jobs(1)[0].id)!;
    store.close();
    expect(recorded.job).toMatchObject({ state: 'done', settings: { prompt: 'Once upon a time', steps: 40 } });
    expect(recorded.tokens.filter((t) => t.sampled).every((t) => typeof t.probability === 'number')).toBe(true);
    const r = await runCli(['runs', 'replay', recorded.job.id, '--radio', 'sim', '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(r.stderr).toMatch(/replaying run .* on 4 radio head nodes \(simulated channel, EU868 SF7\)/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ of: recorded.job.id, same: true, counterfactual: false, differences: [], tokens: 40 });
    store = RunStore.inDataDir(dataDir, { readonly: true });
    const replayed = store.run(JSON.parse(r.stdout).id)!;
    store.close();
    expect(replayed.job).toMatchObject({ source: `replay:${recorded.job.id}`, state: 'done', text: recorded.job.text, mesh: { kind: 'radio', radio: { region: 'EU868', sf: 7 } } });
    expect(replayed.job.mesh!.nodes).toHaveLength(4);
    expect(replayed.tokens.map((t) => [t.pos, t.token, t.sampled])).toEqual(recorded.tokens.map((t) => [t.pos, t.token, t.sampled]));
    for (const [i, t] of replayed.tokens.entries()) if (t.sampled) expect(t.probability).toBeCloseTo(recorded.tokens[i].probability!, 6);
    expect(replayed.gathers.length).toBeGreaterThanOrEqual(40 * 5);
  }, 150000);
});

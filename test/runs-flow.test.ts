/**
 * What a run through the Node-RED flow records: the shipped flow (steering on) on a real
 * broker with head-node processes and a run store. Each sampled token carries its probability
 * (the one its mesh event tells), its top alternatives, the KL of its steering and the node it
 * is attributed to; each layer's gather its round trip, whole and per node; the readings,
 * baselines and steering vectors in force; and an alert raised during the run. The record
 * leaves `runs show --json` and `runs export` unchanged.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeMessage } from 'node-red';
import mqtt from 'mqtt';
import { packageRoot } from '../lib/llm/resolve';
import { NodeProcesses, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { MeshEventMessage, topicsFor } from '../lib/mesh/wire';
import { simulate } from '../lib/steering/sensors';
import { fromJsonl, tokensFromCsv } from '../lib/runs/export';
import { RUNS_DB_ENV } from '../lib/runs/shared';
import { RunRecord, RunStore } from '../lib/runs/store';
import { modelPaths } from './support/fixtures';
import { runCli } from './support/cli';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(require.resolve('node-red'));

const root = packageRoot();
const core = (p: string) => require(path.join(root, 'node_modules', '@node-red', 'nodes', 'core', p));
const ours = ['config', 'prompt', 'embed', 'broadcast', 'heads', 'aggregate', 'ffn', 'layer-loop', 'sample', 'run', 'sensor-in', 'steering-calibration', 'alert'].map((n) => require(path.join(root, 'dist', 'nodes', `${n}.js`)));
const coreNodes = ['common/20-inject.js', 'common/21-debug.js', 'common/25-catch.js', 'common/60-link.js', 'common/90-comment.js', 'function/10-switch.js', 'function/15-change.js', 'network/21-httpin.js', 'network/10-mqtt.js'].map(core);
type FlowNode = { id: string; type: string; z?: string; wires?: string[][] } & Record<string, unknown>;
type Listener = Node & { receive(msg: object): void; on(event: 'input', cb: (msg: NodeMessage & Record<string, unknown>) => void): void };
const nodeOf = (id: string): Listener => helper.getNode(id);

const NODES = ['node-1', 'node-2', 'node-3', 'node-4'];
const STEPS = 20;

describe('a run through the Node-RED flow is recorded as fully as a replay records one', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-flow-runs-'));
  let broker: Awaited<ReturnType<typeof spawnBroker>>;
  let nodes: NodeProcesses;
  let record: RunRecord;
  const events: MeshEventMessage[] = [];

  beforeAll(async () => {
    broker = await spawnBroker(0);
    nodes = spawnHeadNodes({ count: NODES.length, brokerUrl: broker.url, meshId: 'default', modelPath: modelPaths.model, onLog: () => undefined });
    process.env.MESH_LLM_BROKER = broker.url;
    process.env.MESH_LLM_NODES = String(NODES.length);
    process.env[RUNS_DB_ENV] = path.join(dataDir, 'runs.sqlite');
    await helper.startServer();
    // the shipped flow's model tab, steering on, and an alert node on the sensors
    const shipped = (JSON.parse(fs.readFileSync(path.join(root, 'flows', 'mesh-llm.json'), 'utf8')) as FlowNode[]).filter((n) => n.z !== 'dash-tab' && n.id !== 'dash-tab' && !n.type.startsWith('ui-'));
    const flow = shipped.map((n) => (n.id === 'calibration' ? { ...n, window: '10', steer: true, alpha: '2', steerIntervalMs: '0' } : n));
    flow.push({ id: 'rec-alert', type: 'mesh-llm-alert', z: 'mesh-llm-tab', meshId: 'default', detectors: [{ kind: 'threshold', channel: 'temperatureC', name: 'hot', direction: 'above', on: 50, off: 40 }], discovery: false, wires: [[], [], []] });
    await helper.load([...ours, ...coreNodes], flow);

    const t = topicsFor('default');
    const bus = await mqtt.connectAsync(broker.url);
    const acks = new Set<string>();
    bus.on('message', (topic, payload) => {
      if (topic === t.events) events.push(JSON.parse(payload.toString()) as MeshEventMessage);
      else if (JSON.parse(payload.toString()).kind === 'steering') acks.add(JSON.parse(payload.toString()).node);
    });
    await bus.subscribeAsync([t.acks, t.events]);
    try {
      await new Promise((r) => setTimeout(r, 500)); // sensor-in subscribes
      for (const m of simulate({ scenario: 'explosion', nodes: NODES, calmSeconds: 10, eventSeconds: 2 })) bus.publish(t.sensors(m.node), JSON.stringify(m));
      const deadline = Date.now() + 30000;
      while (acks.size < NODES.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (acks.size < NODES.length) throw new Error(`steering acknowledged by ${[...acks].join(', ') || 'no node'}`);
      await new Promise((r) => setTimeout(r, 300)); // the last steering message's configure resolves

      // a hot reading reaches the alert node once the run is under way
      let alerted = false;
      nodeOf('tokens-out').on('input', () => {
        if (alerted) return;
        alerted = true;
        nodeOf('rec-alert').receive({ topic: 'node-1', payload: { protocol: 1, node: 'node-1', at: Date.now(), readings: { soundDb: 40, vibrationG: 0.02, lightLux: 300, temperatureC: 60, humidityPct: 45 } } });
      });
      const done = new Promise<void>((resolve) => nodeOf('debug-done').on('input', () => resolve()));
      nodeOf('prompt').receive({ payload: { prompt: 'Once upon a time', steps: STEPS, temperature: 0 } });
      await done;
      await new Promise((r) => setTimeout(r, 300)); // the last events arrive
    } finally {
      await bus.endAsync();
    }
    const store = RunStore.open(process.env[RUNS_DB_ENV] as string, { readonly: true });
    record = store.run(store.jobs(1)[0].id) as RunRecord;
    store.close();
  }, 150000);

  afterAll(async () => {
    await helper.unload();
    await helper.stopServer();
    await nodes?.stop();
    await broker?.close();
    delete process.env[RUNS_DB_ENV];
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 30000);

  test('runs show --json: every sampled token with the probability its mesh event told, its top 5 alternatives, its KL and (for some) the node it is attributed to', async () => {
    const shown = await runCli(['runs', 'show', record.job.id, '--data', dataDir, '--json']);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual(record);
    expect(record.job).toMatchObject({ state: 'done', source: 'flow', position: STEPS, settings: { prompt: 'Once upon a time', alpha: 2 } });
    const sampled = record.tokens.filter((t) => t.sampled);
    expect(sampled.length).toBe(STEPS - 4); // positions 1-4 fed: Once, upon, a, time
    const told = new Map(events.filter((e): e is Extract<MeshEventMessage, { kind: 'token' }> => e.kind === 'token' && e.sampled).map((e) => [e.pos, e]));
    for (const t of sampled) {
      const e = told.get(t.pos)!;
      expect({ pos: t.pos, token: t.token, probability: t.probability, kl: t.kl, node: t.node }).toEqual({ pos: e.pos, token: e.token, probability: e.probability, kl: e.kl, node: e.node });
      expect(t.topK).toHaveLength(5);
      const p = t.topK!.map(([, q]) => q);
      expect(p).toEqual([...p].sort((a, b) => b - a));
      expect(t.topK![0]).toEqual([t.token, t.probability]); // greedy: the sampled token is the most probable
      expect(t.kl).toBeGreaterThanOrEqual(0);
    }
    expect(sampled.some((t) => t.node !== null && NODES.includes(t.node!))).toBe(true);
    expect(record.tokens.filter((t) => !t.sampled).every((t) => t.probability === null && t.topK === null)).toBe(true);
  });

  test("each layer's gather is recorded whole and per node: five rows a layer and position", () => {
    const positions = new Set(record.gathers.map((g) => g.pos));
    expect(positions.size).toBe(STEPS);
    for (const pos of positions) {
      for (let layer = 0; layer < 5; layer++) {
        const rows = record.gathers.filter((g) => g.pos === pos && g.layer === layer);
        expect(rows.map((g) => g.node).sort()).toEqual(['', ...NODES]);
        expect(rows.every((g) => typeof g.ms === 'number' && g.ms >= 0)).toBe(true);
      }
    }
  });

  test('the readings, baselines and steering vector in force are recorded per node from the first position, and the alert raised during the run at its position', () => {
    const first = record.readings.filter((r) => r.pos === 1);
    expect(first.map((r) => r.node)).toEqual(NODES);
    for (const r of first) {
      expect(Object.keys(r.readings as object).sort()).toEqual(['humidityPct', 'lightLux', 'soundDb', 'temperatureC', 'vibrationG']);
      expect(Object.keys(r.baselines as object).sort()).toEqual(['humidityPct', 'lightLux', 'soundDb', 'temperatureC', 'vibrationG']);
      const v = r.vector as { layer: number; vector: number[] };
      expect(v.layer).toBeGreaterThanOrEqual(0);
      expect(v.vector.length).toBeGreaterThan(0);
      expect(v.vector.some((x) => x !== 0)).toBe(true);
    }
    expect(record.alerts.length).toBeGreaterThanOrEqual(1);
    const a = record.alerts[0];
    expect(a.alert).toMatchObject({ node: 'node-1', channel: 'temperatureC' });
    expect(a.pos).toBeGreaterThanOrEqual(1);
    expect(a.pos).toBeLessThan(STEPS);
  });

  test('runs replay on the engine and on the simulated radio (10% loss, the steering sent to each radio node as a steering body) gives the steered run again: the same tokens, probabilities, KL and attributions', async () => {
    const engine = await runCli(['runs', 'replay', record.job.id, '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(engine.code).toBe(0);
    expect(JSON.parse(engine.stdout)).toMatchObject({ of: record.job.id, same: true, differences: [] });
    const radio = await runCli(['runs', 'replay', record.job.id, '--radio', 'sim', '--loss', '0.1', '--data', dataDir, '--json'], { timeoutMs: 120000 });
    expect(radio.stderr).not.toMatch(/steering over the radio/);
    expect(radio.code).toBe(0);
    expect(JSON.parse(radio.stdout)).toMatchObject({ of: record.job.id, same: true, differences: [] });
  }, 250000);

  test('runs export: jsonl reads back into the same record, csv into the same token rows', async () => {
    const jsonl = await runCli(['runs', 'export', record.job.id, '--format', 'jsonl', '--data', dataDir]);
    expect(jsonl.code).toBe(0);
    expect(fromJsonl(jsonl.stdout)).toEqual(record);
    const other = RunStore.open(path.join(dataDir, 'imported.sqlite'));
    other.importRun(fromJsonl(jsonl.stdout));
    expect(other.run(record.job.id)).toEqual({ ...record, job: { ...record.job, seq: 1 } });
    other.close();
    const csv = await runCli(['runs', 'export', record.job.id, '--format', 'csv', '--data', dataDir]);
    expect(tokensFromCsv(csv.stdout)).toEqual(record.tokens);
  });
});

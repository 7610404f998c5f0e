/**
 * A flood of invalid messages crashes nothing. 10,000 invalid messages on every topic of a
 * mesh, with the mesh idle and during a generation, on the embedded aedes broker (`mesh-llm
 * broker`) with eight head-node processes: the broker and every node stay up, the generation
 * gives the golden tokens, and the errors topic carries a bounded number of reports (each
 * process at most its burst plus 10 a second), not one per message per node. Before the fix,
 * 2,000 invalid session messages killed the broker (RangeError in mqemitter: its delivery
 * queue drained by synchronous recursion) and every node with it.
 */
import { MqttClient } from 'mqtt';
import { GenerateOptions } from '../lib/llm/engine';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, subscribe } from '../lib/mesh/mqtt';
import { NodeProcesses, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { ReportLimiter } from '../lib/mesh/report-limit';
import { parseControl, topicsFor } from '../lib/mesh/wire';
import { goldenIds, modelPaths } from './support/fixtures';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  const bounded = (c: () => Promise<unknown>) => Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const c of cleanups.reverse()) await bounded(c);
});

const ONCE: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const FLOOD = 10_000;
const MESH = 'flood';
const t = topicsFor(MESH);
/** Every topic of the mesh a process listens on or that carries mesh traffic. */
const TOPICS = [t.broadcast, t.session, t.assign('node-1'), t.steer('node-1'), t.result('node-1'), t.status('node-2'), t.ack('node-3'), t.telemetry('node-4'), t.tokens, t.errors, t.sensors('node-5'), t.baseline('node-6'), t.attribution, t.alerts];

let broker: Awaited<ReturnType<typeof spawnBroker>>;
let nodes: NodeProcesses;
let gw: MeshGateway;
let rogue: MqttClient;
let watcher: MqttClient;
let reports = 0;

beforeAll(async () => {
  broker = await spawnBroker(await freePort());
  cleanups.push(() => broker.close());
  nodes = spawnHeadNodes({ count: 8, brokerUrl: broker.url, meshId: MESH, modelPath: modelPaths.model, onLog: () => undefined });
  cleanups.push(() => nodes.stop(500));
  gw = await MeshGateway.connect({ url: broker.url, meshId: MESH, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, gatherTimeoutMs: 5000, log: () => undefined });
  cleanups.push(() => gw.close());
  await gw.assign(await gw.discover({ count: 8, timeoutMs: 30000 }));
  rogue = await connectMqtt({ url: broker.url, clientId: 'flooder' });
  cleanups.push(() => new Promise((r) => rogue.end(true, {}, r)));
  watcher = await connectMqtt({ url: broker.url, clientId: 'watcher' });
  cleanups.push(() => new Promise((r) => watcher.end(true, {}, r)));
  watcher.on('message', (topic, payload) => {
    if (topic !== t.errors) return;
    try {
      if (parseControl('error', payload).source) reports++; // a mesh process's report, not the flood itself
    } catch {
      // one of the invalid messages flooded onto the errors topic
    }
  });
  await subscribe(watcher, [t.errors], 0);
}, 60000);

/** 10,000 invalid messages on one topic (garbage bytes and JSON that fails its schema, alternately); resolves once the broker has taken them all. */
async function flood(topic: string): Promise<void> {
  for (let i = 0; i < FLOOD; i++) rogue.publish(topic, i % 2 ? Buffer.from([0x4d, 0x4c, i & 0xff, 9]) : `{"protocol":1,"n":${i}}`, { qos: 0 });
  await new Promise<void>((resolve) => rogue.publish(topic, 'last', { qos: 1 }, () => resolve()));
}

function everyoneUp(): void {
  expect(broker.child.exitCode).toBeNull();
  expect(nodes.nodes.map((n) => n.child.exitCode === null && n.child.signalCode === null)).toEqual(Array(8).fill(true));
}

/** What the errors topic may carry in `seconds` from the nine processes that report (8 nodes and the gateway). */
const reportBound = (seconds: number) => 9 * (20 + 10 * seconds);

test('an idle mesh: 10,000 invalid messages on every topic crash nothing, the reports stay bounded, the next generation gives the golden tokens', async () => {
  reports = 0;
  const started = Date.now();
  for (const topic of TOPICS) await flood(topic);
  await new Promise((r) => setTimeout(r, 500));
  everyoneUp();
  expect(reports).toBeLessThanOrEqual(reportBound((Date.now() - started) / 1000));
  expect((await gw.generate(ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
}, 180000);

test('a busy mesh: the same floods during a generation crash nothing and the tokens are the golden ones', async () => {
  const run = gw.generate(ONCE);
  for (const topic of [t.broadcast, t.session, t.result('node-1'), t.status('node-2'), t.ack('node-3'), t.errors]) await flood(topic);
  expect((await run).tokens).toEqual(goldenIds('once-greedy-64'));
  everyoneUp();
}, 180000);

test('the report limiter lets a burst through, then 10 a second, and says how many it held back', () => {
  let now = 0;
  const limiter = new ReportLimiter(10, 20, () => now);
  const passed = Array.from({ length: 100 }, () => limiter.take()).filter((x) => x !== null);
  expect(passed).toHaveLength(20);
  now += 1000;
  const next = Array.from({ length: 100 }, () => limiter.take()).filter((x) => x !== null);
  expect(next).toHaveLength(10);
  expect(next[0]).toEqual({ heldBefore: 80 });
  expect(limiter.suppressed).toBe(170);
});

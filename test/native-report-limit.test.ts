/**
 * The native head node (the firmware core built for the host) rate-limits its reports on the
 * errors topic as the node.js nodes do (lib/mesh/report-limit.ts, firmware/core/report_limit.h):
 * a flood of invalid broadcasts at two native nodes gives each at most its burst of 20 plus 10
 * reports a second, the reports say how many were held back, the nodes saw every message
 * (their telemetry counts them dropped), stay up, and then compute the golden tokens.
 */
import { MqttClient } from 'mqtt';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, subscribe } from '../lib/mesh/mqtt';
import { NodeProcesses, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { parseControl, topicsFor } from '../lib/mesh/wire';
import { goldenIds, modelPaths } from './support/fixtures';

const MESH = 'native-flood';
const FLOOD = 5000;
const t = topicsFor(MESH);
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
});

let broker: Awaited<ReturnType<typeof spawnBroker>>;
let nodes: NodeProcesses;
let rogue: MqttClient;
let watcher: MqttClient;
const reports = new Map<string, string[]>();
const dropped = new Map<string, number>();

beforeAll(async () => {
  broker = await spawnBroker(await freePort());
  cleanups.push(() => broker.close());
  nodes = spawnHeadNodes({ count: 2, native: true, heartbeatMs: 200, brokerUrl: broker.url, meshId: MESH, modelPath: modelPaths.model, onLog: () => undefined });
  cleanups.push(() => nodes.stop(500));
  watcher = await connectMqtt({ url: broker.url, clientId: 'watcher' });
  cleanups.push(() => new Promise((r) => watcher.end(true, {}, r)));
  watcher.on('message', (topic, payload) => {
    try {
      if (topic === t.errors) {
        const e = parseControl('error', payload);
        reports.set(e.source, [...(reports.get(e.source) ?? []), e.reason]);
      } else if (topic.startsWith(t.telemetry(''))) {
        const m = JSON.parse(payload.toString()) as { node: string; dropped?: number };
        dropped.set(m.node, m.dropped ?? 0);
      }
    } catch {
      // not a report of a node
    }
  });
  await subscribe(watcher, [t.errors, t.telemetry('+')], 0);
  rogue = await connectMqtt({ url: broker.url, clientId: 'flooder' });
  cleanups.push(() => new Promise((r) => rogue.end(true, {}, r)));
  // Both nodes are connected and subscribed once their heartbeats arrive.
  const deadline = Date.now() + 30000;
  while (dropped.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(dropped.size).toBe(2);
}, 60000);

test('a flood of 5,000 invalid broadcasts gives each native node at most 20 + 10 a second error reports, which say how many were held back', async () => {
  const started = Date.now();
  for (let i = 0; i < FLOOD; i++) rogue.publish(t.broadcast, Buffer.from([0x4d, 0x4c, i & 0xff, 9]), { qos: 0 });
  await new Promise<void>((resolve) => rogue.publish(t.broadcast, 'last', { qos: 1 }, () => resolve()));
  // Every node has taken the whole flood once its telemetry counts it.
  const deadline = Date.now() + 30000;
  while ([...dropped.values()].some((d) => d < FLOOD + 1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1200)); // the reports the bucket refills for after the flood
  const seconds = (Date.now() - started) / 1000;
  expect([...dropped.values()].every((d) => d >= FLOOD + 1)).toBe(true);
  for (const id of ['node-1', 'node-2']) {
    const said = reports.get(id) ?? [];
    expect(said.length).toBeGreaterThanOrEqual(20);
    expect(said.length).toBeLessThanOrEqual(20 + 10 * seconds);
    expect(said.some((r) => / \(\d+ more dropped messages not reported: rate limit\)$/.test(r))).toBe(true);
  }
  expect(nodes.nodes.map((n) => n.child.exitCode === null && n.child.signalCode === null)).toEqual([true, true]);
}, 90000);

test('after the flood the native nodes compute the golden tokens', async () => {
  const gw = await MeshGateway.connect({ url: broker.url, meshId: MESH, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, log: () => undefined });
  cleanups.push(() => gw.close());
  await gw.assign(await gw.discover({ count: 2, timeoutMs: 30000 }));
  const r = await gw.generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n });
  expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
}, 90000);

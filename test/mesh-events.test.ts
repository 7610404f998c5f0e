/**
 * The mesh event stream (schemas/event.json on mesh-llm/{mesh}/events) from every gateway path:
 * the CLI's mesh run, a steered run, the Node-RED flow's runtime and the radio run. Every event
 * on the bus passes the schema, the events tell the run as it was (each layer's broadcast and
 * gather, every token with its probability, KL and node where steered, the radio's airtime),
 * and a hung node is told late and then failed, by name. Real head-node processes on a real
 * broker process, the real model.
 */
import type { MqttClient } from 'mqtt';
import { GenerateOptions, GenerationResult } from '../lib/llm/engine';
import { FlowRuntime, StepState } from '../lib/flow/runtime';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { NodeProcesses, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { MeshEventMessage, parseControl, topicsFor } from '../lib/mesh/wire';
import { runMeshGenerate } from '../lib/mesh/run';
import { steeredOnMesh } from '../lib/steering/run';
import { runRadioGenerate } from '../gateway-bridge/run';
import { goldenIds, modelPaths } from './support/fixtures';
import { flowRun } from './support/flow';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  const bounded = (c: () => Promise<unknown>) => Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const c of cleanups.reverse()) await bounded(c);
});

const ONCE: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const paths = { modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer };
const N_LAYERS = 5;

let broker: { url: string; close(): Promise<void> };
beforeAll(async () => {
  broker = await spawnBroker(await freePort());
  cleanups.push(() => broker.close());
});

function startNodes(meshId: string, count: number): NodeProcesses {
  const nodes = spawnHeadNodes({ count, brokerUrl: broker.url, meshId, modelPath: modelPaths.model, onLog: () => undefined });
  cleanups.push(() => nodes.stop(500));
  return nodes;
}

/** Every event published on the mesh's events topic, each checked against schemas/event.json as it arrives. */
async function watchEvents(meshId: string): Promise<{ events: MeshEventMessage[]; client: MqttClient }> {
  const client = await connectMqtt({ url: broker.url, clientId: `events-${meshId}-${process.pid}` });
  cleanups.push(() => endClient(client));
  const events: MeshEventMessage[] = [];
  client.on('message', (_topic, payload) => events.push(parseControl('event', payload)));
  await subscribe(client, [topicsFor(meshId).events], 0);
  return { events, client };
}

/** Waits until the run's run-end event has arrived (QoS 0 events travel behind the result). */
async function untilRunEnd(events: MeshEventMessage[], count = 1): Promise<void> {
  const deadline = Date.now() + 10000;
  while (events.filter((e) => e.kind === 'run-end').length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

type Of<K extends MeshEventMessage['kind']> = Extract<MeshEventMessage, { kind: K }>;
const ofKind = <K extends MeshEventMessage['kind']>(events: MeshEventMessage[], kind: K): Of<K>[] => events.filter((e): e is Of<K> => e.kind === kind);

/** The events of one run tell that run: start, then per position every layer's broadcast and gather, then each token, then the end. */
function expectTheRunTold(events: MeshEventMessage[], result: GenerationResult, source: 'cli' | 'flow' | 'radio', nodes: string[]): void {
  const start = ofKind(events, 'run-start');
  expect(start).toHaveLength(1);
  expect(start[0]).toMatchObject({ source, prompt: ONCE.prompt, steps: ONCE.steps, temperature: 0 });
  const run = start[0].run;
  const positions = result.tokens.length - 1;
  const broadcasts = ofKind(events, 'broadcast');
  const gathers = ofKind(events, 'gather');
  expect(broadcasts.map((b) => [b.pos, b.layer]).filter(([, layer]) => layer === 0).length).toBe(positions);
  // every layer's gather lists every assigned node with its time
  for (const g of gathers) expect(g.nodes.map((n) => n.node).sort()).toEqual(nodes);
  const tokens = ofKind(events, 'token');
  expect(tokens.every((t) => t.run === run)).toBe(true);
  expect(tokens.map((t) => t.token)).toEqual(result.tokens.slice(1));
  expect(tokens.map((t) => t.piece).join('')).toBe(result.text);
  expect(tokens.map((t) => t.pos)).toEqual(tokens.map((_, i) => i + 1));
  const promptTokens = start[0].promptTokens;
  for (const t of tokens) {
    expect(t.sampled).toBe(t.pos >= promptTokens);
    if (t.sampled) expect(t.probability).toBeGreaterThan(0);
  }
  const end = ofKind(events, 'run-end');
  expect(end).toHaveLength(1);
  expect(end[0]).toMatchObject({ run, tokens: positions, text: result.text });
  expect(end[0].error).toBeUndefined();
  // in order: run-start before the first broadcast, run-end last
  expect(events.indexOf(start[0])).toBeLessThan(events.indexOf(broadcasts[0]));
  expect(events.indexOf(end[0])).toBe(events.length - 1);
}

describe('the CLI mesh path', () => {
  const meshId = 'events-cli';
  beforeAll(() => void startNodes(meshId, 3));

  test('publishes on mesh-llm/{mesh}/events, schema-valid, what --events gets: each layer broadcast and gathered from every node, every token with its probability', async () => {
    const { events } = await watchEvents(meshId);
    const told: object[] = [];
    const result = await runMeshGenerate({ generate: ONCE, ...paths, broker: broker.url, meshId, nodes: 3, onEvent: (e) => told.push(e), log: () => undefined });
    expect(result.tokens).toEqual(goldenIds('once-greedy-64'));
    await untilRunEnd(events);
    expect(events).toEqual(told);
    const assigned = ofKind(events, 'assigned');
    expect(assigned).toHaveLength(1);
    expect(assigned[0].nodes.map((n) => n.node)).toEqual(['node-1', 'node-2', 'node-3']);
    expect(assigned[0].nodes.flatMap((n) => n.heads).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expectTheRunTold(events.slice(events.indexOf(assigned[0]) + 1), result, 'cli', ['node-1', 'node-2', 'node-3']);
    expect(ofKind(events, 'gather')).toHaveLength((result.tokens.length - 1) * N_LAYERS);
    // a greedy run samples each token as the most probable: its probability is at least 1/vocab and usually far more
    const sampled = ofKind(events, 'token').filter((t) => t.sampled);
    expect(sampled.length).toBeGreaterThan(50);
    expect(Math.min(...sampled.map((t) => t.probability as number))).toBeGreaterThan(1 / 512);
  }, 120000);

  test('a steered run tells each sampled token its KL from the unsteered distribution and the node its steering moved most, as the attribution does', async () => {
    const { events } = await watchEvents(meshId);
    const attributed: { pos: number; top: string | null; kl: number }[] = [];
    const result = await runMeshGenerate({
      generate: { ...ONCE, steps: 40 },
      ...paths,
      broker: broker.url,
      meshId,
      nodes: 3,
      log: () => undefined,
      generateOn: steeredOnMesh({ scenario: 'explosion' }, { ...ONCE, steps: 40 }, { onToken: (a) => attributed.push({ pos: a.pos, top: a.top, kl: a.kl }) }),
    });
    await untilRunEnd(events);
    const start = ofKind(events, 'run-start')[0];
    expect(start.steered).toBe(true);
    const sampled = ofKind(events, 'token').filter((t) => t.sampled);
    expect(sampled.map((t) => ({ pos: t.pos, top: t.node, kl: t.kl }))).toEqual(attributed);
    expect(sampled.some((t) => (t.kl as number) > 1e-6)).toBe(true);
    expect(ofKind(events, 'token').map((t) => t.token)).toEqual(result.tokens.slice(1));
  }, 120000);
});

describe('the Node-RED flow path', () => {
  const meshId = 'events-flow';
  beforeAll(() => void startNodes(meshId, 2));

  test('the flow runtime publishes the same events, with source "flow"', async () => {
    const { events } = await watchEvents(meshId);
    const rt = await FlowRuntime.start({ ...paths, brokerUrl: broker.url, meshId, quant: 'f32', nodes: 2, log: () => undefined });
    cleanups.push(() => rt.close());
    const result = await flowRun(rt, ONCE);
    expect(result.tokens).toEqual(goldenIds('once-greedy-64'));
    await untilRunEnd(events);
    expectTheRunTold(events.slice(events.findIndex((e) => e.kind === 'run-start')), result, 'flow', ['node-1', 'node-2']);
  }, 120000);
});

describe('a hung node', () => {
  const meshId = 'events-hung';
  let nodes: NodeProcesses;
  beforeAll(() => void (nodes = startNodes(meshId, 1)));

  test('is told late at half the gather timeout, then failed by name, and the run ends with the error', async () => {
    const { events } = await watchEvents(meshId);
    // without failover (as with no node left to take the heads): the run fails
    const gw = await MeshGateway.connect({ url: broker.url, meshId, ...paths, gatherTimeoutMs: 1000, failover: false, log: () => undefined });
    cleanups.push(() => gw.close());
    await gw.assign(await gw.discover({ count: 1, timeoutMs: 30000 }));
    const child = nodes.nodes[0].child;
    const run = gw.generate({ ...ONCE, prompt: '', steps: 200 }, (_t, _p, pos) => {
      if (pos === 5) child.kill('SIGSTOP');
    });
    await expect(run).rejects.toThrow(/head node node-1 did not answer/);
    child.kill('SIGCONT');
    await untilRunEnd(events);
    const late = ofKind(events, 'late');
    const failed = ofKind(events, 'failed');
    expect(late).toHaveLength(1);
    expect(late[0].nodes).toEqual(['node-1']);
    expect(late[0].ms).toBeGreaterThanOrEqual(500);
    expect(failed).toHaveLength(1);
    expect(failed[0].nodes).toEqual(['node-1']);
    expect(failed[0].reason).toMatch(/head node node-1 did not answer layer \d+ at position \d+ within 1000 ms/);
    const end = ofKind(events, 'run-end');
    expect(end[0].error).toMatch(/node-1/);
    expect(events.indexOf(late[0])).toBeLessThan(events.indexOf(failed[0]));
  }, 60000);
});

describe('a failover', () => {
  const meshId = 'events-failover';
  let nodes: NodeProcesses;
  beforeAll(() => void (nodes = startNodes(meshId, 2)));

  test('a node held mid-run is told late, then its heads moving to the other node with the replay, and the run goes on to the golden tokens', async () => {
    const { events } = await watchEvents(meshId);
    const gw = await MeshGateway.connect({ url: broker.url, meshId, ...paths, gatherTimeoutMs: 1000, log: () => undefined });
    cleanups.push(() => gw.close());
    await gw.assign(await gw.discover({ count: 2, timeoutMs: 30000 }));
    const child = nodes.nodes[1].child;
    const result = await gw.generate(ONCE, (_t, _p, pos) => {
      if (pos === 20) child.kill('SIGSTOP');
    });
    child.kill('SIGCONT');
    expect(result.tokens).toEqual(goldenIds('once-greedy-64'));
    await untilRunEnd(events);
    const failover = ofKind(events, 'failover');
    expect(failover).toHaveLength(1);
    expect(failover[0]).toMatchObject({ lost: ['node-2'], moves: [{ heads: [4, 5, 6, 7], from: 'node-2', to: 'node-1' }] });
    expect(failover[0].replayed).toBeGreaterThan(0);
    expect(ofKind(events, 'late').map((l) => l.nodes)).toEqual([['node-2']]);
    expect(ofKind(events, 'failed')).toEqual([]);
    expect(ofKind(events, 'run-end')[0].error).toBeUndefined();
  }, 60000);
});

describe('the radio path', () => {
  test('generate --radio sim tells, besides the run, each position airtime by kind, the duty-cycle budget used per sub-band and the frames lost and resent', async () => {
    const told: MeshEventMessage[] = [];
    const result = await runRadioGenerate({ generate: { ...ONCE, steps: 24 }, ...paths, nodes: 2, quant: 'int8', brokerUrl: broker.url, meshId: 'events-radio', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0.1, onEvent: (e) => told.push(parseControl('event', JSON.stringify(e))), log: () => undefined });
    expect(ofKind(told, 'run-start')[0].source).toBe('radio');
    const radio = ofKind(told, 'radio');
    expect(radio.map((r) => r.pos)).toEqual(result.radio.perToken.map((t) => t.pos));
    for (const r of radio) {
      expect(r.simulatedSeconds).toBeGreaterThan(0);
      expect(r.airtimeSeconds.broadcast).toBeGreaterThan(0);
      expect(r.dutyCycle.map((d) => d.band)).toEqual([expect.stringMatching(/gateway$/), expect.stringMatching(/per node$/)]);
      // the MAC keeps to the law: no sub-band over its budget
      for (const d of r.dutyCycle) expect(d.used).toBeLessThanOrEqual(1.0001);
    }
    // the signal of each node's last authenticated frame, as the radio reports it (the simulator's fixed -90 dBm, 7.5 dB)
    expect(radio[radio.length - 1].nodes).toEqual([
      { node: 'radio-1', rssi: -90, snr: 7.5 },
      { node: 'radio-2', rssi: -90, snr: 7.5 },
    ]);
    expect(radio[radio.length - 1].framesLost).toBeGreaterThan(0);
    expect(radio[radio.length - 1].framesResent).toBeGreaterThan(0);
    expect(ofKind(told, 'token').map((t) => t.token)).toEqual(result.tokens.slice(1));
  }, 120000);
});


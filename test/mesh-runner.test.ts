/**
 * The mesh runner owns its gather. Without failover (test/failover.test.ts has it on), a head node that hangs (SIGSTOP: no disconnect, no last
 * will) fails a plain run, a steered run and a Node-RED flow run alike within the gather
 * timeout, naming the node; and after a failed or aborted run the next run uses the nodes
 * that are still there without making them load their weights again. Real head-node
 * processes on a real broker process, the real model.
 */
import { EventEmitter } from 'node:events';
import { Engine, GenerateOptions, GenerationResult } from '../lib/llm/engine';
import { FlowRuntime, GatherEvent, MeshEventMap, StepState } from '../lib/flow/runtime';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { NodeProcesses, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { loadSteering } from '../lib/steering/directions';
import { MeshSteering, generateSteeredOnMesh } from '../lib/steering/mesh';
import { generateWithAttribution } from '../lib/steering/attribution';
import { Steering, localNodes } from '../lib/steering/steer';
import { goldenIds, modelPaths } from './support/fixtures';
import { flowRun } from './support/flow';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  const bounded = (c: () => Promise<unknown>) => Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const c of cleanups.reverse()) await bounded(c);
});

const GATHER_TIMEOUT_MS = 1000;
const ONCE: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const LONG: GenerateOptions = { prompt: '', steps: 256, temperature: 0, topP: 0.9, seed: 1n };
const paths = { modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer };

let broker: { url: string; close(): Promise<void> };
beforeAll(async () => {
  broker = await spawnBroker(await freePort());
  cleanups.push(() => broker.close());
});

interface Mesh {
  nodes: NodeProcesses;
  /** Per node: how many times it loaded weights (its "assignment ...: heads" log line). */
  loads: Map<string, number>;
}

/** Head-node processes whose weight loads are counted from their logs. */
function startNodes(meshId: string, count: number, native = false): Mesh {
  const loads = new Map<string, number>();
  const nodes = spawnHeadNodes({
    count,
    brokerUrl: broker.url,
    meshId,
    modelPath: modelPaths.model,
    native,
    onLog: (node, line) => {
      if (/assignment \S+: heads/.test(line)) loads.set(node, (loads.get(node) ?? 0) + 1);
    },
  });
  cleanups.push(() => nodes.stop(500));
  return { nodes, loads };
}

async function gatewayOn(meshId: string): Promise<MeshGateway> {
  const gw = await MeshGateway.connect({ url: broker.url, meshId, ...paths, gatherTimeoutMs: GATHER_TIMEOUT_MS, failover: false, log: () => undefined });
  cleanups.push(() => gw.close());
  return gw;
}

/** Each node has logged its one weight load (a node logs it just after it acknowledges the assignment). */
async function loadedOnce(mesh: Mesh): Promise<void> {
  const deadline = Date.now() + 5000;
  while (mesh.loads.size < mesh.nodes.nodes.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect([...mesh.loads.values()]).toEqual(mesh.nodes.nodes.map(() => 1));
}

/** Holds a node's process (SIGSTOP) and returns when it was held; the returned release lets it run again. */
function hold(mesh: Mesh, index: number): { heldAt: () => number; stop: () => void; release: () => void } {
  let at = 0;
  const child = mesh.nodes.nodes[index].child;
  return {
    heldAt: () => at,
    stop: () => {
      at = Date.now();
      child.kill('SIGSTOP');
    },
    release: () => void child.kill('SIGCONT'),
  };
}

/** The failure is the gather timeout naming the held node, after the timeout and not long after. */
async function expectTimeoutNaming(run: Promise<unknown>, node: string, heldAt: () => number): Promise<void> {
  await expect(run).rejects.toThrow(new RegExp(`head node ${node} did not answer layer \\d+ at position \\d+ within ${GATHER_TIMEOUT_MS} ms`));
  const waited = Date.now() - heldAt();
  expect(waited).toBeGreaterThanOrEqual(GATHER_TIMEOUT_MS);
  expect(waited).toBeLessThan(GATHER_TIMEOUT_MS + 1500);
}

describe.each([false, true])('a plain run without failover, head nodes native: %s', (native) => {
  test('a hung node fails the run within the gather timeout, naming it; the next run reuses every node without a weight reload', async () => {
    const meshId = `plain-${native ? 'native' : 'nodejs'}`;
    const mesh = startNodes(meshId, 3, native);
    const gw = await gatewayOn(meshId);
    await gw.assign(await gw.discover({ count: 3, timeoutMs: 30000 }));
    await loadedOnce(mesh);

    const node3 = hold(mesh, 2);
    const run = gw.generate(LONG, (_t, _p, pos) => {
      if (pos === 5) node3.stop();
    });
    await expectTimeoutNaming(run, 'node-3', node3.heldAt);
    node3.release();

    expect((await gw.generate(ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
    expect(Object.fromEntries(mesh.loads)).toEqual({ 'node-1': 1, 'node-2': 1, 'node-3': 1 });
  }, 90000);
});

describe('a steered run without failover', () => {
  test('a hung node fails the steered run within the gather timeout, naming it; the next steered run reuses every node', async () => {
    const meshId = 'steered';
    const mesh = startNodes(meshId, 3);
    const gw = await gatewayOn(meshId);
    const link = await MeshSteering.connect({ url: broker.url, meshId });
    cleanups.push(() => link.close());
    const assignment = await gw.assign(await gw.discover({ count: 3, timeoutMs: 30000 }));
    const data = loadSteering(gw.g.dim, gw.g.nLayers);
    const steering = new Steering(gw.g, gw.gateway, data, assignment.map((a) => ({ node: a.node, heads: a.heads })));
    const readings = { 'node-1': { soundDb: 0.8 }, 'node-2': { lightLux: -0.5 }, 'node-3': { vibrationG: 0.3 } };
    await loadedOnce(mesh);

    const node2 = hold(mesh, 1);
    const run = generateSteeredOnMesh(gw, link, steering, readings, data.settings.alpha, LONG, (a) => {
      if (a.pos === 3) node2.stop();
    });
    await expectTimeoutNaming(run, 'node-2', node2.heldAt);
    node2.release();

    const again = await generateSteeredOnMesh(gw, link, steering, readings, data.settings.alpha, { ...ONCE, steps: 16 });
    expect(again.attributions.length).toBeGreaterThan(0);
    expect(Object.fromEntries(mesh.loads)).toEqual({ 'node-1': 1, 'node-2': 1, 'node-3': 1 });
  }, 90000);
});


describe('a Node-RED flow run without failover (the flow runtime the layer-loop nodes call)', () => {
  let rt: FlowRuntime;
  let mesh: Mesh;
  const events = new EventEmitter<MeshEventMap>();
  const assigned: string[][] = [];
  events.on('assigned', (nodes) => assigned.push(nodes));
  beforeAll(async () => {
    mesh = startNodes('flow', 3);
    rt = await FlowRuntime.start({ ...paths, brokerUrl: broker.url, meshId: 'flow', quant: 'f32', nodes: 3, gatherTimeoutMs: GATHER_TIMEOUT_MS, failover: false, log: () => undefined, events });
    cleanups.push(() => rt.close());
  }, 60000);

  test('a hung node fails the flow run within the gather timeout, naming it; the next flow run reuses every node without a weight reload', async () => {
    await loadedOnce(mesh);
    const node1 = hold(mesh, 0);
    const run = flowRun(rt, LONG, (step) => {
      if (step.pos === 4) node1.stop();
    });
    await expectTimeoutNaming(run, 'node-1', node1.heldAt);
    node1.release();

    expect((await flowRun(rt, ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
    expect(Object.fromEntries(mesh.loads)).toEqual({ 'node-1': 1, 'node-2': 1, 'node-3': 1 });
  }, 90000);

  test('after an aborted flow run the next one runs on the same nodes, without a weight reload', async () => {
    const step = await rt.begin(LONG);
    const x = rt.embed(step);
    rt.broadcast(step, x);
    await rt.aggregate(step, x);
    rt.abort(step.run, new Error('stopped from the editor'));
    expect(() => rt.embed(step)).toThrow(/is not active/);

    expect((await flowRun(rt, ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
    expect(Object.fromEntries(mesh.loads)).toEqual({ 'node-1': 1, 'node-2': 1, 'node-3': 1 });
  }, 60000);
  test('the runtime tells what happens on the mesh: the assigned nodes, each gather started and done, the nodes late at half the gather timeout, the end of each run with the error that ended it', async () => {
    const seen = { started: 0, done: 0, late: [] as GatherEvent[], ends: [] as { error?: string }[] };
    events.on('gather-start', () => seen.started++);
    events.on('gather-done', () => seen.done++);
    events.on('gather-late', (g) => seen.late.push(g));
    events.on('run-end', (e) => seen.ends.push(e));
    expect(assigned.at(-1)).toEqual(['node-1', 'node-2', 'node-3']);

    const result = await flowRun(rt, { ...ONCE, steps: 8 });
    const gathers = (result.tokens.length - 1) * rt.g.nLayers;
    expect(seen).toEqual({ started: gathers, done: gathers, late: [], ends: [{}] });

    const node2 = hold(mesh, 1);
    const run = flowRun(rt, LONG, (step) => {
      if (step.pos === 2) node2.stop();
    });
    await expectTimeoutNaming(run, 'node-2', node2.heldAt);
    node2.release();
    expect(seen.late).toHaveLength(1);
    expect(seen.late[0].late).toEqual(['node-2']);
    expect(seen.late[0].ms).toBeGreaterThan(GATHER_TIMEOUT_MS / 2);
    expect(seen.late[0].ms).toBeLessThan(GATHER_TIMEOUT_MS);
    expect(seen.ends).toHaveLength(2);
    expect(seen.ends[1].error).toMatch(/head node node-2 did not answer/);
    expect(seen.started - seen.done).toBe(1);
  }, 60000);

  test('a steered flow run gives the tokens of the engine steered the same way, the push envelope included', async () => {
    const readings = { 'node-1': { soundDb: 1 }, 'node-3': { vibrationG: 0.7 } };
    const options: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0.8, topP: 0.9, seed: 7n };
    const engine = Engine.load({ ...paths, groups: 3 });
    const data = loadSteering(engine.g.dim, engine.g.nLayers);
    expect(data.settings.envelope).toBeDefined(); // 64 positions run past its hold
    const local = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
    local.apply(engine.heads, readings, data.settings.alpha);
    const expected = await generateWithAttribution(engine.gateway, engine.heads, engine.tokenizer, local.steeredNodes(readings, data.settings.alpha), options);

    await rt.steer(readings);
    try {
      expect((await flowRun(rt, options)).tokens).toEqual(expected.tokens);
    } finally {
      await rt.steer({});
    }
  }, 60000);
});

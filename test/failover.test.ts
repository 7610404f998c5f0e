/**
 * Failover: a generation survives losing head nodes. Eight head-node processes on a real
 * broker; mid-generation one is killed (SIGKILL), a second later another, a second after that a
 * third is held (SIGSTOP: no disconnect, only the gather timeout tells); the runner moves each
 * lost node's heads to a surviving node, rebuilds their KV caches by replaying the session's
 * broadcasts, and the tokens equal the golden file. Node.js and native nodes, f32 and int8,
 * the gateway API, the CLI (`generate --mesh 8 --json`), the flow runtime the Node-RED nodes
 * call and a steered run (its shares move with the heads). The real model, no mocks.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Engine, GenerateOptions, GenerationResult } from '../lib/llm/engine';
import { FlowRuntime, MeshEventMap, StepState, TokenDetail } from '../lib/flow/runtime';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { NodeProcesses, cliEntry, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { FailoverEvent } from '../lib/mesh/runner';
import { loadSteering } from '../lib/steering/directions';
import { MeshSteering, generateSteeredOnMesh } from '../lib/steering/mesh';
import { Steering } from '../lib/steering/steer';
import { goldenIds, modelPaths } from './support/fixtures';
import { faults } from './support/faults';
import { flowRun } from './support/flow';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  const bounded = (c: () => Promise<unknown>) => Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const c of cleanups.reverse()) await bounded(c);
});

const GATHER_TIMEOUT_MS = 1000;
const LONG: GenerateOptions = { prompt: '', steps: 256, temperature: 0, topP: 0.9, seed: 1n };
const paths = { modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer };

let broker: { url: string; close(): Promise<void> };
beforeAll(async () => {
  broker = await spawnBroker(await freePort());
  cleanups.push(() => broker.close());
});

function startNodes(meshId: string, count: number, native = false): NodeProcesses {
  const nodes = spawnHeadNodes({ count, brokerUrl: broker.url, meshId, modelPath: modelPaths.model, native, onLog: () => undefined });
  cleanups.push(() => {
    for (const n of nodes.nodes) n.child.kill('SIGCONT');
    return nodes.stop(500);
  });
  return nodes;
}

async function gatewayOn(meshId: string): Promise<MeshGateway> {
  const gw = await MeshGateway.connect({ url: broker.url, meshId, ...paths, gatherTimeoutMs: GATHER_TIMEOUT_MS, controlTimeoutMs: 5000, log: () => undefined });
  cleanups.push(() => gw.close());
  return gw;
}

const lostNodes = (events: readonly FailoverEvent[]) => events.flatMap((e) => e.lost);

describe.each([
  { runtime: 'node.js', native: false, quant: 'f32' as const },
  { runtime: 'native', native: true, quant: 'int8' as const },
])('eight $runtime head nodes, $quant', ({ runtime, native, quant }) => {
  test('two nodes killed a second apart and a third held: every lost node\'s heads move, the tokens equal a run without the fault', async () => {
    const meshId = `failover-${runtime}-${quant}`;
    const nodes = startNodes(meshId, 8, native);
    const gw = await gatewayOn(meshId);
    await gw.assign(await gw.discover({ count: 8, timeoutMs: 30000 }), { quant });
    const expected = quant === 'f32' ? goldenIds('bos-greedy-256') : (await Engine.load({ ...paths, groups: 8, quant }).generate(LONG)).tokens;

    const victims = [2, 4, 6].map((i) => nodes.nodes[i].child);
    const f = faults(victims);
    const seen: FailoverEvent[] = [];
    gw.runner.listener = { started: () => undefined, done: () => undefined, late: () => undefined, failover: (e) => seen.push(e) };
    const result = await gw.generate(LONG, (_t, _p, pos) => f.onPosition(pos));

    expect(f.done()).toEqual(['SIGKILL', 'SIGKILL', 'SIGSTOP']);
    expect(result.tokens).toEqual(expected);
    expect(lostNodes(seen)).toEqual(['node-3', 'node-5', 'node-7']);
    expect(gw.runner.failovers).toEqual(seen);
    for (const e of seen) {
      expect(e.moves.flatMap((m) => m.heads).length).toBeGreaterThan(0);
      expect(e.moves.every((m) => m.from === e.lost[0] && !['node-3', 'node-5', 'node-7'].includes(m.to))).toBe(true);
      expect(e.replayed).toBeGreaterThan(0);
      expect(e.replayMs).toBeGreaterThan(0);
    }
    expect(gw.runner.nodes.sort()).toEqual(['node-1', 'node-2', 'node-4', 'node-6', 'node-8']);
  }, 180000);
});

describe('after a failover', () => {
  let nodes: NodeProcesses;
  let gw: MeshGateway;
  beforeAll(async () => {
    nodes = startNodes('after', 3);
    gw = await gatewayOn('after');
    await gw.assign(await gw.discover({ count: 3, timeoutMs: 30000 }));
  }, 60000);

  test('a held node that missed the gather timeout is not waited on at the next session, and is used again once it speaks', async () => {
    const held = nodes.nodes[1].child;
    const run = await gw.generate({ ...LONG, steps: 64 }, (_t, _p, pos) => {
      if (pos === 5) held.kill('SIGSTOP');
    });
    expect(run.tokens).toEqual(goldenIds('bos-greedy-256').slice(0, 65));
    expect(lostNodes(gw.runner.failovers)).toEqual(['node-2']);
    expect(gw.aliveNodes()).toEqual(['node-1', 'node-3']);

    const started = Date.now();
    const again = await gw.generate({ ...LONG, steps: 32 });
    expect(Date.now() - started).toBeLessThan(3000); // not the 5 s of an acknowledgement wait
    expect(again.tokens).toEqual(goldenIds('bos-greedy-256').slice(0, 33));
    expect(gw.runner.nodes).toEqual(['node-1', 'node-3']);

    held.kill('SIGCONT');
    const deadline = Date.now() + 10000;
    while (!gw.aliveNodes().includes('node-2') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const back = await gw.generate({ ...LONG, steps: 32 });
    expect(back.tokens).toEqual(goldenIds('bos-greedy-256').slice(0, 33));
    expect(gw.runner.nodes).toEqual(['node-1', 'node-2', 'node-3']);
    expect(gw.runner.failovers).toEqual([]);
  }, 90000);

  test('when no node is left to take the heads, the run fails naming them', async () => {
    const run = gw.generate(LONG, (_t, _p, pos) => {
      if (pos === 3) for (const n of nodes.nodes) n.child.kill('SIGKILL');
    });
    await expect(run).rejects.toThrow(/no head node is left on mesh after to take heads \[[0-9,]+\] of node-\d/);
  }, 60000);
});

/** `mesh-llm generate --mesh 8 --json`, killing two of its head-node children once the generation has started. */
function cliWithKills(): Promise<{ tokens: number[]; failovers?: FailoverEvent[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry(), 'generate', '--mesh', '8', '--steps', '256', '--temperature', '0', '--gather-timeout', '1500', '--json'], { env: { ...process.env, MESH_LLM_LOG: 'info' } });
    cleanups.push(async () => void child.kill('SIGKILL'));
    let out = '';
    let err = '';
    let started = false;
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      // the gateway logs each node's heads once the assignment is loaded: the generation starts now
      if (!started && /node-8: heads/.test(err)) {
        started = true;
        setTimeout(() => killHeadChild(child.pid as number, 'node-4'), 300);
        setTimeout(() => killHeadChild(child.pid as number, 'node-6'), 1300);
      }
    });
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`generate --mesh 8 exited ${code}: ${err}`));
      resolve(JSON.parse(out));
    });
  });
}

/** SIGKILLs the head-node child of `parent` with id `node` (found by its command line). */
function killHeadChild(parent: number, node: string): void {
  const pids = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(parent)]).toString().split('\n');
  const line = pids.find((l) => l.includes(` --id ${node} `));
  if (!line) throw new Error(`no head node ${node} under pid ${parent}`);
  process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
}

test('generate --mesh 8 --json: two head-node processes killed mid-generation, the golden tokens, and the failovers in the JSON', async () => {
  const out = await cliWithKills();
  expect(out.tokens).toEqual(goldenIds('bos-greedy-256'));
  expect(lostNodes(out.failovers ?? []).sort()).toEqual(['node-4', 'node-6']);
}, 120000);


test('a Node-RED flow run (the flow runtime): two nodes killed a second apart, the golden tokens, failover events on the mesh events', async () => {
  const nodes = startNodes('flow-failover', 4);
  const events = new EventEmitter<MeshEventMap>();
  const seen: FailoverEvent[] = [];
  events.on('failover', (e) => seen.push(e));
  const rt = await FlowRuntime.start({ ...paths, brokerUrl: broker.url, meshId: 'flow-failover', quant: 'f32', nodes: 4, gatherTimeoutMs: GATHER_TIMEOUT_MS, log: () => undefined, events });
  cleanups.push(() => rt.close());
  const f = faults([nodes.nodes[0].child, nodes.nodes[3].child]);
  const result = await flowRun(rt, LONG, (step) => f.onPosition(step.pos));
  expect(f.done()).toEqual(['SIGKILL', 'SIGKILL']);
  expect(result.tokens).toEqual(goldenIds('bos-greedy-256'));
  expect(lostNodes(seen)).toEqual(['node-1', 'node-4']);
}, 120000);

test('a steered flow run with a killed node: the flow\'s assignment and its steering follow the moved heads, the same tokens, KL and most-moving node per token as without the fault', async () => {
  const nodes = startNodes('flow-steered-failover', 4);
  const rt = await FlowRuntime.start({ ...paths, brokerUrl: broker.url, meshId: 'flow-steered-failover', quant: 'f32', nodes: 4, gatherTimeoutMs: GATHER_TIMEOUT_MS, log: () => undefined });
  cleanups.push(() => rt.close());
  await rt.steer({ 'node-1': { soundDb: 0.8 }, 'node-2': { lightLux: -0.6, soundDb: 0.4 }, 'node-3': { vibrationG: 0.3 }, 'node-4': { soundDb: -0.5 } });
  const options: GenerateOptions = { prompt: 'Once upon a time', steps: 48, temperature: 0.8, topP: 0.9, seed: 5n };
  const run = async (onPosition?: (step: StepState) => void) => {
    const details: TokenDetail[] = [];
    const r = await flowRun(rt, options, onPosition, (d) => details.push(d));
    return { tokens: r.tokens, details };
  };
  const clean = await run();
  expect(clean.details.some((d) => (d.kl ?? 0) > 0)).toBe(true);
  const faulty = await run((step) => {
    if (step.pos === 20) nodes.nodes[1].child.kill('SIGKILL');
  });
  expect(lostNodes(rt.mesh.runner.failovers)).toEqual(['node-2']);
  expect(rt.nodes).toEqual(['node-1', 'node-3', 'node-4']);
  expect(rt.assignment.flatMap((a) => a.heads).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(faulty.tokens).toEqual(clean.tokens);
  expect(faulty.details).toEqual(clean.details);
}, 90000);

test('a steered run with a killed node: the steering shares move with the heads, the same tokens and attributions as without the fault', async () => {
  const nodes = startNodes('steered-failover', 4);
  const gw = await gatewayOn('steered-failover');
  const link = await MeshSteering.connect({ url: broker.url, meshId: 'steered-failover' });
  cleanups.push(() => link.close());
  const assignment = await gw.assign(await gw.discover({ count: 4, timeoutMs: 30000 }));
  const data = loadSteering(gw.g.dim, gw.g.nLayers);
  const steering = new Steering(gw.g, gw.gateway, data, assignment.map((a) => ({ node: a.node, heads: a.heads })));
  const readings = { 'node-1': { soundDb: 0.8 }, 'node-2': { lightLux: -0.6, soundDb: 0.4 }, 'node-3': { vibrationG: 0.3 }, 'node-4': { soundDb: -0.5 } };
  const options: GenerateOptions = { prompt: 'Once upon a time', steps: 96, temperature: 0.8, topP: 0.9, seed: 5n };
  const clean = await generateSteeredOnMesh(gw, link, steering, readings, data.settings.alpha, options);

  const faulty = await generateSteeredOnMesh(gw, link, steering, readings, data.settings.alpha, options, (a) => {
    if (a.pos === 20) nodes.nodes[1].child.kill('SIGKILL');
  });
  expect(lostNodes(gw.runner.failovers)).toEqual(['node-2']);
  expect(faulty.tokens).toEqual(clean.tokens);
  expect(faulty.attributions).toEqual(clean.attributions);
}, 90000);

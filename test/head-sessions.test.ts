/**
 * A head group's weights are loaded once and shared by its sessions; each session keeps only
 * its own KV cache. In one process (HeadWeights and HeadSession against separate HeadGroups,
 * bit for bit), and on a real head node behind a real gateway and an embedded aedes broker.
 */
import { Checkpoint } from '../lib/llm/checkpoint';
import { geometry } from '../lib/llm/config';
import { GenerateOptions } from '../lib/llm/engine';
import { Gateway } from '../lib/llm/gateway';
import { HeadGroup, HeadSession, HeadSlices, HeadWeights, loadHeadSlices } from '../lib/llm/head';
import { Encoding } from '../lib/llm/quant';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { HeadNode } from '../lib/mesh/node';
import { spawnBroker } from '../lib/mesh/processes';
import { goldenIds, modelPaths } from './support/fixtures';

const ckpt = Checkpoint.open(modelPaths.model);
const g = geometry(ckpt.info.config);
afterAll(() => ckpt.close());
const ALL_HEADS = Array.from({ length: g.nHeads }, (_, h) => h);

/** One head step's input: the broadcast attention input xb of a layer at a position. */
interface Step {
  pos: number;
  layer: number;
  xb: Float32Array;
}

/** The model's real attention inputs over a golden story's first n tokens, every layer of every position. */
function storySteps(name: string, n: number): Step[] {
  const gateway = Gateway.load(ckpt);
  const all = new HeadGroup(g, loadHeadSlices(ckpt, g, ALL_HEADS, 'f32'));
  const steps: Step[] = [];
  goldenIds(name)
    .slice(0, n)
    .forEach((token, pos) => {
      const x = gateway.embed(token);
      for (let layer = 0; layer < g.nLayers; layer++) {
        const xb = gateway.attentionInput(x, layer);
        steps.push({ pos, layer, xb: xb.slice() });
        gateway.aggregate(x, all.forward(xb, pos, layer), layer);
        gateway.ffn(x, layer);
      }
    });
  return steps;
}

const STORY_A = storySteps('once-greedy-64', 64);
const STORY_B = storySteps('bos-greedy-256', 100);

/** Every output of a session over its steps, each copied (the session reuses its output array). */
function outputs(session: HeadSession, steps: Step[]): Float32Array[] {
  return steps.map((s) => session.forward(s.xb, s.pos, s.layer).slice());
}

/** Two sessions stepped in turn, one step of each at a time, until both stories are done. */
function interleaved(a: HeadSession, b: HeadSession): { a: Float32Array[]; b: Float32Array[] } {
  const out = { a: [] as Float32Array[], b: [] as Float32Array[] };
  for (let i = 0; i < Math.max(STORY_A.length, STORY_B.length); i++) {
    if (i < STORY_A.length) out.a.push(...outputs(a, [STORY_A[i]]));
    if (i < STORY_B.length) out.b.push(...outputs(b, [STORY_B[i]]));
  }
  return out;
}

const QUANTS: ('f32' | 'int8')[] = ['f32', 'int8'];

describe.each(QUANTS)('one HeadWeights, many sessions (%s weights)', (quant) => {
  const slices: HeadSlices = loadHeadSlices(ckpt, g, [2, 3, 4], quant);

  test('five sessions from one weights object leave its kernel arena the size it was', () => {
    const weights = new HeadWeights(g, slices);
    const before = weights.arenaBytes;
    expect(before).toBeGreaterThanOrEqual(weights.weightBytes);
    const sessions = Array.from({ length: 5 }, () => weights.session());
    for (const s of sessions) outputs(s, STORY_A.slice(0, 2 * g.nLayers));
    expect(weights.arenaBytes).toBe(before);
    expect(sessions.every((s) => s.weights === weights)).toBe(true);
  });

  test('two interleaved sessions give the same outputs, bit for bit, as two separate head groups', () => {
    const weights = new HeadWeights(g, slices);
    const together = interleaved(weights.session(), weights.session());
    expect(together.a).toEqual(outputs(new HeadGroup(g, slices), STORY_A));
    expect(together.b).toEqual(outputs(new HeadGroup(g, slices), STORY_B));
  });

  test("resetting one session forgets its own keys and values, not the other session's", () => {
    const weights = new HeadWeights(g, slices);
    const kept = weights.session();
    const reset = weights.session();
    outputs(kept, STORY_B.slice(0, STORY_A.length));
    outputs(reset, STORY_B.slice(0, STORY_A.length));
    reset.reset();
    expect(outputs(reset, STORY_A)).toEqual(outputs(new HeadGroup(g, slices), STORY_A));
    expect(outputs(kept, STORY_B.slice(STORY_A.length))).toEqual(outputs(new HeadGroup(g, slices), STORY_B).slice(STORY_A.length));
  });
});

describe('a head node keeps one copy of its weights across sessions', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  const quiet = () => undefined;
  const ONCE: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };

  /** A HeadNode in this process (so its memory can be read) on a `mesh-llm broker` (aedes) process, assigned every head by a MeshGateway. */
  async function meshOfOneNode(): Promise<{ node: HeadNode; gw: MeshGateway }> {
    // jest cannot load the aedes ES module in-process: the embedded broker runs as `mesh-llm broker`
    const broker = await spawnBroker(await freePort());
    cleanups.push(() => broker.close());
    const node = new HeadNode({ id: 'node-1', meshId: 'sessions', url: broker.url, modelPath: modelPaths.model, log: quiet });
    await node.start();
    cleanups.push(() => node.stop());
    const gw = await MeshGateway.connect({ url: broker.url, meshId: 'sessions', modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, log: quiet });
    cleanups.push(() => gw.close());
    await gw.assign(await gw.discover({ count: 1, timeoutMs: 10000 }), { groups: 1 });
    return { node, gw };
  }

  /** One generation; the node's resident weight bytes seen at every token (while its session lives) and after. */
  async function generation(gw: MeshGateway, node: HeadNode): Promise<{ tokens: number[]; during: Set<number>; after: number }> {
    const during = new Set<number>();
    const result = await gw.generate(ONCE, () => {
      expect(node.cacheBytes).toBeGreaterThan(0); // a session's KV cache is live
      during.add(node.residentWeightBytes);
    });
    return { tokens: result.tokens, during, after: node.residentWeightBytes };
  }

  test('five generations through the gateway each give the golden tokens, and the resident weight bytes stay those of one copy of the weights', async () => {
    const oneCopy = new HeadWeights(g, loadHeadSlices(ckpt, g, ALL_HEADS, 'f32')).arenaBytes;
    const { node, gw } = await meshOfOneNode();
    const first = await generation(gw, node);
    expect(first.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(first.after).toBe(oneCopy);
    expect([...first.during]).toEqual([oneCopy]);
    for (let i = 0; i < 4; i++) {
      const next = await generation(gw, node);
      expect(next.tokens).toEqual(goldenIds('once-greedy-64'));
      expect([...next.during]).toEqual([first.after]);
      expect(next.after).toBe(first.after);
    }
  });
});

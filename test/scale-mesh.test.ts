/**
 * TinyLlama's head structure end to end on the mesh: 32 query heads and 4 key/value heads on
 * 16 native head nodes of 2 heads each, over a loopback MQTT broker, with a synthetic model
 * (lib/llm/synth.ts) of reduced width and depth so that it runs in well under a minute on two
 * cores (dim 512, 2 layers; the full geometry runs in `npm run bench:scale-mesh`). Tokens must
 * equal the monolithic engine's, and each node's weights must be the planner's figure.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ModelConfig, geometry } from '../lib/llm/config';
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { nodeBudget } from '../lib/radio/planner';
import { writeSynthModel } from '../lib/llm/synth';
import { modelPaths } from './support/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-scale-mesh-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** TinyLlama-1.1B's attention (32 heads, 4 kv heads, 8 query heads per kv head), narrower and shallower. */
const config: ModelConfig = { dim: 512, hiddenDim: 1408, nLayers: 2, nHeads: 32, nKvHeads: 4, vocabSize: 512, seqLen: 64, sharedClassifier: false };
const modelPath = path.join(tmp, 'tinyllama-heads.bin');
const o: GenerateOptions = { prompt: 'Once upon a time', steps: 16, temperature: 1, topP: 0.9, seed: 11n };

describe('TinyLlama head structure on 16 native head nodes (2 heads each), loopback MQTT', () => {
  let gw: MeshGateway;
  let ids: string[];
  beforeAll(async () => {
    writeSynthModel({ config, seed: 3, format: 'llama2c', out: modelPath, type: 'F32' });
    const broker = await spawnBroker(await freePort());
    cleanups.push(() => broker.close());
    const logs: string[] = [];
    const nodes = spawnHeadNodes({ count: 16, brokerUrl: broker.url, meshId: 'scale', modelPath, native: true, onLog: (_n, line) => logs.push(line) });
    cleanups.push(() => nodes.stop(500));
    gw = await MeshGateway.connect({ url: broker.url, meshId: 'scale', modelPath, tokenizerPath: modelPaths.tokenizer, gatherTimeoutMs: 10000, log: () => undefined });
    cleanups.push(() => gw.close());
    const exited = nodes.firstExit.catch((e: Error) => Promise.reject(new Error(`${e.message}\n${logs.join('\n')}`)));
    ids = await Promise.race([gw.discover({ count: 16, timeoutMs: 30000 }), exited]);
  }, 60000);

  for (const quant of ['f32', 'int8'] as const) {
    test(`${quant}: the tokens equal the monolithic engine's on the same model`, async () => {
      const assignment = await gw.assign(ids, { groups: 16, quant });
      expect(assignment.map((a) => a.heads)).toEqual(Array.from({ length: 16 }, (_, i) => [2 * i, 2 * i + 1]));
      expect(assignment.map((a) => a.kvHeads)).toEqual(Array.from({ length: 16 }, (_, i) => [Math.floor(i / 4)]));
      const mono = await Engine.load({ modelPath, tokenizerPath: modelPaths.tokenizer, quant }).generate(o);
      expect(mono.tokens).toHaveLength(17);
      expect((await gw.generate(o)).tokens).toEqual(mono.tokens);
    }, 60000);
  }

  test("int8: every node's resident weights are the planner's figure for its two heads", async () => {
    const assignment = await gw.assign(ids, { groups: 16, quant: 'int8' });
    const g = geometry(config);
    for (const [i, a] of assignment.entries()) {
      expect(a.weightBytes).toBe(nodeBudget(g, i + 1, a.heads, 'int8', config.seqLen, 'int8').weightBytes);
    }
  }, 60000);
});

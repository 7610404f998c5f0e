/**
 * `npm run bench:scale-mesh [-- --layers L] [-- --steps N]`: the full TinyLlama-1.1B geometry
 * end to end on this machine. A synthetic model (mesh-llm synth's weights, llama2.c float32,
 * written once to the temp folder and reused) is run by the monolithic engine and then through
 * 16 native head nodes of 2 heads each on a loopback MQTT broker (int8 head weights and
 * transport, as the seed's mesh runs); the tokens must be identical, and each node's resident
 * weights must equal the radio planner's figure. The gateway runs on the js kernels here: the
 * wasm kernels hold matrices as float64 in one WebAssembly memory of at most 4 GiB, which
 * TinyLlama's 3.9 GB of float32 gateway weights do not fit.
 *
 * stdout: a table, then as its last line one JSON object.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ModelConfig, geometry } from '../lib/llm/config';
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { locateModelFile } from '../lib/llm/resolve';
import { writeSynthModel } from '../lib/llm/synth';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { nodeBudget } from '../lib/radio/planner';
import { MODEL_PRESETS } from '../lib/radio/presets';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const log = (s: string): boolean => process.stderr.write(`bench:scale-mesh: ${s}\n`);

async function main(): Promise<void> {
  process.env.MESH_LLM_KERNELS = 'js';
  const config: ModelConfig = { ...MODEL_PRESETS.tinyllama, nLayers: arg('layers', MODEL_PRESETS.tinyllama.nLayers) };
  const steps = arg('steps', 8);
  const g = geometry(config);
  const modelPath = path.join(os.tmpdir(), `mesh-llm-synth-tinyllama-${config.nLayers}.bin`);
  const expectedBytes = 256 + 4 * (config.nLayers * (2 * g.dim + g.dim * (g.dim + 2 * g.kvDim) + g.dim * g.dim + 3 * g.dim * g.hiddenDim) + g.dim + 2 * g.vocabSize * g.dim);
  if (!fs.existsSync(modelPath) || fs.statSync(modelPath).size !== expectedBytes) {
    log(`writing the synthetic model to ${modelPath} (${(expectedBytes / 1e9).toFixed(1)} GB)`);
    writeSynthModel({ config, seed: 1, format: 'llama2c', out: modelPath, type: 'F32', progress: (d, t) => d % 20 === 0 && log(`${d}/${t} tensors`) });
  }
  const tokenizerPath = locateModelFile('tokenizer.bin');
  const o: GenerateOptions = { prompt: 'Once upon a time', steps, temperature: 1, topP: 0.9, seed: 5n };

  log('monolithic engine (int8 heads and transport)');
  let t0 = Date.now();
  let engine: Engine | null = Engine.load({ modelPath, tokenizerPath, quant: 'int8' });
  const monoLoad = (Date.now() - t0) / 1000;
  const mono = await engine.generate(o);
  engine = null;
  (globalThis as { gc?: () => void }).gc?.();

  log('16 native head nodes on a loopback broker');
  const broker = await spawnBroker(await freePort());
  const nodes = spawnHeadNodes({ count: 16, brokerUrl: broker.url, meshId: 'scale', modelPath, native: true, onLog: () => undefined });
  t0 = Date.now();
  const gw = await MeshGateway.connect({ url: broker.url, meshId: 'scale', modelPath, tokenizerPath, gatherTimeoutMs: 120000, controlTimeoutMs: 600000, log: () => undefined });
  try {
    const ids = await gw.discover({ count: 16, timeoutMs: 120000 });
    const assignment = await gw.assign(ids, { groups: 16, quant: 'int8' });
    const meshLoad = (Date.now() - t0) / 1000;
    const mesh = await gw.generate(o);
    const perNode = assignment.map((a, i) => ({ node: a.node, heads: a.heads, kvHeads: a.kvHeads, weightBytes: a.weightBytes, plannerBytes: nodeBudget(g, i + 1, a.heads, 'int8', config.seqLen, 'int8').weightBytes }));
    const same = JSON.stringify(mesh.tokens) === JSON.stringify(mono.tokens);
    const planned = perNode.every((n) => n.weightBytes === n.plannerBytes);
    console.log(`TinyLlama geometry (${config.nLayers} layers, dim ${g.dim}, ${g.nHeads} heads, ${g.nKvHeads} kv heads), synthetic weights, ${steps} positions`);
    console.log('run | load (s) | tok/s | tokens');
    console.log(`monolithic engine | ${monoLoad.toFixed(0)} | ${mono.tokensPerSecond.toFixed(2)} | ${mono.tokens.join(' ')}`);
    console.log(`16 native nodes x 2 heads | ${meshLoad.toFixed(0)} | ${mesh.tokensPerSecond.toFixed(2)} | ${mesh.tokens.join(' ')}`);
    console.log('node | heads | kv heads | weight bytes | planner bytes');
    for (const n of perNode) console.log(`${n.node} | ${n.heads.join(',')} | ${n.kvHeads.join(',')} | ${n.weightBytes} | ${n.plannerBytes}`);
    console.log(JSON.stringify({ layers: config.nLayers, steps, tokensIdentical: same, weightsEqualPlanner: planned, nodeWeightBytes: perNode[0].weightBytes, monoTokensPerSecond: Math.round(mono.tokensPerSecond * 100) / 100, meshTokensPerSecond: Math.round(mesh.tokensPerSecond * 100) / 100, tokens: mesh.tokens }));
    if (!same || !planned) process.exitCode = 1;
  } finally {
    await gw.close();
    await nodes.stop(1000);
    await broker.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:scale-mesh: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

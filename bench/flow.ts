/**
 * `npm run bench:flow [-- --json] [--nodes N] [--steps N] [--runs R]`: tokens/s through the
 * shipped Node-RED flow (POST /generate) against the programmatic mesh gateway, on the same
 * broker and head-node processes, alternating in one run. Last line:
 * {"flowTokensPerSecond", "gatewayTokensPerSecond", "ratio"}.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseOptions, intOption } from '../cli/args';
import { startNodeRed } from '../lib/app/nodered';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { startAedesBroker } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { spawnHeadNodes } from '../lib/mesh/processes';
import { defaultSettingsOptions } from '../settings';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const v = parseOptions(process.argv.slice(2), { json: { type: 'boolean' }, nodes: { type: 'string' }, steps: { type: 'string' }, runs: { type: 'string' } }, 'bench:flow');
  const nodes = intOption('nodes', v.nodes, 8, 1, 64);
  const steps = intOption('steps', v.steps, 128, 2, 512);
  const runs = intOption('runs', v.runs, 3, 1, 20);
  const progress = (s: string) => process.stderr.write(`${s}\n`);
  const paths = await resolveOrFetchModelPaths({});
  const request = { prompt: 'Once upon a time', steps, temperature: 0, topP: 0.9, seed: 1n };

  const broker = await startAedesBroker({ port: 0 });
  // Two meshes of the same size on one broker: one serves the flow, one the programmatic gateway.
  const flowNodes = spawnHeadNodes({ count: nodes, brokerUrl: broker.url, meshId: 'default', modelPath: paths.model, onLog: () => undefined });
  const gatewayNodes = spawnHeadNodes({ count: nodes, brokerUrl: broker.url, meshId: 'bench-gateway', modelPath: paths.model, onLog: () => undefined });
  const url = new URL(broker.url);
  Object.assign(process.env, { MESH_LLM_BROKER: broker.url, MESH_LLM_BROKER_HOST: url.hostname, MESH_LLM_BROKER_PORT: url.port, MESH_LLM_NODES: String(nodes), MESH_LLM_LOG_LEVEL: 'warn' });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-bench-flow-'));
  const gatewayRates: number[] = [];
  const flowRates: number[] = [];
  let expected: number[] = [];
  try {
    progress(`${nodes} head-node processes on ${broker.url}; ${runs} runs of ${steps} positions each way`);
    const nodeRed = await startNodeRed({ ...defaultSettingsOptions(), host: '127.0.0.1', port: 0, dataDir });
    const gw = await MeshGateway.connect({ url: broker.url, meshId: 'bench-gateway', modelPath: paths.model, tokenizerPath: paths.tokenizer, log: () => undefined });
    try {
      await gw.assign(await gw.discover({ count: nodes, timeoutMs: 30000 }));
      for (let r = 0; r < runs; r++) {
        const result = await gw.generate(request);
        expected = result.tokens;
        gatewayRates.push(result.tokensPerSecond);
        progress(`  run ${r + 1}: gateway ${result.tokensPerSecond.toFixed(1)} tok/s`);
        const res = await fetch(`${nodeRed.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: request.prompt, steps, temperature: 0 }) });
        const body = (await res.json()) as { tokens: number[]; tokensPerSecond: number; error?: string };
        if (res.status !== 200) throw new Error(`POST /generate answered ${res.status}: ${body.error}`);
        if (JSON.stringify(body.tokens) !== JSON.stringify(expected)) throw new Error('the flow and the gateway generated different tokens');
        flowRates.push(body.tokensPerSecond);
        progress(`  run ${r + 1}: flow    ${body.tokensPerSecond.toFixed(1)} tok/s`);
      }
    } finally {
      await gw.close();
      await nodeRed.close();
    }
  } finally {
    await Promise.all([flowNodes.stop(), gatewayNodes.stop()]);
    await broker.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  const flow = median(flowRates);
  const gateway = median(gatewayRates);
  if (!v.json) {
    console.log(`| path (${nodes} head nodes, ${steps} positions, greedy) | median tok/s | runs |`);
    console.log('|---|---|---|');
    console.log(`| Node-RED flow (POST /generate) | ${flow.toFixed(1)} | ${flowRates.map((x) => x.toFixed(1)).join(', ')} |`);
    console.log(`| programmatic mesh gateway | ${gateway.toFixed(1)} | ${gatewayRates.map((x) => x.toFixed(1)).join(', ')} |`);
    console.log(`| ratio flow / gateway | ${(flow / gateway).toFixed(2)} | |`);
  }
  console.log(JSON.stringify({ flowTokensPerSecond: flow, gatewayTokensPerSecond: gateway, ratio: flow / gateway }));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench:flow failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);

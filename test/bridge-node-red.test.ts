/**
 * The Node-RED node: mesh-llm-lora-bridge deployed by node-red-node-test-helper announces its
 * radio nodes on a real broker, carries a generation from the MQTT mesh gateway over the
 * simulated channel, emits one message per token position and reports on demand.
 */
import * as path from 'node:path';
import type { NodeMessage } from 'node-red';
import { packageRoot } from '../lib/llm/resolve';
import { MeshGateway } from '../lib/mesh/gateway';
import { goldenIds } from './support/fixtures';
import { ONCE, ONCE_OPTIONS, bridgePaths, brokerProcess, quiet } from './support/radio';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(require.resolve('node-red'));

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

const bridgeNode = require(path.join(packageRoot(), 'dist', 'nodes', 'lora-bridge.js'));

test('the lora-bridge node carries a generation over the simulated radio and reports each position', async () => {
  const brokerUrl = await brokerProcess(cleanups);
  await helper.startServer();
  cleanups.push(() => helper.stopServer());
  const flow = [
    { id: 'b', type: 'mesh-llm-lora-bridge', broker: brokerUrl, meshId: 'nr-radio', quant: 'f32', link: 'sim', region: 'US915', sf: '7', bw: '125', channels: '8', nodes: '4', loss: '0.05', timeScale: '0', wires: [['out']] },
    { id: 'out', type: 'helper' },
  ];
  await helper.load(bridgeNode, flow);
  cleanups.push(() => helper.unload());
  const positions: Record<string, unknown>[] = [];
  const reports: Record<string, unknown>[] = [];
  helper.getNode('out').on('input', (msg: NodeMessage & { payload: Record<string, unknown> }) => (msg.topic === 'radio' ? positions : reports).push(msg.payload));

  const gw = await MeshGateway.connect({ url: brokerUrl, meshId: 'nr-radio', ...bridgePaths, gatherTimeoutMs: 30000, log: quiet });
  cleanups.push(() => gw.close());
  const nodes = await gw.discover({ count: 4, timeoutMs: 20000 });
  expect(nodes).toEqual(['radio-1', 'radio-2', 'radio-3', 'radio-4']);
  await gw.assign(nodes); // the mesh gateway's own default partition: one group per node, in node order
  const steps = 16;
  const result = await gw.generate({ ...ONCE_OPTIONS, steps });
  expect(result.tokens).toEqual(goldenIds(ONCE.name).slice(0, steps + 1));
  // the node's message for the last position is delivered by Node-RED a moment after the gateway
  // has its results: wait for it (at most 5 s) before checking
  for (const deadline = Date.now() + 5000; positions.length < steps && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
  expect(positions.map((p) => p.pos)).toEqual(Array.from({ length: steps }, (_, i) => i));
  for (const p of positions) expect(p.simulatedSeconds as number).toBeGreaterThanOrEqual(p.boundSeconds as number);

  helper.getNode('b').receive({ payload: 'report?' });
  while (reports.length === 0) await new Promise((r) => setTimeout(r, 10));
  expect(reports[0]).toMatchObject({ positions: steps });
});

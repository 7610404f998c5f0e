/**
 * Generating through the bridge and the simulated radio (link c): the mesh gateway on a real
 * broker process, the bridge announcing the radio nodes, the radio nodes computing their
 * heads on the simulated channel. Loss changes the time, never the tokens.
 */
import { MeshGateway } from '../lib/mesh/gateway';
import { Engine } from '../lib/llm/engine';
import { RadioBridge } from '../gateway-bridge/bridge';
import { generateOverRadio } from '../gateway-bridge/run';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { goldenIds, goldenText } from './support/fixtures';
import { ONCE, ONCE_OPTIONS, bridgePaths, brokerProcess, quiet, radioMesh } from './support/radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

let brokerUrl = '';
beforeAll(async () => {
  brokerUrl = await brokerProcess(cleanups);
});

async function generate(meshId: string, loss: number, region = 'US915', channels = 8) {
  const mesh = radioMesh(4, { loss, seed: 42, region, channels });
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl, meshId, ...bridgePaths, generate: ONCE_OPTIONS, log: quiet });
  return { mesh, result };
}

let lossless: Awaited<ReturnType<typeof generate>>;

test('once-greedy-64 through the bridge and the simulated radio gives the golden tokens', async () => {
  lossless = await generate('radio-clean', 0);
  expect(lossless.result.tokens).toEqual(goldenIds(ONCE.name));
  expect(lossless.result.text).toBe(goldenText(ONCE.name));
  expect(lossless.result.assignment.map((a) => a.node)).toEqual(['radio-1', 'radio-2', 'radio-3', 'radio-4']);
  const r = lossless.result.radio;
  expect(r.positions).toBe(ONCE.steps);
  expect(r.channel.lost.random).toBe(0);
  expect(r.airtimeSeconds.resent).toBe(0);
  expect(r.ratio).toBeLessThanOrEqual(1.05);
  for (const n of lossless.mesh.nodes) expect(n.counters.results).toBe(ONCE.steps * 5); // 5 layers per position
});

test('with 10% of receptions lost the tokens are identical to the lossless run (and the golden); only the time grows', async () => {
  const lossy = await generate('radio-lossy', 0.1);
  expect(lossy.result.tokens).toEqual(lossless.result.tokens);
  expect(lossy.result.tokens).toEqual(goldenIds(ONCE.name));
  const r = lossy.result.radio;
  expect(r.channel.lost.random).toBeGreaterThan(100);
  expect(r.airtimeSeconds.resent).toBeGreaterThan(0);
  expect(r.airtimeSeconds.nack).toBeGreaterThan(0);
  expect(r.simulatedSecondsPerToken).toBeGreaterThan(lossless.result.radio.simulatedSecondsPerToken);
  expect(lossy.mesh.errors).toEqual([]);
});

test('EU868 on one receive channel, under its duty cycles and 10% loss: the golden tokens, a dozen positions', async () => {
  const mesh = radioMesh(3, { loss: 0.1, seed: 7, region: 'EU868', channels: 1 });
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl, meshId: 'radio-eu', ...bridgePaths, generate: { ...ONCE_OPTIONS, steps: 12 }, log: quiet });
  expect(result.tokens).toEqual(goldenIds(ONCE.name).slice(0, 13));
  expect(mesh.errors).toEqual([]);
  // The gateway's 10% in g3 dominates: far slower than US915 per position.
  expect(result.radio.simulatedSecondsPerToken).toBeGreaterThan(2 * lossless.result.radio.simulatedSecondsPerToken);
});

test('int7h over eu868-wide (int8 weights in the radio nodes): the engine\'s int8 x int7h tokens, a dozen positions', async () => {
  const mesh = new SimulatedRadioMesh({ modelPath: bridgePaths.modelPath, nodes: 4, quant: 'int7h', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: 'eu868-wide', loss: 0, seed: 1 });
  const options = { ...ONCE_OPTIONS, steps: 12 };
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl, meshId: 'radio-int7h', ...bridgePaths, generate: options, log: quiet });
  const engine = Engine.load({ ...bridgePaths, quant: 'int8', transport: 'int7h' });
  expect(result.tokens).toEqual((await engine.generate(options)).tokens);
  expect(mesh.infos.every((i) => i.weights === 'int8')).toBe(true);
  expect(result.radio.positions).toBe(12);
}, 120_000);

test('f32 over eu868-fsk (the broadcast and replies at FSK in g3): the golden tokens, every reply frame FSK', async () => {
  const mesh = new SimulatedRadioMesh({ modelPath: bridgePaths.modelPath, nodes: 4, quant: 'f32', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: 'eu868-fsk', loss: 0.05, seed: 3 });
  const replies: (number | undefined)[] = [];
  mesh.channel.attach({ name: 'listener', listen: mesh.config.plan.uplink, onReceive: (r) => replies.push(r.channel.fskBitrateBps) });
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl, meshId: 'radio-fsk', ...bridgePaths, generate: { ...ONCE_OPTIONS, steps: 12 }, log: quiet });
  expect(result.tokens).toEqual(goldenIds(ONCE.name).slice(0, 13));
  expect(mesh.errors).toEqual([]);
  expect(replies.length).toBeGreaterThan(0);
  expect(new Set(replies)).toEqual(new Set([50000]));
}, 120_000);

test('the bridge refuses an assignment of heads a radio node does not hold in flash, and says why', async () => {
  const mesh = radioMesh(4);
  const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
  const bridge = await RadioBridge.connect({ url: brokerUrl, meshId: 'radio-refuse', mac, g: mesh.g, transport: 'f32', nodes: mesh.infos, log: quiet });
  cleanups.push(() => bridge.close());
  const gw = await MeshGateway.connect({ url: brokerUrl, meshId: 'radio-refuse', ...bridgePaths, log: quiet });
  cleanups.push(() => gw.close());
  const nodes = await gw.discover({ count: 4 });
  expect(gw.nodes.get('radio-2')?.status).toMatchObject({ state: 'online', slot: 2, heads: [2, 3], kvHeads: [1], weights: 'f32' });
  await expect(gw.assign(nodes, { groups: 2 })).rejects.toThrow(/radio node radio-1 holds heads \[0,1\] in flash; it cannot load \[0,1,2,3\] over LoRa/);
  await expect(gw.assign(nodes, { quant: 'int8' })).rejects.toThrow(/holds f32 weights, not int8/);
  expect(bridge.counters.refusedAssignments).toBeGreaterThanOrEqual(2);
});

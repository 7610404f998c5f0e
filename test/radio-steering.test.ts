/**
 * Steering over the radio: the bridge turns each radio node's steering message into a
 * steering body (lib/link/body.ts, BodyType.Steering) delivered to that node alone through the
 * MAC's rounds (fragments, NACKs, an empty NACK as the acknowledgement), and the radio node
 * adds the vector to its head outputs as an MQTT node does. A steered generation on the
 * simulated radio with 10% loss gives the tokens, KL and attributions of steering in the
 * monolithic engine with the same readings.
 */
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { BodyType, decodeBody } from '../lib/link/body';
import { steeringBody } from '../lib/radio/mac';
import { generateWithAttribution } from '../lib/steering/attribution';
import { loadSteering } from '../lib/steering/directions';
import { scenarioReadings } from '../lib/steering/readings';
import { Steering, localNodes } from '../lib/steering/steer';
import { generateOverRadio } from '../gateway-bridge/run';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { NativeRadioNodes } from '../gateway-bridge/native-radio';
import { modelPaths } from './support/fixtures';
import { runCli } from './support/cli';
import { bridgePaths, brokerProcess, quiet, radioMesh } from './support/radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

let brokerUrl = '';
beforeAll(async () => {
  brokerUrl = await brokerProcess(cleanups);
});

const NODES = 4;
const IDS = Array.from({ length: NODES }, (_, i) => `radio-${i + 1}`);
const OPTIONS: GenerateOptions = { prompt: 'Tom was playing. Suddenly,', steps: 24, temperature: 0.8, topP: 0.9, seed: 42n };
/** Calm readings everywhere, an explosion felt by radio-3 only. */
const readings = scenarioReadings('explosion', IDS, { affected: ['radio-3'], epicentre: 'radio-3', seed: 8 }).readings;

test('a steering body carries the float32 vector of a node\'s heads at one layer, from the gateway', () => {
  const v = Float32Array.of(0.5, -1.25, 3e-8, 0);
  const b = decodeBody(steeringBody(0x8001, 3, v));
  expect(b).toMatchObject({ type: BodyType.Steering, encoding: 'f32', sender: 0, session: 0, seq: 0x8001, pos: 0, layer: 3 });
  expect(b.values).toEqual(v);
});

/** Steering in the monolithic engine with the same readings: what every radio run must give. */
async function engineSteered() {
  const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: NODES });
  const data = loadSteering(engine.g.dim, engine.g.nLayers);
  const alpha = data.settings.alpha;
  const nodes = localNodes(engine.heads).map((n, i) => ({ ...n, node: IDS[i] }));
  const local = new Steering(engine.g, engine.gateway, data, nodes);
  const vectors = local.vectors(readings, alpha);
  engine.heads.groups.forEach((group, i) => (group.steering = vectors.get(IDS[i]) ?? null));
  const run = await generateWithAttribution(engine.gateway, engine.heads, engine.tokenizer, local.shares.map((s) => ({ node: s.node, heads: s.heads, steering: vectors.get(s.node)! })), OPTIONS);
  return { run, nodes, alpha };
}
let expected: Awaited<ReturnType<typeof engineSteered>>;
beforeAll(async () => {
  expected = await engineSteered();
});

/** TypeScript radio nodes (lib/radio/node.ts), and the firmware's native radio node on the channel's socket. */
describe.each([false, true])('native radio nodes: %s', (native) => {
  test('a steered generation on the simulated radio with 10% loss equals steering in the monolithic engine: tokens, KL and attributions', async () => {
    const addresses = native ? IDS.map((_, i) => i + 1) : [];
    const mesh = radioMesh(NODES, { loss: 0.1, seed: 11, ...(native ? { nativeAddresses: new Set(addresses) } : {}) });
    const natives = native ? await NativeRadioNodes.start({ mesh, modelPath: modelPaths.model, addresses }) : null;
    if (natives) cleanups.push(() => natives.close());
    const got = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl, meshId: `radio-steer-${native}`, ...bridgePaths, generate: OPTIONS, log: quiet, steer: { readings, alpha: expected.alpha } });
    await natives?.close();
    const want = expected.run;
    expect(got.assignment.map((a) => [a.node, a.heads])).toEqual(expected.nodes.map((n) => [n.node, n.heads]));
    expect(got.tokens).toEqual(want.tokens);
    expect(got.text).toBe(want.text);
    const attributions = got.attributions ?? [];
    expect(attributions.map((a) => a.top)).toEqual(want.attributions.map((a) => a.top));
    attributions.forEach((a, i) => {
      expect(a.kl).toBeCloseTo(want.attributions[i].kl, 9);
      a.nodes.forEach((n, j) => {
        expect(n.node).toBe(want.attributions[i].nodes[j].node);
        expect(n.kl).toBeCloseTo(want.attributions[i].nodes[j].kl, 9);
      });
    });
    // the steering moved the tokens: every distribution moved, mostly by the node that felt the explosion
    expect(attributions.every((a) => a.kl > 0)).toBe(true);
    expect(attributions.filter((a) => a.top === 'radio-3').length / attributions.length).toBeGreaterThanOrEqual(0.8);
    // each TypeScript node took its steering, over a lossy channel
    for (const n of mesh.nodes) expect(n.counters.steering).toBeGreaterThanOrEqual(1);
    expect(mesh.channel.stats.lost.random).toBeGreaterThan(0);
    expect(mesh.errors).toEqual([]);
  }, 120000);
});

test('generate --radio sim --scenario explosion --json (10% loss) gives the text, alpha and attributions of generate --groups 4 --scenario explosion, node-N as radio-N', async () => {
  const common = ['--prompt', 'Tom was playing. Suddenly,', '--steps', '20', '--seed', '42', '--temperature', '0.8', '--scenario', 'explosion', '--json'];
  const [radio, engine] = await Promise.all([runCli(['generate', '--radio', 'sim', '--nodes', '4', '--loss', '0.1', ...common], { timeoutMs: 120000 }), runCli(['generate', '--groups', '4', ...common], { timeoutMs: 120000 })]);
  expect(radio.code).toBe(0);
  expect(engine.code).toBe(0);
  const r = JSON.parse(radio.stdout);
  const e = JSON.parse(engine.stdout);
  expect(r.tokens).toEqual(e.tokens);
  expect(r.text).toBe(e.text);
  expect(r.alpha).toBe(e.alpha);
  const renamed = (n: string | null) => n && n.replace(/^node-/, 'radio-');
  expect(r.attributions.map((a: { top: string | null }) => a.top)).toEqual(e.attributions.map((a: { top: string | null }) => renamed(a.top)));
  r.attributions.forEach((a: { kl: number }, i: number) => expect(a.kl).toBeCloseTo(e.attributions[i].kl, 9));
  expect(r.radio.lost.random).toBeGreaterThan(0);
  expect(r.steeringAirtimeSeconds).toBeGreaterThan(0); // the steering deliveries' airtime is counted
}, 150000);

test('a radio node refuses a steering body that does not fit its heads (it stays silent), and the MAC says the node did not acknowledge it', async () => {
  const mesh = radioMesh(2);
  const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
  await expect(mac.steer(1, steeringBody(0, 0, new Float32Array(3).fill(1)))).rejects.toThrow(/radio node 1 did not acknowledge its steering in 32 rounds/);
  expect(mesh.nodes[0].lastRefusal).toMatch(/a steering body of 3 values; this node's 4 heads need 32/);
  expect(mesh.nodes[0].counters.steering).toBe(0);
  // one that fits is taken and acknowledged in the first round
  const rounds = mac.counters.rounds;
  await mac.steer(1, steeringBody(0, 2, new Float32Array(32).fill(0.5)));
  expect(mac.counters.rounds - rounds).toBe(1);
  expect(mesh.nodes[0].counters.steering).toBe(1);
  expect(mac.counters.steeringDelivered).toBe(1);
});

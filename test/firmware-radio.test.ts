/**
 * The firmware's radio path on the host: the native radio head node (firmware/core/radio_node.cpp
 * on the host HALs, dist/firmware/mesh-llm-radio-node) loading its weight shard and joining the
 * simulated channel through its socket (lib/radio/sim-socket.ts), with the channel deciding
 * airtime, collisions and loss. Generations through the bridge, a mixed mesh, a reboot, and
 * frames no node should take.
 */
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { BodyType, encodeBody } from '../lib/link/body';
import { FrameSender, GATEWAY_ADDRESS, downlinkKey, sealFrame } from '../lib/radio/frame';
import { Radio } from '../lib/radio/channel';
import { generateOverRadio } from '../gateway-bridge/run';
import { NativeRadioNodes } from '../gateway-bridge/native-radio';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { modelPaths } from './support/fixtures';
import { ONCE_OPTIONS, bridgePaths, brokerProcess, quiet } from './support/radio';
import { runCli } from './support/cli';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

let broker: Promise<string> | undefined;
const brokerUrl = () => (broker ??= brokerProcess(cleanups));

function int8Mesh(native: number[], seed: number): SimulatedRadioMesh {
  return new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes: 4, quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0.1, seed, nativeAddresses: new Set(native) });
}

async function startNatives(mesh: SimulatedRadioMesh, addresses: number[], extra: Partial<Parameters<typeof NativeRadioNodes.start>[0]> = {}): Promise<NativeRadioNodes> {
  const n = await NativeRadioNodes.start({ mesh, modelPath: modelPaths.model, addresses, ...extra });
  cleanups.push(() => n.close());
  return n;
}

const int8Engine = (g: GenerateOptions) => Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate(g);

async function until(done: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('four native radio nodes with 10% loss give the int8 mesh\'s tokens on once-greedy-64, every body through the firmware\'s frames', async () => {
  const mesh = int8Mesh([1, 2, 3, 4], 5);
  const natives = await startNatives(mesh, [1, 2, 3, 4]);
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl: await brokerUrl(), meshId: 'native-radio', ...bridgePaths, generate: ONCE_OPTIONS, log: quiet });
  expect(result.tokens).toEqual((await int8Engine(ONCE_OPTIONS)).tokens);
  expect(mesh.nodes).toHaveLength(0); // no TypeScript radio node took part
  expect(mesh.channel.stats.lost.random).toBeGreaterThan(100);
  expect(result.radio.airtimeSeconds.resent).toBeGreaterThan(0);
  expect(natives.server.counters).toMatchObject({ joins: 4, refused: 0 });
  expect(mesh.errors).toEqual([]);
});

test('generate --radio sim --native on a prompt the other tests never use: the int8 engine\'s tokens', async () => {
  const prompt = 'The old lighthouse keeper counted the gulls';
  const r = await runCli(['generate', '--radio', 'sim', '--native', '--nodes', '4', '--quant', 'int8', '--loss', '0.1', '--prompt', prompt, '--steps', '40', '--temperature', '0', '--json'], { timeoutMs: 110000 });
  expect(r.stderr).not.toMatch(/error/);
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout) as { tokens: number[]; radio: { lost: { random: number } } };
  expect(out.tokens).toEqual((await int8Engine({ prompt, steps: 40, temperature: 0, topP: 0.9, seed: 1n })).tokens);
  expect(out.radio.lost.random).toBeGreaterThan(0);
});

test('a mixed mesh: native nodes 1 and 3 beside TypeScript radio nodes 2 and 4 give the int8 mesh\'s tokens with 10% loss', async () => {
  const mesh = int8Mesh([1, 3], 11);
  await startNatives(mesh, [1, 3]);
  expect(mesh.nodes.map((n) => n.address)).toEqual([2, 4]);
  const generate = { ...ONCE_OPTIONS, steps: 32 };
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl: await brokerUrl(), meshId: 'mixed-radio', ...bridgePaths, generate, log: quiet });
  expect(result.tokens).toEqual((await int8Engine(generate)).tokens);
  expect(mesh.nodes.every((n) => n.counters.results > 0)).toBe(true);
});

test('a native node that loses power mid-generation comes back with its frame counter above every one it used, and the gateway takes its frames again', async () => {
  const mesh = int8Mesh([1, 2, 3, 4], 3);
  const counters: { at: number; counter: number }[] = [];
  let boots = 0;
  const lines: string[] = [];
  const natives = await startNatives(mesh, [1, 2, 3, 4], {
    onTransmit: (a, frame) => a === 2 && counters.push({ at: boots, counter: frame.readUInt32LE(4) }),
    onLine: (a, l) => a === 2 && boots > 0 && lines.push(l),
  });
  let rebooted: Promise<void> | undefined;
  const generate = { ...ONCE_OPTIONS, steps: 12 };
  const result = await generateOverRadio({
    mesh,
    link: new SimulatedChannelLink(mesh.attachGatewayRadio()),
    brokerUrl: await brokerUrl(),
    meshId: 'reboot-radio',
    ...bridgePaths,
    generate,
    log: quiet,
    onToken: (_t, _p, pos) => {
      if (pos !== 5 || rebooted) return;
      // Simulated time stands still while the board reboots (the test's wall clock is not the radio's).
      const release = mesh.clock.hold();
      rebooted = natives
        .kill(2)
        .then(() => {
          boots++;
          return natives.startNode(2);
        })
        .finally(release);
    },
  });
  await rebooted;
  expect(result.tokens).toHaveLength(generate.steps + 1);
  const before = counters.filter((c) => c.at === 0).map((c) => c.counter);
  const after = counters.filter((c) => c.at === 1).map((c) => c.counter);
  expect(before.length).toBeGreaterThan(10);
  expect(after.length).toBeGreaterThan(10);
  expect(Math.min(...after)).toBeGreaterThan(Math.max(...before));
  const joined = lines.find((l) => l.includes('frame counter from'));
  expect(joined).toMatch(/joined as node 2/);
  expect(Number(/frame counter from (\d+)/.exec(joined ?? '')?.[1])).toBeGreaterThan(Math.max(...before));
});

test('forged, replayed and truncated frames and a broadcast of the wrong size are refused with their reasons, counted, and the node keeps running', async () => {
  const mesh = new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes: 4, quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0, seed: 1, nativeAddresses: new Set([1]) });
  const lines: string[] = [];
  const natives = await startNatives(mesh, [1], { onLine: (_a, l) => lines.push(l) });
  const ch = mesh.config.plan.broadcast;
  const rogue: Radio = mesh.channel.attach({ name: 'rogue', listen: [] });
  let t = mesh.clock.now();
  const air = (frame: Buffer) => {
    t = rogue.transmit(frame, ch, rogue.earliestStartMs(ch, Math.max(t, mesh.clock.now()))).endMs;
  };
  const gateway = new FrameSender({ key: mesh.key, meshId: mesh.radioMeshId, source: GATEWAY_ADDRESS, counter: 100 });
  const body = (values: number, seq: number) => encodeBody({ session: 7, seq, pos: 0, layer: 0, type: BodyType.Broadcast, encoding: 'int8', sender: 0 }, new Float32Array(values).fill(0.5), 32);

  // forged: sealed under another key
  const outsider = new FrameSender({ key: Buffer.alloc(16, 9), meshId: mesh.radioMeshId, source: GATEWAY_ADDRESS, counter: 1000 });
  air(outsider.frames(outsider.body(255, body(mesh.g.dim, 1)))[0]);
  // an authentic frame, then the same frame again: a replay
  const good = gateway.frames(gateway.body(255, body(mesh.g.dim, 2)));
  air(good[0]);
  air(good[0]);
  // truncated: a fragment whose bytes do not tile the body (the second longer than the first)
  const header = { kind: 'fragment' as const, meshId: mesh.radioMeshId, source: GATEWAY_ADDRESS, destination: 255, messageNumber: 3, fragmentCount: 2 };
  air(sealFrame({ ...header, counter: 500, fragmentIndex: 0 }, Buffer.alloc(10, 1), downlinkKey(mesh.key)));
  air(sealFrame({ ...header, counter: 501, fragmentIndex: 1 }, Buffer.alloc(40, 1), downlinkKey(mesh.key)));
  // a frame cut short on the air: its MIC no longer matches
  const whole = gateway.frames(gateway.body(255, body(mesh.g.dim, 4)))[0];
  air(whole.subarray(0, whole.length - 7));
  // a well-formed broadcast of the wrong size: dim + 32 values
  const wrong = new FrameSender({ key: mesh.key, meshId: mesh.radioMeshId, source: GATEWAY_ADDRESS, counter: 2000 });
  for (const f of wrong.frames(wrong.body(255, body(mesh.g.dim + 32, 5)))) air(f);

  await until(() => lines.some((l) => l.includes('refused a broadcast')), 'the wrong-size broadcast to be refused');
  expect(lines.filter((l) => l.includes('dropped a frame (mic)'))).toHaveLength(2);
  expect(lines.some((l) => /dropped a frame \(replay\): counter 100 from 0 is not above 100/.test(l))).toBe(true);
  expect(lines.some((l) => /dropped a frame \(body\): message 0\/3: fragment 1 is 40 bytes, fragment 0 is 10/.test(l))).toBe(true);
  expect(lines.some((l) => /refused a broadcast: message 5: a broadcast of 96 values; the model's dim is 64/.test(l))).toBe(true);
  const child = natives.processes.get(1);
  expect(child?.exitCode).toBeNull(); // still running
  await natives.close();
  expect(child?.exitCode).toBe(0);
  const stop = lines.find((l) => l.includes('stopping:')) ?? '';
  expect(stop).toMatch(/rejected \(source \d+, mic 2, replay 1, fragment 0, body 1\)/);
  expect(stop).toMatch(/1 refused broadcasts/);
});

/**
 * The radio's hostile findings, replayed against TypeScript radio nodes and the firmware's
 * native radio nodes on the simulated channel, by a transmitter that holds the shared downlink
 * key (what any node holds): a forged counter of 0xFFFFFFFF "from the gateway", broadcasts for
 * layer 200, of NaN and Infinity, and of 3 values, sent in the middle of a generation; then
 * frames captured off the air replayed to restarted receivers. Each is refused with its reason,
 * counted, and the generation's tokens stay the int8 mesh's.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { BodyType, encodeBody } from '../lib/link/body';
import { Radio } from '../lib/radio/channel';
import { FrameSender, GATEWAY_ADDRESS, downlinkKey } from '../lib/radio/frame';
import { broadcastChannels } from '../lib/radio/regions';
import { generateOverRadio } from '../gateway-bridge/run';
import { NativeRadioNodes } from '../gateway-bridge/native-radio';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { modelPaths } from './support/fixtures';
import { ONCE_OPTIONS, bridgePaths, brokerProcess, quiet } from './support/radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});
let broker: Promise<string> | undefined;
const brokerUrl = () => (broker ??= brokerProcess(cleanups));

const GENERATE: GenerateOptions = { ...ONCE_OPTIONS, steps: 16 };
let golden: Promise<number[]> | undefined;
const int8Tokens = () => (golden ??= Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate(GENERATE).then((r) => r.tokens));

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-radio-hostile-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function int8Mesh(o: { native?: number[]; stateDir?: string; key?: Buffer; log?: string[] }): SimulatedRadioMesh {
  return new SimulatedRadioMesh({
    modelPath: modelPaths.model,
    nodes: 4,
    quant: 'int8',
    region: 'EU868',
    sf: 7,
    bandwidthKHz: 125,
    channels: 1,
    loss: 0,
    seed: 1,
    nativeAddresses: new Set(o.native ?? []),
    stateDir: o.stateDir,
    key: o.key,
    nodeLog: (a, level, m) => level === 'warn' && o.log?.push(`node ${a}: ${m}`),
  });
}

/** A listener on the broadcast channel that keeps every gateway frame it hears, and a transmitter for the forger. */
function onTheAir(mesh: SimulatedRadioMesh): { captured: Buffer[]; lastCounter: () => number; air: (frames: Buffer[]) => void; sent: () => Promise<void> } {
  const captured: Buffer[] = [];
  const forged = new Set<string>();
  const spy: Radio = mesh.channel.attach({ name: 'spy', listen: broadcastChannels(mesh.config.plan) });
  spy.onReceive = (r) => r.bytes[2] === GATEWAY_ADDRESS && !forged.has(r.bytes.toString('hex')) && captured.push(Buffer.from(r.bytes));
  const rogue: Radio = mesh.channel.attach({ name: 'rogue', listen: [] });
  const ch = mesh.config.plan.broadcast;
  let t = -Infinity;
  return {
    captured,
    lastCounter: () => Math.max(...captured.map((f) => f.readUInt32LE(4))),
    air: (frames) => {
      for (const f of frames) {
        forged.add(f.toString('hex'));
        t = rogue.transmit(f, ch, rogue.earliestStartMs(ch, Math.max(t, mesh.clock.now()))).endMs;
      }
    },
    // the rogue keeps its duty cycle too: its last frame may end after the generation
    sent: () => new Promise<void>((resolve) => mesh.clock.at(Math.max(t, mesh.clock.now()) + 1, resolve)),
  };
}

/** The broadcasts a holder of the downlink key forges (what the hostile test found nodes computing), one group per attack. */
function hostileBroadcasts(mesh: SimulatedRadioMesh, counter: number): Buffer[][] {
  const forger = (c: number) => new FrameSender({ key: { seal: downlinkKey(mesh.key), openKey: () => undefined }, meshId: mesh.radioMeshId, source: GATEWAY_ADDRESS, counter: c });
  const dim = mesh.g.dim;
  const broadcast = (seq: number, layer: number, values: Float32Array) =>
    encodeBody({ session: 0x5eed, seq, pos: 1, layer, type: BodyType.Broadcast, encoding: 'f32', sender: 0 }, values, 0);
  const withValue = (v: number) => {
    const x = new Float32Array(dim).fill(0.25);
    x[5] = v;
    return x;
  };
  const lockout = forger(0xffffffff);
  const f = forger(counter);
  return [
    [lockout.frames(lockout.body(255, broadcast(61001, 0, withValue(0.5))), [0])[0], ...f.frames(f.body(255, broadcast(61002, 200, withValue(0.5))))],
    f.frames(f.body(255, broadcast(61003, 0, withValue(NaN)))),
    f.frames(f.body(255, broadcast(61004, 0, withValue(Infinity)))),
    f.frames(f.body(255, broadcast(61005, 0, new Float32Array([1, 2, 3])))),
  ];
}

/** The positions after whose token the attacks go out, one each. */
const ATTACK_AT = [2, 5, 8, 11];

const REFUSALS = [
  /refused a broadcast: message 61002: layer 200 does not exist \(the model has 5\)/,
  /refused a broadcast: message 61003: value 5 is not finite \(NaN\)/,
  /refused a broadcast: message 61004: value 5 is not finite \(Infinity\)/,
  /refused a broadcast: message 61005: a broadcast of 3 values; the model's dim is 64/,
  /dropped a frame \(replay\): counter 4294967295 from 0 is \d+ past \d+; a counter moves at most 16384 ahead/,
];

/** Generates with the hostile frames sent as the generation goes (ATTACK_AT), each group above the last counter heard from the gateway. */
async function generateUnderAttack(mesh: SimulatedRadioMesh, air: ReturnType<typeof onTheAir>, meshId: string): Promise<number[]> {
  const attacks: number[] = [];
  const result = await generateOverRadio({
    mesh,
    link: new SimulatedChannelLink(mesh.attachGatewayRadio()),
    brokerUrl: await brokerUrl(),
    meshId,
    ...bridgePaths,
    generate: GENERATE,
    log: quiet,
    onToken: (_t, _p, pos) => {
      const k = ATTACK_AT.indexOf(pos);
      if (k < 0 || attacks.includes(k)) return;
      attacks.push(k);
      air.air(hostileBroadcasts(mesh, air.lastCounter() + 1)[k]);
    },
  });
  expect(attacks).toEqual([0, 1, 2, 3]);
  await air.sent();
  return result.tokens;
}

async function generateQuietly(mesh: SimulatedRadioMesh, meshId: string): Promise<number[]> {
  const r = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl: await brokerUrl(), meshId, ...bridgePaths, generate: GENERATE, log: quiet });
  return r.tokens;
}

test('TypeScript radio nodes refuse a forged counter 0xFFFFFFFF, broadcasts for layer 200, of NaN, of Infinity and of 3 values, say why and count them; the tokens stay the int8 mesh\'s', async () => {
  const log: string[] = [];
  const mesh = int8Mesh({ log });
  const air = onTheAir(mesh);
  expect(await generateUnderAttack(mesh, air, 'hostile-ts')).toEqual(await int8Tokens());
  for (const node of mesh.nodes) {
    const lines = log.filter((l) => l.startsWith(`node ${node.address}:`));
    for (const r of REFUSALS) expect({ node: node.address, refused: r.source, seen: lines.some((l) => r.test(l)) }).toEqual({ node: node.address, refused: r.source, seen: true });
    expect(node.counters.refusedBodies).toBe(4);
    expect(node.counters.byReason.replay).toBeGreaterThanOrEqual(1);
  }
  expect(mesh.errors).toEqual([]);
});

test('native radio nodes refuse the same frames in the same words, count them, and keep running; the tokens stay the int8 mesh\'s', async () => {
  const mesh = int8Mesh({ native: [1, 2, 3, 4] });
  const lines = new Map<number, string[]>();
  const natives = await NativeRadioNodes.start({ mesh, modelPath: modelPaths.model, addresses: [1, 2, 3, 4], onLine: (a, l) => lines.set(a, [...(lines.get(a) ?? []), l]) });
  cleanups.push(() => natives.close());
  const air = onTheAir(mesh);
  expect(await generateUnderAttack(mesh, air, 'hostile-native')).toEqual(await int8Tokens());
  for (const a of [1, 2, 3, 4]) {
    for (const r of REFUSALS) expect({ node: a, refused: r.source, seen: (lines.get(a) ?? []).some((l) => r.test(l)) }).toEqual({ node: a, refused: r.source, seen: true });
    expect(natives.processes.get(a)?.exitCode).toBeNull();
  }
  await natives.close();
  const stopping = (a: number) => (lines.get(a) ?? []).find((l) => l.includes('stopping:'));
  // the last stderr lines may come in after the exit
  for (const deadline = Date.now() + 5000; [1, 2, 3, 4].some((a) => !stopping(a)) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
  for (const a of [1, 2, 3, 4]) expect(stopping(a)).toMatch(/4 refused broadcasts/);
});

test('restarted TypeScript nodes refuse every gateway frame captured before the restart; the restarted gateway, its counter kept, is heard and gives the int8 mesh\'s tokens', async () => {
  const stateDir = tempDir();
  const first = int8Mesh({ stateDir });
  const air = onTheAir(first);
  expect(await generateQuietly(first, 'restart-ts-1')).toEqual(await int8Tokens());
  expect(air.captured.length).toBeGreaterThan(50);
  expect(fs.readdirSync(stateDir).sort()).toEqual(['gateway.json', 'radio-1.json', 'radio-2.json', 'radio-3.json', 'radio-4.json']);

  // the same nodes and gateway after a restart: their state from the data folder
  const restarted = int8Mesh({ stateDir, key: first.key });
  const replay = onTheAir(restarted);
  replay.air(air.captured);
  await replay.sent();
  for (const node of restarted.nodes) {
    expect({ node: node.address, heard: node.counters.framesIn, replays: node.counters.byReason.replay, results: node.counters.results }).toEqual({
      node: node.address,
      heard: air.captured.length,
      replays: air.captured.length,
      results: 0,
    });
  }
  expect(await generateQuietly(restarted, 'restart-ts-2')).toEqual(await int8Tokens());
});

test('a restarted native node refuses every gateway frame captured before its restart (its window kept through the storage HAL) and then takes part again', async () => {
  const mesh = int8Mesh({ native: [1, 2, 3, 4], stateDir: tempDir() });
  const after: string[] = [];
  let restarted = false;
  const natives = await NativeRadioNodes.start({ mesh, modelPath: modelPaths.model, addresses: [1, 2, 3, 4], onLine: (a, l) => a === 1 && restarted && after.push(l) });
  cleanups.push(() => natives.close());
  const air = onTheAir(mesh);
  expect(await generateQuietly(mesh, 'restart-native-1')).toEqual(await int8Tokens());
  await natives.kill(1);
  restarted = true;
  await natives.startNode(1);
  const replayed = air.captured.length;
  const replay = onTheAir(mesh);
  replay.air(air.captured);
  await replay.sent();
  const deadline = Date.now() + 15000;
  while (after.filter((l) => l.includes('dropped a frame (replay)')).length < replayed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(after.filter((l) => l.includes('dropped a frame (replay)'))).toHaveLength(replayed);
  expect(after.filter((l) => /refused a broadcast|dropped a frame \((?!replay)/.test(l))).toEqual([]);
  expect(await generateQuietly(mesh, 'restart-native-2')).toEqual(await int8Tokens());
});

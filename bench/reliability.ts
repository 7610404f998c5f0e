/**
 * `npm run bench:reliability [-- --cases N]`: what the mesh survives.
 *
 * - Decoders fuzzed: every property of bench/decoders.ts, N cases each (default 100,000):
 *   cases run, unexpected exceptions (must be 0).
 * - Fault survived: 8 node.js head nodes on the embedded broker, one SIGKILLed at position 200
 *   of 256 (greedy from BOS): the tokens against the golden file, the replay's bodies and time.
 * - Flood survived: 10,000 invalid messages on the session topic of an idle 8-node mesh
 *   (the flood that crashed aedes before): broker up, nodes up, reports on the errors topic.
 * - Forgeries refused: with credentials on, the forgeries of docs/RELIABILITY.md sent with a
 *   captured node's credentials during a generation: refused count, tokens golden.
 *
 * - Failover on the simulated radio at TinyLlama geometry (16 radio nodes x 2 heads, int8,
 *   SF7/125, US915 8 channels, a spare flashed with node 1's heads; stand-in heads, as in
 *   bench:lora): the lost layer (node 1 silent until the MAC gives it up) and the replay to
 *   the 15 survivors and the spare, per position done: simulated time and airtime, and what a
 *   failover at position 100 costs.
 *
 * Progress on stderr; stdout a table, and as its last line one JSON object.
 */
import { parseArgs } from 'node:util';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { goldenIds } from '../lib/llm/golden';
import { BodyType, encodeBody } from '../lib/link/body';
import { GATEWAY_USER, createCredentials } from '../lib/mesh/acl';
import { startAedesBroker } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { spawnHeadNodes } from '../lib/mesh/processes';
import { PROTOCOL_VERSION, encodeControl, topicsFor } from '../lib/mesh/wire';
import { fuzzDecoders } from './decoders';
import { geometry } from '../lib/llm/config';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { broadcastBody } from '../lib/radio/mac';

const log = (s: string) => process.stderr.write(`${s}\n`);

async function mesh(meshId: string, credentials = false) {
  const paths = await resolveOrFetchModelPaths({});
  const creds = credentials ? createCredentials(meshId, Array.from({ length: 8 }, (_, i) => `node-${i + 1}`)) : undefined;
  let refused = 0;
  const broker = await startAedesBroker({ port: 0, credentials: creds, onRefused: () => refused++ });
  const nodes = spawnHeadNodes({ count: 8, brokerUrl: broker.url, meshId, modelPath: paths.model, onLog: () => undefined, credentials: creds ? (id) => ({ username: id, password: creds.users[id].password }) : undefined });
  const gw = await MeshGateway.connect({ url: broker.url, meshId, modelPath: paths.model, tokenizerPath: paths.tokenizer, gatherTimeoutMs: 2000, embeddedBroker: broker.aedes, log: () => undefined, ...(creds ? { username: GATEWAY_USER, password: creds.users[GATEWAY_USER].password } : {}) });
  await gw.assign(await gw.discover({ count: 8, timeoutMs: 30000 }));
  const close = async () => {
    await gw.close();
    await nodes.stop(500);
    await broker.close();
  };
  return { broker, nodes, gw, creds, refused: () => refused, close };
}

const LONG = { prompt: '', steps: 256, temperature: 0, topP: 0.9, seed: 1n };

async function fault() {
  log('fault: 8 nodes, node-3 SIGKILLed at position 200 of 256');
  const m = await mesh('bench-fault');
  try {
    const r = await m.gw.generate(LONG, (_t, _p, pos) => pos === 200 && m.nodes.nodes[2].child.kill('SIGKILL'));
    const e = m.gw.runner.failovers[0];
    return { identical: JSON.stringify(r.tokens) === JSON.stringify(goldenIds('bos-greedy-256')), failovers: m.gw.runner.failovers.length, replayedBodies: e?.replayed ?? 0, replayMs: Math.round(e?.replayMs ?? 0) };
  } finally {
    await m.close();
  }
}

async function flood() {
  log('flood: 10,000 invalid session messages on an idle 8-node mesh');
  const m = await mesh('bench-flood');
  const t = topicsFor('bench-flood');
  try {
    const c = await connectMqtt({ url: m.broker.url, clientId: 'flooder' });
    let reports = 0;
    c.on('message', () => reports++);
    await subscribe(c, [t.errors], 0);
    for (let i = 0; i < 10000; i++) c.publish(t.session, `x${i}`, { qos: 0 });
    await new Promise<void>((r) => c.publish(t.session, 'last', { qos: 1 }, () => r()));
    await new Promise((r) => setTimeout(r, 1000));
    const nodesUp = m.nodes.nodes.filter((n) => n.child.exitCode === null).length;
    const r = await m.gw.generate({ ...LONG, prompt: 'Once upon a time', steps: 64 });
    await endClient(c);
    return { messages: 10000, brokerUp: true, nodesUp, errorReports: reports, goldenAfter: JSON.stringify(r.tokens) === JSON.stringify(goldenIds('once-greedy-64')) };
  } finally {
    await m.close();
  }
}

async function forgeries() {
  log('forgeries: a captured node (node-3) forges 21 messages during a generation, credentials on');
  const m = await mesh('bench-forge', true);
  const t = topicsFor('bench-forge');
  const creds = m.creds!;
  try {
    const run = m.gw.generate({ ...LONG, prompt: 'Once upon a time', steps: 64 });
    const list: [string, Buffer | string][] = [
      ...Array.from({ length: 15 }, (_, pos) => [t.broadcast, encodeBody({ type: BodyType.Broadcast, encoding: 'f32', sender: 0, session: 1, seq: 1, pos, layer: 0 }, new Float32Array(64).fill(3))] as [string, Buffer]),
      [t.session, encodeControl('session', { protocol: PROTOCOL_VERSION, op: 'start', session: 1, assignment: 'a1' })],
      [t.result('node-1'), encodeBody({ type: BodyType.Result, encoding: 'f32', sender: 1, session: 1, seq: 1, pos: 0, layer: 0 }, new Float32Array(8))],
      [t.status('node-9'), encodeControl('status', { protocol: PROTOCOL_VERSION, node: 'node-9', state: 'online' })],
      [t.status('node-1'), encodeControl('status', { protocol: PROTOCOL_VERSION, node: 'node-1', state: 'offline' })],
      [t.assign('node-1'), '{}'],
      [t.steer('node-1'), '{}'],
    ];
    let i = 0;
    for (const [topic, payload] of list) {
      const c = await connectMqtt({ url: m.broker.url, clientId: `forger-${i++}`, username: 'node-3', password: creds.users['node-3'].password });
      await new Promise<void>((resolve) => {
        c.once('close', () => resolve());
        c.publish(topic, payload, { qos: 1 }, () => resolve());
        setTimeout(resolve, 2000);
      });
      c.end(true);
    }
    const r = await run;
    return { sent: list.length, refused: m.refused(), golden: JSON.stringify(r.tokens) === JSON.stringify(goldenIds('once-greedy-64')) };
  } finally {
    await m.close();
  }
}

/** The radio failover at TinyLlama geometry: the lost layer, then the replay of `positions` positions (x 22 layers) to the new set of nodes. */
async function radioFailover(positions = 2) {
  const g = geometry(MODEL_PRESETS.tinyllama);
  const nodes = 16;
  const mesh = new SimulatedRadioMesh({ geometry: g, nodes, spares: 1, quant: 'int8', region: 'US915', sf: 7, bandwidthKHz: 125, channels: 8, loss: 0 });
  const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
  mac.partial = true; // as the bridge runs it
  const xb = new Float32Array(g.dim).map((_, i) => Math.sin(i));
  const airMs = () => Object.values(mesh.ledger.total()).reduce((n, x) => n + x, 0);
  const primaries = mesh.infos.slice(0, nodes).map((i) => i.address);
  let seq = 0;
  const body = (pos: number, layer: number) => broadcastBody(mesh.layout.encodings.broadcast, { session: 1, seq: ++seq, pos, layer }, xb);
  // a normal position first (the duty-cycle clocks in their steady state), then node 1 goes silent: the lost layer
  for (let layer = 0; layer < g.nLayers; layer++) await mac.exchange(body(0, layer), primaries);
  mesh.silence('radio-1');
  let t = mesh.clock.now();
  let a = airMs();
  await mac.exchange(body(1, 0), primaries);
  const lost = { simulatedSeconds: (mesh.clock.now() - t) / 1000, airtimeSeconds: (airMs() - a) / 1000, missing: mac.missing?.addresses ?? [] };
  log(`radio failover: node 1 given up after ${lost.simulatedSeconds.toFixed(0)} s simulated`);
  const revised = [...primaries.slice(1), nodes + 1];
  t = mesh.clock.now();
  a = airMs();
  for (let pos = 0; pos < positions; pos++) {
    for (let layer = 0; layer < g.nLayers; layer++) await mac.exchange(body(pos, layer), revised);
    log(`radio failover: replayed position ${pos + 1}/${positions} at ${((mesh.clock.now() - t) / 1000).toFixed(0)} s simulated`);
  }
  if (mesh.errors.length) throw mesh.errors[0];
  const perPosition = { simulatedSeconds: (mesh.clock.now() - t) / 1000 / positions, airtimeSeconds: (airMs() - a) / 1000 / positions };
  const at100 = { simulatedHours: (lost.simulatedSeconds + 100 * perPosition.simulatedSeconds) / 3600, airtimeHours: (lost.airtimeSeconds + 100 * perPosition.airtimeSeconds) / 3600 };
  const r = (x: number) => Number(x.toFixed(2));
  return { geometry: 'TinyLlama 16x2 int8 US915 8ch SF7/125', positionsReplayed: positions, lostLayer: { simulatedSeconds: r(lost.simulatedSeconds), airtimeSeconds: r(lost.airtimeSeconds), missing: lost.missing }, replayPerPosition: { simulatedSeconds: r(perPosition.simulatedSeconds), airtimeSeconds: r(perPosition.airtimeSeconds) }, failoverAtPosition100: { simulatedHours: r(at100.simulatedHours), airtimeHours: r(at100.airtimeHours) } };
}

async function main() {
  const { values } = parseArgs({ options: { cases: { type: 'string' }, only: { type: 'string' } } });
  if (values.only === 'radio-failover') {
    // `-- --only radio-failover`: that scenario alone (it needs no model files nor processes)
    const rf = await radioFailover();
    process.stdout.write(`${JSON.stringify({ radioFailover: rf })}\n`);
    return;
  }
  const cases = values.cases ? Number(values.cases) : 100_000;
  log(`decoders: ${cases} cases each`);
  const decoders = fuzzDecoders(cases);
  const f = await fault();
  const fl = await flood();
  const fg = await forgeries();
  const rf = await radioFailover();
  const rows = [
    ...decoders.map((d) => `${d.name.padEnd(44)} ${String(d.cases).padStart(8)} cases  ${d.failure ? `FAILED: ${d.failure}` : 'no unexpected exception'}  ${(d.ms / 1000).toFixed(1)} s`),
    `fault (node-3 killed at 200/256)            tokens ${f.identical ? 'identical to golden' : 'DIFFERENT'}, ${f.replayedBodies} bodies replayed in ${f.replayMs} ms`,
    `flood (10,000 invalid session messages)    broker up, ${fl.nodesUp}/8 nodes up, ${fl.errorReports} error reports, next run ${fl.goldenAfter ? 'golden' : 'DIFFERENT'}`,
    `forgeries (captured node, credentials on)   ${fg.refused}/${fg.sent} refused, tokens ${fg.golden ? 'golden' : 'DIFFERENT'}`,
    `radio failover (${rf.geometry})  lost layer ${rf.lostLayer.simulatedSeconds} s simulated (${rf.lostLayer.airtimeSeconds} s airtime); replay ${rf.replayPerPosition.simulatedSeconds} s simulated, ${rf.replayPerPosition.airtimeSeconds} s airtime per position done; at position 100: ${rf.failoverAtPosition100.simulatedHours} h (${rf.failoverAtPosition100.airtimeHours} h airtime)`,
  ];
  process.stdout.write(`${rows.join('\n')}\n`);
  const unexpected = decoders.filter((d) => d.failure).length;
  process.stdout.write(`${JSON.stringify({ decoders: decoders.map((d) => ({ name: d.name, cases: d.cases, unexpectedExceptions: d.failure ? 1 : 0 })), unexpectedExceptions: unexpected, fault: f, flood: fl, forgeries: fg, radioFailover: rf })}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench:reliability failed: ${(e as Error).stack}\n`);
    process.exit(1);
  },
);

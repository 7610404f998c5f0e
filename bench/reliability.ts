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
 * Not run here: failover replay time at TinyLlama geometry on the simulated radio
 * (docs/RELIABILITY.md gives its airtime from the radio plan instead).
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

async function main() {
  const { values } = parseArgs({ options: { cases: { type: 'string' } } });
  const cases = values.cases ? Number(values.cases) : 100_000;
  log(`decoders: ${cases} cases each`);
  const decoders = fuzzDecoders(cases);
  const f = await fault();
  const fl = await flood();
  const fg = await forgeries();
  const rows = [
    ...decoders.map((d) => `${d.name.padEnd(44)} ${String(d.cases).padStart(8)} cases  ${d.failure ? `FAILED: ${d.failure}` : 'no unexpected exception'}  ${(d.ms / 1000).toFixed(1)} s`),
    `fault (node-3 killed at 200/256)            tokens ${f.identical ? 'identical to golden' : 'DIFFERENT'}, ${f.replayedBodies} bodies replayed in ${f.replayMs} ms`,
    `flood (10,000 invalid session messages)    broker up, ${fl.nodesUp}/8 nodes up, ${fl.errorReports} error reports, next run ${fl.goldenAfter ? 'golden' : 'DIFFERENT'}`,
    `forgeries (captured node, credentials on)   ${fg.refused}/${fg.sent} refused, tokens ${fg.golden ? 'golden' : 'DIFFERENT'}`,
  ];
  process.stdout.write(`${rows.join('\n')}\n`);
  const unexpected = decoders.filter((d) => d.failure).length;
  process.stdout.write(`${JSON.stringify({ decoders: decoders.map((d) => ({ name: d.name, cases: d.cases, unexpectedExceptions: d.failure ? 1 : 0 })), unexpectedExceptions: unexpected, fault: f, flood: fl, forgeries: fg })}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench:reliability failed: ${(e as Error).stack}\n`);
    process.exit(1);
  },
);

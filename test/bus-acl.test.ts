/**
 * The bus with credentials on: per-client credentials and the topic ACL (lib/mesh/acl.ts),
 * enforced by the embedded aedes broker (`mesh-llm broker --credentials FILE`) and by a real
 * Mosquitto with the files `mesh-llm credentials create --mosquitto DIR` writes. The
 * forgeries a hostile test of the bus found (forged broadcasts, a forged session start,
 * results raced in as another node, a self-announced node, a forged retained "offline"
 * status, a client-id takeover of a node) are replayed with a head node's stolen credentials
 * and anonymously during a generation: each is refused and counted, the output stays golden.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MqttClient } from 'mqtt';
import { GenerateOptions } from '../lib/llm/engine';
import { BodyType, encodeBody } from '../lib/link/body';
import { GATEWAY_USER, MeshCredentials, OBSERVER_USER, createCredentials, mayPublish, maySubscribe, writeCredentials } from '../lib/mesh/acl';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, subscribe } from '../lib/mesh/mqtt';
import { NodeProcesses, cliEntry, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { PROTOCOL_VERSION, encodeControl, topicsFor } from '../lib/mesh/wire';
import { goldenIds, modelPaths } from './support/fixtures';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  const bounded = (c: () => Promise<unknown>) => Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const c of cleanups.reverse()) await bounded(c);
});

const ONCE: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const MESH = 'acl';
const t = topicsFor(MESH);
const NODES = ['node-1', 'node-2', 'node-3'];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-acl-'));
cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));

/** The credentials as `mesh-llm credentials create` writes them (the CLI itself, so its files are what is tested). */
function createWithCli(): MeshCredentials {
  const out = path.join(dir, 'credentials.json');
  const r = spawnSync(process.execPath, [cliEntry(), 'credentials', 'create', '--out', out, '--mesh', MESH, '--nodes', '3', '--mosquitto', path.join(dir, 'mosquitto')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mesh-llm credentials create failed: ${r.stderr}`);
  expect(fs.statSync(out).mode & 0o777).toBe(0o600);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as MeshCredentials;
}

const login = (c: MeshCredentials, user: string) => ({ username: user, password: c.users[user].password });

/** Connects; resolves with the client or with the connection error. */
async function tryConnect(url: string, o: { clientId: string; username?: string; password?: string }): Promise<MqttClient | Error> {
  try {
    const c = await connectMqtt({ url, ...o });
    cleanups.push(() => new Promise((r) => c.end(true, {}, r)));
    return c;
  } catch (e) {
    return e as Error;
  }
}

const forgedBroadcast = (pos: number) => encodeBody({ type: BodyType.Broadcast, encoding: 'f32', sender: 0, session: 1, seq: 1, pos, layer: 0 }, new Float32Array(64).fill(3));

/**
 * Every forgery of the list, as the holder of node-3's credentials (a captured node) would
 * send it; returns how many it sent. The client is disconnected at its first refused publish
 * (aedes and Mosquitto both), so each forgery gets a connection of its own.
 */
async function replayForgeries(url: string, c: MeshCredentials): Promise<number> {
  const forgeries: [string, Buffer | string, boolean][] = [
    ...Array.from({ length: 15 }, (_, pos) => [t.broadcast, forgedBroadcast(pos), false] as [string, Buffer, boolean]),
    [t.session, encodeControl('session', { protocol: PROTOCOL_VERSION, op: 'start', session: 1, assignment: 'a1' }), false],
    [t.result('node-1'), encodeBody({ type: BodyType.Result, encoding: 'f32', sender: 1, session: 1, seq: 1, pos: 0, layer: 0 }, new Float32Array(24)), false],
    [t.status('node-9'), encodeControl('status', { protocol: PROTOCOL_VERSION, node: 'node-9', state: 'online' }), false],
    [t.status('node-1'), encodeControl('status', { protocol: PROTOCOL_VERSION, node: 'node-1', state: 'offline', reason: 'forged' }), true],
    [t.assign('node-1'), '{}', false],
    [t.steer('node-1'), '{}', false],
  ];
  let i = 0;
  for (const [topic, payload, retain] of forgeries) {
    const client = await tryConnect(url, { clientId: `forger-${i++}`, ...login(c, 'node-3') });
    if (client instanceof Error) throw client;
    await new Promise<void>((resolve) => {
      client.once('close', () => resolve());
      client.publish(topic, payload, { qos: 1, retain }, () => resolve());
      setTimeout(resolve, 2000);
    });
    client.end(true);
  }
  return forgeries.length;
}

describe('the embedded aedes broker with credentials', () => {
  let creds: MeshCredentials;
  let broker: { url: string; child: ChildProcess; close(): Promise<void> };
  let nodes: NodeProcesses;
  let gw: MeshGateway;
  let refusals: string[];
  beforeAll(async () => {
    creds = createWithCli();
    broker = await spawnBroker(await freePort(), ['--credentials', path.join(dir, 'credentials.json')]);
    cleanups.push(() => broker.close());
    refusals = [];
    broker.child.stderr?.on('data', (d: Buffer) => refusals.push(...d.toString().split('\n').filter((l) => /refused/.test(l))));
    nodes = spawnHeadNodes({ count: 3, brokerUrl: broker.url, meshId: MESH, modelPath: modelPaths.model, onLog: () => undefined, credentials: (id) => login(creds, id) });
    cleanups.push(() => nodes.stop(500));
    gw = await MeshGateway.connect({ url: broker.url, ...login(creds, GATEWAY_USER), meshId: MESH, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, log: () => undefined });
    cleanups.push(() => gw.close());
    await gw.assign(await gw.discover({ count: 3, timeoutMs: 30000 }));
  }, 60000);

  test('an anonymous client and a wrong password are refused at connect', async () => {
    expect(await tryConnect(broker.url, { clientId: 'anon' })).toBeInstanceOf(Error);
    expect(await tryConnect(broker.url, { clientId: 'guess', username: 'node-1', password: 'guess' })).toBeInstanceOf(Error);
  });

  test("connecting with a node's client id while it is connected is refused, and the node stays on the mesh", async () => {
    const taken = await tryConnect(broker.url, { clientId: `mesh-llm-${MESH}-node-1`, ...login(creds, 'node-1') });
    expect(taken).toBeInstanceOf(Error);
    expect(String(taken)).toMatch(/Identifier rejected|identifier/i);
    await new Promise((r) => setTimeout(r, 300));
    expect(gw.aliveNodes()).toEqual(NODES);
    expect(nodes.nodes[0].child.exitCode).toBeNull();
  });

  test('every forgery of the list, sent with a captured node\'s credentials during a generation, is refused and counted; the tokens are golden', async () => {
    const observer = await tryConnect(broker.url, { clientId: 'observer', ...login(creds, OBSERVER_USER) });
    if (observer instanceof Error) throw observer;
    const seen: string[] = [];
    observer.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
    await subscribe(observer, [t.tokens, t.statuses], 0);
    const before = refusals.length;
    const run = gw.generate(ONCE);
    const sent = await replayForgeries(broker.url, creds);
    expect((await run).tokens).toEqual(goldenIds('once-greedy-64'));
    await new Promise((r) => setTimeout(r, 200));
    expect(refusals.length - before).toBe(sent);
    expect(refusals.slice(before).every((l) => /refused publish of node-3 on mesh-llm\/acl\//.test(l))).toBe(true);
    expect(seen.filter((m) => /node-9|forged/.test(m))).toEqual([]);
    expect(seen.filter((m) => m.startsWith(t.tokens)).length).toBeGreaterThan(0);
    expect(gw.aliveNodes()).toEqual(NODES); // no self-announced node, no forged offline
    expect((await gw.generate(ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
  }, 90000);

  test('an observer may read what the mesh tells, and may publish nothing; a node may not subscribe to another node\'s topics', async () => {
    const observer = await tryConnect(broker.url, { clientId: 'observer-2', ...login(creds, OBSERVER_USER) });
    if (observer instanceof Error) throw observer;
    const got = new Map<string, number>();
    observer.on('message', (topic) => got.set(topic, (got.get(topic) ?? 0) + 1));
    await subscribe(observer, [t.tokens, t.broadcast, t.assign('node-1')], 0).catch(() => undefined);
    await gw.generate({ ...ONCE, steps: 8 });
    await new Promise((r) => setTimeout(r, 200));
    expect(got.get(t.tokens)).toBeGreaterThan(0);
    expect(got.get(t.broadcast)).toBeUndefined(); // its subscription was refused
    expect(refusals.some((l) => l.includes(`subscription of observer to ${t.broadcast}`))).toBe(true);
    expect(maySubscribe(creds, 'node-2', t.assign('node-1'))).toBe(false);
    expect(mayPublish(creds, OBSERVER_USER, t.errors)).toBe(false);
    expect(mayPublish(creds, 'node-2', t.result('node-2'))).toBe(true);
    expect(mayPublish(creds, 'node-2', t.result('node-1'))).toBe(false);
  });
});

describe('a real Mosquitto with the files of `mesh-llm credentials create --mosquitto DIR`', () => {
  test('the same forgeries are refused and the tokens are golden', async () => {
    const creds = JSON.parse(fs.readFileSync(path.join(dir, 'credentials.json'), 'utf8')) as MeshCredentials;
    const port = await freePort();
    const conf = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous false', `password_file ${path.join(dir, 'mosquitto', 'passwd')}`, `acl_file ${path.join(dir, 'mosquitto', 'acl')}`, 'persistence false', 'log_dest stderr', 'log_type error', `user ${os.userInfo().username}`, ''].join('\n')); // as root Mosquitto would switch to its own user, who cannot read the 0600 files
    const mosquitto = spawn(fs.existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    cleanups.push(async () => void mosquitto.kill('SIGKILL'));
    const url = `mqtt://127.0.0.1:${port}`;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && (await tryConnect(url, { clientId: 'probe', ...login(creds, OBSERVER_USER) })) instanceof Error) await new Promise((r) => setTimeout(r, 100));
    const nodes = spawnHeadNodes({ count: 3, brokerUrl: url, meshId: MESH, modelPath: modelPaths.model, onLog: () => undefined, credentials: (id) => login(creds, id) });
    cleanups.push(() => nodes.stop(500));
    const gw = await MeshGateway.connect({ url, ...login(creds, GATEWAY_USER), meshId: MESH, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, log: () => undefined });
    cleanups.push(() => gw.close());
    await gw.assign(await gw.discover({ count: 3, timeoutMs: 30000 }));
    expect(await tryConnect(url, { clientId: 'anon-m' })).toBeInstanceOf(Error);
    const run = gw.generate(ONCE);
    await replayForgeries(url, creds);
    expect((await run).tokens).toEqual(goldenIds('once-greedy-64'));
    expect(gw.aliveNodes()).toEqual(NODES);
    expect((await gw.generate(ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
  }, 90000);
});

test('credentials are fresh and random for each mesh', () => {
  const a = createCredentials('m', ['n1']);
  const b = createCredentials('m', ['n1']);
  expect(a.users.n1.password).not.toEqual(b.users.n1.password);
  expect(a.users.n1.password.length).toBeGreaterThanOrEqual(24);
  writeCredentials(path.join(dir, 'x', 'c.json'), a);
  expect(fs.statSync(path.join(dir, 'x', 'c.json')).mode & 0o777).toBe(0o600);
});

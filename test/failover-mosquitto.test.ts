/**
 * Failover on a real Mosquitto with per-node credentials and ACLs (the files of `mesh-llm
 * credentials create --mosquitto DIR`): eight node.js head nodes, each with its own login;
 * mid-generation one is SIGKILLed (Mosquitto publishes its last will), a second later another,
 * a second after that a third is held (SIGSTOP); the gateway moves their heads and replays the
 * session's broadcasts, and the tokens equal the golden file.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GATEWAY_USER, MeshCredentials } from '../lib/mesh/acl';
import { startMosquitto } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { cliEntry, spawnHeadNodes } from '../lib/mesh/processes';
import { FailoverEvent } from '../lib/mesh/runner';
import { faults } from './support/faults';
import { goldenIds, modelPaths } from './support/fixtures';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
});

const MESH = 'failover-mosquitto';

test('eight head nodes on Mosquitto with credentials and ACLs: two killed a second apart and a third held, the tokens are golden', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-fo-mosq-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'credentials.json');
  const made = spawnSync(process.execPath, [cliEntry(), 'credentials', 'create', '--out', out, '--mesh', MESH, '--nodes', '8', '--mosquitto', path.join(dir, 'mosquitto')], { encoding: 'utf8' });
  expect(made.status).toBe(0);
  const creds = JSON.parse(fs.readFileSync(out, 'utf8')) as MeshCredentials;
  const login = (user: string) => ({ username: user, password: creds.users[user].password });
  const broker = await startMosquitto({ auth: { passwd: path.join(dir, 'mosquitto', 'passwd'), acl: path.join(dir, 'mosquitto', 'acl') } });
  cleanups.push(() => broker.close());

  const nodes = spawnHeadNodes({ count: 8, brokerUrl: broker.url, meshId: MESH, modelPath: modelPaths.model, onLog: () => undefined, credentials: login });
  cleanups.push(() => {
    for (const n of nodes.nodes) n.child.kill('SIGCONT');
    return nodes.stop(500);
  });
  const gw = await MeshGateway.connect({ url: broker.url, ...login(GATEWAY_USER), meshId: MESH, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, gatherTimeoutMs: 1000, controlTimeoutMs: 5000, log: () => undefined });
  cleanups.push(() => gw.close());
  await gw.assign(await gw.discover({ count: 8, timeoutMs: 30000 }));

  const f = faults([2, 4, 6].map((i) => nodes.nodes[i].child));
  const seen: FailoverEvent[] = [];
  gw.runner.listener = { started: () => undefined, done: () => undefined, late: () => undefined, failover: (e) => seen.push(e) };
  const result = await gw.generate({ prompt: '', steps: 256, temperature: 0, topP: 0.9, seed: 1n }, (_t, _p, pos) => f.onPosition(pos));

  expect(f.done()).toEqual(['SIGKILL', 'SIGKILL', 'SIGSTOP']);
  expect(result.tokens).toEqual(goldenIds('bos-greedy-256'));
  expect(seen.flatMap((e) => e.lost)).toEqual(['node-3', 'node-5', 'node-7']);
  expect(seen.every((e) => e.replayed > 0)).toBe(true);
  expect(gw.runner.nodes.sort()).toEqual(['node-1', 'node-2', 'node-4', 'node-6', 'node-8']);
}, 180000);

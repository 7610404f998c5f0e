/**
 * The bus over TLS (mqtts://), with certificates made here by the openssl CLI: a CA, a broker
 * certificate it signs (for 127.0.0.1), and a second CA that signed nothing. On a real
 * Mosquitto with a TLS listener, two node.js head nodes and `mesh-llm generate --broker
 * mqtts://... --ca FILE` give the golden tokens; the same generation trusting the other CA is
 * refused with one line that says the broker's certificate is not signed by it. The embedded
 * broker (`mesh-llm broker --tls-cert --tls-key`) serves TLS the same way.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, startMosquitto } from '../lib/mesh/broker';
import { connectMqtt, endClient } from '../lib/mesh/mqtt';
import { cliEntry, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { goldenIds, modelPaths } from './support/fixtures';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
});

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-tls-'));
cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string) => path.join(dir, name);
const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** A self-signed CA; a broker certificate for 127.0.0.1 signed by it; another CA. */
function makeCertificates(): void {
  for (const ca of ['ca', 'other-ca']) openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file(`${ca}.key`), '-out', file(`${ca}.pem`), '-days', '2', '-subj', `/CN=mesh-llm test ${ca}`);
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('broker.key'), '-out', file('broker.csr'), '-subj', '/CN=127.0.0.1');
  fs.writeFileSync(file('broker.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('x509', '-req', '-in', file('broker.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('broker.pem'), '-days', '2', '-extfile', file('broker.ext'));
}

const generate = (url: string, ca: string) =>
  spawnSync(process.execPath, [cliEntry(), 'generate', '--broker', url, '--ca', ca, '--nodes', '2', '--mesh-id', 'tls', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json'], { encoding: 'utf8', timeout: 120000 });

beforeAll(() => makeCertificates(), 30000);

describe('a real Mosquitto with a TLS listener and a self-signed CA', () => {
  let url: string;
  beforeAll(async () => {
    const broker = await startMosquitto({ tls: { cert: file('broker.pem'), key: file('broker.key') } });
    cleanups.push(() => broker.close());
    url = broker.url;
    const nodes = spawnHeadNodes({ count: 2, brokerUrl: url, meshId: 'tls', modelPath: modelPaths.model, onLog: () => undefined, env: { MESH_LLM_CA: file('ca.pem') } });
    cleanups.push(() => nodes.stop(500));
  }, 30000);

  test('a generation over mqtts:// with --ca the CA gives the golden tokens', () => {
    expect(url).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const r = generate(url, file('ca.pem'));
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { tokens: number[] }).tokens).toEqual(goldenIds('once-greedy-64'));
  }, 120000);

  test('with the wrong CA the connection is refused with one line saying the certificate is not signed by it', () => {
    const r = generate(url, file('other-ca.pem'));
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`cannot connect to MQTT broker ${url}: TLS: the broker's certificate is not signed by the CA in ${file('other-ca.pem')}`))]);
  }, 60000);
});

test('the embedded broker with --tls-cert and --tls-key: a client trusting its CA connects, one trusting another CA and a plain-TCP client do not', async () => {
  const port = await freePort();
  const broker = await spawnBroker(port, ['--tls-cert', file('broker.pem'), '--tls-key', file('broker.key')]);
  cleanups.push(() => broker.close());
  expect(broker.url).toBe(`mqtts://127.0.0.1:${port}`);
  const ok = await connectMqtt({ url: broker.url, ca: file('ca.pem'), clientId: 'tls-ok' });
  await endClient(ok);
  await expect(connectMqtt({ url: broker.url, ca: file('other-ca.pem'), clientId: 'tls-wrong' })).rejects.toThrow(/TLS: the broker's certificate is not signed by the CA in .*other-ca\.pem/);
  await expect(connectMqtt({ url: `mqtt://127.0.0.1:${port}`, clientId: 'plain', connectTimeoutMs: 3000 })).rejects.toThrow(/cannot connect to MQTT broker/);
}, 60000);

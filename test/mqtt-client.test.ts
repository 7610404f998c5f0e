/**
 * The one MQTT connection helper every part of mesh-llm uses (lib/mesh/mqtt.ts), against a real
 * `mesh-llm broker` process: when the broker goes away the client says so and lets go, so a
 * process that loses its broker is not held alive by a keepalive timer, and a gateway that lost
 * it fails what it waits for at once.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { freePort } from '../lib/mesh/broker';
import { connectMqtt, endClient } from '../lib/mesh/mqtt';
import { spawnBroker } from '../lib/mesh/processes';
import { MeshGateway } from '../lib/mesh/gateway';
import { modelPaths } from './support/fixtures';

const mqttModule = path.join(__dirname, '..', 'lib', 'mesh', 'mqtt.js');

test('a connected client whose broker is killed emits close and is no longer connected', async () => {
  const broker = await spawnBroker(await freePort());
  const client = await connectMqtt({ url: broker.url, clientId: 'mqtt-client-test-a' });
  try {
    expect(client.connected).toBe(true);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    broker.child.kill('SIGKILL');
    await closed;
    expect(client.connected).toBe(false);
  } finally {
    await endClient(client);
    await broker.close();
  }
}, 30000);

test('a process whose broker is killed is not kept alive by its client: it exits on its own within 5 s', async () => {
  const broker = await spawnBroker(await freePort());
  try {
    // the child connects, says so, and never ends its client: only the library's own close handling can let it exit
    const script = `require(${JSON.stringify(mqttModule)}).connectMqtt({ url: ${JSON.stringify(broker.url)}, clientId: 'mqtt-client-test-b' }).then((c) => { c.on('close', () => process.stdout.write('closed\\n')); process.stdout.write('connected\\n'); });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code))); // its output read whole
    const deadline = Date.now() + 15000;
    while (!out.includes('connected') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    expect(out).toBe('connected\n');
    broker.child.kill('SIGKILL');
    const killedAt = Date.now();
    const gone = await Promise.race([exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 5000))]);
    if (gone === 'still running') child.kill('SIGKILL');
    expect(gone).toBe(0);
    expect(out).toBe('connected\nclosed\n');
    expect(Date.now() - killedAt).toBeLessThan(5000);
  } finally {
    await broker.close();
  }
}, 30000);

test('a gateway whose broker went away before it began to look for head nodes fails the search at once, naming the broker', async () => {
  const broker = await spawnBroker(await freePort());
  const gw = await MeshGateway.connect({ url: broker.url, meshId: 'lost-first', modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, failover: false, log: () => undefined });
  try {
    const client = (gw as unknown as { client: { once(event: 'close', f: () => void): void } }).client;
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    broker.child.kill('SIGKILL');
    await closed; // the loss is known before the search starts: no later close event would end its wait
    const startedAt = Date.now();
    await expect(gw.discover({ count: 1, timeoutMs: 20000 })).rejects.toThrow(`lost the connection to the MQTT broker ${broker.url}`);
    expect(Date.now() - startedAt).toBeLessThan(1000);
  } finally {
    await gw.close();
    await broker.close();
  }
}, 30000);

/**
 * `mesh-llm start` and its bus credentials: the first run of a data folder makes them
 * (<data>/bus/default.credentials.json, mode 0600, in neither the flow file nor, in clear,
 * Node-RED's credentials file); with the embedded broker beyond loopback (--bus-host 0.0.0.0)
 * an anonymous client is refused while the head nodes, the sensor simulation, the flow's
 * mesh config node and its MQTT nodes all log in with them: POST /generate gives the golden
 * text and the flow's MQTT generate input answers; a second run reuses the same credentials.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { GATEWAY_USER, MeshCredentials, OBSERVER_USER } from '../lib/mesh/acl';
import { cliEntry } from '../lib/mesh/processes';
import { parseControl, topicsFor } from '../lib/mesh/wire';
import { goldenText } from './support/fixtures';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-start-bus-'));
const credFile = path.join(dataDir, 'bus', 'default.credentials.json');
const t = topicsFor('default');

interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  output: () => string;
}

let server: Server | undefined;
afterAll(async () => {
  await stop(server);
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function start(): Promise<Server> {
  const child = spawn(process.execPath, [cliEntry(), 'start', '--port', '0', '--nodes', '2', '--data', dataDir, '--bus-host', '0.0.0.0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise<Server>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh-llm start did not come up:\n${output}`)), 90000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const editor = /Node-RED editor:\s+(http:\/\/\S+?)\/?\s/.exec(output);
      const bus = /MQTT bus:\s+mqtt:\/\/\S+:(\d+)/.exec(output);
      if (editor && bus) {
        clearTimeout(timer);
        resolve({ child, url: editor[1], port: Number(bus[1]), output: () => output });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`mesh-llm start exited with ${code}:\n${output}`)));
  });
}

async function stop(s: Server | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGTERM');
  const stuck = setTimeout(() => s.child.kill('SIGKILL'), 20000);
  await exited;
  clearTimeout(stuck);
}

const readCreds = () => JSON.parse(fs.readFileSync(credFile, 'utf8')) as MeshCredentials;

async function generate(url: string): Promise<string> {
  const res = await fetch(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', steps: 64, temperature: 0 }) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { text: string }).text;
}

test('the first run makes the bus credentials (0600, not in the flow); beyond loopback an anonymous client is refused while everything start runs logs in; the generation is golden', async () => {
  expect(fs.existsSync(credFile)).toBe(false);
  server = await start();
  expect(fs.statSync(credFile).mode & 0o777).toBe(0o600);
  const creds = readCreds();
  expect(Object.keys(creds.users).sort()).toEqual([GATEWAY_USER, 'node-1', 'node-2', OBSERVER_USER].sort());
  expect(server.output()).toContain(`bus credentials made in ${credFile}`);
  const secrets = Object.values(creds.users).map((u) => u.password);
  const nodeRedDir = path.join(dataDir, 'node-red');
  for (const f of fs.readdirSync(nodeRedDir).filter((f) => f.endsWith('.json'))) {
    const text = fs.readFileSync(path.join(nodeRedDir, f), 'utf8');
    for (const s of secrets) expect(text).not.toContain(s);
  }

  const url = `mqtt://127.0.0.1:${server.port}`;
  const anonymous = await mqtt.connectAsync(url, { clientId: 'anon', reconnectPeriod: 0, connectTimeout: 5000 }).then(
    (c) => (c.end(true), 'connected'),
    (e: Error) => e.message,
  );
  expect(anonymous).toMatch(/Bad username or password|Not authorized/i);

  expect(await generate(server.url)).toBe(goldenText('once-greedy-64'));

  // the flow's MQTT generate input is connected (with the gateway's login, from Node-RED's credentials): it answers a bad request on the errors topic
  const gateway = await mqtt.connectAsync(url, { clientId: 'start-bus-test', username: GATEWAY_USER, password: creds.users[GATEWAY_USER].password, reconnectPeriod: 0 });
  try {
    const reports: ReturnType<typeof parseControl<'error'>>[] = [];
    gateway.on('message', (_topic, payload) => reports.push(parseControl('error', payload)));
    await gateway.subscribeAsync(t.errors, { qos: 0 });
    await gateway.publishAsync(`${t.root}/generate`, '{"prompt": "Once upon', { qos: 1 });
    const deadline = Date.now() + 15000;
    while (!reports.some((r) => r.topic === `${t.root}/generate`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(reports.find((r) => r.topic === `${t.root}/generate`)).toEqual({ protocol: 1, source: 'gateway', topic: `${t.root}/generate`, reason: expect.stringMatching(/JSON/) });
  } finally {
    await gateway.endAsync();
  }
}, 180000);

test('a second run of the same data folder reuses the credentials and still gives the golden text', async () => {
  const before = fs.readFileSync(credFile, 'utf8');
  await stop(server);
  server = await start();
  expect(server.output()).toContain(`bus credentials from ${credFile}`);
  expect(fs.readFileSync(credFile, 'utf8')).toBe(before);
  expect(await generate(server.url)).toBe(goldenText('once-greedy-64'));
}, 180000);

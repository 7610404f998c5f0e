/**
 * `mesh-llm start` and its bus credentials: the first run of a data folder makes them
 * (<data>/bus/default.credentials.json, mode 0600, in neither the flow file nor, in clear,
 * Node-RED's credentials file); with the embedded broker beyond loopback (--bus-host 0.0.0.0)
 * an anonymous client is refused while the head nodes, the sensor simulation, the flow's
 * mesh config node and its MQTT nodes all log in with them: POST /generate gives the golden
 * text and the flow's MQTT generate input answers; a second run reuses the same credentials.
 * On the default loopback listener the ACL holds too: an anonymous client may connect, but
 * only as an observer (it sees the tokens); its forged broadcasts, session start, results,
 * node status and generate request are each refused and counted, and the output stays golden.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { GATEWAY_USER, MeshCredentials, OBSERVER_USER } from '../lib/mesh/acl';
import { BodyType, encodeBody } from '../lib/link/body';
import { PROTOCOL_VERSION, encodeControl, parseControl, topicsFor } from '../lib/mesh/wire';
import { goldenIds, goldenText } from './support/fixtures';
import { runCli } from './support/cli';
import { StartedServer as Server, startServer, stopServer } from './support/start';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-start-bus-'));
const credFile = path.join(dataDir, 'bus', 'default.credentials.json');
const t = topicsFor('default');


let server: Server | undefined;
afterAll(async () => {
  await stopServer(server);
  fs.rmSync(dataDir, { recursive: true, force: true });
});



const readCreds = () => JSON.parse(fs.readFileSync(credFile, 'utf8')) as MeshCredentials;

async function generate(url: string): Promise<string> {
  const res = await fetch(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', steps: 64, temperature: 0 }) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { text: string }).text;
}

test('the first run makes the bus credentials (0600, not in the flow); beyond loopback an anonymous client is refused while everything start runs logs in; the generation is golden', async () => {
  expect(fs.existsSync(credFile)).toBe(false);
  server = await startServer(['--nodes', '2', '--data', dataDir, '--bus-host', '0.0.0.0']);
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
  await stopServer(server);
  server = await startServer(['--nodes', '2', '--data', dataDir, '--bus-host', '0.0.0.0']);
  expect(server.output()).toContain(`bus credentials from ${credFile}`);
  expect(fs.readFileSync(credFile, 'utf8')).toBe(before);
  expect(await generate(server.url)).toBe(goldenText('once-greedy-64'));
}, 180000);

/** Publishes as an anonymous client on its own connection; resolves once the broker has disconnected it (a refused publish), or false if it did not within 5 s. */
async function anonymousPublish(url: string, clientId: string, topic: string, payload: Buffer | string): Promise<boolean> {
  const c = await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, connectTimeout: 5000 });
  const closed = new Promise<boolean>((resolve) => c.once('close', () => resolve(true)));
  c.publish(topic, payload, { qos: 1 }, () => undefined);
  const refused = await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]);
  c.end(true);
  return refused;
}

test('on the default loopback listener an anonymous client only observes: it sees the tokens, and its forged broadcasts, session start, result, node status and generate request are refused and counted while the output stays golden', async () => {
  await stopServer(server);
  server = await startServer(['--nodes', '2', '--data', dataDir, '--bus-host', '127.0.0.1']);
  expect(server.output()).toContain('a client without a login only observes');
  const url = `mqtt://127.0.0.1:${server.port}`;
  const observer = await mqtt.connectAsync(url, { clientId: 'anon-observer', reconnectPeriod: 0 });
  const tokens: { session: number; pos: number; token: number }[] = [];
  let firstToken: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (firstToken = resolve));
  observer.on('message', (_topic, payload) => {
    tokens.push(parseControl('token', payload));
    firstToken();
  });
  try {
    const granted = await observer.subscribeAsync(t.tokens, { qos: 0 });
    expect(granted[0].qos).toBe(0); // not 128: an observer may read the tokens
    await expect(observer.subscribeAsync(t.broadcast, { qos: 0 })).rejects.toThrow(/Subscribe error/); // an observer may not read the broadcasts

    const generation = generate(server.url);
    await started;
    const session = tokens[0].session;
    const forged = (pos: number) => encodeBody({ type: BodyType.Broadcast, encoding: 'f32', sender: 0, session, seq: 1, pos, layer: 0 }, new Float32Array(64).fill(3));
    const forgeries: [string, Buffer | string][] = [
      ...Array.from({ length: 15 }, (_, pos) => [t.broadcast, forged(pos)] as [string, Buffer]),
      [t.session, encodeControl('session', { protocol: PROTOCOL_VERSION, op: 'start', session, assignment: 'a1' })],
      [t.result('node-1'), encodeBody({ type: BodyType.Result, encoding: 'f32', sender: 1, session, seq: 1, pos: 0, layer: 0 }, new Float32Array(24))],
      [t.status('node-9'), encodeControl('status', { protocol: PROTOCOL_VERSION, node: 'node-9', state: 'online' })],
      [`${t.root}/generate`, JSON.stringify({ prompt: 'forged', steps: 8, temperature: 0 })],
    ];
    const refused: boolean[] = [];
    for (const [i, [topic, payload]] of forgeries.entries()) refused.push(await anonymousPublish(url, `forger-${i}`, topic, payload));
    expect(refused.filter(Boolean).length).toBe(forgeries.length);

    expect(await generation).toBe(goldenText('once-greedy-64'));
    const counted = server.output().split('\n').filter((l) => /bus: refused publish of \(anonymous\) on mesh-llm\/default\//.test(l));
    expect(counted.length).toBe(forgeries.length);
    const seen = tokens.filter((m) => m.session === session).sort((a, b) => a.pos - b.pos).map((m) => m.token);
    expect(seen.length).toBeGreaterThanOrEqual(60);
    expect(goldenIds('once-greedy-64').join(',')).toContain(seen.join(','));

    // generate --broker without a login is told what to give; with the data folder it logs in as the gateway and enqueues a job on it
    const anonymousJob = await runCli(['generate', '--broker', url, '--prompt', 'Once upon a time', '--steps', '8', '--temperature', '0'], { timeoutMs: 60000 });
    expect({ code: anonymousJob.code, stderr: anonymousJob.stderr.trim() }).toEqual({ code: 1, stderr: expect.stringMatching(/refused a client without a login the gateway's presence .*give the gateway's login \(--data DIR/) });
    const job = await runCli(['generate', '--broker', url, '--data', dataDir, '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json'], { timeoutMs: 120000 });
    expect({ code: job.code, stderr: job.stderr }).toEqual({ code: 0, stderr: expect.stringMatching(/job \S+ accepted by the gateway/) });
    expect(JSON.parse(job.stdout).text).toBe(goldenText('once-greedy-64'));
  } finally {
    await observer.endAsync();
  }
}, 180000);

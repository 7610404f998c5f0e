/**
 * The Node-RED editor beyond loopback: `mesh-llm start --host 0.0.0.0` refuses to start
 * without a login (one line saying how to set it, nothing started); with
 * MESH_LLM_ADMIN_USER / MESH_LLM_ADMIN_PASSWORD_HASH the editor's admin API answers 401
 * without a token and 200 with one. The key the flow's credentials are encrypted with is
 * random per installation and kept across runs. Real processes, real HTTP.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../lib/mesh/broker';
import { credentialSecret } from '../settings';
import { binPath, runCli } from './support/cli';

/** bcrypt of "correct horse" (npx node-red admin hash-pw), as a user sets MESH_LLM_ADMIN_PASSWORD_HASH. */
const HASH = '$2b$08$72wz9h/NOZisPj2l0z15z.XxDOcIj/olhjSVq1pjhP6jSCW4I9p16';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-editor-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

test('start --host 0.0.0.0 without a login is one line saying how to set it, exit code 1, before anything is started', async () => {
  const env = { ...process.env, MESH_LLM_ADMIN_USER: '', MESH_LLM_ADMIN_PASSWORD_HASH: '' };
  const r = await runCli(['start', '--host', '0.0.0.0', '--port', String(await freePort()), '--nodes', '1', '--data', tmp()], { env });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^mesh-llm: error: the Node-RED editor would listen on 0\.0\.0\.0, beyond this machine, without a login: set MESH_LLM_ADMIN_USER and MESH_LLM_ADMIN_PASSWORD_HASH/);
  expect(r.stderr).not.toMatch(/MQTT broker on|head-node processes|\n\s+at /);
}, 60000);

test('start --host 0.0.0.0 with a login: the admin API answers 401 without a token, 200 with one; the mesh config node\'s broker login and the bridge\'s network key are Node-RED credentials, not in the flow file', async () => {
  const port = await freePort();
  const data = tmp();
  const env = { ...process.env, MESH_LLM_ADMIN_USER: 'admin', MESH_LLM_ADMIN_PASSWORD_HASH: HASH };
  const child = spawn(process.execPath, [binPath, 'start', '--host', '0.0.0.0', '--port', String(port), '--nodes', '1', '--scenario', 'none', '--data', data], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const deadline = Date.now() + 90000;
    while (!/Started flows/.test(out) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    expect(out).toMatch(/Started flows/);
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/flows`)).status).toBe(401);
    const wrong = await fetch(`${base}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: 'admin', password: 'wrong' }) });
    expect(wrong.status).toBe(403);
    const token = await fetch(`${base}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: 'admin', password: 'correct horse' }) });
    expect(token.status).toBe(200);
    const { access_token } = (await token.json()) as { access_token: string };
    const auth = { authorization: `Bearer ${access_token}` };
    expect((await fetch(`${base}/flows`, { headers: auth })).status).toBe(200);

    const flow = [
      { id: 'cfg1', type: 'mesh-llm-config', name: 'secured', broker: 'mqtt://127.0.0.1:1', meshId: 'x', quant: 'f32', nodes: '', gatherTimeout: '2000', model: '', tokenizer: '', credentials: { username: 'gateway', password: 'pa55-in-credentials' } },
      { id: 'tab1', type: 'tab', label: 't' },
      { id: 'br1', type: 'mesh-llm-lora-bridge', z: 'tab1', name: '', broker: 'mqtt://127.0.0.1:1', meshId: 'x', link: 'sim', nodes: '1', credentials: { key: '00112233445566778899aabbccddeeff' }, wires: [[]] },
    ];
    const deployed = await fetch(`${base}/flows`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' }, body: JSON.stringify(flow) });
    expect(deployed.status).toBe(204);
    const flowFile = fs.readFileSync(path.join(data, 'node-red', 'mesh-llm.json'), 'utf8');
    const credFile = fs.readFileSync(path.join(data, 'node-red', 'mesh-llm_cred.json'), 'utf8');
    for (const secret of ['pa55-in-credentials', '00112233445566778899aabbccddeeff']) {
      expect(flowFile).not.toContain(secret);
      expect(credFile).not.toContain(secret); // encrypted with the installation's key
    }
    const cfg = (await (await fetch(`${base}/credentials/mesh-llm-config/cfg1`, { headers: auth })).json()) as Record<string, unknown>;
    expect(cfg).toEqual({ username: 'gateway', has_password: true });
    const br = (await (await fetch(`${base}/credentials/mesh-llm-lora-bridge/br1`, { headers: auth })).json()) as Record<string, unknown>;
    expect(br).toEqual({ has_key: true });
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}, 150000);

test('the credentials key is random per installation, kept across runs; an installation whose credentials file predates it keeps the old key', () => {
  const env = {};
  const a = tmp();
  const b = tmp();
  const flow = (d: string) => path.join(d, 'mesh-llm.json');
  const first = credentialSecret(a, flow(a), env);
  expect(first).toMatch(/^[0-9a-f]{64}$/);
  expect(credentialSecret(a, flow(a), env)).toBe(first);
  expect(credentialSecret(b, flow(b), env)).not.toBe(first);
  expect(fs.statSync(path.join(a, '.credential-secret')).mode & 0o777).toBe(0o600);
  const legacy = tmp();
  fs.writeFileSync(path.join(legacy, 'mesh-llm_cred.json'), '{}');
  expect(credentialSecret(legacy, flow(legacy), env)).toBe('mesh-llm-local-credentials');
  expect(credentialSecret(a, flow(a), { MESH_LLM_CREDENTIAL_SECRET: 'given' })).toBe('given');
});

/**
 * Shutdown with work in hand: SIGTERM to `npm start` while generate requests are running and
 * queued. Every request is answered (a queued or running one 503 with the reason), the
 * process group is gone within 5 s, the exit code is 0 and nothing is reported unhandled.
 * The real `npm start`, real HTTP.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../lib/llm/resolve';
import { freePort } from '../lib/mesh/broker';
import { killGroup } from './support/process-group';

/** POST /generate; resolves with the status and body however the request ends (an error is status 0). */
async function generate(url: string, body: object): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { status: 0, body: (e as Error).message };
  }
}

test('SIGTERM to npm start with requests running and queued: each is answered 503 with the reason, exit code 0 within 5 s, nothing unhandled', async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-shutdown-'));
  const port = await freePort();
  const npm = spawn('npm', ['start', '--silent', '--', '--port', String(port), '--nodes', '2', '--data', data], { cwd: packageRoot(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout?.on('data', (d) => (out += d));
  npm.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 90000;
    while (!/mesh-llm is running/.test(out) && Date.now() < deadline && npm.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    expect(out).toMatch(/mesh-llm is running/);
    const url = `http://127.0.0.1:${port}`;
    // the first request runs (the whole context, long), the others queue behind it
    const requests = [0, 1, 2, 3].map(() => generate(url, { prompt: '', steps: 0, temperature: 0 }));
    await new Promise((r) => setTimeout(r, 1500));
    const killedAt = Date.now();
    npm.kill('SIGTERM');
    const answers = await Promise.all(requests);
    const code = await exited;
    expect(Date.now() - killedAt).toBeLessThan(5000);
    expect(code).toBe(0);
    for (const a of answers) {
      expect(a.status).toBe(503);
      expect(JSON.parse(a.body)).toEqual({ error: expect.stringMatching(/mesh-llm is shutting down \(SIGTERM\)/) });
    }
    expect(out).not.toMatch(/unhandled|Unhandled|\n\s+at /);
  } finally {
    if (npm.pid) killGroup(npm.pid);
    fs.rmSync(data, { recursive: true, force: true });
  }
}, 120000);

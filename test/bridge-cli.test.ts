/** `mesh-llm bridge` as its own process: its radio head nodes serve `generate --broker` like any mesh nodes. */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnBroker } from '../lib/mesh/processes';
import { binPath, runCli } from './support/cli';
import { goldenIds } from './support/fixtures';

describe('mesh-llm bridge', () => {
  let broker: Awaited<ReturnType<typeof spawnBroker>>;
  let bridge: ChildProcess;
  let bridgeLog = '';
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-bridge-state-'));

  beforeAll(async () => {
    broker = await spawnBroker(0);
    bridge = spawn(process.execPath, [binPath, 'bridge', '--broker', broker.url, '--nodes', '4', '--state', stateDir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    bridge.stderr?.on('data', (d) => (bridgeLog += d));
    bridge.stdout?.on('data', (d) => (bridgeLog += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the bridge did not come up:\n${bridgeLog}`)), 30000);
      const check = setInterval(() => {
        if (/4 radio head node\(s\) on the sim link/.test(bridgeLog)) {
          clearInterval(check);
          clearTimeout(timer);
          resolve();
        }
      }, 50);
    });
  });

  afterAll(async () => {
    if (bridge && bridge.exitCode === null) {
      const exited = new Promise((r) => bridge.once('exit', r));
      bridge.kill('SIGTERM');
      await exited;
    }
    await broker?.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  test('generate --broker runs through the bridge and its simulated radio: golden tokens, a report per position', async () => {
    const r = await runCli(['generate', '--broker', broker.url, '--nodes', '4', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(goldenIds('once-greedy-64'));
    const reports = bridgeLog.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { pos: number; ratio: number });
    expect(reports.length).toBeGreaterThanOrEqual(63);
    expect(reports.every((t) => t.ratio > 0 && t.ratio <= 1.05)).toBe(true);
    // --state: the gateway radio and the simulated nodes keep their counters and replay windows there
    expect(fs.readdirSync(stateDir).sort()).toEqual(['gateway.json', 'radio-1.json', 'radio-2.json', 'radio-3.json', 'radio-4.json']);
    const gateway = JSON.parse(fs.readFileSync(path.join(stateDir, 'gateway.json'), 'utf8')) as { counter: number; window: Record<string, number> };
    expect(gateway.counter).toBeGreaterThan(64);
    expect(Object.keys(gateway.window).sort()).toEqual(['1', '2', '3', '4']);
  });

  test('bad options are clear errors', async () => {
    const noBroker = await runCli(['bridge']);
    expect(noBroker.code).toBe(2);
    expect(noBroker.stderr).toMatch(/--broker URL is required/);
    const noKey = await runCli(['bridge', '--broker', broker.url, '--link', 'udp']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/need the mesh's network key/);
    const badLink = await runCli(['bridge', '--broker', broker.url, '--link', 'wifi']);
    expect(badLink.code).toBe(2);
    expect(badLink.stderr).toMatch(/--link "wifi": expected one of sim, serial, udp/);
  });
});

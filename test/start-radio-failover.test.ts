/**
 * Failover on the radio from the Node-RED flow: `mesh-llm start --radio sim --native --nodes 8
 * --spares 3` runs eight native radio head nodes (the firmware's radio path, processes) and
 * three spares flashed with the heads of nodes 1-3 behind the LoRa bridge, on the simulated
 * channel with 10% loss, paced 1000x. A POST /generate runs through the shipped flow; at
 * position 10 radio node 1 is SIGKILLed, a second later node 2, a second after that node 3 is
 * SIGSTOPped (the channel stops waiting for it after 3 s, and simulated time stands still
 * meanwhile). The bridge gives each up, the flow's mesh moves its heads to the spare flashed
 * with them and replays the session: the tokens are the golden file's.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { topicsFor } from '../lib/mesh/wire';
import { goldenIds } from './support/fixtures';
import { faults } from './support/faults';
import { StartedServer, startServer, stopServer } from './support/start';

let server: StartedServer | undefined;
let dataDir = '';
const stopped: number[] = [];

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-start-radio-failover-'));
  server = await startServer(['--data', dataDir, '--radio', 'sim', '--native', '--nodes', '8', '--spares', '3', '--loss', '0.1', '--time-scale', '1000', '--scenario', 'none']);
}, 120000);

afterAll(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone already
    }
  }
  await stopServer(server);
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 60000);

/** The native radio node `n` that start runs, by its storage folder (storage-N). */
function radioNodePid(n: number): number {
  const lines = execFileSync('pgrep', ['-a', '-P', String(server?.child.pid)], { encoding: 'utf8' }).trim().split('\n');
  const line = lines.find((l) => l.includes('mesh-llm-radio-node') && l.includes(`/storage-${n} `));
  if (!line) throw new Error(`no native radio node ${n} under mesh-llm start`);
  return Number(line.split(' ')[0]);
}

test('start --radio sim --native --spares 3, 10% loss: two radio nodes SIGKILLed a second apart and a third SIGSTOPped during a flow run; each one\'s heads go to the spare flashed with them, and the tokens equal the golden file', async () => {
  const s = server as StartedServer;
  expect(s.output()).toMatch(/the LoRa bridge with 8 native radio head nodes and 3 spares/);
  const t = topicsFor('default');
  const observer = await mqtt.connectAsync(s.broker, { clientId: 'radio-failover-observer', reconnectPeriod: 0 });
  const failovers: { lost: string[]; moves: { to: string }[] }[] = [];
  const victim = (n: number) => ({
    kill: (signal?: NodeJS.Signals | number) => {
      const pid = radioNodePid(n);
      if (signal === 'SIGSTOP') stopped.push(pid);
      process.kill(pid, signal);
      return true;
    },
  });
  const f = faults([victim(1), victim(2), victim(3)], { first: 10, maxGap: 8 });
  try {
    observer.on('message', (topic, payload) => {
      const m = JSON.parse(payload.toString('utf8'));
      if (topic === t.tokens && typeof m.pos === 'number') f.onPosition(m.pos);
      if (topic === t.events && m.kind === 'failover') failovers.push(m);
    });
    await observer.subscribeAsync([t.tokens, t.events], { qos: 0 });
    const res = await fetch(`${s.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', steps: 64, temperature: 0 }) });
    const body = (await res.json()) as { tokens?: number[]; error?: string };
    expect(body.error).toBeUndefined();
    expect(res.status).toBe(200);
    expect(f.done()).toEqual(['SIGKILL', 'SIGKILL', 'SIGSTOP']);
    expect(body.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(failovers.map((e) => [e.lost, e.moves.map((m) => m.to)])).toEqual([
      [['radio-1'], ['radio-9']],
      [['radio-2'], ['radio-10']],
      [['radio-3'], ['radio-11']],
    ]);
  } finally {
    await observer.endAsync();
  }
}, 180000);

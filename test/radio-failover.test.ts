/**
 * Failover on the simulated radio, from the CLI: `generate --radio sim` with eight radio head
 * nodes, 10% of receptions lost, and three spare radio nodes flashed with the head groups of
 * nodes 1..3 (a radio node cannot load other heads over LoRa). Mid-generation radio-1 goes
 * silent (a simulated fault: its transceiver hears and so sends nothing), two positions later
 * radio-2, two more later radio-3: the gateway's MAC gives each up after its rounds, the bridge
 * says it is lost, the mesh gateway moves its heads to the spare holding them and replays the
 * session over the radio, and the tokens equal the golden file (f32) and the int8 engine's
 * (int8). The JSON names each failover with its replay's airtime. With the firmware's native
 * radio nodes (processes) one is SIGKILLed, a second later another, a second after that a third
 * is SIGSTOPped: the channel does not wait for the hung one (lib/radio/sim-socket.ts takes it as
 * silent), so the MAC gives it up as the others and the spares take over. Without a spare
 * holding the lost heads the run ends with one clear line.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { runRadioGenerate } from '../gateway-bridge/run';
import { Engine } from '../lib/llm/engine';
import { freePort } from '../lib/mesh/broker';
import { cliEntry, spawnBroker } from '../lib/mesh/processes';
import { goldenIds, modelPaths } from './support/fixtures';
import { faults } from './support/faults';

const ONCE = ['--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0'];
const generate = (...args: string[]) => spawnSync(process.execPath, [cliEntry(), 'generate', '--radio', 'sim', ...ONCE, ...args], { encoding: 'utf8', timeout: 170000 });

interface RadioFailover {
  pos: number;
  lost: string[];
  moves: { from: string; to: string; heads: number[] }[];
  replayed: number;
  replayAirtimeSeconds: number;
  replaySimulatedSeconds: number;
}

describe.each(['f32', 'int8'] as const)('eight radio head nodes and three spares, 10%% loss, %s', (quant) => {
  test('three nodes lost two positions apart: each one\'s heads go to the spare flashed with them, the tokens equal a run without the fault, the JSON gives each replay\'s airtime', async () => {
    const r = generate('--nodes', '8', '--spares', '3', '--loss', '0.1', '--quant', quant, '--fail', 'radio-1@10,radio-2@12,radio-3@14', '--json');
    expect(r.stderr).not.toMatch(/error/);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: number[]; failovers: RadioFailover[] };
    const expected = quant === 'f32' ? goldenIds('once-greedy-64') : (await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 8, quant }).generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n })).tokens;
    expect(out.tokens).toEqual(expected);
    expect(out.failovers.map((f) => [f.pos, f.lost, f.moves.map((m) => [m.from, m.to])])).toEqual([
      [10, ['radio-1'], [['radio-1', 'radio-9']]],
      [12, ['radio-2'], [['radio-2', 'radio-10']]],
      [14, ['radio-3'], [['radio-3', 'radio-11']]],
    ]);
    for (const f of out.failovers) {
      expect(f.replayed).toBe(f.pos * 5); // every position done x 5 layers
      expect(f.replayAirtimeSeconds).toBeGreaterThan(0);
      expect(f.replaySimulatedSeconds).toBeGreaterThanOrEqual(f.replayAirtimeSeconds / 2);
    }
    expect(r.stderr).toMatch(/radio node radio-1 \(address 1\) lost: did not deliver layer 0 at position 10 in 32 rounds/);
  }, 180000);
});

test('a lost radio node with no spare holding its heads ends the run with one line naming them', () => {
  const r = generate('--nodes', '4', '--loss', '0.1', '--fail', 'radio-2@5');
  expect(r.status).toBe(1);
  expect(r.stderr.trim().split('\n').at(-1)).toBe('mesh-llm: error: no head node is left on mesh radio that can take heads [2,3] of radio-2: the others hold their heads in flash (radio nodes), and no spare flashed with these heads is up');
}, 120000);

test('a simulated fault naming a node that is not there is refused before the run', () => {
  const r = generate('--nodes', '2', '--fail', 'radio-7@1');
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/a simulated fault names radio node radio-7; the nodes simulated here are radio-1, radio-2/);
}, 60000);

test.each(['f32', 'int8'] as const)('native radio nodes (the firmware radio path, processes), %s: one SIGKILLed, a second later another, a second after that a third SIGSTOPped (the channel stops waiting for it): their heads go to the spares, the tokens equal a run without the fault', async (quant) => {
  // the native radio nodes this process started, by their storage folder
  const pidOf = (n: number) => {
    const lines = execFileSync('pgrep', ['-a', '-P', String(process.pid)], { encoding: 'utf8' }).trim().split('\n');
    const line = lines.find((l) => l.includes('mesh-llm-radio-node') && l.includes(`/storage-${n} `)); // radio node N keeps its counters in storage-N (a spare loads node N's shard too)
    if (!line) throw new Error(`no native radio node ${n} running`);
    return Number(line.split(' ')[0]);
  };
  const pids: number[] = [];
  const victim = (n: number) => ({
    kill: (signal?: NodeJS.Signals | number) => {
      const pid = pidOf(n);
      pids.push(pid);
      process.kill(pid, signal);
      return true;
    },
  });
  const f = faults([victim(1), victim(2), victim(3)], { first: 10, maxGap: 6 });
  const broker = await spawnBroker(await freePort()); // jest cannot load the aedes ES module in-process
  const started = Date.now();
  try {
    const r = await runRadioGenerate({
      brokerUrl: broker.url,
      region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0.1, nodes: 8, spares: 3, quant, native: true,
      modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer,
      generate: { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n },
      log: () => undefined,
      onToken: (_t, _p, pos) => f.onPosition(pos),
    });
    expect(f.done()).toEqual(['SIGKILL', 'SIGKILL', 'SIGSTOP']);
    const expected = quant === 'f32' ? goldenIds('once-greedy-64') : (await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 8, quant }).generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n })).tokens;
    expect(r.tokens).toEqual(expected);
    expect((r.failovers ?? []).map((x) => [x.lost, x.moves.map((m) => m.to)])).toEqual([
      [['radio-1'], ['radio-9']],
      [['radio-2'], ['radio-10']],
      [['radio-3'], ['radio-11']],
    ]);
    expect(Date.now() - started).toBeLessThan(170000);
  } finally {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await broker.close();
  }
}, 180000);

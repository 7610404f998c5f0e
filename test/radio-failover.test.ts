/**
 * Failover on the simulated radio, from the CLI: `generate --radio sim` with eight radio head
 * nodes, 10% of receptions lost, and three spare radio nodes flashed with the head groups of
 * nodes 1..3 (a radio node cannot load other heads over LoRa). Mid-generation radio-1 goes
 * silent (a simulated fault: its transceiver hears and so sends nothing), two positions later
 * radio-2, two more later radio-3: the gateway's MAC gives each up after its rounds, the bridge
 * says it is lost, the mesh gateway moves its heads to the spare holding them and replays the
 * session over the radio, and the tokens equal the golden file (f32) and the int8 engine's
 * (int8). The JSON names each failover with its replay's airtime. With the firmware's native
 * radio nodes (processes) two are SIGKILLed instead. Without a spare holding the lost heads the
 * run ends with one clear line.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { runRadioGenerate } from '../gateway-bridge/run';
import { Engine } from '../lib/llm/engine';
import { freePort } from '../lib/mesh/broker';
import { cliEntry, spawnBroker } from '../lib/mesh/processes';
import { goldenIds, modelPaths } from './support/fixtures';

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

test('native radio nodes (the firmware radio path, processes): two SIGKILLed two positions apart, their heads go to the spares, the tokens are golden', async () => {
  // the native radio nodes this process started, by the shard each loads (node-N.shard: radio node N)
  const pidOf = (n: number) => {
    const lines = execFileSync('pgrep', ['-a', '-P', String(process.pid)], { encoding: 'utf8' }).trim().split('\n');
    const line = lines.find((l) => l.includes('mesh-llm-radio-node') && l.includes(`/node-${n}.shard`));
    return line ? Number(line.split(' ')[0]) : undefined;
  };
  const broker = await spawnBroker(await freePort()); // jest cannot load the aedes ES module in-process
  const killed: number[] = [];
  const r = await runRadioGenerate({
    brokerUrl: broker.url,
    region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0.1, nodes: 8, spares: 2, quant: 'f32', native: true,
    modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer,
    generate: { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n },
    log: () => undefined,
    onToken: (_t, _p, pos) => {
      if (killed.length < 2 && pos >= 10 + 2 * killed.length) {
        const pid = pidOf(killed.length + 1);
        if (pid === undefined) throw new Error(`no native radio node ${killed.length + 1} running`);
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      }
    },
  });
  await broker.close();
  expect(killed).toHaveLength(2);
  expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
  expect((r.failovers ?? []).map((f) => [f.lost, f.moves.map((m) => m.to)])).toEqual([
    [['radio-1'], ['radio-9']],
    [['radio-2'], ['radio-10']],
  ]);
}, 180000);

/** The steering command line: generate --scenario/--sensors/--alpha and mesh-llm steer, as real processes. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tokenizer } from '../lib/llm/tokenizer';
import { simulate, toSensorCsv } from '../lib/steering/sensors';
import { runCli } from './support/cli';
import { modelPaths } from './support/fixtures';

const steps = ['--prompt', 'Tom was playing in the park. Suddenly,', '--steps', '24', '--seed', '5', '--temperature', '0.8', '--groups', '8'];

test('generate --scenario explosion --json: readings per node, the steered text, and every sampled token attributed', async () => {
  const steered = await runCli(['generate', ...steps, '--scenario', 'explosion', '--json']);
  expect(steered.stderr).toBe('');
  expect(steered.code).toBe(0);
  const out = JSON.parse(steered.stdout);
  expect(out.alpha).toBeGreaterThan(0);
  expect(Object.keys(out.readings)).toHaveLength(8);
  expect(out.readings['node-1'].soundDb).toBe(1);
  const promptTokens = Tokenizer.load(modelPaths.tokenizer).encode(steps[1], true, false).length;
  expect(out.attributions.length).toBe(out.tokens.length - promptTokens); // every sampled token
  for (const a of out.attributions) expect(a.nodes).toHaveLength(8);
  const calm = JSON.parse((await runCli(['generate', ...steps, '--scenario', 'calm', '--json'])).stdout);
  const plain = JSON.parse((await runCli(['generate', ...steps, '--json'])).stdout);
  expect(out.text).not.toBe(plain.text);
  // the calm room is inside every deadband: no steering at all
  expect(calm.text).toBe(plain.text);
  expect(calm.attributions.every((a: { top: string | null }) => a.top === null)).toBe(true);
});

test('generate --sensors FILE replays a CSV trace; bad combinations are refused in one line', async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-steer-cli-')), 'quake.csv');
  fs.writeFileSync(file, toSensorCsv(simulate({ scenario: 'earthquake', nodes: ['node-1', 'node-2'], eventSeconds: 5 })));
  const r = await runCli(['generate', ...steps.slice(0, -2), '--groups', '2', '--sensors', file, '--json']);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).readings['node-2'].vibrationG).toBe(1);
  const both = await runCli(['generate', '--scenario', 'calm', '--sensors', file]);
  expect(both.code).toBe(2);
  expect(both.stderr).toMatch(/give --scenario or --sensors, not both/);
  const unknown = await runCli(['generate', '--scenario', 'volcano']);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toMatch(/unknown scenario "volcano" \(known: calm, explosion, bright-flash, earthquake\)/);
  const sub = await runCli(['steer', 'dance']);
  expect(sub.code).toBe(2);
  expect(sub.stderr).toMatch(/steer: expected one of calibrate, measure, readings, simulate/);
});

test('generate --mesh 4 --scenario earthquake steers the head-node processes over MQTT exactly as --groups 4 steers the engine', async () => {
  const args = [...steps.slice(0, -2), '--scenario', 'earthquake', '--json'];
  const mesh = await runCli(['generate', ...args, '--mesh', '4'], { env: { MESH_LLM_LOG: 'error' } });
  expect(mesh.code).toBe(0);
  const engine = await runCli(['generate', ...args, '--groups', '4']);
  const [m, e] = [JSON.parse(mesh.stdout), JSON.parse(engine.stdout)];
  expect(m.text).toBe(e.text);
  expect(m.readings).toEqual(e.readings);
  expect(m.attributions.map((a: { top: string }) => a.top)).toEqual(e.attributions.map((a: { top: string }) => a.top));
  expect(m.attributions.some((a: { top: string | null }) => a.top !== null)).toBe(true);
});

describe('steer measure --json on stories260K', () => {
  type Repetition = { name: string; repetitionOk: boolean; sampledRepeated4: number; greedyRepeated4: number };
  let r: Awaited<ReturnType<typeof runCli>>;
  let out: {
    channels: (Repetition & { massRatioAtFull: number; monotonic: boolean; perplexityIncrease: number })[];
    scenarios: Repetition[];
    repetitionLimits: { sampledRepeated4: number; greedyRepeated4: number };
    attributionTop1: number;
    attributionPairTop2: number;
    noveltyAuc: number;
    details: { perplexitySamples: number };
  };
  beforeAll(async () => {
    // about 30 s on an idle machine, several times that on a loaded one
    r = await runCli(['steer', 'measure', '--json', '--trials', '16'], { timeoutMs: 290_000 });
    if (r.code !== 0) throw new Error(`steer measure exited with ${r.code}:\n${r.stderr.slice(-2000)}`);
    out = JSON.parse(r.stdout);
  }, 300_000);

  test('every channel reaches 2x at full reading, rises monotonically, costs at most 20% perplexity; attribution names the stimulated node, and both of two', () => {
    expect(r.code).toBe(0);
    expect(out.channels.map((c) => c.name)).toEqual(['soundDb', 'vibrationG', 'lightLux', 'temperatureC', 'humidityPct']);
    for (const c of out.channels) {
      expect(c.massRatioAtFull).toBeGreaterThanOrEqual(2);
      expect(c.monotonic).toBe(true);
      expect(c.perplexityIncrease).toBeLessThanOrEqual(0.2);
      expect(c.perplexityIncrease).toBeGreaterThan(0); // steered text is less likely under the unsteered model
    }
    expect(out.attributionTop1).toBeGreaterThanOrEqual(0.9);
    expect(out.attributionPairTop2).toBeGreaterThanOrEqual(0.9);
    expect(out.noveltyAuc).toBeGreaterThanOrEqual(0.9); // recorded; the issue asks only that it is reported
    expect(out.details.perplexitySamples).toBe(4);
    // progress on stderr, one line per channel, one for the variety of the scenarios, the attribution and the novelty trials
    expect(r.stderr).toMatch(/steer measure: soundDb \(1\/8\)\n[^]*steer measure: 16 attribution trials, 24 with two stimuli \(7\/8\)\nsteer measure: 24 novelty trials \(8\/8\)\nsteer measure: done in \d+ s\n$/);
  });

  test('every channel at full reading and every scenario within the repetition targets: sampled at most 1.25x the unsteered rate, greedy at most unsteered + 0.08', () => {
    expect(out.scenarios.map((s) => s.name)).toEqual(['explosion', 'earthquake', 'bright-flash']);
    for (const v of [...out.channels, ...out.scenarios]) {
      expect({ name: v.name, sampled: v.sampledRepeated4 <= out.repetitionLimits.sampledRepeated4, greedy: v.greedyRepeated4 <= out.repetitionLimits.greedyRepeated4, ok: v.repetitionOk }).toEqual({ name: v.name, sampled: true, greedy: true, ok: true });
    }
  });

  test('--samples 0 is refused in one line', async () => {
    const bad = await runCli(['steer', 'measure', '--samples', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--samples "0": expected a whole number from 1 to 1000/);
  });
});

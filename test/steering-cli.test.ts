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

test('steer measure --json: on stories260K every channel reaches 2x at full reading, rises monotonically, costs at most 20% perplexity; attribution names the stimulated node', async () => {
  const r = await runCli(['steer', 'measure', '--json', '--trials', '16']);
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.channels.map((c: { name: string }) => c.name)).toEqual(['soundDb', 'vibrationG', 'lightLux', 'temperatureC', 'humidityPct']);
  for (const c of out.channels) {
    expect(c.massRatioAtFull).toBeGreaterThanOrEqual(2);
    expect(c.monotonic).toBe(true);
    expect(c.perplexityIncrease).toBeLessThanOrEqual(0.2);
    expect(c.perplexityIncrease).toBeGreaterThan(0); // steered text is less likely under the unsteered model
  }
  expect(out.attributionTop1).toBeGreaterThanOrEqual(0.9);
  expect(out.details.perplexitySamples).toBe(4);
  // progress on stderr, one line per channel and one for the attribution trials
  expect(r.stderr).toMatch(/steer measure: soundDb \(1\/6\)\n[^]*steer measure: 16 attribution trials \(6\/6\)\nsteer measure: done in \d+ s\n$/);
  const bad = await runCli(['steer', 'measure', '--samples', '0']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--samples "0": expected a whole number from 1 to 1000/);
}, 300_000);

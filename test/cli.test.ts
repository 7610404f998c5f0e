import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../lib/llm/engine';
import { packageRoot } from '../lib/llm/resolve';
import { goldenIds, goldenText, modelPaths } from './support/fixtures';
import { runCli } from './support/cli';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A user-facing failure: one error line (plus an optional hint), no stack trace. */
function expectCleanError(r: { code: number | null; stderr: string; stdout: string }, code: number, pattern: RegExp): void {
  expect(r.code).toBe(code);
  expect(r.stderr).toMatch(/^mesh-llm: error: /);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).not.toMatch(/NaN/);
}

describe('mesh-llm generate', () => {
  test('--json prints exactly one object with the golden tokens', async () => {
    const r = await runCli(['generate', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]);
    expect(Object.keys(out).sort()).toEqual(['text', 'tokens', 'tokensPerSecond']);
    expect(out.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(out.text).toBe(goldenText('once-greedy-64'));
    expect(out.tokensPerSecond).toBeGreaterThan(0);
  });

  test('streams text like run.c, and --groups/--quant are accepted', async () => {
    const r = await runCli(['generate', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--groups', '2+3+3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${goldenText('once-greedy-64')}\n`);
    expect(r.stderr).toMatch(/achieved tok\/s: \d/);
    const q = await runCli(['generate', '--prompt', 'Once upon a time', '--steps', '32', '--temperature', '0', '--quant', 'int8', '--json']);
    expect(q.code).toBe(0);
    expect(JSON.parse(q.stdout).tokens.slice(0, 5)).toEqual(goldenIds('once-greedy-64').slice(0, 5));
  });

  test('a new prompt gives the same tokens as the engine, with a seed for sampling', async () => {
    const prompt = 'The cat sat by the window and';
    const r = await runCli(['generate', '--prompt', prompt, '--steps', '48', '--temperature', '0.8', '--seed', '1234', '--groups', '8', '--json']);
    const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer });
    const expected = await engine.generate({ prompt, steps: 48, temperature: 0.8, topP: 0.9, seed: 1234n });
    expect(JSON.parse(r.stdout).tokens).toEqual(expected.tokens);
  });

  test('bad options are one-line usage errors with exit code 2', async () => {
    expectCleanError(await runCli(['generate', '--steps', 'many']), 2, /--steps "many": expected a whole number/);
    expectCleanError(await runCli(['generate', '--temperature=-1']), 2, /--temperature "-1": expected a number from 0/);
    expectCleanError(await runCli(['generate', '--quant', 'int3']), 2, /--quant "int3": expected one of f32, int8, int4, int2/);
    expectCleanError(await runCli(['generate', '--groups', '9']), 2, /between 1 and the model's 8 heads/);
    expectCleanError(await runCli(['generate', '--frobnicate']), 2, /Unknown option '--frobnicate'/);
    const unknown = await runCli(['dance']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "dance"/);
  });

  test('values parse the same with or without "=", negative numbers included, and out-of-range values name their range', async () => {
    for (const argv of [['--steps', '-5'], ['--steps=-5']]) expectCleanError(await runCli(['generate', ...argv]), 2, /--steps "-5": expected a whole number from 0 to/);
    expectCleanError(await runCli(['generate', '--temperature', '9']), 2, /--temperature "9": expected a number from 0 to 2/);
    expectCleanError(await runCli(['generate', '--top-p', '-0.5']), 2, /--top-p "-0.5": expected a number from 0 to 1/);
    const ok = await runCli(['generate', '--prompt=Once upon a time', '--steps=64', '--temperature=0', '--json']);
    expect(JSON.parse(ok.stdout).tokens).toEqual(goldenIds('once-greedy-64'));
  });

  test('steps beyond the context and a prompt that does not fit are refused with exit code 2, not cut', async () => {
    expectCleanError(await runCli(['generate', '--steps', '99999']), 2, /steps 99999 is beyond the model's context of 512 positions/);
    expectCleanError(await runCli(['generate', '--prompt', 'Once upon a time '.repeat(300)]), 2, /the prompt is \d+ tokens \(BOS included\); the model's context is 512 positions/);
    expectCleanError(await runCli(['generate', '--prompt', 'Once upon a time there was a girl', '--steps', '4']), 2, /more than the 4 steps to run, so nothing would be generated/);
  });

  test("the README's generate usage is the synopsis --help prints, and both name every option", async () => {
    const help = (await runCli(['generate', '--help'])).stdout;
    const synopsis = help.slice('usage: '.length, help.indexOf('\n\n'));
    const readme = fs.readFileSync(path.join(packageRoot(), 'README.md'), 'utf8');
    expect(readme).toContain(`\`\`\`\n${synopsis}\n\`\`\`\n`);
    const flags = (text: string) => [...new Set(text.match(/--[a-z][a-z-]*/g))].sort();
    const { generateOptionSpec } = await import('../cli/commands/generate');
    expect(flags(synopsis)).toEqual(Object.keys(generateOptionSpec).map((k) => `--${k}`).sort());
    expect(flags(help)).toEqual(flags(synopsis));
  });

  test('a truncated model, a wrong magic and a missing tokenizer are clear errors', async () => {
    const truncated = path.join(tmp, 'truncated.bin');
    fs.writeFileSync(truncated, fs.readFileSync(modelPaths.model).subarray(0, 4096));
    expectCleanError(await runCli(['generate', '--model', truncated, '--tokenizer', modelPaths.tokenizer]), 1, /truncated: 4096 bytes, but its version-0 header .* implies 1056540 bytes/);
    const wrong = path.join(tmp, 'wrong.bin');
    fs.writeFileSync(wrong, Buffer.alloc(2048, 0xff));
    expectCleanError(await runCli(['generate', '--model', wrong]), 1, /is not a llama2.c checkpoint/);
    expectCleanError(await runCli(['generate', '--tokenizer', path.join(tmp, 'none.bin')]), 1, /tokenizer file .*none.bin: does not exist/);
  });
});

describe('model resolution order', () => {
  test('MESH_LLM_MODEL_DIR is used, and a folder without the model is a clear error', async () => {
    const dir = path.join(tmp, 'env-models');
    fs.mkdirSync(dir);
    const cwd = path.join(tmp, 'elsewhere');
    fs.mkdirSync(cwd);
    // A copy with a biased classifier proves the file from MESH_LLM_MODEL_DIR was the one used.
    const data = Buffer.from(fs.readFileSync(modelPaths.model));
    fs.writeFileSync(path.join(dir, 'stories260K.bin'), data);
    fs.copyFileSync(modelPaths.tokenizer, path.join(dir, 'tok512.bin'));
    const ok = await runCli(['generate', '--steps', '8', '--temperature', '0', '--json'], { env: { MESH_LLM_MODEL_DIR: dir }, cwd });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).tokens).toEqual(goldenIds('bos-greedy-256').slice(0, 9));
    fs.writeFileSync(path.join(dir, 'stories260K.bin'), data.subarray(0, 1000));
    expectCleanError(await runCli(['generate', '--steps', '8'], { env: { MESH_LLM_MODEL_DIR: dir }, cwd }), 1, new RegExp(`${dir}/stories260K.bin: is truncated`));
  });
});

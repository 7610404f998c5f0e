import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { Engine } from '../lib/llm/engine';
import { GgufSource } from '../lib/llm/gguf';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { TENSOR_NAMES, isPerLayer } from '../lib/llm/tensors';
import { runCli } from './support/cli';
import { modelPaths } from './support/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-synth-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const out = (name: string): string => path.join(tmp, name);

async function synth(args: string[]): Promise<Record<string, unknown>> {
  const r = await runCli(['synth', ...args, '--json'], { timeoutMs: 170000 });
  expect(r.stderr).toMatch(/100% \(\d+\/\d+ tensors\)/);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

describe('mesh-llm synth: seeded random models of a known geometry', () => {
  beforeAll(async () => {
    await Promise.all([
      synth(['--preset', 'stories260k', '--format', 'llama2c', '--out', out('s.bin')]),
      synth(['--preset', 'stories260k', '--format', 'gguf', '--type', 'F32', '--out', out('s.gguf')]),
      synth(['--preset', 'stories260k', '--format', 'hf', '--type', 'F32', '--out', out('s-hf')]),
      synth(['--preset', 'stories260k', '--format', 'llama2c', '--seed', '2', '--out', out('s2.bin')]),
    ]);
  }, 180000);

  test('the same seed gives the same weights as a llama2.c checkpoint, a GGUF file and a Hugging Face folder', () => {
    const [bin, gguf, hf] = [out('s.bin'), out('s.gguf'), out('s-hf')].map((p) => Checkpoint.open(p));
    expect(bin.info.config).toEqual(MODEL_PRESETS.stories260k);
    expect(gguf.info.config).toEqual(MODEL_PRESETS.stories260k);
    expect(hf.info.config).toEqual(MODEL_PRESETS.stories260k);
    for (const name of TENSOR_NAMES) {
      for (let l = 0; l < (isPerLayer(name) ? 5 : 1); l++) {
        expect(gguf.read(name, l)).toEqual(bin.read(name, l));
        expect(hf.read(name, l)).toEqual(bin.read(name, l));
      }
    }
    const other = Checkpoint.open(out('s2.bin'));
    expect(other.read('wq', 0)).not.toEqual(bin.read('wq', 0));
    [bin, gguf, hf, other].forEach((c) => c.close());
  });

  test('the three formats sample the same tokens from the same seed', async () => {
    const opts = { prompt: 'Once upon a time', steps: 24, temperature: 1, topP: 0.9, seed: 7n };
    const tokens = await Promise.all([
      Engine.load({ modelPath: out('s.bin'), tokenizerPath: modelPaths.tokenizer }).generate(opts),
      Engine.load({ modelPath: out('s.gguf'), tokenizerPath: out('s.gguf') }).generate(opts),
      Engine.load({ modelPath: out('s-hf'), tokenizerPath: out('s-hf') }).generate(opts),
    ]);
    expect(tokens[0].tokens).toHaveLength(25);
    expect(tokens[1].tokens).toEqual(tokens[0].tokens);
    expect(tokens[2].tokens).toEqual(tokens[0].tokens);
    // sampled from a random model: not one token over and over
    expect(new Set(tokens[0].tokens.slice(5)).size).toBeGreaterThan(3);
  });

  test('--preset tinyllama: TinyLlama-1.1B\'s geometry (one layer here), Q8_0 matrices, RMSNorm gains 1 +/- 0.1, rows of unit-variance outputs', async () => {
    const summary = await synth(['--preset', 'tinyllama', '--layers', '1', '--format', 'gguf', '--out', out('tiny.gguf')]);
    expect(summary.config).toEqual({ ...MODEL_PRESETS.tinyllama, nLayers: 1 });
    const g = GgufSource.open(out('tiny.gguf'));
    expect(g.info.config).toEqual({ ...MODEL_PRESETS.tinyllama, nLayers: 1 });
    expect(g.typeOf('wq')).toBe('Q8_0');
    expect(g.typeOf('wcls')).toBe('Q8_0');
    expect(g.typeOf('rmsAtt')).toBe('F32');
    const norm = g.readRows('rmsAtt', 0, 0, 1);
    expect(Math.min(...norm)).toBeGreaterThanOrEqual(0.9);
    expect(Math.max(...norm)).toBeLessThanOrEqual(1.1);
    const wq = g.readRows('wq', 0, 0, 64);
    const std = Math.sqrt(wq.reduce((s, v) => s + v * v, 0) / wq.length);
    expect(std * Math.sqrt(2048)).toBeCloseTo(1, 1);
    g.close();
  }, 180000);

  test('a type the format does not hold is a usage error', async () => {
    const r = await runCli(['synth', '--preset', 'tinyllama', '--format', 'hf', '--type', 'Q8_0', '--out', out('x')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--type "Q8_0": expected one of F32, F16, BF16/);
  });
});

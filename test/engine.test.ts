import { Engine } from '../lib/llm/engine';
import { compareLogits } from '../lib/llm/fidelity';
import { dequantizeInto, quantizeVector } from '../lib/llm/quant';
import { GOLDEN_RUNS, goldenIds, goldenLogits, goldenText, modelPaths } from './support/fixtures';

const load = (groups: string | number, quant: 'f32' | 'int8' = 'f32'): Engine =>
  Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups, quant });

describe('monolithic engine against the C reference (greedy)', () => {
  for (const run of GOLDEN_RUNS) {
    for (const groups of [1, 2, 3, 8, '1+4+3']) {
      test(`${run.name} with head groups ${groups}`, async () => {
        const result = await load(groups).generate({ prompt: run.prompt, steps: run.steps, temperature: 0, topP: 0.9, seed: 1n });
        expect(result.tokens).toEqual(goldenIds(run.name));
        expect(result.text).toBe(goldenText(run.name));
      });
    }
  }

  test('logits at positions 0..7 are within 1e-4 of the reference', async () => {
    const engine = load(3);
    const ids = goldenIds('once-greedy-64');
    const gold = goldenLogits('once-greedy-64', engine.g.vocabSize);
    expect(gold.length).toBe(8);
    const ours = await engine.teacherForce(ids.slice(0, gold.length));
    let maxAbs = 0;
    gold.forEach((g, p) => g.forEach((v, i) => (maxAbs = Math.max(maxAbs, Math.abs(v - ours[p][i])))));
    expect(maxAbs).toBeLessThan(1e-4);
  });

  test('a head partition does not change logits at all', async () => {
    const ids = goldenIds('once-greedy-64').slice(0, 16);
    const a = await load(1).teacherForce(ids);
    const b = await load(8).teacherForce(ids);
    expect(b).toEqual(a);
  });

  test('sampling with a seed is reproducible and differs across seeds', async () => {
    const engine = load(2);
    const opts = { prompt: 'Once upon a time', steps: 48, temperature: 1, topP: 0.9 };
    const a = await engine.generate({ ...opts, seed: 42n });
    const b = await engine.generate({ ...opts, seed: 42n });
    const c = await engine.generate({ ...opts, seed: 7n });
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    expect(a.tokens.slice(0, 5)).toEqual(goldenIds('once-greedy-64').slice(0, 5));
  });
});

describe('int8 head weights and int8 transport', () => {
  test('int8 tokens do not depend on the head partition', async () => {
    const opts = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
    const one = await load(1, 'int8').generate(opts);
    for (const groups of [3, 8, '1+4+3']) expect((await load(groups, 'int8').generate(opts)).tokens).toEqual(one.tokens);
  });

  test('teacher-forced over the golden story, int8 stays close to float32', async () => {
    const ids = goldenIds('bos-greedy-256');
    const reference = await load(1).teacherForce(ids);
    const fidelity = compareLogits(reference, await load(8, 'int8').teacherForce(ids));
    expect(fidelity.top1Agreement).toBeGreaterThanOrEqual(0.98);
    expect(fidelity.meanKl).toBeLessThan(1e-3);
    expect(fidelity.meanKl).toBeGreaterThan(0);
  });

  test('quantised vectors decode within half a step of each group scale', () => {
    const x = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i * 1.7) * (i % 7));
    const enc = quantizeVector(x, 32);
    expect(enc.scales).toHaveLength(4);
    const back = new Float32Array(100);
    dequantizeInto(back, enc);
    x.forEach((v, i) => expect(Math.abs(v - back[i])).toBeLessThanOrEqual(enc.scales[Math.floor(i / 32)] / 2 + 1e-7));
  });
});

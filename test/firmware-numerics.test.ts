/**
 * The head step's float32-accumulation build (-D ML_ACCUM_FLOAT32, the ESP32-S3's FPU) against
 * the bit-exact double build on the real model, teacher forcing the golden story; the
 * bit-exact build against the TypeScript engine.
 */
import { Engine } from '../lib/llm/engine';
import { compareLogits } from '../lib/llm/fidelity';
import { teacherForceNative } from '../lib/firmware/numerics';
import { goldenIds, modelPaths } from './support/fixtures';

const ids = goldenIds('bos-greedy-256').slice(0, 129);

test('the bit-exact pipe build gives the TypeScript engine\'s logits bit for bit', async () => {
  const ts = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 8 }).teacherForce(ids);
  const native = await teacherForceNative(modelPaths.model, 'exact', 'f32', ids);
  native.forEach((l, i) => expect(Buffer.from(l.buffer)).toEqual(Buffer.from(ts[i].buffer)));
});

test.each(['f32', 'int8'] as const)('float32 accumulation with %s weights: logits differ in their last bits, top-1 agrees everywhere, mean KL below 1e-9', async (weights) => {
  const exact = await teacherForceNative(modelPaths.model, 'exact', weights, ids);
  const f32 = await teacherForceNative(modelPaths.model, 'f32', weights, ids);
  const differing = exact.filter((l, i) => l.some((v, j) => v !== f32[i][j])).length;
  expect(differing).toBeGreaterThan(ids.length / 2);
  const f = compareLogits(exact, f32);
  expect(f.top1Agreement).toBe(1);
  expect(f.meanKl).toBeLessThan(1e-9);
});

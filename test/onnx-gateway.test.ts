import { Engine, Generation } from '../lib/llm/engine';
import { compareLogits } from '../lib/llm/fidelity';
import { OnnxGateway, onnxForward } from '../lib/onnx/gateway-worker';
import { goldenIds, goldenText, modelPaths } from './support/fixtures';

const golden = goldenIds('once-greedy-64');

describe('the gateway as ONNX graphs (W_O + FFN per layer, the classifier) in a worker thread', () => {
  const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 2 });
  let reference: Float32Array[];
  beforeAll(async () => {
    reference = await engine.teacherForce(golden);
  });
  /** The logits of the golden story teacher-forced through a gateway. */
  const logitsOf = async (gw: OnnxGateway): Promise<Float32Array[]> => {
    await engine.heads.reset();
    const got: Float32Array[] = [];
    for (let pos = 0; pos < golden.length; pos++) got.push(await onnxForward(gw, engine.heads, golden[pos], pos));
    return got;
  };
  /** The same, against the engine's float32 logits. */
  const teacherForced = async (gw: OnnxGateway) => compareLogits(reference, await logitsOf(gw));

  test('float32: greedy generation through the worker gives the golden tokens and text', async () => {
    const gw = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'f32' });
    try {
      await engine.heads.reset();
      const gen = new Generation(engine.tokenizer, { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n }, engine.g.seqLen);
      while (!gen.done) gen.advance(await onnxForward(gw, engine.heads, gen.token, gen.pos));
      expect(gen.result().tokens).toEqual(golden);
      expect(gen.result().text).toBe(goldenText('once-greedy-64'));
    } finally {
      await gw.close();
    }
  });

  test('int8 weights (one scale per row, dynamic uint8 activations): teacher-forced top-1 agreement 100%, mean KL below 1e-2, a third of the float32 bytes', async () => {
    const f32 = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'f32' });
    const int8 = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'int8' });
    try {
      const f = await teacherForced(int8);
      expect(f.top1Agreement).toBe(1);
      expect(f.meanKl).toBeLessThan(1e-2);
      expect(int8.weightBytes).toBeLessThan(f32.weightBytes * 0.4);
    } finally {
      await Promise.all([f32.close(), int8.close()]);
    }
  });

  test("int8 on the native kernel (lib/native/): top-1 agreement 100% and mean KL below 1e-2 against float32, and onnxruntime's int8 graphs' logits (the first to within float rounding, then top-1 equal, mean KL below 1e-3)", async () => {
    const native = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'int8', kernel: 'native' });
    const int8 = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'int8' });
    try {
      const f = await teacherForced(native);
      expect(f.top1Agreement).toBe(1);
      expect(f.meanKl).toBeLessThan(1e-2);
      const [a, b] = [await logitsOf(native), await logitsOf(int8)];
      // the same integer sums and scales: the first token's logits differ by float32 rounding only;
      // later an activation code on a rounding boundary can flip (one step of 1/255 of its range)
      const firstDiff = Math.max(...a[0].map((v, i) => Math.abs(v - b[0][i])));
      expect(firstDiff).toBeLessThan(1e-4);
      const vs = compareLogits(b, a);
      expect(vs.top1Agreement).toBe(1);
      expect(vs.meanKl).toBeLessThan(1e-3);
    } finally {
      await Promise.all([native.close(), int8.close()]);
    }
  });

  test('int8 in blocks of 32 (MatMulNBits, int8 activations per block): teacher-forced top-1 agreement 100%, mean KL below 1e-2', async () => {
    const blocks = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'int8', blockSize: 32 });
    try {
      const f = await teacherForced(blocks);
      expect(f.top1Agreement).toBe(1);
      expect(f.meanKl).toBeLessThan(1e-2);
    } finally {
      await blocks.close();
    }
  });

  test('a block size MatMulNBits cannot take is refused with the reason', async () => {
    await expect(OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'int8', blockSize: 48 })).rejects.toThrow(/blockSize 48: needs encoding int8 and a power of 2 from 16/);
  });

  test('the native kernel with float32 weights or int8 blocks is refused with the reason', async () => {
    await expect(OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'f32', kernel: 'native' })).rejects.toThrow(/kernel native: needs encoding int8 with one scale per row and 1 thread \(asked: encoding f32, threads 1\)/);
    await expect(OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'int8', blockSize: 32, kernel: 'native' })).rejects.toThrow(/kernel native: needs encoding int8 with one scale per row and 1 thread \(asked: encoding int8, blockSize 32, threads 1\)/);
  });

  test('a token outside the vocabulary is refused by the worker with the reason', async () => {
    const gw = await OnnxGateway.start({ source: { kind: 'file', path: modelPaths.model }, encoding: 'f32' });
    try {
      await expect(gw.embed(512)).rejects.toThrow(/token id 512 is outside the vocabulary \(0\.\.511\)/);
    } finally {
      await gw.close();
    }
  });

  test('a request in flight when the worker thread exits fails with the reason, and so does the next', async () => {
    // a float32 classifier of 32000 x 1024 (131 MB): its product takes milliseconds, so the exit lands while it runs
    const config = { dim: 1024, hiddenDim: 64, nLayers: 1, nHeads: 8, nKvHeads: 8, vocabSize: 32000, seqLen: 16, sharedClassifier: false };
    const gw = await OnnxGateway.start({ source: { kind: 'synth', config, seed: 3 }, encoding: 'f32' });
    const inFlight = gw.logits(new Float32Array(config.dim).fill(0.5));
    await Promise.resolve(); // the request is announced in a microtask
    await Promise.resolve();
    await (gw as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    await expect(inFlight).rejects.toThrow('the ONNX gateway worker exited during a request');
    await expect(gw.embed(1)).rejects.toThrow('the ONNX gateway worker exited during a request');
  });
});

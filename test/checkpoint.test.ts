import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { Engine } from '../lib/llm/engine';
import { MeshLlmError } from '../lib/llm/errors';
import { exportInt8 } from '../lib/llm/export';
import { goldenIds, goldenText, int8ModelPath, modelPaths } from './support/fixtures';
import { writeLegacyUnshared, writeVersion1 } from './support/checkpoints';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-ckpt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const greedy = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const generate = (modelPath: string) => Engine.load({ modelPath, tokenizerPath: modelPaths.tokenizer, groups: 3 }).generate(greedy);

describe('llama2.c checkpoint headers', () => {
  test('legacy version 0: stories260K geometry', () => {
    const ckpt = Checkpoint.open(modelPaths.model);
    expect(ckpt.info.version).toBe(0);
    expect(ckpt.info.config).toEqual({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
    ckpt.close();
  });

  test('version 1 (ak42, float32) gives the golden tokens', async () => {
    const p = path.join(tmp, 'v1.bin');
    writeVersion1(modelPaths.model, p);
    expect(Checkpoint.open(p).info.version).toBe(1);
    expect((await generate(p)).tokens).toEqual(goldenIds('once-greedy-64'));
  });

  test('version 1 with a separate classifier', async () => {
    const p = path.join(tmp, 'v1-unshared.bin');
    writeVersion1(modelPaths.model, p, true);
    const ckpt = Checkpoint.open(p);
    expect(ckpt.info.config.sharedClassifier).toBe(false);
    expect((await generate(p)).tokens).toEqual(goldenIds('once-greedy-64'));
  });

  test('legacy negative vocab_size means a separate classifier, and it is used', async () => {
    const same = path.join(tmp, 'v0-unshared.bin');
    writeLegacyUnshared(modelPaths.model, same);
    const ckpt = Checkpoint.open(same);
    expect(ckpt.info.config).toMatchObject({ vocabSize: 512, sharedClassifier: false });
    expect((await generate(same)).tokens).toEqual(goldenIds('once-greedy-64'));
    // A classifier that favours token 400 everywhere must change the output: proof it is read.
    const biased = new Float32Array(512 * 64);
    biased.fill(1, 400 * 64, 401 * 64);
    const other = path.join(tmp, 'v0-biased.bin');
    writeLegacyUnshared(modelPaths.model, other, biased);
    const tokens = (await generate(other)).tokens;
    expect(tokens.slice(0, 5)).toEqual(goldenIds('once-greedy-64').slice(0, 5));
    expect(tokens.slice(5)).not.toEqual(goldenIds('once-greedy-64').slice(5));
  });

  test('version 2 (int8 Q8_0) is dequantised within half a quantisation step', () => {
    const q8 = Checkpoint.open(int8ModelPath());
    const f32 = Checkpoint.open(modelPaths.model);
    expect(q8.info.version).toBe(2);
    expect(q8.info.groupSize).toBe(4);
    for (const name of ['wq', 'w2', 'tokenEmbedding'] as const) {
      const a = q8.read(name, 0);
      const b = f32.read(name, 0);
      let maxAbsW = 0;
      let maxErr = 0;
      b.forEach((v, i) => {
        maxAbsW = Math.max(maxAbsW, Math.abs(v));
        maxErr = Math.max(maxErr, Math.abs(v - a[i]));
      });
      expect(maxErr).toBeLessThanOrEqual(maxAbsW / 127 / 2 + 1e-6);
    }
    // Row slices read from the middle of a tensor equal the same rows of the whole tensor.
    expect(q8.readRows('wk', 2, 8, 8)).toEqual(q8.read('wk', 2).slice(8 * 64, 16 * 64));
  });

  test('the int8 export of stories260K.bin in groups of 4 is stories260K_q8.bin byte for byte', () => {
    expect(exportInt8(modelPaths.model, 4).equals(fs.readFileSync(int8ModelPath()))).toBe(true);
  });

  test('version 2 generates the same story as llama2.c\'s int8 runner printed', async () => {
    const result = await generate(int8ModelPath());
    expect(result.text).toBe(goldenText('once-greedy-64.q8'));
  });
});

describe('clear errors for bad model files', () => {
  const expectError = (p: string, pattern: RegExp): void => {
    let err: unknown;
    try {
      Checkpoint.open(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MeshLlmError);
    expect((err as Error).message).toContain(p);
    expect((err as Error).message).toMatch(pattern);
  };

  test('a truncated model names the size its header implies', () => {
    const p = path.join(tmp, 'truncated.bin');
    fs.writeFileSync(p, fs.readFileSync(modelPaths.model).subarray(0, 500000));
    expectError(p, /is truncated: 500000 bytes, but its version-0 header \(dim 64, .*\) implies 1056540 bytes/);
  });

  test('trailing bytes are rejected too', () => {
    const p = path.join(tmp, 'long.bin');
    fs.writeFileSync(p, Buffer.concat([fs.readFileSync(modelPaths.model), Buffer.alloc(12)]));
    expectError(p, /has trailing bytes: 1056552 bytes/);
  });

  test('a wrong magic is not taken for a checkpoint', () => {
    const p = path.join(tmp, 'garbage.bin');
    fs.writeFileSync(p, Buffer.from('this is a text file, not model weights at all '.repeat(40)));
    expectError(p, /is not a llama2.c checkpoint: magic 0x[0-9a-f]{8} is not "ak42"/);
  });

  test('an unknown ak42 version is named', () => {
    const p = path.join(tmp, 'v7.bin');
    const b = Buffer.alloc(4096);
    b.writeUInt32LE(0x616b3432, 0);
    b.writeInt32LE(7, 4);
    fs.writeFileSync(p, b);
    expectError(p, /version 7; mesh-llm reads versions 1 \(float32\) and 2 \(int8\)/);
  });

  test('a missing or empty file', () => {
    expectError(path.join(tmp, 'missing.bin'), /does not exist/);
    const empty = path.join(tmp, 'empty.bin');
    fs.writeFileSync(empty, '');
    expectError(empty, /too short for a llama2.c header/);
  });

  test('a model whose weights hold NaN is refused instead of printing NaN text', () => {
    const p = path.join(tmp, 'nan.bin');
    const data = Buffer.from(fs.readFileSync(modelPaths.model));
    data.writeFloatLE(NaN, 28 + 4 * 100);
    fs.writeFileSync(p, data);
    expect(() => Engine.load({ modelPath: p, tokenizerPath: modelPaths.tokenizer })).toThrow(/tensor tokenEmbedding holds a non-finite value/);
  });

  test('golden text is what a version-0 run prints', async () => {
    expect((await generate(modelPaths.model)).text).toBe(goldenText('once-greedy-64'));
  });
});

/**
 * The weight formats (int8, int4, int2) and transports (int8, int4) of lib/llm/quant.ts on the
 * real model: each format's greedy tokens are deterministic, do not depend on the head
 * partition, and are the same from node.js and native head nodes over MQTT; the int4 body
 * round-trips exactly what the engine's int4 transport computes.
 */
import { execFile } from 'node:child_process';
import { Engine, GenerateOptions, GenerationResult, broadcastGroupSize, headOutputGroupSize, resultGroupSize, transportCodec } from '../lib/llm/engine';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { geometry } from '../lib/llm/config';
import { INT8_GROUP_SIZE } from '../lib/llm/head';
import { Encoding, WeightFormat, dequantizeInto, inverseWalshHadamard, packCodes, quantizeMatrix, storageBytes, unpackCodes, walshHadamard } from '../lib/llm/quant';
import { attentionInputHessians } from '../lib/llm/calibration';
import { gptqInverseFactor, gptqQuantizeMatrix } from '../lib/llm/gptq';
import { Checkpoint } from '../lib/llm/checkpoint';
import { loadHeadSlices, weightGroupSize } from '../lib/llm/head';
import { BodyType, GATEWAY_SENDER, bodyBytes, decodeBody, encodeBody } from '../lib/link/body';
import { cliEntry } from '../lib/mesh/processes';
import { modelPaths } from './support/fixtures';
import { perplexity, pooledFidelity } from '../lib/llm/fidelity';

const load = (groups: string | number, quant: WeightFormat, transport?: Encoding) => Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups, quant, transport });
const greedy: GenerateOptions = { prompt: 'The cat sat', steps: 80, temperature: 0, topP: 0.9, seed: 1n };

function cli(args: string[]): Promise<{ tokens: number[] }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cliEntry(), ...args, '--json'], { env: { ...process.env, MESH_LLM_LOG: 'error' } }, (err, out, errText) =>
      err ? reject(new Error(`${err.message}\n${errText}`)) : resolve(JSON.parse(out.trim().split('\n').pop()!)),
    );
  });
}

const CASES: { quant: WeightFormat; transport: Encoding }[] = [
  { quant: 'int4', transport: 'int8' },
  { quant: 'int2', transport: 'int8' },
  { quant: 'int8', transport: 'int4' },
  { quant: 'int4', transport: 'int4' },
  { quant: 'int8', transport: 'int7' },
  { quant: 'int8', transport: 'int7h' },
];

describe.each(CASES)('$quant weights, $transport transport', ({ quant, transport }) => {
  let reference: GenerationResult;
  beforeAll(async () => {
    reference = await load(1, quant, transport).generate(greedy);
  });

  test('greedy tokens are deterministic and the same for every head partition', async () => {
    expect((await load(1, quant, transport).generate(greedy)).tokens).toEqual(reference.tokens);
    for (const groups of [3, 8, '1+4+3']) expect((await load(groups, quant, transport).generate(greedy)).tokens).toEqual(reference.tokens);
  });

  test('node.js and native head nodes over MQTT give the engine\'s tokens (N = 3)', async () => {
    const args = ['generate', '--mesh', '3', '--quant', quant, '--transport', transport, '--prompt', greedy.prompt, '--steps', String(greedy.steps), '--temperature', '0'];
    expect((await cli(args)).tokens).toEqual(reference.tokens);
    expect((await cli([...args, '--native'])).tokens).toEqual(reference.tokens);
  }, 120_000);
});

test('the formats change the tokens (the comparisons above can tell them apart)', async () => {
  const f32 = (await load(1, 'f32').generate(greedy)).tokens;
  const int2 = (await load(1, 'int2').generate(greedy)).tokens;
  expect(int2).not.toEqual(f32);
});

test('a head group\'s weights take the bytes of their storage format: int8 > int4 > int2', () => {
  const engine = (q: WeightFormat) => load(8, q);
  const bytes = (['int8', 'int4', 'int2'] as WeightFormat[]).map((q) => engine(q).heads.groups[0].weightBytes);
  // head 0 of stories260K: per layer 8 rows of W_Q and 8 each of W_K, W_V, 64 wide: 1536 weights x 5 layers
  const n = 5 * 24 * 64;
  expect(bytes).toEqual([storageBytes(n, 'int8'), storageBytes(n, 'int4'), storageBytes(n, 'int2', 64)]); // int2 groups are the whole 64-value row
  expect(bytes).toEqual([n + 4 * (n / 32), n / 2 + 4 * (n / 32), n / 4 + 8 * (n / 64)]);
});

test('an int7 body: broadcast groups of 128 (the whole 64-value vector here), seven bits a code, decoded as the engine\'s int7 transport', () => {
  const g = geometry({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
  const xb = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));
  const body = encodeBody({ type: BodyType.Broadcast, encoding: 'int7', sender: GATEWAY_SENDER, session: 9, seq: 1, pos: 2, layer: 3 }, xb, broadcastGroupSize('int7'));
  expect(body.length).toBe(24 + 4 + 56);
  const expected = xb.slice();
  transportCodec.broadcast(expected, 'int7');
  expect(Array.from(decodeBody(body).values, (x) => x + 0)).toEqual(Array.from(expected, (x) => x + 0));
  expect(resultGroupSize(g, 'int7')).toBe(8);
  expect(resultGroupSize(geometry(MODEL_PRESETS.tinyllama), 'int7')).toBe(64);
  // 7-bit codes pack as a bit stream, low bit first
  expect(Array.from(packCodes(Int8Array.of(-63, 63, 1, -1), 7))).toEqual([0xc1, 0x5f, 0xe0, 0x0f]); // 1000001 | 0111111 | 0000001 | 1111111, low bits first
  expect(Array.from(unpackCodes(packCodes(Int8Array.of(-63, 63, 1, -1, 0, 5, -5, 62, -62), 7), 9, 7))).toEqual([-63, 63, 1, -1, 0, 5, -5, 62, -62]);
});

test('an int7h body carries int7 codes of each group\'s Walsh-Hadamard transform, decoded as the engine\'s int7h transport; groups of other lengths are refused', () => {
  const g = geometry({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
  // one outlier: int7 spends its range on it, int7h spreads it over the group
  const xb = Float32Array.from({ length: 64 }, (_, i) => (i === 5 ? 40 : Math.sin(i * 0.37)));
  const header = { type: BodyType.Broadcast, encoding: 'int7h' as const, sender: GATEWAY_SENDER, session: 9, seq: 1, pos: 2, layer: 3 };
  const body = encodeBody(header, xb, broadcastGroupSize('int7h'));
  expect(body.length).toBe(bodyBytes('int7', 64, broadcastGroupSize('int7'))); // int7's bytes
  const expected = xb.slice();
  transportCodec.broadcast(expected, 'int7h');
  expect(Array.from(decodeBody(body).values, (x) => x + 0)).toEqual(Array.from(expected, (x) => x + 0));
  const plain = xb.slice();
  transportCodec.broadcast(plain, 'int7');
  const sqError = (v: Float32Array) => v.reduce((s, x, i) => s + (x - xb[i]) ** 2, 0);
  expect(sqError(expected)).toBeLessThan(sqError(plain) / 4);
  // the transform is its own inverse up to n
  const x = Float32Array.of(1, -2, 3.5, 0.25);
  walshHadamard(x);
  expect(Array.from(x)).toEqual([2.75, 6.25, -4.75, -0.25]);
  inverseWalshHadamard(x);
  expect(Array.from(x)).toEqual([1, -2, 3.5, 0.25]);
  expect(resultGroupSize(g, 'int7h')).toBe(8);
  expect(() => encodeBody({ ...header, type: BodyType.Result, sender: 1 }, new Float32Array(24), 12)).toThrow('int7h bodies need groups of a power-of-two length: group size 12 is not a power of two');
  const int7 = encodeBody({ ...header, encoding: 'int7' }, new Float32Array(70), 32);
  int7[4] = 4; // the same payload, relabelled int7h: its last group has 6 values
  expect(() => decodeBody(int7)).toThrow('int7h body of 70 values in groups of 32: the last group has 6 values, not a power of two');
});

describe('GPTQ rounding (Frantar et al. 2022)', () => {
  const engine = load(1, 'f32');
  const calibration = [engine.tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play outside.', true, false)];
  let hessians: Float64Array[];
  beforeAll(async () => {
    hessians = await attentionInputHessians(engine.g, engine.gateway, engine.heads, calibration);
  });

  test('keeps quantizeMatrix\'s layout and makes the calibration inputs\' output error smaller than round to nearest\'s', () => {
    const g = engine.g;
    const ckpt = Checkpoint.open(modelPaths.model);
    try {
      for (const format of ['int8', 'int4', 'int2'] as const) {
        const gs = weightGroupSize(format, g.dim);
        const rows = loadHeadSlices(ckpt, g, [0], 'f32').wq[0] as { w: Float32Array; rows: number };
        const rtn = quantizeMatrix(rows.w, rows.rows, g.dim, gs, format);
        const gptq = gptqQuantizeMatrix(rows.w, rows.rows, g.dim, gs, format, gptqInverseFactor(hessians[0], g.dim));
        expect([gptq.q.length, gptq.scales.length, gptq.offsets?.length]).toEqual([rtn.q.length, rtn.scales.length, rtn.offsets?.length]);
        const levels = format === 'int2' ? [0, 3] : format === 'int4' ? [-7, 7] : [-127, 127];
        expect(Math.min(...gptq.q)).toBeGreaterThanOrEqual(levels[0]);
        expect(Math.max(...gptq.q)).toBeLessThanOrEqual(levels[1]);
        // trace((W - Q) H (W - Q)^T): the sum over calibration inputs of |W x - Q x|^2, GPTQ's objective
        const outputError = (m: typeof rtn) => {
          const d = new Float64Array(rows.rows * g.dim);
          const deq = new Float32Array(rows.rows * g.dim);
          dequantizeInto(deq, m);
          for (let i = 0; i < d.length; i++) d[i] = rows.w[i] - deq[i];
          let e = 0;
          for (let r = 0; r < rows.rows; r++) for (let i = 0; i < g.dim; i++) for (let j = 0; j < g.dim; j++) e += d[r * g.dim + i] * hessians[0][i * g.dim + j] * d[r * g.dim + j];
          return e;
        };
        expect(outputError(gptq)).toBeLessThan(outputError(rtn));
      }
    } finally {
      ckpt.close();
    }
  });

  test('int4 weights rounded by GPTQ: greedy tokens are deterministic and the same for every head partition', async () => {
    const gptqLoad = (groups: string | number) => Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups, quant: 'int4', gptqHessians: hessians });
    const reference = (await gptqLoad(1).generate(greedy)).tokens;
    for (const groups of [1, 8, '1+4+3']) expect((await gptqLoad(groups).generate(greedy)).tokens).toEqual(reference);
    expect(reference).not.toEqual((await load(1, 'int4').generate(greedy)).tokens);
  });
});

test('an int4 body decodes to exactly what the engine\'s int4 transport computes, in half the bytes of int8 values', () => {
  const g = geometry({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
  const xb = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));
  const header = { type: BodyType.Broadcast, encoding: 'int4' as const, sender: GATEWAY_SENDER, session: 9, seq: 1, pos: 2, layer: 3 };
  const body = encodeBody(header, xb, INT8_GROUP_SIZE);
  expect(body.length).toBe(bodyBytes('int4', 64, INT8_GROUP_SIZE));
  expect(body.length).toBe(24 + 2 * 4 + 32);
  const expected = xb.slice();
  transportCodec.broadcast(expected, 'int4');
  // the engine's round trip keeps the sign of a zero code (-0), the Int8Array of a body does not
  const unsignedZeros = (v: Float32Array) => Array.from(v, (x) => x + 0);
  expect(unsignedZeros(decodeBody(body).values)).toEqual(unsignedZeros(expected));
  const out = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i) * 3);
  const result = encodeBody({ ...header, type: BodyType.Result, sender: 2 }, out, headOutputGroupSize(g));
  const heads = out.slice();
  transportCodec.headOutputs(g, heads, 'int4');
  expect(unsignedZeros(decodeBody(result).values)).toEqual(unsignedZeros(heads));
});

describe('fidelity measures', () => {
  test('perplexity of uniform logits is the vocabulary size; of logits sure of each next token, 1', () => {
    const tokens = [0, 3, 1, 2];
    const uniform = tokens.map(() => new Float32Array(5));
    expect(perplexity(uniform, tokens)).toBeCloseTo(5, 10);
    const sure = tokens.map((_, i) => Float32Array.from({ length: 5 }, (_, v) => (v === tokens[i + 1] ? 100 : 0)));
    expect(perplexity(sure, tokens)).toBeCloseTo(1, 10);
  });

  test('pooled fidelity weighs each sequence by its positions', () => {
    const a = Float32Array.of(1, 0);
    const b = Float32Array.of(0, 1);
    const f = pooledFidelity([
      { tokens: [0, 0, 0], reference: [a, a, a], candidate: [a, b, a] },
      { tokens: [0], reference: [a], candidate: [a] },
    ]);
    expect(f.positions).toBe(4);
    expect(f.top1Agreement).toBe(0.75);
    expect(f.referencePerplexity).toBeLessThan(f.perplexity);
  });
});

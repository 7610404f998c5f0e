/**
 * The WebAssembly SIMD kernels against the JavaScript reference kernels (lib/llm/kernels.ts).
 * Tolerance: none. The wasm kernels sum every dot product in the same order in double
 * precision and round once, as the reference does, so results must be bit-identical; the
 * tests compare with toEqual on Float32Arrays (exact, NaN-free inputs).
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { geometry } from '../lib/llm/config';
import { Kernels, WasmKernels, createKernels, kernelsKind } from '../lib/llm/kernels';
import { expf } from '../lib/llm/math';
import { quantizeMatrix } from '../lib/llm/quant';
import { goldenIds, modelPaths } from './support/fixtures';

/** Deterministic pseudo-random floats in (-scale, scale) (xorshift32). */
function randomVector(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

const wasm = (): WasmKernels => createKernels('wasm-simd') as WasmKernels;
const js = (): Kernels => createKernels('js');

test('the WebAssembly SIMD kernels are assembled and used (run npm run build if not)', () => {
  expect(kernelsKind()).toBe('wasm-simd');
});

describe('matvec: wasm equals the js reference exactly', () => {
  const shapes: [number, number][] = [
    [1, 1], [1, 8], [7, 3], [8, 8], [9, 5], [16, 64], [17, 33], [63, 64], [64, 64], [172, 64], [64, 172], [512, 64], [3, 0],
  ];
  for (const [rows, cols] of shapes) {
    test(`random W [${rows}, ${cols}]`, () => {
      const w = randomVector(5 + rows * cols, rows * 131 + cols, 2);
      const x = randomVector(cols, cols * 7 + 1);
      const a = wasm();
      const b = js();
      const ma = a.matrix(w, rows, cols, 5);
      const mb = b.matrix(w, rows, cols, 5);
      // plain arrays in and out, with an output offset
      const outA = new Float32Array(rows + 3).fill(9);
      const outB = new Float32Array(rows + 3).fill(9);
      a.matvec(outA, x, ma, 2);
      b.matvec(outB, x, mb, 2);
      expect(outA).toEqual(outB);
      // arena vectors in and out
      const xa = a.vector(cols);
      xa.set(x);
      const va = a.vector(rows);
      a.matvec(va, xa, ma);
      expect(va).toEqual(outB.subarray(2, 2 + rows));
    });
  }

  test('the real model: every gateway matrix and the classifier', () => {
    const ckpt = Checkpoint.open(modelPaths.model);
    try {
      const g = geometry(ckpt.info.config);
      const cases: [Float32Array, number, number][] = [
        [ckpt.read('tokenEmbedding'), g.vocabSize, g.dim],
        ...Array.from({ length: g.nLayers }, (_, l): [Float32Array, number, number][] => [
          [ckpt.read('wq', l), g.dim, g.dim],
          [ckpt.read('wo', l), g.dim, g.dim],
          [ckpt.read('w1', l), g.hiddenDim, g.dim],
          [ckpt.read('w2', l), g.dim, g.hiddenDim],
        ]).flat(),
      ];
      for (const [w, rows, cols] of cases) {
        for (let trial = 0; trial < 3; trial++) {
          const x = randomVector(cols, 1000 + trial * 17 + rows, 3);
          const outA = new Float32Array(rows);
          const outB = new Float32Array(rows);
          const a = wasm();
          a.matvec(outA, x, a.matrix(w, rows, cols));
          const b = js();
          b.matvec(outB, x, b.matrix(w, rows, cols));
          expect(outA).toEqual(outB);
        }
      }
    } finally {
      ckpt.close();
    }
  });
});

describe('matvecInt8: wasm equals the js reference (quant.ts matmulInt8) exactly', () => {
  const shapes: [number, number, number][] = [[1, 8, 8], [7, 32, 32], [8, 64, 32], [13, 96, 32], [64, 64, 32], [24, 60, 5], [9, 8, 1]];
  for (const [rows, cols, gs] of shapes) {
    test(`random W [${rows}, ${cols}], groups of ${gs}`, () => {
      const m = quantizeMatrix(randomVector(rows * cols, rows * 31 + cols, 1.5), rows, cols, gs);
      const x = randomVector(cols, cols + 5, 2);
      const a = wasm();
      const b = js();
      const ma = a.int8Matrix(m);
      const mb = b.int8Matrix(m);
      const outA = new Float32Array(rows + 1);
      const outB = new Float32Array(rows + 1);
      a.matvecInt8(outA, x, ma, 1);
      b.matvecInt8(outB, x, mb, 1);
      expect(outA).toEqual(outB);
      const xa = a.vector(cols);
      xa.set(x);
      const va = a.vector(rows);
      a.matvecInt8(va, xa, ma);
      expect(va).toEqual(outB.subarray(1));
    });
  }

  test('the real model: int8 W_Q, W_K, W_V of every layer', () => {
    const ckpt = Checkpoint.open(modelPaths.model);
    try {
      const g = geometry(ckpt.info.config);
      for (let l = 0; l < g.nLayers; l++) {
        for (const name of ['wq', 'wk', 'wv'] as const) {
          const w = ckpt.read(name, l);
          const rows = w.length / g.dim;
          const m = quantizeMatrix(w, rows, g.dim, 32);
          const x = randomVector(g.dim, 77 + l, 2);
          const outA = new Float32Array(rows);
          const outB = new Float32Array(rows);
          const a = wasm();
          a.matvecInt8(outA, x, a.int8Matrix(m));
          const b = js();
          b.matvecInt8(outB, x, b.int8Matrix(m));
          expect(outA).toEqual(outB);
        }
      }
    } finally {
      ckpt.close();
    }
  });
});

describe('attention over the KV cache: wasm equals the js reference exactly', () => {
  for (const [kvHeads, context, headSize, keyScale] of [[4, 512, 8, 4], [1, 20, 6, 4], [2, 9, 16, 4], [1, 3, 1, 4], [2, 70, 8, 40]]) {
    // keyScale 40: scores far apart, so softmax takes expf's Math.exp path for some lanes
    test(`${kvHeads} kv heads, context ${context}, head size ${headSize}, keys up to ${keyScale}`, () => {
      const a = wasm();
      const b = js();
      const ca = a.kvCache(kvHeads, context, headSize);
      const cb = b.kvCache(kvHeads, context, headSize);
      const qa = a.vector(headSize);
      const outA = a.vector(2 * headSize);
      const outB = new Float32Array(2 * headSize);
      const scale = Math.fround(Math.sqrt(headSize));
      for (let pos = 0; pos < context; pos++) {
        const k = randomVector(kvHeads * headSize, 3 * pos + 1, keyScale);
        const v = randomVector(kvHeads * headSize, 3 * pos + 2);
        for (let j = 0; j < kvHeads; j++) {
          ca.append(j, pos, k, j * headSize, v, j * headSize);
          cb.append(j, pos, k, j * headSize, v, j * headSize);
        }
        // check a spread of lengths, every one near the start and at block edges
        if (pos < 20 || pos % 37 === 0 || pos === context - 1) {
          const q = randomVector(headSize, 3 * pos + 3, 3);
          qa.set(q);
          const j = pos % kvHeads;
          ca.attend(outA, headSize, qa, j, pos + 1, scale);
          cb.attend(outB, headSize, q, j, pos + 1, scale);
          expect(outA).toEqual(outB);
          // plain arrays work too (copied in and out)
          const plainOut = new Float32Array(headSize);
          ca.attend(plainOut, 0, q, j, pos + 1, scale);
          expect(plainOut).toEqual(outB.subarray(headSize));
        }
      }
      ca.reset();
      cb.reset();
      const q = randomVector(headSize, 5, 3);
      ca.attend(outA, 0, q, 0, Math.min(4, context), scale);
      cb.attend(outB, 0, q, 0, Math.min(4, context), scale);
      expect(outA).toEqual(outB);
    });
  }
});

test('swiglu: wasm equals the js reference (math.ts swiglu) exactly', () => {
  for (const n of [1, 2, 7, 172, 1000]) {
    const a = wasm();
    const h1 = a.vector(n);
    const h3 = a.vector(n);
    // wide enough that expf(-v) takes its Math.exp path for some elements
    h1.set(randomVector(n, n + 11, n === 1000 ? 150 : 6));
    h3.set(randomVector(n, n + 12, 2));
    const ref1 = h1.slice();
    js().swiglu(ref1, h3.slice());
    a.swiglu(h1, h3);
    expect(h1).toEqual(ref1);
  }
});

test('wasm expf equals math.ts expf bit for bit', () => {
  const { exports } = wasm();
  const xs: number[] = [0, -0, 1, -1, 88.9, 89, -103.9, -104, -200, 200, Infinity, -Infinity, 1e-30, -1e-30];
  const r = randomVector(200000, 99, 110);
  for (const v of r) xs.push(v);
  const small = randomVector(20000, 7, 0.05);
  for (const v of small) xs.push(v);
  const bad = xs.filter((x) => !Object.is(exports.expf(x), expf(x)));
  expect(bad).toEqual([]);
  expect(exports.expf(NaN)).toBeNaN();
});

test('a wasm arena refuses to grow once it has handed out vectors', () => {
  const a = wasm();
  a.vector(16);
  expect(() => a.matrix(new Float32Array(200_000), 1000, 200)).toThrow(/before taking vectors/);
});

test('with MESH_LLM_KERNELS=js the engine runs the js kernels and gives the golden tokens', () => {
  const script = `
    const { Engine } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'llm', 'engine'))});
    const { kernelsKind } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'llm', 'kernels'))});
    const e = Engine.load({ modelPath: ${JSON.stringify(modelPaths.model)}, tokenizerPath: ${JSON.stringify(modelPaths.tokenizer)}, groups: 3 });
    e.generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n })
      .then((r) => console.log(JSON.stringify({ kind: kernelsKind(), tokens: r.tokens })));`;
  const out = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, MESH_LLM_KERNELS: 'js' }, encoding: 'utf8' });
  const result = JSON.parse(out.trim()) as { kind: string; tokens: number[] };
  expect(result.kind).toBe('js');
  expect(result.tokens).toEqual(goldenIds('once-greedy-64'));
});

/**
 * The gateway's native int8 kernel (lib/native/): the addon's sums against a plain TypeScript
 * reference, every instruction path the machine has against the others, its packed layout and
 * its refusals.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { quantizeRowInt8 } from '../lib/llm/quant';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../lib/onnx/onnx';
import { nativeKernels, packRows, paddedCols } from '../lib/native/kernels';

const addon = nativeKernels();

/** The addon's activation quantisation (checked against onnxruntime's below). */
function quantizeActivation(x: Float32Array, q: Uint8Array): { q: Uint8Array; scale: number; zeroPoint: number } {
  const [scale, zeroPoint] = addon.quantizeActivation(x, q);
  return { q, scale, zeroPoint };
}

/** A seeded matrix [rows, cols] and vector [cols] with both signs, a few values at the extremes. */
function case_(rows: number, cols: number, seed: number): { w: Float32Array; x: Float32Array } {
  let s = seed;
  const next = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const w = Float32Array.from({ length: rows * cols }, next);
  const x = Float32Array.from({ length: cols }, next);
  w[0] = 3; // a row whose code reaches 127 against small neighbours
  x[cols - 1] = -4; // the activation's minimum: the zero point is far from 0
  return { w, x };
}

/** The product as the ONNX int8 pattern defines it, summed here in integers one row at a time. */
function reference(w: Float32Array, rows: number, cols: number, x: Float32Array): Float32Array {
  const a = quantizeActivation(x, new Uint8Array(paddedCols(cols)));
  const codes = new Int8Array(cols);
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const scale = quantizeRowInt8(w, r * cols, cols, codes, 0, 1);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += (a.q[c] - a.zeroPoint) * codes[c];
    y[r] = Math.fround(sum) * Math.fround(a.scale * scale);
  }
  return y;
}

function product(w: Float32Array, rows: number, cols: number, x: Float32Array): Float32Array {
  const y = new Float32Array(rows);
  addon.product(packRows(w, rows, cols), x, y);
  return y;
}

const SHAPES: [number, number][] = [[13, 100], [4, 64], [64, 2048], [7, 5632], [130, 172]];

describe('the native int8 kernel', () => {
  test.each(SHAPES)('W [%i, %i]: the exact integer sums of (a - zero point) · codes, scaled in float32 as MatMulInteger -> Cast -> Mul does', (rows, cols) => {
    const { w, x } = case_(rows, cols, rows * 31 + cols);
    expect(product(w, rows, cols, x)).toEqual(reference(w, rows, cols, x));
  });

  test('two matrices stacked on their rows give the two products one after the other', () => {
    const a = case_(9, 100, 1);
    const b = case_(9, 100, 2);
    const m = packRows([a.w, b.w], 9, 100);
    const y = new Float32Array(18);
    addon.product(m, a.x, y);
    expect(y.subarray(0, 9)).toEqual(reference(a.w, 9, 100, a.x));
    expect(y.subarray(9)).toEqual(reference(b.w, 9, 100, a.x));
  });

  test('the packed layout: rows in groups of 4, columns in chunks of 64, zeros in the padding', () => {
    const rows = 5;
    const cols = 70;
    const w = Float32Array.from({ length: rows * cols }, (_, i) => ((i % 7) - 3) / 3);
    const m = packRows(w, rows, cols);
    expect(m.colsPadded).toBe(128);
    expect(m.packed.length).toBe(8 * 128);
    const codes = new Int8Array(cols);
    for (let r = 0; r < rows; r++) {
      quantizeRowInt8(w, r * cols, cols, codes, 0, 1);
      for (let c = 0; c < 128; c++) expect(m.packed[(r >> 2) * 4 * 128 + (c >> 6) * 256 + (r & 3) * 64 + (c & 63)]).toBe(c < cols ? codes[c] : 0);
      expect(m.rowSums[r]).toBe(codes.reduce((s, v) => s + v, 0));
    }
    for (let r = rows; r < 8; r++) for (let c = 0; c < 128; c++) expect(m.packed[4 * 128 + (c >> 6) * 256 + (r & 3) * 64 + (c & 63)]).toBe(0);
  });

  test('an all-zero activation quantises to scale 0 and gives zeros', () => {
    const { w } = case_(8, 64, 5);
    expect(Array.from(product(w, 8, 64, new Float32Array(64)))).toEqual(new Array(8).fill(0));
  });

  test("uses the CPU's widest path (AVX-512 VNNI where /proc/cpuinfo lists it, else AVX2, else plain C)", () => {
    const flags = fs.existsSync('/proc/cpuinfo') ? (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').split(/\s+/) : [];
    const expected = ['avx512f', 'avx512bw', 'avx512_vnni'].every((f) => flags.includes(f)) ? 'avx512-vnni' : flags.includes('avx2') ? 'avx2' : 'c';
    expect(addon.kernel).toBe(expected);
  });

  test('every path this CPU can run (MESH_LLM_INT8_KERNEL=c, avx2, the default) gives the same bits', () => {
    const script = `const k = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'native', 'kernels.js'))});
      const out = [];
      for (const [rows, cols] of ${JSON.stringify(SHAPES)}) {
        const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.61 + rows));
        const x = Float32Array.from({ length: cols }, (_, i) => Math.cos(i * 1.3) * 2 - 0.4);
        const m = k.packRows(w, rows, cols), y = new Float32Array(rows);
        k.nativeKernels().product(m, x, y);
        out.push(Buffer.from(y.buffer).toString('hex'));
      }
      process.stdout.write(JSON.stringify({ kernel: k.nativeKernels().kernel, out }));`;
    const run = (kernel: string): { kernel: string; out: string[] } => {
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, MESH_LLM_INT8_KERNEL: kernel } });
      if (r.status !== 0) throw new Error(r.stderr);
      return JSON.parse(r.stdout);
    };
    const paths = ['c', 'avx2', 'default'].map(run);
    expect(paths[0].kernel).toBe('c');
    expect(new Set(paths.map((p) => p.kernel)).size).toBeGreaterThan(1); // on x86-64 at least C and AVX2 (or VNNI) ran
    for (const p of paths.slice(1)) expect(p.out).toEqual(paths[0].out);
  });

  test('a packed matrix of the wrong length, a vector of the wrong width, or a layer whose shapes do not fit is refused naming it', () => {
    const { w, x } = case_(8, 64, 9);
    const m = packRows(w, 8, 64);
    const y = new Float32Array(8);
    expect(() => addon.product({ ...m, packed: m.packed.subarray(1) }, x, y)).toThrow(/product: m: packed has the wrong length for 8 x 64/);
    expect(() => addon.product({ ...m, colsPadded: 60 }, x, y)).toThrow(/product: m: colsPadded must be cols rounded up to a multiple of 64/);
    expect(() => addon.product(m, x.subarray(1), y)).toThrow(/product: x must be a Float32Array of the matrix's cols values/);
    expect(() => addon.product(m, x, new Float32Array(4))).toThrow(/product: out must be a Float32Array of the matrix's rows values/);
    const dim = 64;
    const hidden = 128;
    const layer = { wo: packRows(case_(dim, dim, 1).w, dim, dim), w13: packRows(case_(2 * hidden, dim, 2).w, 2 * hidden, dim), w2: packRows(case_(dim, hidden, 3).w, dim, hidden), rmsFfn: new Float32Array(dim).fill(1) };
    const v = new Float32Array(dim);
    expect(() => addon.layerStep(layer, v, v, new Float32Array(dim))).not.toThrow();
    expect(() => addon.layerStep({ ...layer, w2: layer.wo }, v, v, new Float32Array(dim))).toThrow(/layerStep: the matrices do not fit one layer/);
    expect(() => addon.layerStep({ ...layer, rmsFfn: new Float32Array(3) }, v, v, new Float32Array(dim))).toThrow(/layerStep: the matrices do not fit one layer/);
    expect(() => addon.layerStep(layer, v, v.subarray(2), new Float32Array(dim))).toThrow(/layerStep: heads must be a Float32Array of dim values/);
    expect(() => addon.layerStep({ ...layer, w13: {} as never }, v, v, new Float32Array(dim))).toThrow(/layerStep: layer.w13: expected a packed int8 matrix/);
  });
});

describe("the native kernel's activation quantisation", () => {
  test("equals onnxruntime's DynamicQuantizeLinear (codes, scale, zero point) on mixed, all-positive, all-negative and tied vectors", async () => {
    const n = 256;
    const graph = {
      name: 'dql',
      nodes: [
        { op: 'DynamicQuantizeLinear', inputs: ['x'], outputs: ['q', 'scale', 'zp'] },
        { op: 'Cast', inputs: ['q'], outputs: ['qf'], attributes: { to: 1 } },
        { op: 'Cast', inputs: ['zp'], outputs: ['zpf'], attributes: { to: 1 } },
      ],
      initializers: [],
      inputs: [{ name: 'x', dims: [1, n] }],
      outputs: [{ name: 'qf', dims: [1, n] }, { name: 'scale', dims: [] }, { name: 'zpf', dims: [] }],
    };
    const session = await ort.InferenceSession.create(encodeModel(graph));
    try {
      const vectors = [
        Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.77) * 3 - 0.5),
        Float32Array.from({ length: n }, (_, i) => 0.01 + (i % 17) * 0.2),
        Float32Array.from({ length: n }, (_, i) => -0.03 - (i % 13) * 0.4),
        Float32Array.from({ length: n }, (_, i) => ((i % 11) - 5) * 0.5), // many values on the half-way points of the grid
      ];
      for (const x of vectors) {
        const out = await session.run({ x: new ort.Tensor('float32', x, [1, n]) });
        const mine = quantizeActivation(x, new Uint8Array(n));
        expect(Array.from(mine.q)).toEqual(Array.from(out.qf.data as Float32Array));
        expect(mine.scale).toBe((out.scale.data as Float32Array)[0]);
        expect(mine.zeroPoint).toBe((out.zpf.data as Float32Array)[0]);
      }
    } finally {
      await session.release();
    }
  });
});

/**
 * The firmware core's head step (firmware/core, C++) against the TypeScript HeadGroup
 * (lib/llm/head.ts) on the reference js kernels. Tolerance: none. The C++ port does the
 * TypeScript's arithmetic (double intermediates, float32 stores, the same summation order), so
 * head outputs must be bit-identical. The C++ side runs in dist/firmware/head-check
 * (firmware/test/head_check.cpp, built by npm run build with g++): it reads records
 * (step: pos, layer, xb; steering; reset) and writes the head outputs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { geometry } from '../lib/llm/config';
import { Gateway } from '../lib/llm/gateway';
import { HeadGroup, loadHeadSlices } from '../lib/llm/head';
import { expf, ropeTable } from '../lib/llm/math';
import { WeightFormat, alignedGroupSize, dequantizeInto, int4RoundTrip, int8RoundTrip, packInt4, quantizeInt2Vector, quantizeVector } from '../lib/llm/quant';
import { packageRoot } from '../lib/llm/resolve';
import { goldenIds, int8ModelPath, modelPaths } from './support/fixtures';
import { writeLegacyUnshared, writeVersion1 } from './support/checkpoints';

// The reference kernels for every HeadGroup of this file (kernels.ts reads this lazily, at the
// first arena; the default WebAssembly kernels are checked separately below).
process.env.MESH_LLM_KERNELS = 'js';

const BIN = path.join(packageRoot(), 'dist', 'firmware', 'head-check');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-fw-head-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  if (!fs.existsSync(BIN)) {
    throw new Error(
      `${BIN} is missing: the firmware head step (firmware/core + firmware/test/head_check.cpp) is not built. ` +
        'Install a C++ compiler (g++) and run npm run build.',
    );
  }
});

/** Deterministic pseudo-random floats, roughly normal, times scale (xorshift32, sum of four uniforms). */
function randomVector(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() + next() + next() + next() - 2) * 1.7 * scale;
  return out;
}

type HeadRecord =
  | { kind: 'step'; pos: number; layer: number; xb: Float32Array }
  | { kind: 'steer'; layer: number; vector: Float32Array }
  | { kind: 'reset' };

/** head_check.cpp's IN format: int32 tag, then its payload, little-endian. */
function encode(records: HeadRecord[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    if (r.kind === 'step') {
      const b = Buffer.alloc(12 + 4 * r.xb.length);
      b.writeInt32LE(1, 0);
      b.writeInt32LE(r.pos, 4);
      b.writeInt32LE(r.layer, 8);
      Buffer.from(r.xb.buffer, r.xb.byteOffset, r.xb.byteLength).copy(b, 12);
      parts.push(b);
    } else if (r.kind === 'steer') {
      const b = Buffer.alloc(8 + 4 * r.vector.length);
      b.writeInt32LE(2, 0);
      b.writeInt32LE(r.layer, 4);
      Buffer.from(r.vector.buffer, r.vector.byteOffset, r.vector.byteLength).copy(b, 8);
      parts.push(b);
    } else {
      const b = Buffer.alloc(4);
      b.writeInt32LE(3, 0);
      parts.push(b);
    }
  }
  return Buffer.concat(parts);
}

interface CheckInfo {
  heads: number[];
  kvHeads: number[];
  headSize: number;
  dim: number;
  weightBytes: number;
  cacheBytes: number;
  steps: number;
}

let runs = 0;

/** Runs head-check; returns its outputs and the JSON line it printed (or its exit status and stderr). */
function headCheck(model: string, heads: string, quant: string, records: HeadRecord[] | Buffer, context?: number): {
  status: number | null;
  stderr: string;
  info?: CheckInfo;
  out?: Float32Array;
} {
  const n = runs++;
  const inPath = path.join(tmp, `in-${n}.bin`);
  const outPath = path.join(tmp, `out-${n}.bin`);
  fs.writeFileSync(inPath, Buffer.isBuffer(records) ? records : encode(records));
  const args = [model, heads, quant, inPath, outPath, ...(context === undefined ? [] : [String(context)])];
  const r = spawnSync(BIN, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) return { status: r.status, stderr: r.stderr };
  const bytes = fs.readFileSync(outPath);
  return {
    status: 0,
    stderr: r.stderr,
    info: JSON.parse(r.stdout.trim()) as CheckInfo,
    out: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
  };
}

/** The TypeScript HeadGroup on the same records: outputs of the steps, concatenated. */
function runTs(group: HeadGroup, records: HeadRecord[]): Float32Array {
  const steps = records.filter((r) => r.kind === 'step').length;
  const width = group.heads.length * g.headSize;
  const out = new Float32Array(steps * width);
  let at = 0;
  for (const r of records) {
    if (r.kind === 'step') {
      out.set(group.forward(r.xb, r.pos, r.layer), at);
      at += width;
    } else if (r.kind === 'steer') {
      group.steering = r.layer >= 0 ? { layer: r.layer, vector: r.vector } : null;
    } else {
      group.reset();
    }
  }
  return out;
}

/** Where two output arrays first differ bit for bit, and the largest difference (-1 and 0 when identical). */
function difference(a: Float32Array, b: Float32Array): { length: [number, number]; firstDiff: number; maxAbs: number } {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let firstDiff = -1;
  let maxAbs = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (ua[i] !== ub[i]) {
      if (firstDiff < 0) firstDiff = i;
      maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    }
  }
  return { length: [a.length, b.length], firstDiff, maxAbs };
}
const IDENTICAL = (n: number): ReturnType<typeof difference> => ({ length: [n, n], firstDiff: -1, maxAbs: 0 });

const ckpt = Checkpoint.open(modelPaths.model);
const g = geometry(ckpt.info.config);
afterAll(() => ckpt.close());

/** Real attention inputs: a forward pass of the model over a story's tokens, xb of every layer at positions 0..n-1. */
function realInputs(n: number): HeadRecord[] {
  const gateway = Gateway.load(ckpt);
  const all = new HeadGroup(g, loadHeadSlices(ckpt, g, Array.from({ length: g.nHeads }, (_, h) => h), 'f32'));
  const tokens = goldenIds('bos-greedy-256').slice(0, n);
  const records: HeadRecord[] = [];
  tokens.forEach((token, pos) => {
    const x = gateway.embed(token);
    for (let layer = 0; layer < g.nLayers; layer++) {
      const xb = gateway.attentionInput(x, layer);
      records.push({ kind: 'step', pos, layer, xb: xb.slice() });
      gateway.aggregate(x, all.forward(xb, pos, layer), layer);
      gateway.ffn(x, layer);
    }
  });
  return records;
}

const REAL = realInputs(100);

/**
 * A group's test sequence: (optionally steered) real inputs at positions 0..99 of all 5 layers,
 * a reset, then random inputs (larger, for sharper attention) at positions 0..39, steered at
 * another layer.
 */
function sequence(width: number, steered: boolean, seed: number): HeadRecord[] {
  const records: HeadRecord[] = [];
  if (steered) records.push({ kind: 'steer', layer: 2, vector: randomVector(width, seed, 0.5) });
  records.push(...REAL, { kind: 'reset' });
  if (steered) records.push({ kind: 'steer', layer: 4, vector: randomVector(width, seed + 1, 2) });
  for (let pos = 0; pos < 40; pos++) {
    for (let layer = 0; layer < g.nLayers; layer++) records.push({ kind: 'step', pos, layer, xb: randomVector(g.dim, 1000 * seed + 7 * pos + layer + 1, 3) });
  }
  return records;
}

const GROUPS: number[][] = [[0], [3], [1, 2], [0, 1, 2, 3, 4, 5, 6, 7], [2, 3, 4], [6, 0, 5]];

describe('head-check equals HeadGroup bit for bit (js kernels)', () => {
  for (const quant of ['f32', 'int8', 'int4', 'int2'] as WeightFormat[]) {
    for (const steered of [false, true]) {
      for (const heads of GROUPS) {
        test(`heads [${heads.join(',')}], ${quant} weights, ${steered ? 'with' : 'without'} steering`, () => {
          const group = new HeadGroup(g, loadHeadSlices(ckpt, g, heads, quant));
          const records = sequence(heads.length * g.headSize, steered, heads[0] + 10 * heads.length);
          const expected = runTs(group, records);
          const c = headCheck(modelPaths.model, heads.join(','), quant, records);
          expect(c.stderr).toBe('');
          expect(c.status).toBe(0);
          expect(difference(c.out as Float32Array, expected)).toEqual(IDENTICAL(expected.length));
          expect(c.info).toEqual({
            heads: group.heads,
            kvHeads: group.kvHeads,
            headSize: g.headSize,
            dim: g.dim,
            weightBytes: group.weightBytes,
            cacheBytes: group.cacheBytes,
            steps: records.filter((r) => r.kind === 'step').length,
          });
        });
      }
    }
  }

  test('a shorter context (64 positions) gives the same outputs; a position past it is refused', () => {
    const records = REAL.filter((r) => r.kind === 'step' && r.pos < 64);
    const group = new HeadGroup(g, loadHeadSlices(ckpt, g, [4, 5], 'int8'), 64);
    const expected = runTs(group, records);
    const c = headCheck(modelPaths.model, '4,5', 'int8', records, 64);
    expect(difference(c.out as Float32Array, expected)).toEqual(IDENTICAL(expected.length));
    expect(c.info?.cacheBytes).toBe(group.cacheBytes);
    const past = headCheck(modelPaths.model, '4,5', 'int8', [{ kind: 'step', pos: 64, layer: 0, xb: new Float32Array(g.dim) }], 64);
    expect(past.status).toBe(1);
    expect(past.stderr).toMatch(/position outside the context/);
  });

  test('version-1 ("ak42") and legacy separate-classifier exports give the same outputs', () => {
    const records = REAL.slice(0, 100);
    const expected = runTs(new HeadGroup(g, loadHeadSlices(ckpt, g, [1, 7], 'f32')), records);
    const v1 = path.join(tmp, 'v1.bin');
    writeVersion1(modelPaths.model, v1, true);
    const v0 = path.join(tmp, 'v0-unshared.bin');
    writeLegacyUnshared(modelPaths.model, v0);
    for (const model of [v1, v0]) {
      const c = headCheck(model, '7,1', 'f32', records);
      expect(c.stderr).toBe('');
      expect(difference(c.out as Float32Array, expected)).toEqual(IDENTICAL(expected.length));
    }
  });
});

test('with the default (WebAssembly) kernels HeadGroup gives the same outputs too', () => {
  const saved = process.env.MESH_LLM_KERNELS;
  delete process.env.MESH_LLM_KERNELS;
  try {
    jest.isolateModules(() => {
      // fresh copies of the modules: kernels.ts decides its kind again, without MESH_LLM_KERNELS
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const head = require('../lib/llm/head') as typeof import('../lib/llm/head');
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const kernels = require('../lib/llm/kernels') as typeof import('../lib/llm/kernels');
      for (const quant of ['f32', 'int8', 'int4', 'int2'] as WeightFormat[]) {
        const group = new head.HeadGroup(g, head.loadHeadSlices(ckpt, g, [1, 2, 3], quant));
        const records = sequence(3 * g.headSize, true, 5);
        const expected = runTs(group, records);
        const c = headCheck(modelPaths.model, '1,2,3', quant, records);
        expect({ kind: kernels.kernelsKind(), ...difference(c.out as Float32Array, expected) }).toEqual({ kind: kernels.kernelsKind(), ...IDENTICAL(expected.length) });
      }
    });
  } finally {
    if (saved === undefined) delete process.env.MESH_LLM_KERNELS;
    else process.env.MESH_LLM_KERNELS = saved;
  }
});

describe('clear errors', () => {
  /** The sentence Checkpoint.open throws for a file. */
  const tsError = (file: string): string => {
    try {
      Checkpoint.open(file).close();
    } catch (e) {
      return (e as Error).message;
    }
    return '(no error)';
  };
  const cError = (model: string, heads = '0', quant = 'f32'): string => {
    const c = headCheck(model, heads, quant, []);
    expect(c.status).toBe(1);
    return c.stderr.replace(/^head-check: /, '').trim();
  };
  const bytes = fs.readFileSync(modelPaths.model);

  test('a truncated model file, one with trailing bytes, a missing one, a garbage one: the sentences of checkpoint.ts', () => {
    const truncated = path.join(tmp, 'truncated.bin');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
    const trailing = path.join(tmp, 'trailing.bin');
    fs.writeFileSync(trailing, Buffer.concat([bytes, Buffer.alloc(3)]));
    const garbage = path.join(tmp, 'garbage.bin');
    fs.writeFileSync(garbage, Buffer.alloc(4000, 0xff));
    const short = path.join(tmp, 'short.bin');
    fs.writeFileSync(short, bytes.subarray(0, 20));
    const missing = path.join(tmp, 'missing.bin');
    for (const file of [truncated, trailing, garbage, short, missing]) expect(cError(file)).toBe(tsError(file));
    expect(cError(truncated)).toMatch(/is truncated: 1056440 bytes, but its version-0 header \(.*\) implies 1056540 bytes/);
  });

  test('an int8 (version-2) checkpoint is refused: the native node reads float32 checkpoints', () => {
    const q8 = int8ModelPath();
    expect(cError(q8)).toBe(`model file ${q8}: is an int8 (version-2) checkpoint; the native head node reads float32 checkpoints (version 0 or 1): give it the float32 export of the model (its int8 mode quantises the float32 weights itself)`);
  });

  test('bad head groups: out of range, duplicates, negative, empty; the sentence of head.ts', () => {
    const tsHeadError = (heads: number[]): string => {
      try {
        loadHeadSlices(ckpt, g, heads, 'f32');
      } catch (e) {
        return (e as Error).message;
      }
      return '(no error)';
    };
    for (const heads of [[8], [1, 1], [3, 9, 3], [-1], []]) {
      expect(cError(modelPaths.model, heads.join(','))).toBe(tsHeadError(heads));
    }
    expect(cError(modelPaths.model, '1,2', 'int3')).toMatch(/f32, int8, int4 or int2/);
    expect(cError(modelPaths.model, '1,x')).toMatch(/comma-separated head ids/);
  });

  test('a truncated input record is refused', () => {
    const rec = encode([{ kind: 'step', pos: 0, layer: 0, xb: new Float32Array(g.dim) }]);
    const c = headCheck(modelPaths.model, '0', 'f32', rec.subarray(0, rec.length - 4));
    expect(c.status).toBe(1);
    expect(c.stderr).toMatch(/record at byte 0: is truncated/);
  });
});

describe('int8 vectors: quant.cpp equals quant.ts', () => {
  /** Equal element by element, NaN equal to NaN. */
  const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean =>
    a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]) || (Number.isNaN(v) && Number.isNaN(b[i])));

  const cases: [string, Float32Array, number][] = [
    ['random, a short last group', randomVector(100, 3, 4), 32],
    ['ties at half a step, zero groups, -0', Float32Array.from([127, 2.5, -2.5, 0.5, -0.5, 1.5, 126.5, -0, 0, 0, 0, 0, -0, 0, 0, 0]), 8],
    ['subnormal and huge magnitudes', Float32Array.from([1e-45, -1e-45, 3e-45, 0, 1e-40, -5e-41, 2e-41, 7e-42, 3e38, -1e38, 1, -2e-39, 1e-30, 5, 6, 7]), 4],
    ['infinities and NaN', Float32Array.from([1, Infinity, -3, 0.25, NaN, 2, -1, 4, 5, 6]), 4],
    ['a prime length, group 1 and group 7', randomVector(37, 11, 0.01), 7],
    ['group size 1', randomVector(9, 12, 100), 1],
  ];
  for (const [name, x, gs] of cases) {
    test(name, () => {
      const n = x.length;
      const groups = Math.ceil(n / gs);
      const inPath = path.join(tmp, `quant-${name.replace(/\W+/g, '-')}.bin`);
      const outPath = `${inPath}.out`;
      fs.writeFileSync(inPath, Buffer.from(x.buffer, x.byteOffset, x.byteLength));
      const r = spawnSync(BIN, ['quant', String(gs), inPath, outPath], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const out = fs.readFileSync(outPath);
      const buf = out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
      const q = new Int8Array(buf, 0, n);
      const rest = new Float32Array(buf.slice(n));
      const scales = rest.subarray(0, groups);
      const deq = rest.subarray(groups, groups + n);
      const trip = rest.subarray(groups + n, groups + 2 * n);
      const aligned = new Int32Array(rest.buffer, rest.byteOffset + 4 * (groups + 2 * n), 1)[0];

      const v = quantizeVector(x, gs);
      const tsDeq = new Float32Array(n);
      dequantizeInto(tsDeq, v);
      const tsTrip = x.slice();
      int8RoundTrip(tsTrip, gs);
      expect(Array.from(q)).toEqual(Array.from(v.q));
      expect(same(scales, v.scales)).toBe(true);
      expect(same(deq, tsDeq)).toBe(true);
      expect(same(trip, tsTrip)).toBe(true);
      expect(aligned).toBe(alignedGroupSize(n, gs));
    });
  }
});

describe('int4 and int2 vectors: quant.cpp equals quant.ts', () => {
  const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean =>
    a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]) || (Number.isNaN(v) && Number.isNaN(b[i])));
  const cases: [string, Float32Array, number][] = [
    ['random, a short last group', randomVector(101, 3, 4), 32],
    ['ties at half a step, zero groups, -0', Float32Array.from([7, 2.5, -2.5, 0.5, -0.5, 1.5, 6.5, -0, 0, 0, 0, 0, -0, 0, 0, 0, 3, 1.5, 0, 3]), 4],
    ['subnormal and huge magnitudes', Float32Array.from([1e-45, -1e-45, 3e-45, 0, 1e-40, -5e-41, 2e-41, 7e-42, 3e38, -1e38, 1, -2e-39, 1e-30, 5, 6, 7]), 4],
    ['a prime length, group 7', randomVector(37, 11, 0.01), 7],
    ['group size 1', randomVector(9, 12, 100), 1],
    ['weight-like rows, group 64', randomVector(256, 13, 0.2), 64],
  ];
  const run = (mode: string, x: Float32Array, gs: number, name: string): ArrayBuffer => {
    const inPath = path.join(tmp, `${mode}-${name.replace(/\W+/g, '-')}.bin`);
    fs.writeFileSync(inPath, Buffer.from(x.buffer, x.byteOffset, x.byteLength));
    const r = spawnSync(BIN, [mode, String(gs), inPath, `${inPath}.out`], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = fs.readFileSync(`${inPath}.out`);
    return out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
  };
  for (const [name, x, gs] of cases) {
    test(`int4: ${name}`, () => {
      const n = x.length;
      const groups = Math.ceil(n / gs);
      const buf = run('quant4', x, gs, name);
      const v = quantizeVector(x, gs, 7);
      const packed = packInt4(v.q);
      expect(Array.from(new Int8Array(buf, 0, n))).toEqual(Array.from(v.q));
      expect(Array.from(v.q).every((c) => c >= -7 && c <= 7)).toBe(true);
      expect(same(new Float32Array(buf.slice(n, n + 4 * groups)), v.scales)).toBe(true);
      expect(Array.from(new Uint8Array(buf, n + 4 * groups, packed.length))).toEqual(Array.from(packed));
      const tsTrip = x.slice();
      int4RoundTrip(tsTrip, gs);
      expect(same(new Float32Array(buf.slice(n + 4 * groups + packed.length)), tsTrip)).toBe(true);
    });
    test(`int2: ${name}`, () => {
      const n = x.length;
      const groups = Math.ceil(n / gs);
      const buf = run('quant2', x, gs, name);
      const v = quantizeInt2Vector(x, gs);
      const q = new Int8Array(buf, 0, n);
      expect(Array.from(q)).toEqual(Array.from(v.q));
      expect(Array.from(q).every((c) => c >= 0 && c <= 3)).toBe(true);
      expect(same(new Float32Array(buf.slice(n, n + 4 * groups)), v.scales)).toBe(true);
      expect(same(new Float32Array(buf.slice(n + 4 * groups)), v.offsets!)).toBe(true);
    });
  }
});

describe('the head step\'s expf and RoPE table equal math.ts', () => {
  test('expf bit for bit (its 2^(j/32) table holds V8\'s doubles, not the libm\'s)', () => {
    const xs: number[] = [0, -0, 1, -1, 0.5, 88.9, 89, -103.9, -104, -200, 200, Infinity, -Infinity, 1e-30, -1e-30, NaN];
    for (const v of randomVector(200000, 99, 40)) xs.push(v);
    for (const v of randomVector(20000, 7, 0.03)) xs.push(v);
    // differences of float32 values in double, as softmax passes them
    const a = randomVector(20000, 8, 30);
    const b = randomVector(20000, 9, 30);
    for (let i = 0; i < a.length; i++) xs.push(a[i] - b[i]);
    const inPath = path.join(tmp, 'expf.bin');
    const outPath = `${inPath}.out`;
    const x = Float64Array.from(xs);
    fs.writeFileSync(inPath, Buffer.from(x.buffer));
    const r = spawnSync(BIN, ['expf', inPath, outPath], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const out = fs.readFileSync(outPath);
    const y = new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
    expect(y.length).toBe(xs.length);
    const bad = xs.map((v, i) => [v, y[i], expf(v)]).filter(([, c, ts]) => !Object.is(c, ts) && !(Number.isNaN(c) && Number.isNaN(ts)));
    expect(bad).toEqual([]);
  });

  for (const hs of [2, 4, 8, 16, 64, 128, 256]) {
    test(`RoPE table bit for bit, head size ${hs}, positions 0..2047`, () => {
      const positions = 2048;
      const outPath = path.join(tmp, `rope-${hs}.bin`);
      const r = spawnSync(BIN, ['rope', String(hs), String(positions), outPath], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      const out = fs.readFileSync(outPath);
      const c = new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
      const half = hs / 2;
      const expected = new Float32Array(positions * hs);
      for (let pos = 0; pos < positions; pos++) {
        const t = ropeTable(pos, hs);
        expected.set(t.cos, pos * hs);
        expected.set(t.sin, pos * hs + half);
      }
      expect(difference(c, expected)).toEqual(IDENTICAL(expected.length));
    });
  }
});

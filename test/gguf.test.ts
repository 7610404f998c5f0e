import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { Engine } from '../lib/llm/engine';
import { compareLogits } from '../lib/llm/fidelity';
import { GgufSource, decodeGgml } from '../lib/llm/gguf';
import { encodeGgml, quantisedTypes } from '../lib/llm/gguf-write';
import { halfToFloat, floatToHalf } from '../lib/llm/halfs';
import { Tokenizer } from '../lib/llm/tokenizer';
import { TENSOR_NAMES, isPerLayer } from '../lib/llm/tensors';
import { runCli } from './support/cli';
import { GOLDEN_RUNS, goldenIds, goldenText, modelPaths } from './support/fixtures';
import { writeStoriesGguf } from './support/model-files';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-gguf-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const greedy = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const file = (name: string): string => path.join(tmp, name);
const written = new Map<string, string>();
/** stories260K as GGUF in a type, written once per test file. */
function stories(type: 'F32' | 'F16' | 'Q8_0' | 'Q4_0'): string {
  if (!written.has(type)) {
    writeStoriesGguf(file(`stories260K-${type}.gguf`), type);
    written.set(type, file(`stories260K-${type}.gguf`));
  }
  return written.get(type) as string;
}
const engine = (p: string, quant: 'f32' | 'int8' = 'f32') => Engine.load({ modelPath: p, tokenizerPath: p, groups: 3, quant });
let reference: Float32Array[];
beforeAll(async () => {
  reference = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer }).teacherForce(goldenIds('once-greedy-64'));
});

describe('GGUF model files (version 3)', () => {
  test('an F32 GGUF of stories260K holds the llama2.c checkpoint\'s geometry and every tensor bit for bit', () => {
    const gguf = Checkpoint.open(stories('F32'));
    const bin = Checkpoint.open(modelPaths.model);
    expect(gguf.info).toMatchObject({ format: 'gguf', version: 3, config: bin.info.config, storedTypes: { F32: 1 + 9 * 5 + 1 } });
    for (const name of TENSOR_NAMES) {
      for (let l = 0; l < (isPerLayer(name) ? 5 : 1); l++) expect(gguf.read(name, l)).toEqual(bin.read(name, l));
    }
    gguf.close();
    bin.close();
  });

  test('F32: greedy generation with the tokenizer from the file gives the golden tokens and text', async () => {
    const result = await engine(stories('F32')).generate(greedy);
    expect(result.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(result.text).toBe(goldenText('once-greedy-64'));
  });

  test('a separate output.weight is read as the classifier; without it the embeddings are tied', async () => {
    const p = file('untied.gguf');
    const biased = new Float32Array(512 * 64);
    biased.fill(1, 400 * 64, 401 * 64);
    writeStoriesGguf(p, 'F32', {
      tensors: (t) => [...t, { name: 'output.weight', dims: [64, 512], type: 'F32', data: () => biased }],
    });
    const ckpt = Checkpoint.open(p);
    expect(ckpt.info.config.sharedClassifier).toBe(false);
    expect(ckpt.read('wcls')).toEqual(biased);
    ckpt.close();
    expect(Checkpoint.open(stories('F32')).info.config.sharedClassifier).toBe(true);
    // a classifier that is zero but for token 400 changes the story after the prompt
    const tokens = (await engine(p).generate(greedy)).tokens;
    expect(tokens.slice(0, 5)).toEqual(goldenIds('once-greedy-64').slice(0, 5));
    expect(tokens.slice(5)).not.toEqual(goldenIds('once-greedy-64').slice(5));
  });

  test('F16: greedy tokens equal the golden run; teacher-forced mean KL to float32 below 1e-5', async () => {
    expect((await engine(stories('F16')).generate(greedy)).tokens).toEqual(goldenIds('once-greedy-64'));
    const f = compareLogits(reference, await engine(stories('F16')).teacherForce(goldenIds('once-greedy-64')));
    expect(f.top1Agreement).toBe(1);
    expect(f.meanKl).toBeLessThan(1e-5);
  });

  test('Q8_0 (every matrix whose rows are whole 32-blocks; W_2 with 172 columns stays F32): greedy tokens equal the golden run, mean KL below 1e-3', async () => {
    const q8 = GgufSource.open(stories('Q8_0'));
    expect(q8.typeOf('wq', 0)).toBe('Q8_0');
    expect(q8.typeOf('w2', 0)).toBe('F32');
    expect(q8.typeOf('rmsAtt', 0)).toBe('F32');
    q8.close();
    expect((await engine(stories('Q8_0')).generate(greedy)).tokens).toEqual(goldenIds('once-greedy-64'));
    const f = compareLogits(reference, await engine(stories('Q8_0')).teacherForce(goldenIds('once-greedy-64')));
    expect(f.top1Agreement).toBe(1);
    expect(f.meanKl).toBeLessThan(1e-3);
  });

  test('Q8_0 head weights on the int8 engine: requantised in groups of 32 they are the Q8_0 values exactly', async () => {
    // A Q8_0 block dequantises to q * d; quantising that again (scale max|v| / 127) gives back q and d.
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * 0.3);
    const once = new Float32Array(64);
    decodeGgml('Q8_0', new Uint8Array(encodeGgml('Q8_0', x)), 64, once);
    const twice = new Float32Array(64);
    decodeGgml('Q8_0', new Uint8Array(encodeGgml('Q8_0', once)), 64, twice);
    expect(twice).toEqual(once);
    const result = await engine(stories('Q8_0'), 'int8').generate(greedy);
    expect(result.tokens.slice(0, 5)).toEqual(goldenIds('once-greedy-64').slice(0, 5));
    expect(result.tokens.length).toBe(65);
  });

  test('Q4_0: values decode within one step of the original (half a step but where the top nibble clamps); teacher-forced top-1 agreement at least 75%', async () => {
    const bin = Checkpoint.open(modelPaths.model);
    const q4 = Checkpoint.open(stories('Q4_0'));
    const a = bin.read('w1', 1);
    const b = q4.read('w1', 1);
    for (let blk = 0; blk < a.length / 32; blk++) {
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(a[32 * blk + i]));
      const step = halfToFloat(floatToHalf(amax / 8));
      for (let i = 0; i < 32; i++) expect(Math.abs(a[32 * blk + i] - b[32 * blk + i])).toBeLessThanOrEqual(step + 1e-6);
    }
    bin.close();
    q4.close();
    const f = compareLogits(reference, await engine(stories('Q4_0')).teacherForce(goldenIds('once-greedy-64')));
    expect(f.top1Agreement).toBeGreaterThanOrEqual(0.75);
    expect(f.meanKl).toBeLessThan(0.1);
  });

  test('BF16 and Q4_1 tensors decode within their precision', () => {
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i * 0.9) * (i + 1) * 0.01);
    for (const [type, tol] of [['BF16', 1 / 128], ['Q4_1', 1 / 15]] as const) {
      const y = new Float32Array(64);
      decodeGgml(type, new Uint8Array(encodeGgml(type, x)), 64, y);
      const scale = Math.max(...x.map(Math.abs));
      y.forEach((v, i) => expect(Math.abs(v - x[i])).toBeLessThanOrEqual(tol * scale));
    }
  });
});

describe('the tokenizer from GGUF metadata', () => {
  const fromGguf = (): Tokenizer => Tokenizer.load(stories('F32'), 512);
  const tok512 = Tokenizer.load(modelPaths.tokenizer, 512);

  test('encodes a paragraph exactly as tok512.bin does', () => {
    const paragraph =
      'The little robot walked through the quiet forest at dawn. It listened to the birds, measured the wind, ' +
      'and wrote in its notebook: "Temperature 12.5°C, humidity 81%, café closed." Then it said, "Hello, world!"\n' +
      'Nobody answered; the river kept on flowing (as rivers do) — naïve, patient, and cold. 🌲';
    const ids = fromGguf().encode(paragraph, true, false);
    expect(ids).toEqual(tok512.encode(paragraph, true, false));
    expect(fromGguf().decodeRaw(ids)).toBe(paragraph);
  });

  for (const run of GOLDEN_RUNS) {
    test(`decodes ${run.name}.ids to the text run.c printed`, () => {
      expect(fromGguf().decode(goldenIds(run.name))).toBe(goldenText(run.name));
    });
  }

  test('has the pieces and scores of tok512.bin', () => {
    expect(fromGguf().pieces).toEqual(tok512.pieces);
    expect(fromGguf().scores).toEqual(tok512.scores);
  });
});

describe('bad GGUF files: one line naming the file, the key or tensor, and what was expected; exit code 1', () => {
  /** A copy of the F32 file with bytes changed. */
  function patched(name: string, edit: (b: Buffer) => Buffer): string {
    const p = file(name);
    fs.writeFileSync(p, edit(Buffer.from(fs.readFileSync(stories('F32')))));
    return p;
  }
  /** The byte offset of a tensor's type id in the tensor table (after its name, n_dims and dims). */
  function typeIdOffset(b: Buffer, tensor: string, nDims: number): number {
    const at = b.indexOf(Buffer.from(tensor, 'utf8'));
    return at + tensor.length + 4 + 8 * nDims;
  }

  const cases: [string, () => string, RegExp][] = [
    ['an unknown version', () => patched('v2.gguf', (b) => (b.writeUInt32LE(2, 4), b)), /is GGUF version 2; mesh-llm reads GGUF version 3/],
    ['an unsupported tensor type', () => patched('q4k.gguf', (b) => (b.writeUInt32LE(12, typeIdOffset(b, 'blk.0.attn_q.weight', 2)), b)), /tensor blk\.0\.attn_q\.weight has type Q4_K \(12\); mesh-llm reads F32, F16, Q4_0, Q4_1, Q8_0, BF16/],
    ['a missing key', () => {
      const p = file('no-blocks.gguf');
      writeStoriesGguf(p, 'F32', { metadata: (m) => m.filter((e) => e.key !== 'llama.block_count') });
      return p;
    }, /metadata key llama\.block_count is missing \(expected the number of layers\)/],
    ['a missing tensor', () => {
      const p = file('no-ffn-up.gguf');
      writeStoriesGguf(p, 'F32', { tensors: (t) => t.filter((x) => x.name !== 'blk.3.ffn_up.weight') });
      return p;
    }, /tensor blk\.3\.ffn_up\.weight is missing \(expected ne \[64, 172\]\)/],
    ['a tensor of the wrong shape', () => {
      const p = file('wrong-shape.gguf');
      writeStoriesGguf(p, 'F32', { tensors: (t) => t.map((x) => (x.name === 'blk.2.attn_k.weight' ? { ...x, dims: [64, 16], data: () => new Float32Array(64 * 16) } : x)) });
      return p;
    }, /tensor blk\.2\.attn_k\.weight has ne \[64, 16\], expected \[64, 32\]/],
    ['a truncated file', () => patched('truncated.gguf', (b) => b.subarray(0, b.length - 1000)), /is truncated: 1053176 bytes, but tensor blk\.4\.ffn_up\.weight \(F32 \[64, 172\]\) ends at byte 1053920/],
    ['a file cut inside its metadata', () => patched('cut.gguf', (b) => b.subarray(0, 3000)), /is truncated: it ends at byte 3000, inside metadata key tokenizer\.ggml\.tokens/],
  ];

  test.each(cases)('%s', async (_what, make, pattern) => {
    const p = make();
    const r = await runCli(['generate', '--model', p, '--prompt', 'Once', '--steps', '8', '--temperature', '0']);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(p);
    expect(lines[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('mesh-llm generate --model stories260K.gguf', () => {
  beforeAll(() => {
    stories('F32');
    fs.copyFileSync(stories('F32'), file('stories260K.gguf'));
  });

  test('gives once-greedy-64\'s tokens on the engine, the tokenizer taken from the file', async () => {
    const r = await runCli(['generate', '--model', file('stories260K.gguf'), '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(goldenIds('once-greedy-64'));
  });

  test('and with --mesh 8 (eight head nodes on a loopback broker)', async () => {
    const r = await runCli(['generate', '--model', file('stories260K.gguf'), '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json', '--mesh', '8'], { timeoutMs: 120000 });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(goldenIds('once-greedy-64'));
  }, 130000);
});

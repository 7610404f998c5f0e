import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { Engine } from '../lib/llm/engine';
import { compareLogits } from '../lib/llm/fidelity';
import { readSafetensorsHeader } from '../lib/llm/hf';
import { Tokenizer } from '../lib/llm/tokenizer';
import { TENSOR_NAMES, isPerLayer } from '../lib/llm/tensors';
import { runCli } from './support/cli';
import { goldenIds, goldenText, modelPaths } from './support/fixtures';
import { writeStoriesHf } from './support/model-files';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-hf-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const greedy = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const dir = (name: string): string => path.join(tmp, name);
const f32Dir = dir('stories260K-f32');
const bf16Dir = dir('stories260K-bf16');
const f16Dir = dir('stories260K-f16');
beforeAll(() => {
  writeStoriesHf(f32Dir, 'F32');
  writeStoriesHf(bf16Dir, 'BF16');
  writeStoriesHf(f16Dir, 'F16');
});
const engine = (d: string) => Engine.load({ modelPath: d, tokenizerPath: d, groups: 3 });

/** Rows of a stored F32 tensor as the file holds them (no permutation). */
function storedRows(d: string, name: string): Float32Array {
  const file = path.join(d, 'model.safetensors');
  const fd = fs.openSync(file, 'r');
  const t = readSafetensorsHeader(file, fd, fs.fstatSync(fd).size).get(name)!;
  const b = Buffer.alloc(t.bytes);
  fs.readSync(fd, b, 0, t.bytes, t.offset);
  fs.closeSync(fd);
  return new Float32Array(b.buffer, b.byteOffset, t.bytes / 4);
}

describe('Hugging Face model folders (config.json, model.safetensors, tokenizer.json)', () => {
  test('F32: every tensor read equals the llama2.c checkpoint\'s (W_Q/W_K un-permuted to the interleaved layout)', () => {
    const hf = Checkpoint.open(f32Dir);
    const bin = Checkpoint.open(modelPaths.model);
    expect(hf.info).toMatchObject({ format: 'hf', config: bin.info.config });
    for (const name of TENSOR_NAMES) for (let l = 0; l < (isPerLayer(name) ? 5 : 1); l++) expect(hf.read(name, l)).toEqual(bin.read(name, l));
    // a row range in the middle of a head reads the same rows
    expect(hf.readRows('wq', 2, 3, 11)).toEqual(bin.read('wq', 2).slice(3 * 64, 14 * 64));
    hf.close();
    bin.close();
  });

  test('the stored W_Q rows are the rotate-half layout: rotate-half RoPE on them equals llama2.c\'s interleaved RoPE', () => {
    const hs = 8;
    const dim = 64;
    const wHf = storedRows(f32Dir, 'model.layers.1.self_attn.q_proj.weight');
    const ckpt = Checkpoint.open(modelPaths.model);
    const wIl = ckpt.read('wq', 1);
    ckpt.close();
    const x = Float32Array.from({ length: dim }, (_, i) => Math.sin(i * 0.7));
    const matvec = (w: Float32Array, r: number): number => w.subarray(r * dim, (r + 1) * dim).reduce((s, v, i) => s + v * x[i], 0);
    const pos = 5;
    for (let h = 0; h < 8; h++) {
      const q = (w: Float32Array, p: number): number => matvec(w, h * hs + p);
      for (let i = 0; i < hs / 2; i++) {
        const angle = pos / Math.pow(10000, (2 * i) / hs);
        const [c, s] = [Math.cos(angle), Math.sin(angle)];
        // transformers: q * cos + rotate_half(q) * sin, pairing i with i + hs/2
        const hfLow = q(wHf, i) * c - q(wHf, i + hs / 2) * s;
        const hfHigh = q(wHf, i + hs / 2) * c + q(wHf, i) * s;
        // llama2.c: pairs (2i, 2i+1)
        const ilEven = q(wIl, 2 * i) * c - q(wIl, 2 * i + 1) * s;
        const ilOdd = q(wIl, 2 * i) * s + q(wIl, 2 * i + 1) * c;
        expect(hfLow).toBeCloseTo(ilEven, 5);
        expect(hfHigh).toBeCloseTo(ilOdd, 5);
      }
    }
  });

  test('F32: greedy generation with tokenizer.json gives the golden tokens and text', async () => {
    const result = await engine(f32Dir).generate(greedy);
    expect(result.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(result.text).toBe(goldenText('once-greedy-64'));
  });

  test('BF16 and F16 weights: greedy tokens of the first 32 positions equal the golden run; teacher-forced top-1 agreement at least 95%', async () => {
    const reference = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer }).teacherForce(goldenIds('once-greedy-64'));
    for (const d of [bf16Dir, f16Dir]) {
      expect((await engine(d).generate(greedy)).tokens.slice(0, 32)).toEqual(goldenIds('once-greedy-64').slice(0, 32));
      const f = compareLogits(reference, await engine(d).teacherForce(goldenIds('once-greedy-64')));
      expect(f.top1Agreement).toBeGreaterThanOrEqual(0.95);
      expect(f.meanKl).toBeLessThan(1e-3);
    }
  });

  test('tokenizer.json encodes a paragraph exactly as tok512.bin does', () => {
    const paragraph = 'Lily and Ben went to the park. "Look!" said Ben, pointing at a big red ball — it rolled into the pond. Zoë laughed: 3 ducks, 2 frogs, 1 café. 🐸';
    const a = Tokenizer.load(path.join(f32Dir, 'tokenizer.json'), 512).encode(paragraph, true, false);
    expect(a).toEqual(Tokenizer.load(modelPaths.tokenizer, 512).encode(paragraph, true, false));
    expect(Tokenizer.load(f32Dir, 512).decodeRaw(a)).toBe(paragraph);
  });

  test('mesh-llm generate --model DIR gives once-greedy-64\'s tokens', async () => {
    const r = await runCli(['generate', '--model', f32Dir, '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokens).toEqual(goldenIds('once-greedy-64'));
  });
});

describe('bad Hugging Face folders: one line naming the file, the key or tensor, and what was expected; exit code 1', () => {
  /** A copy of the F32 folder with one file changed. */
  function variant(name: string, file: string, edit: (b: Buffer) => Buffer): string {
    const d = dir(name);
    fs.cpSync(f32Dir, d, { recursive: true });
    fs.writeFileSync(path.join(d, file), edit(fs.readFileSync(path.join(d, file))));
    return d;
  }
  const headerEdit = (edit: (json: string) => string) => (b: Buffer): Buffer => {
    const n = Number(b.readBigUInt64LE(0));
    const json = edit(b.toString('utf8', 8, 8 + n)).padEnd(n, ' ');
    return Buffer.concat([b.subarray(0, 8), Buffer.from(json.slice(0, n)), b.subarray(8 + n)]);
  };
  const cases: [string, () => string, string, RegExp][] = [
    ['a safetensors header that is not JSON', () => variant('not-json', 'model.safetensors', headerEdit((j) => j.replace('{', '['))), 'model.safetensors', /safetensors header is not JSON/],
    ['a safetensors header longer than the file', () => variant('long-header', 'model.safetensors', (b) => (b.writeBigUInt64LE(1n << 40n, 0), b)), 'model.safetensors', /states a safetensors header of 1099511627776 bytes, but the file has \d+ bytes after the length/],
    ['an unsupported dtype', () => variant('i64', 'model.safetensors', headerEdit((j) => j.replace(/("model\.norm\.weight":\{"dtype":)"F32"/, '$1"I32"'))), 'model.safetensors', /tensor model\.norm\.weight has dtype I32; mesh-llm reads F32, F16, BF16/],
    ['a tensor of the wrong shape', () => variant('shape', 'model.safetensors', headerEdit((j) => j.replace(/("model\.layers\.0\.self_attn\.k_proj\.weight":\{"dtype":"F32","shape":)\[32,64\]/, '$1[64,32]'))), 'model.safetensors', /tensor model\.layers\.0\.self_attn\.k_proj\.weight has shape \[64, 32\], expected \[32, 64\]/],
    ['a truncated safetensors file', () => variant('truncated', 'model.safetensors', (b) => b.subarray(0, b.length - 100)), 'model.safetensors', /is truncated: \d+ bytes, but tensor model\.norm\.weight ends at byte \d+/],
    ['a config.json without a key', () => variant('no-layers', 'config.json', (b) => Buffer.from(JSON.stringify({ ...JSON.parse(b.toString()), num_hidden_layers: undefined }))), 'config.json', /key num_hidden_layers is missing \(expected the number of layers\)/],
    ['a tokenizer.json that is not JSON', () => variant('tok-not-json', 'tokenizer.json', (b) => b.subarray(0, 1000)), 'tokenizer.json', /tokenizer file .*tokenizer\.json: is not JSON/],
    ['a tokenizer.json of another model type', () => variant('unigram', 'tokenizer.json', (b) => Buffer.from(b.toString().replace('"type":"BPE"', '"type":"Unigram"'))), 'tokenizer.json', /key model\.type is "Unigram", expected "BPE"/],
  ];

  test.each(cases)('%s', async (_what, make, culprit, pattern) => {
    const d = make();
    const r = await runCli(['generate', '--model', d, '--prompt', 'Once', '--steps', '8', '--temperature', '0']);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(path.join(d, culprit));
    expect(lines[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

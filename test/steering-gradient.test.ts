/**
 * The lexicon gradient (lib/steering/gradient.ts) on the real model: pushed passes give the
 * lexicon mass the full engine gives with the same push written by the heads, the contexts are
 * cut from the corpus stories before a word, the gradient predicts how the log mass changes along
 * a direction it was not measured along, and it does not depend on the thread count.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../lib/llm/engine';
import { readChannelFile, readSettings, recomputeDirections, sampleCorpus, steeringDir } from '../lib/steering/directions';
import { GradientSettings, PushedContexts, cutContext, gradientContexts, gradientDirections } from '../lib/steering/gradient';
import { lexiconMass, lexiconTokens } from '../lib/steering/lexicon';
import { norm, pseudoInverse, multiply } from '../lib/steering/linalg';
import { outputProjection, writableBasis } from '../lib/steering/shares';
import { modelPaths } from './support/fixtures';

const load = (groups: number) => Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups });
const settings = readSettings();
const layer = settings.layer;
const lexicons = settings.channels.map((c) => readChannelFile(c).lexicon);
const engine1 = load(1);
const small: GradientSettings = { contexts: 6, from: 8, to: 40, epsilon: 0.1, seed: 3 };

/** A push of norm n inside the writable subspace: a fixed mix of the basis vectors. */
function writablePush(engine: Engine, n: number, mix: (j: number) => number): Float64Array {
  const basis = writableBasis(engine.g, engine.gateway.weights.wo[layer], settings.rcond);
  const v = new Float64Array(engine.g.dim);
  basis.forEach((b, j) => b.forEach((x, d) => (v[d] += mix(j) * x)));
  const scale = n / norm(v);
  return v.map((x) => x * scale);
}

test('the writable basis is orthonormal', () => {
  const basis = writableBasis(engine1.g, engine1.gateway.weights.wo[layer], settings.rcond);
  expect(basis.length).toBeGreaterThan(10);
  basis.forEach((a, i) => basis.forEach((b, j) => expect(a.reduce((s, x, d) => s + x * b[d], 0)).toBeCloseTo(i === j ? 1 : 0, 9)));
});

test('contexts are the corpus stories cut before a word in [from, to)', async () => {
  const engine = load(1);
  const contexts = await gradientContexts(engine, settings.corpus, small, layer);
  expect(contexts.length).toBeGreaterThan(0);
  const stories: number[][] = [];
  await sampleCorpus(engine, { ...settings.corpus, steps: 64 }, layer, (s) => stories.push(s.tokens), { from: 0, to: small.contexts });
  for (const [i, c] of contexts.entries()) {
    const story = stories[i];
    expect(c.length).toBeGreaterThanOrEqual(small.from);
    expect(c.length).toBeLessThan(small.to);
    expect(story.slice(0, c.length)).toEqual(c); // a prefix of the corpus story
    expect(engine.tokenizer.pieces[story[c.length]].startsWith(' ')).toBe(true); // the next token starts a word
  }
  // the same settings cut the same contexts; another seed cuts others
  expect(cutContext(stories[0], engine.tokenizer.pieces, small, 0)).toEqual(contexts[0]);
  const others = stories.map((s, i) => cutContext(s, engine.tokenizer.pieces, { ...small, seed: 99 }, i)?.length);
  expect(others).not.toEqual(contexts.map((c) => c.length));
});

test('a pushed pass gives the lexicon mass of the whole engine, unpushed and with the push written by the heads', async () => {
  const engine = load(1);
  const contexts = ['Once upon a time, there was a little girl named Lily. She saw a', 'The cat sat by the window. It was'].map((p) => engine.tokenizer.encode(p, true, false));
  const pushed = await PushedContexts.prepare(engine, layer, contexts, lexicons);
  const push = writablePush(engine, 1.6, (j) => Math.sin(j + 1));
  const without = await pushed.masses(null);
  const withPush = await pushed.masses(push);
  const pinv = pseudoInverse(outputProjection(engine.g, engine.gateway.weights.wo[layer]));
  for (const [i, c] of contexts.entries()) {
    for (const [ci, lexicon] of lexicons.entries()) {
      const words = lexiconTokens(engine.tokenizer, lexicon);
      engine.heads.groups[0].steering = null;
      expect(without[i][ci]).toBeCloseTo(await lexiconMass(engine, c, words), 12);
      engine.heads.groups[0].steering = { layer, vector: Float32Array.from(multiply(pinv, push)) };
      const full = await lexiconMass(engine, c, words);
      engine.heads.groups[0].steering = null;
      expect(Math.abs(withPush[i][ci] / full - 1)).toBeLessThan(1e-4);
      expect(Math.abs(withPush[i][ci] / without[i][ci] - 1)).toBeGreaterThan(1e-3); // and the push did move it
    }
  }
});

test('the gradient predicts the change of the log mass along a direction it was not measured along', async () => {
  const engine = load(1);
  const { gradients } = await gradientDirections(engine, settings.corpus, small, layer, settings.rcond, lexicons, { threads: 1 });
  const pushed = await PushedContexts.prepare(engine, layer, await gradientContexts(engine, settings.corpus, small, layer), lexicons);
  const h = 0.05;
  const v = writablePush(engine, 1, (j) => Math.cos(3 * j));
  const up = await pushed.summed(v.map((x) => h * x));
  const down = await pushed.summed(v.map((x) => -h * x));
  gradients.forEach((g, ci) => {
    const predicted = g.reduce((s, x, d) => s + x * v[d], 0);
    const measured = (Math.log(up[ci]) - Math.log(down[ci])) / (2 * h);
    expect(Math.abs(predicted - measured)).toBeLessThan(0.005 * norm(g));
  });
});

test('the gradient does not depend on the thread count; progress counts every basis vector', async () => {
  const seen: number[] = [];
  const one = await gradientDirections(load(1), settings.corpus, small, layer, settings.rcond, lexicons, { threads: 1 });
  const three = await gradientDirections(load(1), settings.corpus, small, layer, settings.rcond, lexicons, { threads: 3, onProgress: (done) => seen.push(done) });
  const k = writableBasis(engine1.g, engine1.gateway.weights.wo[layer], settings.rcond).length;
  expect(seen).toEqual(Array.from({ length: k }, (_, i) => i + 1));
  expect(three.contexts).toBe(one.contexts);
  three.gradients.forEach((g, ci) => expect(Array.from(g)).toEqual(Array.from(one.gradients[ci])));
});

describe('channel files', () => {
  const copy = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-gradient-'));
    for (const f of fs.readdirSync(steeringDir())) fs.copyFileSync(path.join(steeringDir(), f), path.join(dir, f));
    return dir;
  };
  const edit = (dir: string, file: string, change: (j: Record<string, unknown>) => void) => {
    const j = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    change(j);
    fs.writeFileSync(path.join(dir, file), JSON.stringify(j));
  };

  test('the shipped files use both methods', () => {
    const methods = settings.channels.map((c) => readChannelFile(c).method ?? 'caa');
    expect(methods).toContain('caa');
    expect(methods).toContain('gradient');
  });

  test('a bad method, a CAA channel without a window, or a gradient channel without gradient settings are refused', async () => {
    const dir = copy();
    edit(dir, 'soundDb.json', (j) => (j.method = 'magic'));
    expect(() => readChannelFile('soundDb', dir)).toThrow(/method must be "caa" or "gradient"/);
    edit(dir, 'soundDb.json', (j) => {
      delete j.method;
      delete j.window;
    });
    expect(() => readChannelFile('soundDb', dir)).toThrow(/window needs whole numbers/);
    edit(dir, 'soundDb.json', (j) => (j.method = 'gradient'));
    expect(readChannelFile('soundDb', dir).method).toBe('gradient'); // a gradient channel needs no window
    edit(dir, 'steering.json', (j) => (j.gradient = { ...(j.gradient as object), epsilon: 0 }));
    expect(() => readSettings(dir)).toThrow(/gradient needs contexts >= 1, .*epsilon > 0/);
    await expect(gradientContexts(load(1), settings.corpus, { ...small, to: 600 }, layer)).rejects.toThrow(/contexts must end before position 496 .*"to" is 600/);
    edit(dir, 'steering.json', (j) => delete j.gradient);
    await expect(recomputeDirections(load(1), 'stories260K.bin', dir)).rejects.toThrow(/use method "gradient", which needs the `gradient` settings/);
  });
});

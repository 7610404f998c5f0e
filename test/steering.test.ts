/**
 * Steering on the real model (stories260K): the per-node shares of every direction add up to
 * the direction, one node alone moves the residual stream by exactly its share, the head
 * partition does not change a uniformly steered run, the committed directions are what
 * `steer calibrate` computes, a steered run moves the lexicon mass the expected way, and
 * attribution names the one node of eight that felt a stimulus.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../lib/llm/engine';
import { attributionTrials } from '../lib/steering/measure';
import { CorpusStory, SteeringData, corpusDirections, loadSteering, readChannelFile, recomputeDirections, sampleCorpus, steeringDir, wordOccurrences } from '../lib/steering/directions';
import { lexiconTokens, meanLexiconMass } from '../lib/steering/lexicon';
import { norm } from '../lib/steering/linalg';
import { nodeSteeringVector, reconstructionError, residualOf } from '../lib/steering/shares';
import { Steering, clearSteering, localNodes, uniformReadings } from '../lib/steering/steer';
import { residualsAfterAttention } from '../lib/steering/directions';
import { SteeringStep } from '../lib/steering';
import { steeringFromMessage } from '../lib/mesh/node-steering';
import { simulate } from '../lib/steering/sensors';
import { encodeControl, parseControl } from '../lib/mesh/wire';
import { modelPaths } from './support/fixtures';

const load = (groups: string | number) => Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups });

const engine8 = load(8);
const data: SteeringData = loadSteering(engine8.g.dim, engine8.g.nLayers);
const steering8 = new Steering(engine8.g, engine8.gateway, data, localNodes(engine8.heads));
const layer = data.settings.layer;
const wo = engine8.gateway.weights.wo[layer];
const prompt = engine8.tokenizer.encode('Tom was playing in the park with his friend.', true, false);

/** Residual after the steered layer's attention at every position, minus the unsteered one. */
async function residualShift(engine: Engine): Promise<Float64Array[]> {
  const steered = await residualsAfterAttention(engine, prompt, layer);
  const saved = engine.heads.groups.map((g) => g.steering);
  clearSteering(engine.heads);
  const plain = await residualsAfterAttention(engine, prompt, layer);
  engine.heads.groups.forEach((g, i) => (g.steering = saved[i]));
  return steered.map((x, p) => Float64Array.from(x, (v, i) => v - plain[p][i]));
}

function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return norm(Array.from(a, (x, i) => x - b[i])) / norm(b);
}

describe('per-head application', () => {
  test('for 8 one-head nodes and for groups 2+3+3, the per-node shares add up to each full direction', () => {
    for (const groups of [8, '2+3+3']) {
      const engine = load(groups);
      const steering = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
      for (const c of data.channels) {
        expect(reconstructionError(engine.g, wo, steering.shares, c.channel, c.vector)).toBeLessThan(1e-5);
        // and no single node carries the whole direction
        for (const s of steering.shares) expect(relativeError(residualOf(engine.g, wo, s.heads, s.channels[c.channel]), c.vector)).toBeGreaterThan(0.05);
      }
    }
  });

  test('a node adds vectors of its own head size: alpha * sum_c reading_c * share_c; bad readings add nothing', () => {
    const s = steering8.shares[3];
    expect(s.width).toBe(engine8.g.headSize);
    const v = nodeSteeringVector(s, { soundDb: 0.5, lightLux: -1 }, 2);
    s.channels.soundDb.forEach((x, i) => expect(v[i]).toBeCloseTo(2 * (0.5 * x - s.channels.lightLux[i]), 4));
    const bad = nodeSteeringVector(s, { soundDb: NaN, lightLux: Infinity as number, vibrationG: 'x' as unknown as number }, 2);
    expect([...bad].every((x) => x === 0)).toBe(true);
    expect([...nodeSteeringVector(s, { soundDb: 7 }, 1)]).toEqual([...nodeSteeringVector(s, { soundDb: 1 }, 1)]);
  });

  test('all nodes steering one channel move the residual stream by alpha * reading * direction at every position', async () => {
    const channel = data.channels[0];
    steering8.apply(engine8.heads, uniformReadings(localNodes(engine8.heads), { [channel.channel]: 0.8 }), 1.5);
    const expected = channel.vector.map((x) => 1.5 * 0.8 * x);
    for (const shift of await residualShift(engine8)) expect(relativeError(shift, expected)).toBeLessThan(1e-4);
    clearSteering(engine8.heads);
  });

  test('one node alone moves the residual stream by exactly its share, not the whole direction', async () => {
    const channel = data.channels[1];
    const only = steering8.shares[5];
    steering8.apply(engine8.heads, { [only.node]: { [channel.channel]: 1 } }, 1);
    const expected = residualOf(engine8.g, wo, only.heads, only.channels[channel.channel]);
    for (const shift of await residualShift(engine8)) expect(relativeError(shift, expected)).toBeLessThan(1e-4);
    clearSteering(engine8.heads);
  });

  test('with the same readings everywhere, the head partition does not change the steered logits', async () => {
    const readings = { soundDb: 1, vibrationG: 0.5, lightLux: -0.3 };
    const logits: Float32Array[][] = [];
    for (const groups of [1, 8, '2+3+3']) {
      const engine = load(groups);
      const steering = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
      steering.apply(engine.heads, uniformReadings(localNodes(engine.heads), readings), data.settings.alpha);
      logits.push(await engine.teacherForce(prompt));
    }
    for (const other of logits.slice(1)) other.forEach((l, p) => l.forEach((v, i) => expect(Math.abs(v - logits[0][p][i])).toBeLessThan(2e-4)));
    // and steering did change them
    expect(Math.abs(logits[0][prompt.length - 1][0] - (await engine8.teacherForce(prompt))[prompt.length - 1][0])).toBeGreaterThan(1e-3);
  });
});

describe('directions', () => {
  test('the corpus is what `generate` writes with the same settings, and its residuals are the engine\'s', async () => {
    const engine = load(1);
    const corpus = { ...data.settings.corpus, stories: 2, steps: 40 };
    const stories: CorpusStory[] = [];
    await sampleCorpus(engine, corpus, layer, (s) => stories.push({ tokens: s.tokens, residuals: s.residuals.slice() }));
    for (const [i, story] of stories.entries()) {
      const gen = await engine.generate({ prompt: corpus.prompts[i % corpus.prompts.length], steps: corpus.steps, temperature: corpus.temperature, topP: corpus.topP, seed: BigInt(corpus.seed + i) });
      expect(story.tokens).toEqual(gen.tokens);
      const xs = await residualsAfterAttention(engine, story.tokens.slice(0, -1), layer);
      xs.forEach((x, p) => expect(relativeError(story.residuals.subarray(p * engine.g.dim, (p + 1) * engine.g.dim), x)).toBeLessThan(1e-6));
    }
  });

  test('the corpus written by three threads gives the directions and counts of one thread', async () => {
    const corpus = { ...data.settings.corpus, stories: 40, steps: 128 };
    // plain means (a short corpus holds few occurrences of each word); light keeps its other-channels contrast;
    // channels whose direction is a lexicon gradient are contrasted here with a window of 4
    const channels = data.settings.channels.map((c) => readChannelFile(c)).map((f) => ({ ...f, window: f.window ?? { before: 4, after: 4 }, perWord: false }));
    const contrasted = async (threads: number, onProgress?: (done: number) => void) => {
      const ds = await corpusDirections(load(1), corpus, layer, channels, { threads, onProgress });
      return ds.map((d) => {
        if (!d) throw new Error('a channel with a window got no contrast');
        return d;
      });
    };
    const one = await contrasted(1);
    const seen: number[] = [];
    const three = await contrasted(3, (done) => seen.push(done));
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    three.forEach((d, i) => {
      expect(d.counts).toEqual(one[i].counts);
      expect(relativeError(d.caa, one[i].caa)).toBeLessThan(1e-12);
    });
    expect(one.every((d) => d.counts.positive > 0)).toBe(true);
    expect(channels.some((c) => c.negative === 'otherChannels')).toBe(true);
  });

  test('lexicon words are found wherever their tokens occur', () => {
    const tok = engine8.tokenizer;
    const words = lexiconTokens(tok, ['loud', 'noise']);
    const tokens = tok.encode('She heard a loud noise. It was loud.', true, false);
    const found = wordOccurrences(tokens, words);
    expect(found.map(([k]) => k)).toEqual([0, 1, 0]);
    for (const [k, start] of found) expect(tokens.slice(start, start + words[k].length)).toEqual(words[k]);
  });

  test('every committed direction has its channel\'s norm', () => {
    for (const c of data.channels) expect(norm(c.vector)).toBeCloseTo(readChannelFile(c.channel).norm, 3);
  });

  test('`steer calibrate` recomputes exactly the committed direction files', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-steering-'));
    for (const f of fs.readdirSync(steeringDir())) fs.copyFileSync(path.join(steeringDir(), f), path.join(dir, f));
    await recomputeDirections(load(1), 'stories260K.bin', dir);
    const recomputed = loadSteering(engine8.g.dim, engine8.g.nLayers, dir);
    recomputed.channels.forEach((c, i) => expect(relativeError(c.vector, data.channels[i].vector)).toBeLessThan(1e-5));
  }, 900_000);
});

describe('effect on the text', () => {
  test('a steered run raises each channel lexicon mass with a positive reading (by at least 30 %)', async () => {
    const contexts = data.settings.evaluation.map((p) => engine8.tokenizer.encode(p, true, false));
    const nodes = localNodes(engine8.heads);
    for (const c of data.channels) {
      const words = lexiconTokens(engine8.tokenizer, c.lexicon);
      const mass = async (r: number) => {
        steering8.apply(engine8.heads, uniformReadings(nodes, { [c.channel]: r }), data.settings.alpha);
        return meanLexiconMass(engine8, contexts, words);
      };
      const calm = await mass(0);
      const full = await mass(1);
      expect(full).toBeGreaterThan(calm * 1.3);
    }
    clearSteering(engine8.heads);
  });

  test('attribution: with a full stimulus on one node of eight, that node is named most responsible in >= 90% of trials', async () => {
    const top1 = await attributionTrials(engine8, steering8, data, data.settings.alpha, 16, 4, 101);
    expect(top1).toBeGreaterThanOrEqual(0.9);
  });
});

describe('the steering-calibration step (the API the Node-RED node uses)', () => {
  test('sensor payloads in, baselines out, and per node a steering message that the node turns into the same vector', () => {
    const nodes = localNodes(engine8.heads);
    const step = new SteeringStep({ modelPath: modelPaths.model, nodes });
    const trace = simulate({ scenario: 'earthquake', nodes: nodes.map((n) => n.node), affected: ['node-2'], epicentre: 'node-2', seed: 3 });
    const calm = trace.filter((m) => m.at < 60000);
    for (const m of calm) expect(step.ingest(JSON.stringify(m))).toEqual([]);
    const baselines = step.calibrate();
    expect(Object.keys(baselines)).toHaveLength(8);
    expect(baselines['node-2'].vibrationG.median).toBeCloseTo(0.02, 2);
    for (const m of trace.filter((m) => m.at >= 60000 && m.at <= 65000)) step.ingest(m);
    expect(step.ingest({ protocol: 1, node: 'node-1', at: 65000, readings: { soundDb: null } })).toHaveLength(1);
    const readings = step.readings(65000);
    expect(readings['node-2'].vibrationG).toBe(1);
    expect(readings['node-5'].vibrationG).toBe(0);
    const vectors = step.vectors(65000);
    for (const [node, m] of step.steeringMessages(65000)) {
      const sent = parseControl('steering', encodeControl('steering', m));
      const applied = steeringFromMessage(sent, nodes.find((n) => n.node === node)!.heads, engine8.g.headSize, engine8.g.nLayers);
      if (typeof applied === 'string') throw new Error(applied);
      expect(applied.layer).toBe(layer);
      expect([...applied.vector]).toEqual([...vectors.get(node)!.vector]);
    }
    // the shaken node steers; a calm one adds at most sensor noise that crossed its deadband
    for (const v of Object.values(readings['node-5'])) expect(Math.abs(v)).toBeLessThan(0.5);
    expect(norm(vectors.get('node-5')!.vector)).toBeLessThan(0.5 * norm(vectors.get('node-2')!.vector));
  });
});

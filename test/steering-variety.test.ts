/** The pieces of the variety measurement and of the fixes: n-gram figures, the norm budget, the push envelope, the ROC AUC. */
import { Engine } from '../lib/llm/engine';
import { CounterfactualHeads } from '../lib/steering/attribution';
import { loadSteering } from '../lib/steering/directions';
import { envelopeFactor } from '../lib/steering/envelope';
import { rocAuc } from '../lib/steering/measure';
import { nodeSteeringVector } from '../lib/steering/shares';
import { Steering, localNodes, uniformReadings } from '../lib/steering/steer';
import { distinctNgrams, meanVariety, repeatedNgramRate } from '../lib/steering/variety';
import { modelPaths } from './support/fixtures';

test('repeated-4-gram rate and distinct-2 of token ids', () => {
  expect(repeatedNgramRate([1, 2, 3, 4, 5, 6])).toBe(0);
  // 1 2 3 4 1 2 3 4: five 4-grams, four distinct
  expect(repeatedNgramRate([1, 2, 3, 4, 1, 2, 3, 4])).toBeCloseTo(1 - 4 / 5);
  expect(repeatedNgramRate([1, 2, 3])).toBe(0);
  expect(distinctNgrams([7, 7, 7, 7])).toBeCloseTo(1 / 3);
  expect(meanVariety([[1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3, 4, 5]])).toEqual({ repeated4: (1 - 4 / 5) / 2, distinct2: (4 / 7 + 1) / 2 });
});

test('ROC AUC: 1 for separated scores, 0.5 for ties, 0 reversed', () => {
  expect(rocAuc([3, 4], [1, 2])).toBe(1);
  expect(rocAuc([1], [1])).toBe(0.5);
  expect(rocAuc([1, 2], [3, 4])).toBe(0);
});

test('the envelope: full during the hold, then an exponential fall to the floor', () => {
  const e = { hold: 32, release: 48, floor: 0.3 };
  expect(envelopeFactor(undefined, 500)).toBe(1);
  expect(envelopeFactor(e, 31)).toBe(1);
  expect(envelopeFactor(e, 32 + 48)).toBeCloseTo(Math.exp(-1));
  expect(envelopeFactor(e, 1000)).toBe(0.3);
});

describe('on stories260K', () => {
  const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 8 });
  const data = loadSteering(engine.g.dim, engine.g.nLayers);
  const nodes = localNodes(engine.heads);
  const steering = new Steering(engine.g, engine.gateway, data, nodes);

  test('the norm budget: one channel at full reading on every node is its own norm; the explosion is scaled to alpha * budget', () => {
    expect(steering.budget).toBe(data.settings.budget);
    const light = uniformReadings(nodes, { lightLux: 1 });
    expect(steering.pushNorm(light)).toBeCloseTo(4, 4);
    expect(steering.alphaFor(light, 0.4)).toBe(0.4);
    const all = uniformReadings(nodes, { soundDb: 1, vibrationG: 1, lightLux: 1 });
    const a = steering.alphaFor(all, 0.4);
    expect(a).toBeLessThan(0.4);
    expect(a * steering.pushNorm(all)).toBeCloseTo(0.4 * steering.budget, 6);
    // every node's vector is scaled by the same factor
    const budgeted = steering.vectors(all, 0.4);
    for (const s of steering.shares) expect(Array.from(budgeted.get(s.node)!.vector)).toEqual(Array.from(nodeSteeringVector(s, all[s.node], a)));
  });

  test('the envelope is applied on the gateway: the gathered head outputs carry the envelope share of every node vector', async () => {
    const readings = uniformReadings(nodes, { soundDb: 1 });
    const steered = steering.steeredNodes(readings, 0.4);
    expect(steered[0].envelope).toEqual(data.settings.envelope);
    steering.apply(engine.heads, readings, 0.4);
    const heads = new CounterfactualHeads(engine.heads, engine.g, steered);
    const xb = Float32Array.from({ length: engine.g.dim }, (_, i) => Math.sin(i));
    const pos = data.settings.envelope!.hold + 20;
    const [withEnvelope, constant] = [new Float32Array(engine.g.dim), new Float32Array(engine.g.dim)];
    await heads.reset();
    await heads.run(xb, pos, steering.layer, withEnvelope);
    await engine.heads.reset();
    await engine.heads.run(xb, pos, steering.layer, constant);
    const f = envelopeFactor(data.settings.envelope, pos);
    const hs = engine.g.headSize;
    steered.forEach((n) => n.heads.forEach((h, i) => {
      for (let d = 0; d < hs; d++) expect(withEnvelope[h * hs + d]).toBeCloseTo(constant[h * hs + d] - (1 - f) * n.steering.vector[i * hs + d], 5);
    }));
    for (const g of engine.heads.groups) g.steering = null;
  });
});

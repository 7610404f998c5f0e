/**
 * Steering over the MQTT mesh: eight head-node processes on a broker process, each told its
 * share of the directions and its readings; the steered generation, token for token and with
 * the same attributions, equals steering in the monolithic engine, and every token's
 * attribution is published on the mesh.
 */
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { freePort } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { topicsFor } from '../lib/mesh/wire';
import { generateWithAttribution } from '../lib/steering/attribution';
import { loadSteering } from '../lib/steering/directions';
import { AttributionMessage, MeshSteering, generateSteeredOnMesh, parseAttributionMessage } from '../lib/steering/mesh';
import { scenarioReadings } from '../lib/steering/readings';
import { Steering, localNodes } from '../lib/steering/steer';
import { modelPaths } from './support/fixtures';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

const meshId = 'steer-test';
const OPTIONS: GenerateOptions = { prompt: 'Tom was playing in the park with his friend. Suddenly,', steps: 32, temperature: 0.8, topP: 0.9, seed: 42n };
const NODES = Array.from({ length: 8 }, (_, i) => `node-${i + 1}`);

/** Calm readings everywhere, an explosion felt by node-3 only. */
const readings = scenarioReadings('explosion', NODES, { affected: ['node-3'], epicentre: 'node-3', seed: 8 }).readings;

/** Both head-node runtimes: `mesh-llm node` on node.js and the native node (the firmware core built for the host). */
describe.each([false, true])('head nodes native: %s', (native) => {
  test('steering over the MQTT mesh equals steering in the monolithic engine, and attribution is published with each token', async () => {
    const engine = Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 8 });
    const data = loadSteering(engine.g.dim, engine.g.nLayers);
    const alpha = data.settings.alpha;
    const local = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
    const vectors = local.apply(engine.heads, readings, alpha);
    const expected = await generateWithAttribution(
      engine.gateway,
      engine.heads,
      engine.tokenizer,
      local.shares.map((s) => ({ node: s.node, heads: s.heads, steering: vectors.get(s.node)! })),
      OPTIONS,
    );

    const broker = await spawnBroker(await freePort());
    cleanups.push(() => broker.close());
    const nodes = spawnHeadNodes({ count: 8, brokerUrl: broker.url, meshId, modelPath: modelPaths.model, native, onLog: () => undefined });
    cleanups.push(() => nodes.stop(500));
    const gw = await MeshGateway.connect({ url: broker.url, meshId, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, log: () => undefined });
    cleanups.push(() => gw.close());
    const link = await MeshSteering.connect({ url: broker.url, meshId });
    cleanups.push(() => link.close());
    const listener = await connectMqtt({ url: broker.url, clientId: 'steer-test-listener' });
    cleanups.push(() => endClient(listener));
    const published: AttributionMessage[] = [];
    listener.on('message', (_t, payload) => published.push(parseAttributionMessage(payload)));
    await subscribe(listener, [topicsFor(meshId).attribution], 0);

    const assignment = await gw.assign(await gw.discover({ count: 8, timeoutMs: 20000 }), { groups: 8 });
    const remote = new Steering(gw.g, gw.gateway, data, assignment.map((a) => ({ node: a.node, heads: a.heads })));
    expect(remote.shares.map((s) => [s.node, s.heads])).toEqual(local.shares.map((s) => [s.node, s.heads]));

    const got = await generateSteeredOnMesh(gw, link, remote, readings, alpha, OPTIONS);
    expect(got.text).toBe(expected.text);
    expect(got.tokens).toEqual(expected.tokens);
    expect(got.attributions.map((a) => a.top)).toEqual(expected.attributions.map((a) => a.top));
    got.attributions.forEach((a, i) => a.nodes.forEach((n, j) => {
      expect(n.node).toBe(expected.attributions[i].nodes[j].node);
      expect(n.kl).toBeCloseTo(expected.attributions[i].nodes[j].kl, 9);
    }));
    // the node that felt the explosion is the one the tokens are attributed to
    const named = got.attributions.filter((a) => a.top === 'node-3').length;
    expect(named / got.attributions.length).toBeGreaterThanOrEqual(0.8);

    // the steering moved every next-token distribution; without readings nothing is attributed
    expect(got.attributions.every((a) => a.nodes[0].kl > 0)).toBe(true);
    const plain = await generateSteeredOnMesh(gw, link, remote, {}, alpha, OPTIONS);
    expect(plain.attributions.every((a) => a.top === null && a.nodes.every((n) => n.kl === 0))).toBe(true);

    await new Promise((r) => setTimeout(r, 200));
    const forSteered = published.filter((m) => m.session !== published[published.length - 1].session);
    expect(forSteered.map((m) => [m.pos, m.token, m.piece, m.top])).toEqual(got.attributions.map((a) => [a.pos, a.token, a.piece, a.top]));
  }, 60000);

  test('a node refuses steering cut for heads it does not compute, and says why', async () => {
    const broker = await spawnBroker(await freePort());
    cleanups.push(() => broker.close());
    const nodes = spawnHeadNodes({ count: 2, brokerUrl: broker.url, meshId, modelPath: modelPaths.model, native, onLog: () => undefined });
    cleanups.push(() => nodes.stop(500));
    const gw = await MeshGateway.connect({ url: broker.url, meshId, modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, log: () => undefined });
    cleanups.push(() => gw.close());
    const link = await MeshSteering.connect({ url: broker.url, meshId });
    cleanups.push(() => link.close());
    await gw.assign(await gw.discover({ count: 2, timeoutMs: 20000 }), { groups: 2 });
    const data = loadSteering(gw.g.dim, gw.g.nLayers);
    const wrong = new Steering(gw.g, gw.gateway, data, [{ node: 'node-1', heads: [4, 5, 6, 7] }]);
    await expect(link.configure(wrong, { 'node-1': { soundDb: 1 } }, 1)).rejects.toThrow(/node-1 refused steering .* is for heads \[4,5,6,7\], this node computes \[0,1,2,3\]/);
  }, 60000);
});

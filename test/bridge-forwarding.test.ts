/**
 * The bridge forwards head-link bodies between MQTT and the radio without re-encoding them: an
 * int8 generation over the simulated channel (with loss, so fragments are lost and sent again),
 * a listener on the broker hearing every broadcast and result body, and each radio node's own
 * record of the bodies it reassembled and sent. Radio nodes announce their radio address as a
 * fixed slot, and the bridge refuses any other.
 */
import { MqttClient } from 'mqtt';
import { Engine } from '../lib/llm/engine';
import { checkBody } from '../lib/link/body';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { AckMessage, PROTOCOL_VERSION, StatusMessage, encodeControl, parseControl, topicsFor } from '../lib/mesh/wire';
import { RadioBridge } from '../gateway-bridge/bridge';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { generateOverRadio } from '../gateway-bridge/run';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { modelPaths } from './support/fixtures';
import { ONCE_OPTIONS, bridgePaths, brokerProcess, quiet, radioMesh } from './support/radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** One broker process for the file, started by the first test that needs it. */
let broker: Promise<string> | undefined;
const brokerUrl = (): Promise<string> => (broker ??= brokerProcess(cleanups));

/** A client on the broker that keeps every message of some topics, in arrival order. */
async function listen(id: string, topics: string[]): Promise<{ client: MqttClient; heard: { topic: string; payload: Buffer }[] }> {
  const client = await connectMqtt({ url: await brokerUrl(), clientId: `listener-${id}-${process.pid}` });
  cleanups.push(() => endClient(client));
  const heard: { topic: string; payload: Buffer }[] = [];
  client.on('message', (topic, payload) => heard.push({ topic, payload: Buffer.from(payload) }));
  await subscribe(client, topics, 1);
  return { client, heard };
}

/** Waits until `done()` holds (QoS 0 messages may still be on their way when a generation returns). */
async function until(done: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('int8 over the lossy radio: every body arrives byte for byte as its sender made it, both ways, and the tokens are the int8 engine\'s', async () => {
  const meshId = 'forwarding';
  const t = topicsFor(meshId);
  const mesh = new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes: 4, quant: 'int8', region: 'US915', sf: 7, bandwidthKHz: 125, channels: 8, loss: 0.1, seed: 21 });
  const reassembled = new Map(mesh.nodes.map((n) => [n.address, [] as Buffer[]]));
  const sent = new Map(mesh.nodes.map((n) => [n.address, [] as Buffer[]]));
  for (const n of mesh.nodes) {
    n.onBroadcast = (b) => reassembled.get(n.address)?.push(Buffer.from(b));
    n.onResult = (b) => sent.get(n.address)?.push(Buffer.from(b));
  }
  const listener = await listen(meshId, [t.broadcast, t.results]);
  const generate = { ...ONCE_OPTIONS, steps: 24 };
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl: await brokerUrl(), meshId, ...bridgePaths, generate, log: quiet });
  const layers = generate.steps * mesh.g.nLayers;
  await until(() => listener.heard.length >= layers * (1 + mesh.nodes.length), `${layers} broadcasts and their results on MQTT`);

  const engine = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate(generate);
  expect(result.tokens).toEqual(engine.tokens);
  expect(mesh.channel.stats.lost.random).toBeGreaterThan(50);
  expect(result.radio.airtimeSeconds.resent).toBeGreaterThan(0);

  // Broadcasts: what every radio node reassembled is what the mesh gateway published.
  const published = listener.heard.filter((m) => m.topic === t.broadcast).map((m) => m.payload);
  expect(published).toHaveLength(layers);
  for (const bodies of reassembled.values()) expect(bodies.map((b) => b.toString('hex'))).toEqual(published.map((b) => b.toString('hex')));
  // Sequence numbers run on from wherever the gateway started them, one per layer.
  const seqs = published.map((b) => checkBody(b).seq);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe((seqs[i - 1] + 1) >>> 0);

  // Results: what the gateway heard on result/{node} is what that node sent over the radio.
  for (const info of mesh.infos) {
    const onMqtt = listener.heard.filter((m) => m.topic === t.result(info.id)).map((m) => m.payload);
    const fromNode = sent.get(info.address) as Buffer[];
    expect(fromNode).toHaveLength(layers);
    expect(onMqtt.map((b) => b.toString('hex'))).toEqual(fromNode.map((b) => b.toString('hex')));
    onMqtt.forEach((b, i) => expect(checkBody(b)).toMatchObject({ sender: info.address, encoding: 'int8', groupSize: 8, seq: seqs[i], count: info.heads.length * mesh.g.headSize }));
  }
  expect(mesh.errors).toEqual([]);
});

test('a radio node\'s status names its radio address as its slot, and the bridge refuses an assignment of another slot', async () => {
  const meshId = 'forwarding-slots';
  const t = topicsFor(meshId);
  const mesh = radioMesh(2);
  const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
  const listener = await listen(meshId, [t.statuses, t.acks]);
  const bridge = await RadioBridge.connect({ url: await brokerUrl(), meshId, mac, g: mesh.g, transport: 'f32', nodes: mesh.infos, log: quiet });
  cleanups.push(() => bridge.close());
  const statuses = () => listener.heard.filter((m) => m.topic.includes('/status/')).map((m) => parseControl('status', m.payload) as StatusMessage);
  await until(() => statuses().length >= 2, 'both radio nodes\' status');
  expect(statuses().map((s) => [s.node, s.slot, s.state])).toEqual([['radio-1', 1, 'online'], ['radio-2', 2, 'online']]);

  const info = mesh.infos[0];
  const assignment = (slot: number, id: string) =>
    encodeControl('assignment', { protocol: PROTOCOL_VERSION, assignment: id, slot, heads: info.heads, weights: 'f32', transport: 'f32', model: { dim: mesh.g.dim, nLayers: mesh.g.nLayers, nHeads: mesh.g.nHeads, nKvHeads: mesh.g.nKvHeads, vocabSize: mesh.g.vocabSize, seqLen: mesh.g.seqLen } });
  const ackOf = (id: string) => listener.heard.filter((m) => m.topic === t.ack(info.id)).map((m) => parseControl('ack', m.payload) as AckMessage).find((a) => a.id === id);
  listener.client.publish(t.assign(info.id), assignment(9, 'wrong-slot'), { qos: 1 });
  await until(() => ackOf('wrong-slot') !== undefined, 'the ack of the wrong-slot assignment');
  expect(ackOf('wrong-slot')).toMatchObject({ ok: false, error: 'radio node radio-1 signs its results with its radio address 1; it cannot take slot 9' });
  listener.client.publish(t.assign(info.id), assignment(1, 'own-slot'), { qos: 1 });
  await until(() => ackOf('own-slot') !== undefined, 'the ack of the own-slot assignment');
  expect(ackOf('own-slot')).toMatchObject({ ok: true });
  expect(bridge.counters.refusedAssignments).toBe(1);
});

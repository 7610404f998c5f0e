/**
 * Sensor telemetry over the radio: TypeScript and native radio nodes send their readings on a
 * schedule as sensor reports (frames of kind `sensors`, in the slot after their reply), the
 * gateway's MAC reassembles and decodes them, and the bridge publishes them as the sensor
 * telemetry an MQTT node sends (schemas/sensors.json on mesh-llm/{mesh}/sensors/{node}), where
 * steering's readings take them.
 */
import { Engine } from '../lib/llm/engine';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { topicsFor } from '../lib/mesh/wire';
import { SENSOR_REPORT_FRAME_BYTES, SensorReadings, decodeSensorReport, encodeSensorReport } from '../lib/radio/sensor-report';
import { SensorMessage, parseSensorMessage } from '../lib/steering/sensors';
import { readingsFromTrace } from '../lib/steering/readings';
import { generateOverRadio } from '../gateway-bridge/run';
import { NativeRadioNodes } from '../gateway-bridge/native-radio';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { modelPaths } from './support/fixtures';
import { ONCE_OPTIONS, bridgePaths, brokerProcess, quiet } from './support/radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** Readings every float32 holds exactly, different for each node. */
const readingsOf = (address: number): SensorReadings => ({ soundDb: 40 + address, lightLux: 250 * address, temperatureC: 20.5 + address / 4, humidityPct: 50 });

test('a sensor report holds the present channels as float32, null for a sensor that gave nothing, and refuses what is not one', () => {
  const r = { soundDb: 41.5, vibrationG: null, humidityPct: 55 };
  expect(decodeSensorReport(encodeSensorReport(r))).toEqual(r);
  expect(SENSOR_REPORT_FRAME_BYTES).toBe(38);
  expect(() => encodeSensorReport({ lightLux: Infinity })).toThrow(/lightLux is Infinity/);
  const bad = encodeSensorReport({ soundDb: 1 });
  expect(() => decodeSensorReport(bad.subarray(0, 5))).toThrow(/a sensor report of 5 bytes; its mask \(1 channels\) implies 6/);
  expect(() => decodeSensorReport(Buffer.of(1, 0x40))).toThrow(/mask 0x40 names channels that do not exist/);
  expect(() => decodeSensorReport(Buffer.of(2, 0))).toThrow(/version 2/);
  const inf = Buffer.from(bad);
  inf.writeFloatLE(-Infinity, 2);
  expect(() => decodeSensorReport(inf)).toThrow(/soundDb is not finite \(-Infinity\)/);
});

test('native radio nodes 1 and 3 and TypeScript radio nodes 2 and 4 send their readings over the radio with 10% loss; the gateway publishes them as each node\'s sensor telemetry, steering\'s readings take them, and the tokens stay the int8 mesh\'s', async () => {
  const brokerUrl = await brokerProcess(cleanups);
  const sensors = { everyMs: 1500, read: readingsOf };
  const mesh = new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes: 4, quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0.1, seed: 4, nativeAddresses: new Set([1, 3]), sensors });
  const natives = await NativeRadioNodes.start({ mesh, modelPath: modelPaths.model, addresses: [1, 3], sensors });
  cleanups.push(() => natives.close());
  const meshId = 'radio-sensors';
  const listener = await connectMqtt({ url: brokerUrl, clientId: 'radio-sensors-listener' });
  cleanups.push(() => endClient(listener));
  const heard: SensorMessage[] = [];
  listener.on('message', (_topic, payload) => heard.push(parseSensorMessage(payload)));
  await subscribe(listener, [topicsFor(meshId).sensorsAll], 0);

  const generate = { ...ONCE_OPTIONS, steps: 24 };
  const result = await generateOverRadio({ mesh, link: new SimulatedChannelLink(mesh.attachGatewayRadio()), brokerUrl, meshId, ...bridgePaths, generate, log: quiet });
  expect(result.tokens).toEqual((await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate(generate)).tokens);
  await new Promise((r) => setTimeout(r, 300)); // the last publications cross the broker

  for (const info of mesh.infos) {
    const mine = heard.filter((m) => m.node === info.id);
    expect({ node: info.id, reports: mine.length > 1 }).toEqual({ node: info.id, reports: true });
    for (const m of mine) expect(m.readings).toEqual(readingsOf(info.address));
  }
  expect(mesh.nodes.map((n) => n.address)).toEqual([2, 4]);
  for (const n of mesh.nodes) expect(n.counters.sensorReports).toBeGreaterThan(1);
  // steering's readings of a trace: the radio nodes' readings are there, per node, as the MQTT nodes' are
  const at = Math.max(...heard.map((m) => m.at));
  const readings = readingsFromTrace(heard, at + 1, at);
  expect(Object.keys(readings.readings).sort()).toEqual(mesh.infos.map((i) => i.id).sort());
  await natives.close();
});

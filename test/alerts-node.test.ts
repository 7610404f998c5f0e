/**
 * The mesh-llm-alert Node-RED node under node-red-node-test-helper: schema-valid alerts for a
 * burst, alert states and Home Assistant discovery on its other outputs, bad settings refused
 * at deploy, bad input to done(err), and the settings checks the editor loads.
 */
import * as path from 'node:path';
import * as vm from 'node:vm';
import type { Node, NodeMessage } from 'node-red';
import { AlertMessage, alertProblem } from '../lib/alerts/alerts';
import { packageRoot } from '../lib/llm/resolve';
import { simulate } from '../lib/steering/sensors';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(require.resolve('node-red'));

const root = packageRoot();
const alertNode = require(path.join(root, 'dist', 'nodes', 'alert.js'));
const catchNode = require(path.join(root, 'node_modules', '@node-red', 'nodes', 'core', 'common', '25-catch.js'));

type Listener = Node & { receive(msg: object): void; on(event: 'input', cb: (msg: NodeMessage & Record<string, unknown>) => void): void };
const nodeOf = (id: string): Listener => helper.getNode(id);

/** Every message that reaches helper node `id`, as it arrives. */
function collect(id: string): (NodeMessage & Record<string, unknown>)[] {
  const got: (NodeMessage & Record<string, unknown>)[] = [];
  nodeOf(id).on('input', (m) => got.push(m));
  return got;
}

const flow = (detectors: unknown) => [
  { id: 'alert', type: 'mesh-llm-alert', name: 'alerts', meshId: 'm1', detectors, discovery: true, discoveryPrefix: 'homeassistant', wires: [['alerts'], ['states'], ['discovery']] },
  { id: 'catcher', type: 'catch', wires: [['caught']] },
  ...['alerts', 'states', 'discovery', 'caught'].map((id) => ({ id, type: 'helper' })),
];

const settle = () => new Promise((r) => setTimeout(r, 50));

describe('the mesh-llm-alert node', () => {
  beforeAll(async () => {
    await helper.startServer();
  });
  afterEach(async () => {
    await helper.unload();
  });
  afterAll(async () => {
    await helper.stopServer();
  });

  test('a burst of vibration gives a schema-valid alert at its start and its end, the node alert state, and discovery configs', async () => {
    await helper.load([alertNode, catchNode], flow([{ kind: 'classic-sta-lta', channel: 'vibrationG' }, { kind: 'stale', after: 3600 }]));
    const [alerts, states, discovery, caught] = ['alerts', 'states', 'discovery', 'caught'].map(collect);
    const trace = simulate({ scenario: 'explosion', nodes: ['node-1'], calmSeconds: 60, eventSeconds: 40 });
    for (const m of trace) nodeOf('alert').receive({ topic: m.node, payload: m });
    await settle();
    expect(caught).toEqual([]);
    const payloads = alerts.map((m) => m.payload as AlertMessage);
    for (const a of payloads) expect(alertProblem(a)).toBeNull();
    expect(alerts.every((m) => m.topic === 'mesh-llm/m1/alerts')).toBe(true);
    expect(payloads.map((a) => [a.node, a.channel, a.detector, a.end === null])).toEqual([
      ['node-1', 'vibrationG', 'classic-sta-lta', true],
      ['node-1', 'vibrationG', 'classic-sta-lta', false],
    ]);
    expect(payloads[0].onset).toBeGreaterThanOrEqual(60000);
    expect(payloads[0].onset).toBeLessThanOrEqual(62000);
    expect(payloads[1].id).toBe(payloads[0].id);
    expect(states.map((m) => [m.topic, m.payload, m.retain])).toEqual([
      ['mesh-llm/m1/alert-state/node-1', 'OFF', true],
      ['mesh-llm/m1/alert-state/node-1', 'ON', true],
      ['mesh-llm/m1/alert-state/node-1', 'OFF', true],
    ]);
    expect(discovery.map((m) => m.topic)).toEqual([
      ...['soundDb', 'vibrationG', 'lightLux', 'temperatureC', 'humidityPct'].map((c) => `homeassistant/sensor/mesh_llm_m1_node-1_${c}/config`),
      'homeassistant/binary_sensor/mesh_llm_m1_node-1_alert/config',
    ]);
    expect(discovery.every((m) => m.retain === true)).toBe(true);
  });

  test('KL values, bare or in attribution messages, feed the kl-spike detector', async () => {
    await helper.load([alertNode, catchNode], flow([{ kind: 'kl-spike', warmup: 4 }]));
    const alerts = collect('alerts');
    for (const kl of [0.01, 0.012, 0.011, 0.009, 0.01]) nodeOf('alert').receive({ payload: kl });
    nodeOf('alert').receive({ payload: { protocol: 1, session: 1, pos: 9, token: 5, piece: 'x', top: 'gateway', nodes: [{ node: 'gateway', kl: 0.9 }] } });
    await settle();
    expect(alerts.map((m) => (m.payload as AlertMessage).node)).toEqual(['gateway']);
    expect(alertProblem(alerts[0].payload)).toBeNull();
  });

  test('bad settings are refused at deploy: an error naming the problem, a red status, and every message refused', async () => {
    await helper.load([alertNode, catchNode], flow([{ kind: 'classic-sta-lta', channel: 'vibrationG', sta: 40, lta: 30 }, { kind: 'threshold', channel: 'soundDb', on: 80, off: 90 }]));
    await settle();
    const logged = helper.log().args.map((a: [{ level: number; msg: unknown }]) => a[0]).filter((e: { level: number }) => e.level === helper.log().ERROR);
    const text = logged.map((e: { msg: unknown }) => String(e.msg)).join('\n');
    expect(text).toMatch(/detector 1 \(classic-sta-lta on vibrationG\): the STA window \(40 s\) must be shorter than the LTA window \(30 s\)/);
    expect(text).toMatch(/detector 2 \(threshold on soundDb\): trigger-off \(90\) is above trigger-on \(80\)/);
    const n = nodeOf('alert') as unknown as { status: { thisValues: unknown[]; args: [{ fill: string }][] } };
    const own = n.status.args.filter((_a, i) => n.status.thisValues[i] === nodeOf('alert'));
    expect(own.map((a) => a[0].fill)).toContain('red');
    const caught = collect('caught');
    nodeOf('alert').receive({ payload: 0.1 });
    await settle();
    expect((caught[0]?.error as { message: string }).message).toMatch(/has bad settings: bad alert settings: detector 1/);
  });

  test('bad input reaches the Catch node through done(err), and the node keeps working', async () => {
    await helper.load([alertNode, catchNode], flow([{ kind: 'threshold', channel: 'soundDb', on: 80, off: 70 }]));
    const [alerts, caught] = ['alerts', 'caught'].map(collect);
    nodeOf('alert').receive({ payload: 'not json' });
    nodeOf('alert').receive({ payload: { protocol: 1, node: 'n1', at: 0, readings: { soundDb: 'loud' } } });
    nodeOf('alert').receive({ payload: { hello: 1 } });
    nodeOf('alert').receive({ payload: { protocol: 1, node: 'n1', at: 1000, readings: { soundDb: 95 } } });
    await settle();
    expect(caught.map((m) => (m.error as { message: string }).message)).toEqual([
      expect.stringMatching(/expects a sensor message .*; got text that is not JSON/),
      expect.stringMatching(/sensors message fails schemas\/sensors.json: \/readings\/soundDb must be number,null/),
      expect.stringMatching(/got an object with hello/),
    ]);
    expect(alerts.map((m) => (m.payload as AlertMessage).value)).toEqual([95]);
  });

  test("the editor's checks are lib/alerts/settings.ts, served as a browser script", async () => {
    await helper.load([alertNode, catchNode], flow([{ kind: 'offline' }]));
    const res = await helper.request().get('/mesh-llm-alert/settings.js').expect(200);
    const window: { meshLlmAlertSettings?: { checkDetectorList(v: unknown, c: string[]): { ok: boolean; problems?: string[] }; SENSOR_CHANNELS: string[] } } = {};
    vm.runInNewContext(res.text, { window });
    const r = window.meshLlmAlertSettings!;
    expect(r.SENSOR_CHANNELS).toContain('vibrationG');
    expect(r.checkDetectorList([{ kind: 'recursive-sta-lta', channel: 'vibrationG', on: 1, off: 2 }], r.SENSOR_CHANNELS).problems).toEqual(['detector 1 (recursive-sta-lta on vibrationG): trigger-off (2) is above trigger-on (1)']);
    expect(r.checkDetectorList([{ kind: 'stale' }], r.SENSOR_CHANNELS).ok).toBe(true);
  });
});

/**
 * Writes the dashboard's part of the shipped flow (flows/mesh-llm.json): a "dashboard" tab of
 * FlowFuse Dashboard 2.0 widgets and the few nodes on the main tab that join it to the model's
 * flow. The templates' Vue components live in flows/dashboard/*.vue, where they can be read and
 * edited as code; this script puts them into the flow. `--check` only says whether the flow is
 * up to date (the tests run it). Every node it writes has an id starting with "dash-", and
 * those are replaced as a whole on each run; the rest of the flow is left as it is.
 *
 *   node dist/scripts/dashboard-flow.js [--check]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../lib/llm/resolve';
import { CHANNEL_NAMES } from '../lib/steering/sensors';

type FlowNode = Record<string, unknown> & { id: string; type: string };

const TAB = 'dash-tab';
const MAIN_TAB = 'mesh-llm-tab';
const MESH = 'mesh-config';
const BUS = 'mqtt-bus';
const MESH_ID = 'default';

/** Detectors of the shipped alert node: immediate ones for the sliders and scenarios, ObsPy's STA/LTA, the node's health, the text. */
export const SHIPPED_DETECTORS = [
  { kind: 'threshold', channel: 'vibrationG', name: 'shaking', direction: 'above', on: 0.2, off: 0.1 },
  { kind: 'threshold', channel: 'soundDb', name: 'loud', direction: 'above', on: 80, off: 70 },
  { kind: 'threshold', channel: 'lightLux', name: 'flash', direction: 'above', on: 5000, off: 2000 },
  { kind: 'classic-sta-lta', channel: 'vibrationG' },
  { kind: 'recursive-sta-lta', channel: 'soundDb' },
  { kind: 'stale' },
  { kind: 'offline' },
  { kind: 'kl-spike' },
];

const CHART_UNITS: Record<string, string> = { soundDb: 'sound, dB SPL', vibrationG: 'vibration, g', lightLux: 'light, lux', temperatureC: 'temperature, °C', humidityPct: 'humidity, %RH' };

function vue(name: string): string {
  return fs.readFileSync(path.join(packageRoot(), 'flows', 'dashboard', `${name}.vue`), 'utf8');
}

function group(id: string, name: string, order: number, width = 6): FlowNode {
  return { id, type: 'ui-group', name, page: 'dash-page', width: String(width), height: '1', order, showTitle: true, className: '', visible: 'true', disabled: 'false', groupType: 'default' };
}

function template(id: string, name: string, groupId: string, file: string, x: number, y: number, wires: string[][] = [[]]): FlowNode {
  return { id, type: 'ui-template', z: TAB, group: groupId, page: '', ui: '', name, order: 1, width: '0', height: '0', head: '', format: vue(file), storeOutMessages: true, passthru: false, resendOnRefresh: true, templateScope: 'local', className: '', x, y, wires };
}

function chart(channel: string, order: number, y: number): FlowNode {
  return {
    id: `dash-chart-${channel}`, type: 'ui-chart', z: TAB, group: 'dash-g-sensors', name: CHART_UNITS[channel], label: CHART_UNITS[channel], order, chartType: 'line', category: 'topic', categoryType: 'msg',
    xAxisLabel: '', xAxisProperty: '', xAxisPropertyType: 'timestamp', xAxisType: 'time', xAxisFormat: '', xAxisFormatType: 'auto', yAxisLabel: '', yAxisProperty: 'payload', yAxisPropertyType: 'msg', ymin: '', ymax: '',
    action: 'append', stackSeries: false, pointShape: 'circle', pointRadius: 2, showLegend: true, removeOlder: 5, removeOlderUnit: '60', removeOlderPoints: '', colors: ['#1f6feb', '#999999', '#ff7f0e', '#2ca02c', '#a347e1', '#d62728', '#ff9896', '#9467bd', '#c5b0d5'],
    textColor: ['#666666'], textColorDefault: true, gridColor: ['#e5e5e5'], gridColorDefault: true, width: '6', height: '3', className: '', interpolation: 'linear', x: 880, y, wires: [[]],
  };
}

function mqttIn(id: string, name: string, topic: string, x: number, y: number, wires: string[][]): FlowNode {
  return { id, type: 'mqtt in', z: TAB, name, topic, qos: '0', datatype: 'json', broker: BUS, nl: false, rap: true, rh: 0, inputs: 0, x, y, wires };
}

function mqttOut(id: string, name: string, topic: string, x: number, y: number, retain = ''): FlowNode {
  return { id, type: 'mqtt out', z: TAB, name, topic, qos: '', retain, respTopic: '', contentType: '', userProps: '', correl: '', expiry: '', broker: BUS, x, y, wires: [] };
}

/** The sensor charts' feed: the chosen node's readings, each beside its channel's calibration baseline. */
const SERIES_FUNCTION = `// the node the charts show: picked in the dropdown, else the first seen
const channels = ${JSON.stringify(CHANNEL_NAMES)};
if (msg.topic === 'select') {
  flow.set('dashNode', msg.payload);
  return channels.map(() => ({ payload: [] })); // clears the charts
}
const p = msg.payload;
if (p && p.channels && p.node) {
  // a baseline (schemas/baseline.json), retained on the bus by the calibration
  const all = flow.get('dashBaselines') || {};
  all[p.node] = p.channels;
  flow.set('dashBaselines', all);
  return null;
}
if (!p || !p.readings) return null;
let who = flow.get('dashNode');
if (!who) flow.set('dashNode', (who = p.node));
if (p.node !== who) return null;
const base = (flow.get('dashBaselines') || {})[who] || {};
return channels.map((c) => {
  const v = p.readings[c];
  if (typeof v !== 'number') return null;
  const out = [{ topic: who, payload: v }];
  if (base[c]) out.push({ topic: 'baseline', payload: base[c].median });
  return out;
});`;

const KL_FUNCTION = `// the per-token KL of steered runs, for the kl-spike detector (schemas/event.json token events)
const e = msg.payload;
if (!e || e.kind !== 'token' || !e.sampled || typeof e.kl !== 'number') return null;
return { topic: e.node || 'gateway', payload: { kl: e.kl, node: e.node || undefined, at: e.at } };`;

const NOTIFY_FUNCTION = `// one notification per alert, when it starts
const a = msg.payload;
if (!a || a.end !== null) return null;
return { payload: a.text || (a.node + ': ' + a.channel + ' ' + a.detector + ' ' + a.value) };`;

const WEBHOOK_FUNCTION = `// POSTs each alert to the URL in MESH_LLM_ALERT_WEBHOOK, when it is set
const url = env.get('MESH_LLM_ALERT_WEBHOOK');
if (!url) return null;
return { url, method: 'POST', headers: { 'content-type': 'application/json' }, payload: msg.payload };`;

function func(id: string, name: string, code: string, outputs: number, x: number, y: number, wires: string[][]): FlowNode {
  return { id, type: 'function', z: TAB, name, func: code, outputs, timeout: 0, noerr: 0, initialize: '', finalize: '', libs: [], x, y, wires };
}

/** The dashboard's nodes, the main tab's joins included. */
export function dashboardNodes(): FlowNode[] {
  const charts = CHANNEL_NAMES.map((c, i) => chart(c, i + 2, 360 + i * 50));
  return [
    { id: TAB, type: 'tab', label: 'dashboard', disabled: false, info: 'The dashboard (FlowFuse Dashboard 2.0, at /dashboard): the mesh map and the run, the answer shaded by how far the sensors moved each token, the sensors and their baselines, the alerts and their hooks, the simulated sensors\' controls. docs/DASHBOARD.md explains each panel; the templates\' sources are flows/dashboard/*.vue (scripts/dashboard-flow.ts writes them in).' },
    { id: 'dash-base', type: 'ui-base', name: 'mesh-llm', path: '/dashboard', appIcon: '', includeClientData: true, acceptsClientConfig: ['ui-notification', 'ui-control'], showPathInSidebar: false, headerContent: 'page', navigationStyle: 'default', titleBarStyle: 'default', showReconnectNotification: true, notificationDisplayTime: 1, showDisconnectNotification: true },
    { id: 'dash-theme', type: 'ui-theme', name: 'mesh-llm', colors: { surface: '#1f3a5f', primary: '#1f6feb', bgPage: '#eef1f5', groupBg: '#ffffff', groupOutline: '#d0d7de' }, sizes: { density: 'compact', pagePadding: '10px', groupGap: '10px', groupBorderRadius: '6px', widgetGap: '8px' } },
    { id: 'dash-page', type: 'ui-page', name: 'mesh-llm', ui: 'dash-base', path: '/', icon: 'home', layout: 'grid', theme: 'dash-theme', breakpoints: [{ name: 'Default', px: '0', cols: '3' }, { name: 'Tablet', px: '576', cols: '6' }, { name: 'Small Desktop', px: '768', cols: '9' }, { name: 'Desktop', px: '1024', cols: '12' }], order: 1, className: '', visible: 'true', disabled: 'false' },
    group('dash-g-generate', 'Generate', 1),
    group('dash-g-mesh', 'The mesh thinking', 2),
    group('dash-g-sensors', 'Sensors and baselines', 3),
    group('dash-g-alerts', 'Alerts', 4),
    group('dash-g-sim', 'Simulated sensors', 5),
    group('dash-g-radio', 'Radio', 6),
    group('dash-g-runs', 'Past runs', 7),

    { id: 'dash-c-1', type: 'comment', z: TAB, name: 'What the mesh does (mesh-llm/default/events) → the dashboard', info: '', x: 200, y: 40, wires: [] },
    { id: 'dash-monitor', type: 'mesh-llm-monitor', z: TAB, name: 'monitor', mesh: MESH, x: 150, y: 100, wires: [['dash-generate', 'dash-mesh', 'dash-radio', 'dash-sim']] },
    template('dash-generate', 'prompt, answer', 'dash-g-generate', 'generate', 420, 80, [['dash-to-prompt']]),
    { id: 'dash-to-prompt', type: 'link out', z: TAB, name: 'to the prompt node', mode: 'link', links: ['dash-from-dashboard'], x: 640, y: 80, wires: [] },
    { id: 'dash-errors-in', type: 'link in', z: TAB, name: 'errors of dashboard requests', links: ['dash-errors-out'], x: 210, y: 60, wires: [['dash-generate']] },
    template('dash-mesh', 'mesh map, progress', 'dash-g-mesh', 'mesh', 420, 130),
    template('dash-radio', 'radio', 'dash-g-radio', 'radio', 420, 180, [['dash-sim-out']]),
    template('dash-sim', 'sensor controls', 'dash-g-sim', 'sensors', 420, 230, [['dash-sim-out']]),
    mqttOut('dash-sim-out', 'sim control', `mesh-llm/${MESH_ID}/sim/control`, 660, 230),

    { id: 'dash-c-2', type: 'comment', z: TAB, name: 'Sensors: the chosen node\'s readings beside their baselines', info: '', x: 200, y: 300, wires: [] },
    { id: 'dash-sensor-in', type: 'mesh-llm-sensor-in', z: TAB, name: 'sensors', mesh: MESH, x: 130, y: 380, wires: [['dash-series', 'dash-alert']] },
    mqttIn('dash-baselines-in', 'baselines', `mesh-llm/${MESH_ID}/baseline/+`, 130, 430, [['dash-series']]),
    {
      id: 'dash-node-select', type: 'ui-dropdown', z: TAB, group: 'dash-g-sensors', name: 'node', label: 'Node', tooltip: '', order: 1, width: '0', height: '0', passthru: false, multiple: false, chips: false, clearable: false,
      options: Array.from({ length: 8 }, (_, i) => ({ label: `node-${i + 1}`, value: `node-${i + 1}`, type: 'str' })), payload: '', topic: 'select', topicType: 'str', className: '', typeIsComboBox: true, msgTrigger: 'onChange', x: 130, y: 480, wires: [['dash-series']],
    },
    func('dash-series', 'reading + baseline per channel', SERIES_FUNCTION, CHANNEL_NAMES.length, 560, 430, charts.map((c) => [c.id])),
    ...charts,

    { id: 'dash-c-3', type: 'comment', z: TAB, name: 'Alert hooks: MQTT, a webhook, the dashboard; Home Assistant discovery', info: '', x: 230, y: 640, wires: [] },
    mqttIn('dash-status-in', 'node statuses', `mesh-llm/${MESH_ID}/status/+`, 130, 700, [['dash-alert']]),
    mqttIn('dash-events-in', 'mesh events', `mesh-llm/${MESH_ID}/events`, 130, 750, [['dash-kl']]),
    func('dash-kl', 'KL of steered tokens', KL_FUNCTION, 1, 330, 750, [['dash-alert']]),
    { id: 'dash-alert', type: 'mesh-llm-alert', z: TAB, name: 'alerts', meshId: MESH_ID, detectors: SHIPPED_DETECTORS, discovery: true, discoveryPrefix: 'homeassistant', x: 540, y: 720, wires: [['dash-alerts-out', 'dash-alert-list', 'dash-notify-text', 'dash-webhook', 'dash-alert-record'], ['dash-state-out'], ['dash-discovery-out']] },
    // every alert, a JSON line each, in the data folder (mesh-llm start sets MESH_LLM_ALERTS_FILE; unset: not recorded)
    { id: 'dash-alert-record', type: 'file', z: TAB, name: 'record alerts (MESH_LLM_ALERTS_FILE)', filename: 'MESH_LLM_ALERTS_FILE', filenameType: 'env', appendNewline: true, createDir: true, overwriteFile: 'false', encoding: 'none', x: 820, y: 900, wires: [[]] },
    mqttOut('dash-alerts-out', 'alerts (msg.topic)', '', 800, 660),
    template('dash-alert-list', 'alert list', 'dash-g-alerts', 'alerts', 800, 700),
    func('dash-notify-text', 'alert text', NOTIFY_FUNCTION, 1, 780, 740, [['dash-notify']]),
    { id: 'dash-notify', type: 'ui-notification', z: TAB, ui: 'dash-base', position: 'top right', colorDefault: false, color: '#b00020', displayTime: '6', showCountdown: true, outputs: 0, allowDismiss: true, dismissText: 'Close', allowConfirm: false, confirmText: 'Confirm', raw: false, className: '', name: 'alert notification', x: 990, y: 740, wires: [] },
    func('dash-webhook', 'webhook (MESH_LLM_ALERT_WEBHOOK)', WEBHOOK_FUNCTION, 1, 800, 780, [['dash-webhook-post']]),
    { id: 'dash-webhook-post', type: 'http request', z: TAB, name: 'POST alert', method: 'use', ret: 'txt', paytoqs: 'ignore', url: '', tls: '', persist: false, proxy: '', insecureHTTPParser: false, authType: '', senderr: false, headers: [], x: 1040, y: 780, wires: [[]] },
    mqttOut('dash-state-out', 'alert state (retained)', '', 800, 820),
    mqttOut('dash-discovery-out', 'Home Assistant discovery (retained)', '', 830, 860),

    { id: 'dash-c-4', type: 'comment', z: TAB, name: 'Past runs: the run store\'s newest jobs, every 2 s', info: '', x: 190, y: 960, wires: [] },
    { id: 'dash-runs-tick', type: 'inject', z: TAB, name: 'every 2 s', props: [{ p: 'payload' }, { p: 'topic', vt: 'str' }], repeat: '2', crontab: '', once: true, onceDelay: 0.5, topic: 'list', payload: '20', payloadType: 'num', x: 140, y: 1010, wires: [['dash-runs-read']] },
    { id: 'dash-runs-read', type: 'mesh-llm-run', z: TAB, name: 'newest jobs', mesh: MESH, whole: false, x: 330, y: 1010, wires: [['dash-runs']] },
    template('dash-runs', 'past runs', 'dash-g-runs', 'runs', 520, 1010),

    // on the main tab: the dashboard's requests into the prompt node, their errors back to the page
    { id: 'dash-from-dashboard', type: 'link in', z: MAIN_TAB, name: 'from the dashboard', links: ['dash-to-prompt'], x: 150, y: 350, wires: [['prompt']] },
    { id: 'dash-error-from', type: 'switch', z: MAIN_TAB, name: 'from the dashboard?', property: '_client', propertyType: 'msg', rules: [{ t: 'nnull' }], checkall: 'true', repair: false, outputs: 1, x: 700, y: 600, wires: [['dash-errors-out']] },
    { id: 'dash-errors-out', type: 'link out', z: MAIN_TAB, name: 'to the dashboard', mode: 'link', links: ['dash-errors-in'], x: 860, y: 600, wires: [] },
  ];
}

/** The flow with its dashboard nodes replaced by these. */
export function withDashboard(flow: FlowNode[]): FlowNode[] {
  const kept = flow.filter((n) => !n.id.startsWith('dash-'));
  const errorStatus = kept.find((n) => n.id === 'error-status');
  if (errorStatus) {
    const wires = (errorStatus.wires as string[][])[0];
    if (!wires.includes('dash-error-from')) wires.push('dash-error-from');
  }
  return [...kept, ...dashboardNodes()];
}

function main(argv: string[]): number {
  const file = path.join(packageRoot(), 'flows', 'mesh-llm.json');
  const before = fs.readFileSync(file, 'utf8');
  const after = `${JSON.stringify(withDashboard(JSON.parse(before) as FlowNode[]), null, 2)}\n`;
  if (argv.includes('--check')) {
    if (before === after) return 0;
    process.stderr.write('flows/mesh-llm.json is not up to date with flows/dashboard/*.vue and scripts/dashboard-flow.ts: run `node dist/scripts/dashboard-flow.js`\n');
    return 1;
  }
  if (before !== after) fs.writeFileSync(file, after);
  process.stdout.write(`flows/mesh-llm.json: ${before === after ? 'already up to date' : 'dashboard written'}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));

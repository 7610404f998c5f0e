/**
 * The mesh-llm-alert node in the Node-RED editor, in a real browser (Debian's chromium, or
 * MESH_LLM_CHROMIUM, driven by playwright-core): a flow carrying nonsense settings shows the
 * node invalid with the reason, each detector row shows its problems as they are typed, and
 * what the dialog saves is what the runtime takes.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Browser, Page, chromium } from 'playwright-core';
import express from 'express';
import { DEFAULT_DETECTORS } from '../lib/alerts/settings';
import { packageRoot } from '../lib/llm/resolve';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const RED = require('node-red');

const chromiumPath = process.env.MESH_LLM_CHROMIUM ?? '/usr/bin/chromium';

type Probe = { valid: boolean; validationErrors: string[]; detectors: unknown[] };

const flow = [
  { id: 'tab', type: 'tab', label: 'alerts' },
  { id: 'bad', type: 'mesh-llm-alert', z: 'tab', name: 'bad', meshId: 'default', detectors: [{ kind: 'classic-sta-lta', channel: 'vibrationG', sta: 40, lta: 30 }], discovery: true, discoveryPrefix: 'homeassistant', x: 200, y: 100, wires: [[], [], []] },
  { id: 'good', type: 'mesh-llm-alert', z: 'tab', name: 'good', meshId: 'default', detectors: [{ kind: 'stale', after: 10 }], discovery: true, discoveryPrefix: 'homeassistant', x: 200, y: 200, wires: [[], [], []] },
];

describe('the alert node in the editor', () => {
  let server: http.Server;
  let browser: Browser;
  let page: Page;
  let dir: string;

  beforeAll(async () => {
    if (!fs.existsSync(chromiumPath)) throw new Error(`no chromium at ${chromiumPath}: apt-get install chromium (or set MESH_LLM_CHROMIUM)`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-alert-editor-'));
    const nodesDir = path.join(dir, 'nodes');
    fs.mkdirSync(nodesDir);
    for (const f of ['alert.js', 'alert.html']) fs.symlinkSync(path.join(packageRoot(), 'dist', 'nodes', f), path.join(nodesDir, f));
    fs.writeFileSync(path.join(dir, 'flows.json'), JSON.stringify(flow));
    const app = express();
    server = http.createServer(app);
    RED.init(server, { userDir: dir, nodesDir, flowFile: 'flows.json', httpAdminRoot: '/', credentialSecret: false, logging: { console: { level: 'off' } }, editorTheme: { tours: false }, diagnostics: { enabled: false } });
    app.use('/', RED.httpAdmin);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    await RED.start();
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await page.waitForSelector('#red-ui-workspace-chart g.red-ui-flow-node', { timeout: 30000 });
  });

  afterAll(async () => {
    await browser?.close();
    await RED.stop?.();
    await new Promise((r) => server?.close(r));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const probe = (id: string): Promise<Probe> =>
    page.evaluate((nodeId) => {
      const n = (globalThis as unknown as { RED: { nodes: { node(id: string): Probe } } }).RED.nodes.node(nodeId);
      return { valid: n.valid, validationErrors: n.validationErrors, detectors: n.detectors };
    }, id);
  const edit = (id: string) => page.evaluate((nodeId) => {
    const R = (globalThis as unknown as { RED: { nodes: { node(id: string): unknown }; editor: { edit(n: unknown): void } } }).RED;
    R.editor.edit(R.nodes.node(nodeId));
  }, id);
  const problems = () => page.$$eval('.mesh-llm-alert-problems', (els) => els.map((e) => e.textContent));
  const done = () => page.evaluate(() => (globalThis as unknown as { $: (s: string) => { trigger(e: string): void } }).$('#node-dialog-ok').trigger('click'));

  test('a flow with an STA window longer than the LTA shows the node invalid, with the reason; a sound one is valid; a new node starts with the default detectors', async () => {
    expect(await probe('bad')).toMatchObject({ valid: false, validationErrors: ['detector 1 (classic-sta-lta on vibrationG): the STA window (40 s) must be shorter than the LTA window (30 s)'] });
    expect(await probe('good')).toMatchObject({ valid: true, validationErrors: [] });
    const defaults = await page.evaluate(() => (globalThis as unknown as { RED: { nodes: { getType(t: string): { defaults: { detectors: { value: unknown } } } } } }).RED.nodes.getType('mesh-llm-alert').defaults.detectors.value);
    expect(defaults).toEqual(DEFAULT_DETECTORS);
  });

  test('the dialog shows a row\'s problems as they are typed, and the node is valid once they are fixed', async () => {
    await edit('bad');
    await page.waitForSelector('[data-key="lta"]');
    expect(await problems()).toEqual(['the STA window (40 s) must be shorter than the LTA window (30 s)']);
    await page.fill('[data-key="off"]', '9');
    await page.press('[data-key="off"]', 'Tab');
    expect((await problems())[0]).toMatch(/trigger-off \(9\) is above trigger-on \(4\)/);
    await page.fill('[data-key="off"]', '');
    await page.fill('[data-key="lta"]', '60');
    await page.press('[data-key="lta"]', 'Tab');
    expect(await problems()).toEqual(['']);
    await done();
    await page.waitForTimeout(300);
    expect(await probe('bad')).toMatchObject({ valid: true, detectors: [{ kind: 'classic-sta-lta', channel: 'vibrationG', sta: 40, lta: 60 }] });
  });

  test('a negative stale window typed in the dialog leaves the node invalid', async () => {
    await edit('good');
    await page.waitForSelector('[data-key="after"]');
    await page.fill('[data-key="after"]', '-5');
    await page.press('[data-key="after"]', 'Tab');
    expect(await problems()).toEqual(['after must be above 0 s (got -5)']);
    await done();
    await page.waitForTimeout(300);
    expect(await probe('good')).toMatchObject({ valid: false, validationErrors: ['detector 1 (stale): after must be above 0 s (got -5)'] });
  });
});

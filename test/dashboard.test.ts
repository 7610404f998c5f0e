/**
 * The dashboard (FlowFuse Dashboard 2.0 in the shipped flow, at /dashboard): its model folds
 * the mesh events into tiles, progress and the answer; and, end to end in a real browser
 * (Debian's chromium driven by playwright-core) against `mesh-llm start` (what `npm start`
 * runs): a generation from the page streams its tokens while the node tiles change state, a
 * request with a bad field shows its error on the page, a malformed event on the bus changes
 * nothing, and a simulated vibration slider raises an alert in the list and a notification.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DashboardModel } from '../lib/dashboard/state';
import { packageRoot } from '../lib/llm/resolve';
import { MeshEventMessage, topicsFor } from '../lib/mesh/wire';
import { binPath } from './support/cli';
import { RunStore } from '../lib/runs/store';
import { launchChromium } from './support/editor';
import { goldenText } from './support/fixtures';
import { connectAsUser } from './support/bus';

const at = 1764140000000;
const ev = (e: Record<string, unknown>) => ({ protocol: 1, at, ...e }) as MeshEventMessage;

describe('the dashboard model', () => {
  test('a run: tiles follow broadcast, result and gather; progress counts positions with seconds per token and an ETA; the answer keeps KL and node', () => {
    const m = new DashboardModel();
    m.event(ev({ kind: 'assigned', nodes: [{ node: 'node-2', heads: [2, 3] }, { node: 'node-1', heads: [0, 1] }] }));
    m.event(ev({ kind: 'run-start', run: 'r', session: 5, source: 'cli', prompt: 'Once', steps: 10, temperature: 0, promptTokens: 2 }));
    m.event(ev({ kind: 'broadcast', session: 5, pos: 0, layer: 0 }));
    expect(m.snapshot().nodes.map((n) => [n.node, n.state, n.layer])).toEqual([['node-1', 'computing', 0], ['node-2', 'computing', 0]]);
    m.event(ev({ kind: 'result', session: 5, pos: 0, layer: 0, node: 'node-2', ms: 60 }));
    expect(m.snapshot().nodes.map((n) => n.state)).toEqual(['computing', 'sent']);
    m.event(ev({ kind: 'gather', session: 5, pos: 0, layer: 0, ms: 61, nodes: [{ node: 'node-2', ms: 60 }, { node: 'node-1', ms: 61 }] }));
    expect(m.snapshot().nodes.map((n) => [n.state, n.ms])).toEqual([['sent', 61], ['sent', 60]]);
    m.event(ev({ kind: 'token', run: 'r', session: 5, pos: 1, token: 403, piece: 'Once', sampled: false, secondsPerToken: 2 }));
    m.event(ev({ kind: 'token', run: 'r', session: 5, pos: 2, token: 407, piece: ' upon', sampled: true, probability: 0.5, kl: 0.1, node: 'node-2', secondsPerToken: 4 }));
    const s = m.snapshot();
    expect(s.progress).toMatchObject({ state: 'running', pos: 2, steps: 10, layers: 1, secondsPerToken: 3, etaSeconds: 24 });
    expect(s.tokens).toEqual([
      { pos: 1, piece: 'Once', sampled: false, probability: null, kl: null, node: null },
      { pos: 2, piece: ' upon', sampled: true, probability: 0.5, kl: 0.1, node: 'node-2' },
    ]);
    m.event(ev({ kind: 'run-end', run: 'r', tokens: 2, seconds: 6 }));
    expect(m.snapshot().progress).toMatchObject({ state: 'done', etaSeconds: 0, elapsedSeconds: 6 });
    expect(m.snapshot().nodes.map((n) => n.state)).toEqual(['idle', 'idle']);
  });

  test('late, failed and offline nodes show as such; a radio run starts at receiving and keeps the radio figures', () => {
    const m = new DashboardModel();
    m.event(ev({ kind: 'assigned', nodes: [{ node: 'a', heads: [0] }, { node: 'b', heads: [1] }, { node: 'c', heads: [2] }] }));
    m.event(ev({ kind: 'run-start', run: 'r', session: 1, source: 'radio', prompt: '', steps: 4, temperature: 0, promptTokens: 1 }));
    m.event(ev({ kind: 'broadcast', session: 1, pos: 0, layer: 3 }));
    m.status({ protocol: 1, node: 'c', state: 'offline' });
    expect(m.snapshot().nodes.map((n) => n.state)).toEqual(['receiving', 'receiving', 'offline']);
    m.event(ev({ kind: 'late', session: 1, pos: 0, layer: 3, ms: 900, nodes: ['b'] }));
    m.event(ev({ kind: 'failed', session: 1, reason: 'head node b did not answer', nodes: ['b'] }));
    m.event(ev({ kind: 'radio', pos: 1, simulatedSeconds: 3, boundSeconds: 2.9, airtimeSeconds: { broadcast: 1 }, framesLost: 2, framesResent: 1, dutyCycle: [{ band: 'g1 gateway', used: 0.5 }], nodes: [{ node: 'a', rssi: -90, snr: 7.5 }] }));
    const s = m.snapshot();
    expect(s.nodes.map((n) => n.state)).toEqual(['receiving', 'failed', 'offline']);
    expect(s.nodes[0]).toMatchObject({ rssi: -90, snr: 7.5 });
    expect(s.progress.error).toBe('head node b did not answer');
    expect(s.radio).toMatchObject({ framesLost: 2, dutyCycle: [{ band: 'g1 gateway', used: 0.5 }] });
    m.event(ev({ kind: 'failover', session: 2, pos: 0, layer: 3, lost: ['a'], moves: [{ heads: [0], from: 'a', to: 'b' }], replayed: 3, replayMs: 40 }));
    expect(m.snapshot().nodes.map((n) => [n.state, n.heads])).toEqual([['failed', []], ['failed', [0, 1]], ['offline', [2]]]);
    expect(m.snapshot().progress.failovers).toBe(1);
    m.event(ev({ kind: 'run-end', run: 'r', tokens: 0, seconds: 1, error: 'head node b did not answer' }));
    expect(m.snapshot().progress.state).toBe('failed');
    m.status({ protocol: 1, node: 'c', state: 'ready' });
    expect(m.snapshot().nodes.map((n) => n.state)).toEqual(['failed', 'failed', 'idle']);
  });

  test('flows/mesh-llm.json holds the dashboard as flows/dashboard/*.vue and scripts/dashboard-flow.ts write it', () => {
    expect(() => execFileSync(process.execPath, [path.join(packageRoot(), 'dist', 'scripts', 'dashboard-flow.js'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  test("another run's tokens do not enter the answer", () => {
    const m = new DashboardModel();
    m.event(ev({ kind: 'run-start', run: 'r1', session: 1, source: 'flow', prompt: '', steps: 4, temperature: 0, promptTokens: 1 }));
    m.event(ev({ kind: 'token', run: 'r0', session: 1, pos: 1, token: 3, piece: 'x', sampled: true }));
    expect(m.snapshot().tokens).toEqual([]);
  });
});

/** `mesh-llm start` (what `npm start` runs) on a free port, and chromium on its dashboard. */
function startWithDashboard(args: string[]) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-dashboard-'));
  const s = { server: null as ChildProcess | null, url: '', brokerUrl: '', output: '', browser: null as Browser | null, page: null as unknown as Page, dataDir };
  beforeAll(async () => {
    const server = spawn(process.execPath, [binPath, 'start', '--port', '0', '--data', dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    s.server = server;
    [s.url, s.brokerUrl] = await new Promise<[string, string]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mesh-llm start did not come up:\n${s.output}`)), 60000);
      const onData = (d: Buffer) => {
        s.output += d.toString();
        const dash = /dashboard:\s+(http:\/\/\S+?)\s/.exec(s.output);
        const bus = /MQTT bus:\s+(mqtt:\/\/\S+)\s/.exec(s.output);
        if (dash && bus) {
          clearTimeout(timer);
          resolve([dash[1], bus[1]]);
        }
      };
      server.stdout?.on('data', onData);
      server.stderr?.on('data', onData);
      server.once('exit', (code) => reject(new Error(`mesh-llm start exited with ${code}:\n${s.output}`)));
    });
    s.browser = await launchChromium();
    s.page = await s.browser.newPage({ viewport: { width: 1600, height: 1100 } });
    await s.page.goto(s.url);
    await s.page.locator('.ml-generate').waitFor({ timeout: 30000 });
  }, 90000);
  afterAll(async () => {
    await s.browser?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
    const server = s.server;
    if (!server || server.exitCode !== null) return;
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    const stuck = setTimeout(() => server.kill('SIGKILL'), 20000);
    await exited;
    clearTimeout(stuck);
  }, 30000);
  return s;
}

/** Clicks Generate and waits for the run to end, noting every state a tile showed meanwhile. */
async function generateFromPage(page: Page, prompt: string, steps: number, timeoutMs: number): Promise<{ answer: string; seen: Set<string> }> {
  await page.fill('.ml-prompt', prompt);
  await page.fill('.ml-steps', String(steps));
  await page.fill('.ml-temperature', '0');
  await page.click('.ml-generate-button');
  const seen = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  await page.locator('.ml-state', { hasText: 'running' }).waitFor({ timeout: 20000 });
  while (Date.now() < deadline) {
    for (const c of await page.locator('.ml-tile').evaluateAll((es) => es.map((e) => e.className))) seen.add(c.replace('ml-tile ', ''));
    if ((await page.locator('.ml-state').textContent()) === 'done') break;
    await page.waitForTimeout(50);
  }
  return { answer: (await page.locator('.ml-answer').textContent()) ?? '', seen };
}

describe('the dashboard of `mesh-llm start`, in chromium', () => {
  const s = startWithDashboard(['--nodes', '4']);
  let page: Page;
  let url: string;
  let brokerUrl: string;
  let output: string;
  let dataDir: string;
  beforeAll(() => {
    ({ page, url, brokerUrl, output, dataDir } = s);
  });

  test('`mesh-llm start` prints the dashboard beside the editor, and the page shows one tile per head node', async () => {
    expect(url).toMatch(/\/dashboard$/);
    expect(output).toMatch(/Node-RED editor:\s+http:\/\/\S+\//);
    await expectEventually(async () => expect(await page.locator('.ml-tile').count()).toBe(4));
    expect(await page.locator('.ml-tile .ml-name').allTextContents()).toEqual(['node-1', 'node-2', 'node-3', 'node-4']);
  });

  test('a generation from the page streams its tokens while the tiles go computing and sent; a malformed event on the bus changes nothing', async () => {
    const bus = await connectAsUser(brokerUrl, dataDir); // the gateway's login: an anonymous client may publish nothing
    await bus.publishAsync(topicsFor('default').events, '{"protocol":1,"kind":"token","at":1}');
    await bus.publishAsync(topicsFor('default').events, 'not json');
    await bus.endAsync();
    const { answer, seen } = await generateFromPage(page, 'Once upon a time', 100, 80000);
    expect(answer.startsWith(goldenText('once-greedy-64'))).toBe(true);
    expect(await page.locator('.ml-token').count()).toBeGreaterThanOrEqual(64);
    expect(seen.has('computing') || seen.has('sent')).toBe(true);
    expect(await page.locator('.ml-pos').textContent()).toBe('100');
    expect(await page.locator('.ml-error').count()).toBe(0);
  }, 90000);

  test('a request with a bad field shows its error on the page', async () => {
    await page.fill('.ml-temperature', '5');
    await page.click('.ml-generate-button');
    await page.locator('.ml-error', { hasText: /temperature must be <= 2/ }).waitFor({ timeout: 20000 });
    // the next good request clears it
    const { answer } = await generateFromPage(page, 'Once upon a time', 64, 60000);
    expect(answer).toBe(goldenText('once-greedy-64'));
    expect(await page.locator('.ml-error').count()).toBe(0);
  }, 90000);

  test('the past-runs panel lists the finished runs from the run store, newest first: id, prompt, tokens, time and state', async () => {
    const store = RunStore.inDataDir(s.dataDir, { readonly: true });
    const jobs = store.jobs(10);
    store.close();
    const last = jobs[0];
    expect(last).toMatchObject({ state: 'done', position: 64, settings: { prompt: 'Once upon a time', steps: 64 } });
    const row = page.locator(`.ml-run[data-id="${last.id}"]`);
    await row.waitFor({ timeout: 10000 });
    await expectEventually(async () => expect(await row.locator('.ml-run-state').textContent()).toBe('done')); // the panel reads the store every 2 s
    expect(await row.locator('.ml-run-id').textContent()).toBe(last.id.slice(0, 8));
    expect(await row.locator('.ml-run-prompt').textContent()).toBe('Once upon a time');
    expect(await row.locator('.ml-run-tokens').textContent()).toBe('64/64');
    expect((await row.locator('.ml-run-time').textContent())?.length).toBeGreaterThan(0);
    // every recorded job is listed, newest first (the request with a bad field never became a job)
    expect(await page.locator('.ml-run').evaluateAll((es) => es.map((e) => e.getAttribute('data-id')))).toEqual(jobs.map((j) => j.id));
    expect(jobs.map((j) => j.state)).toEqual(['done', 'done']);
  }, 30000);

  test('holding node-2 at 1.5 g of vibration raises its alert in the list and a notification; the screenshot of docs/DASHBOARD.md', async () => {
    await page.locator('tr[data-node="node-2"] input[data-channel="vibrationG"]').fill('1.5');
    await page.locator('.ml-alert.active', { hasText: /node-2 · vibrationG · threshold \(shaking\)/ }).waitFor({ timeout: 20000 });
    await page.locator('.v-snackbar', { hasText: /node-2 vibrationG/ }).first().waitFor({ timeout: 10000 });
    // and recorded: one JSON line per alert message in the data folder
    await expectEventually(async () => {
      const lines = fs.readFileSync(path.join(s.dataDir, 'alerts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(lines).toContainEqual(expect.objectContaining({ node: 'node-2', channel: 'vibrationG', detector: 'threshold', end: null }));
    });
    // MESH_LLM_DASHBOARD_SCREENSHOT=docs/dashboard.png: the picture in docs/DASHBOARD.md.
    const shot = process.env.MESH_LLM_DASHBOARD_SCREENSHOT;
    if (shot) await page.screenshot({ path: path.resolve(packageRoot(), shot), fullPage: true });
    await page.locator('tr[data-node="node-2"] .ml-release').click();
  }, 40000);
});

describe('the dashboard of `mesh-llm start --radio sim`, in chromium', () => {
  const s = startWithDashboard(['--radio', 'sim', '--nodes', '2', '--time-scale', '50', '--scenario', 'none']);

  test('a generation over the simulated radio: the tiles go receiving layer by layer, the radio panel shows airtime, duty cycle and frames, and its time-scale control paces the radio', async () => {
    const page = s.page;
    await page.fill('.ml-prompt', 'Once upon a time');
    await page.fill('.ml-steps', '8');
    await page.fill('.ml-temperature', '0');
    await page.click('.ml-generate-button');
    await page.locator('.ml-state', { hasText: 'running' }).waitFor({ timeout: 20000 });
    // at 50x a layer takes about half a second: long enough to see each state; then 1000x to the end
    const seen = new Set<string>();
    const layers = new Set<string>();
    let faster = false;
    const deadline = Date.now() + 120000;
    while (Date.now() < deadline) {
      for (const c of await page.locator('.ml-tile').evaluateAll((es) => es.map((e) => e.className))) seen.add(c.replace('ml-tile ', ''));
      for (const t of await page.locator('.ml-tile .ml-tile-state').allTextContents()) layers.add(t);
      const radioShown = (await page.locator('.ml-radio-row', { hasText: /frames lost \d+, resent \d+/ }).count()) > 0;
      if (!faster && seen.has('receiving') && layers.size >= 3 && radioShown) {
        await page.click('.ml-scale-button[data-scale="1000"]');
        faster = true;
      }
      if ((await page.locator('.ml-state').textContent()) === 'done') break;
      await page.waitForTimeout(50);
    }
    const answer = (await page.locator('.ml-answer').textContent()) ?? '';
    expect(answer.startsWith('Once upon a time')).toBe(true);
    // the tiles go receiving with each layer's broadcast and follow the layers (on the radio the bridge hands over
    // every result of a layer when its exchange ends, so "sent" shows only for the moment before the next broadcast)
    expect(seen.has('receiving')).toBe(true);
    expect([...layers].filter((t) => /receiving · L\d/.test(t)).length).toBeGreaterThanOrEqual(3);
    expect(faster).toBe(true);
    expect(await page.locator('.ml-radio-row', { hasText: /duty cycle .* gateway/ }).count()).toBe(1);
    await expectEventually(async () => expect(s.output).toMatch(/radio time scale now 1000x/));
  }, 150000);
});

async function expectEventually(check: () => Promise<void>, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

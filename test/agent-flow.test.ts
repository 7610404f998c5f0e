/**
 * flows/agentic.json, the orchestrator as a Node-RED flow (function and MQTT nodes), loaded
 * unchanged by node-red-node-test-helper on a real broker with the four roles as processes:
 * the inject and POST /agent run a request through the roles and give what `mesh-llm agent
 * --broker` gives; a rejected draft goes round again; the flow ships as the palette's example.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeMessage } from 'node-red';
import { packageRoot } from '../lib/llm/resolve';
import { spawnBroker } from '../lib/mesh/processes';
import { RoleProcess, spawnRole } from '../lib/agent/processes';
import { AgentResult } from '../lib/agent/orchestrator';
import { runCli } from './support/cli';
import { spawn, ChildProcess } from 'node:child_process';
import type { Browser, Page } from 'playwright-core';
import { drawnFlow, inside, launchChromium, openEditor, overlap, waitForStatus } from './support/editor';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const request = require('supertest');
helper.init(require.resolve('node-red'));

const root = packageRoot();
const core = (p: string) => require(path.join(root, 'node_modules', '@node-red', 'nodes', 'core', p));
/** The express app the flow's HTTP nodes are routed on (the helper's RED.httpNode), captured as the http in node loads. */
let httpNode: unknown = null;
const httpIn = core('network/21-httpin.js');
const capturingHttpIn = (RED: { httpNode: unknown }) => {
  httpNode = RED.httpNode;
  return httpIn(RED);
};
const coreNodes = [...['common/20-inject.js', 'common/21-debug.js', 'common/25-catch.js', 'common/90-comment.js', 'function/10-function.js', 'function/10-switch.js', 'network/10-mqtt.js'].map(core), capturingHttpIn];
const shippedFlow = () => JSON.parse(fs.readFileSync(path.join(root, 'flows', 'agentic.json'), 'utf8'));

type Listener = Node & { receive(msg: object): void; on(event: 'input', cb: (msg: NodeMessage & Record<string, unknown>) => void): void };
const nodeOf = (id: string): Listener => helper.getNode(id);

function next(id: string, timeoutMs = 60000): Promise<NodeMessage & Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${timeoutMs} ms`)), timeoutMs);
    nodeOf(id).on('input', (msg) => {
      clearTimeout(timer);
      resolve(msg);
    });
  });
}

/** The result without its request ids (each orchestrator makes its own). */
const strip = (r: AgentResult) => ({ ...r, id: '', attempts: r.attempts.map((a) => ({ attempt: a.attempt, draft: { ...a.draft, id: '' }, verdict: { ...a.verdict, id: '' } })) });

describe('the agentic flow on the roles', () => {
  let broker: Awaited<ReturnType<typeof spawnBroker>>;
  let roles: RoleProcess[] = [];
  const corpus = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-agent-flow-'));

  beforeAll(async () => {
    fs.writeFileSync(path.join(corpus, 'zoo.md'), 'Tom and his mom went to the zoo. They saw a big lion.\n\nAt the zoo Tom fed a tall giraffe.\n');
    broker = await spawnBroker(0);
    roles = [spawnRole('retrieval', broker.url, ['--corpus', corpus]), spawnRole('reasoning', broker.url), spawnRole('filter', broker.url), spawnRole('sensing', broker.url, ['--scenario', 'earthquake'])];
    await Promise.all(roles.map((r) => r.ready));
    const url = new URL(broker.url);
    process.env.MESH_LLM_BROKER_HOST = url.hostname;
    process.env.MESH_LLM_BROKER_PORT = url.port;
    await helper.startServer();
  });

  afterEach(async () => {
    await helper.unload();
  });

  afterAll(async () => {
    await helper.stopServer();
    await Promise.all(roles.map((r) => r.stop()));
    await broker?.close();
    fs.rmSync(corpus, { recursive: true, force: true });
  });

  test('the shipped flow, loaded unchanged: its inject runs the request through the roles and gives what mesh-llm agent --broker gives', async () => {
    const flow = shippedFlow();
    await helper.load(coreNodes, flow);
    await waitForRoles();
    const done = next('agentic-debug');
    nodeOf('agentic-inject').receive({ payload: JSON.parse(flow.find((n: { id: string }) => n.id === 'agentic-inject').payload) });
    const fromFlow = (await done).payload as AgentResult;
    const cli = await runCli(['agent', '--broker', broker.url, '--prompt', 'Tom and his mom went to the', '--k', '2', '--json']);
    expect(cli.code).toBe(0);
    expect(strip(fromFlow)).toEqual(strip(JSON.parse(cli.stdout)));
    expect(fromFlow.passages.map((p) => p.source)).toEqual(['zoo.md#1', 'zoo.md#2']);
    expect(fromFlow.attempts[0].draft.steering).toMatchObject({ source: 'scenario earthquake', nodes: 8 });
    expect(fromFlow.answer).toMatch(/\n\nSources: \[1\] zoo\.md#1; \[2\] zoo\.md#2$/);
    expect(flow).toEqual(shippedFlow());
  });

  test('POST /agent answers with the result; a draft the filter rejects goes round again to an accepted one', async () => {
    await helper.load(coreNodes, shippedFlow());
    await waitForRoles();
    // greedy decoding after this prompt loops: the first draft is rejected
    const res = await request(httpNode).post('/agent').send({ prompt: 'Lily wanted to', k: 0, temperature: 0, tokens: 200 }).expect(200);
    const r = res.body as AgentResult;
    expect(r.attempts.length).toBeGreaterThanOrEqual(2);
    expect(r.attempts[0].verdict.accepted).toBe(false);
    expect(r.attempts[0].verdict.checks[0]).toMatchObject({ check: 'degeneration', ok: false });
    expect(r.accepted).toBe(true);
    expect(r.text).not.toBe(r.attempts[0].draft.text);
    const cli = await runCli(['agent', '--broker', broker.url, '--prompt', 'Lily wanted to', '--k', '0', '--temperature', '0', '--tokens', '200', '--json']);
    expect(strip(r)).toEqual(strip(JSON.parse(cli.stdout)));
  });

  describe('in the editor, in chromium at 1600x1000', () => {
    let server: ChildProcess;
    let url: string;
    let browser: Browser;
    let page: Page;
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-agent-editor-'));

    beforeAll(async () => {
      // Node-RED as `mesh-llm start` embeds it (lib/app/nodered.ts), with flows/agentic.json as the template
      const script = `require(${JSON.stringify(path.join(root, 'dist', 'lib', 'app', 'nodered.js'))}).startNodeRed({ host: '127.0.0.1', port: 0, dataDir: ${JSON.stringify(dataDir)}, flowTemplate: ${JSON.stringify(path.join(root, 'flows', 'agentic.json'))} }).then((r) => console.log('editor at ' + r.url))`;
      server = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESH_LLM_LOG_LEVEL: 'warn' } });
      let output = '';
      url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`Node-RED did not come up:\n${output}`)), 60000);
        const onData = (d: Buffer) => {
          output += d.toString();
          const m = /editor at (http:\/\/\S+)/.exec(output);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        };
        server.stdout!.on('data', onData);
        server.stderr!.on('data', onData);
        server.once('exit', (code) => reject(new Error(`Node-RED exited with ${code}:\n${output}`)));
      });
      browser = await launchChromium();
      page = await openEditor(browser, `${url}/`);
      await waitForStatus(page, 'agentic-roles', /^retrieval, reasoning, filter, sensing ready$/);
      await page.waitForTimeout(1000); // the editor's first-visit prompts would open by now
    }, 120000);

    afterAll(async () => {
      await browser?.close();
      if (server && server.exitCode === null) {
        const exited = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    test('the flow opens clean: every node and comment in view, no comment over a node, the roles\' statuses on the bus shown', async () => {
      const flow = shippedFlow() as { id: string; type: string; z?: string }[];
      const onTab = flow.filter((n) => n.z === 'agentic-tab');
      const comments = new Set(onTab.filter((n) => n.type === 'comment').map((n) => n.id));
      const drawn = await drawnFlow(page);
      expect(drawn.overlays).toBe(0);
      expect(drawn.nodes.map((n) => n.id).sort()).toEqual(onTab.map((n) => n.id).sort());
      expect(drawn.nodes.filter((n) => !inside(n.drawn, drawn.chart)).map((n) => n.id)).toEqual([]);
      expect(drawn.nodes.filter((n) => !n.uncovered).map((n) => n.id)).toEqual([]);
      const clashes = drawn.nodes.filter((c) => comments.has(c.id)).flatMap((c) => drawn.nodes.filter((n) => n.id !== c.id && overlap(c.body, n.drawn)).map((n) => `${c.id} over ${n.id}`));
      expect(clashes).toEqual([]);
      // a request from the editor's own server: POST /agent, then the verdict node's status
      const res = await fetch(`${url}/agent`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Tom and his mom went to the', k: 2 }) });
      expect(res.status).toBe(200);
      await waitForStatus(page, 'agentic-verdict', /^accepted after 1 drafts$/);
      // MESH_LLM_EDITOR_SCREENSHOT=docs/agentic-editor.png: the picture in docs/AGENTIC.md.
      const shot = process.env.MESH_LLM_EDITOR_SCREENSHOT;
      if (shot) await page.screenshot({ path: path.resolve(root, shot) });
    });

    test('the editor\'s Import > Examples lists it under the package, as the flow itself', async () => {
      const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
      const listing = await (await fetch(`${url}/library/examples/flows/${pkg.name}`, { headers: { accept: 'application/json' } })).json();
      expect(listing).toEqual(expect.arrayContaining([{ fn: 'agentic' }, { fn: 'mesh-llm' }]));
      const example = await (await fetch(`${url}/library/examples/flows/${pkg.name}/agentic`)).json();
      expect(example).toEqual(shippedFlow());
    });
  });

  test('the flow ships as the palette\'s example: the build copies it to examples/, and package.json "files" holds both', () => {
    expect(fs.readFileSync(path.join(root, 'examples', 'agentic.json'), 'utf8')).toBe(fs.readFileSync(path.join(root, 'flows', 'agentic.json'), 'utf8'));
    const files = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).files as string[];
    expect(files).toEqual(expect.arrayContaining(['flows/agentic.json', 'examples/']));
  });
});

/** The roles' retained statuses reach the flow's status node once its MQTT nodes connect. */
async function waitForRoles(): Promise<void> {
  const status = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the flow did not see the roles ready within 20 s')), 20000);
    const seen = new Set<string>();
    nodeOf('agentic-roles').on('input', (msg) => {
      const p = msg.payload as { role: string; state: string };
      if (p.state === 'ready') seen.add(p.role);
      if (['retrieval', 'reasoning', 'filter', 'sensing'].every((r) => seen.has(r))) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await status;
}

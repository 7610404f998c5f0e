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

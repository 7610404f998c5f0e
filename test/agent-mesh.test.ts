/**
 * The agentic mesh as separate processes over a real broker (the embedded aedes, as
 * `mesh-llm broker`): the four roles are `mesh-llm role` processes, the orchestrator is
 * `mesh-llm agent --broker`; the same request gives the same drafts, verdicts and answer as
 * the roles in one process; the retrieval role indexes the mesh's live readings and alerts; a
 * role that goes away is named.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { spawnBroker } from '../lib/mesh/processes';
import { topicsFor } from '../lib/mesh/wire';
import { RoleProcess, spawnRole } from '../lib/agent/processes';
import { AgentResult } from '../lib/agent/orchestrator';
import { runCli } from './support/cli';

function writeCorpus(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-agent-mesh-'));
  fs.writeFileSync(path.join(dir, 'zoo.md'), '# The zoo\n\nTom and his mom went to the zoo. They saw a big lion.\n\nAt the zoo Tom fed a tall giraffe.\n');
  fs.writeFileSync(path.join(dir, 'sea.txt'), 'The fish swam in the blue sea.\n');
  return dir;
}

const PROMPT = 'Tom and his mom went to the';

describe('the roles as processes on a broker', () => {
  let broker: Awaited<ReturnType<typeof spawnBroker>>;
  let roles: RoleProcess[] = [];
  const corpus = writeCorpus();

  beforeAll(async () => {
    broker = await spawnBroker(0);
    roles = [
      spawnRole('retrieval', broker.url, ['--corpus', corpus]),
      spawnRole('reasoning', broker.url),
      spawnRole('filter', broker.url),
      spawnRole('sensing', broker.url, ['--scenario', 'explosion']),
    ];
    await Promise.all(roles.map((r) => r.ready));
  });

  afterAll(async () => {
    await Promise.all(roles.map((r) => r.stop()));
    await broker?.close();
    fs.rmSync(corpus, { recursive: true, force: true });
  });

  test('mesh-llm agent --broker runs the request through the four role processes: the same passages, drafts, verdicts and answer as the roles in one process', async () => {
    const args = ['agent', '--prompt', PROMPT, '--k', '2', '--seed', '4', '--json'];
    const [meshRun, localRun] = await Promise.all([runCli([...args, '--broker', broker.url], { timeoutMs: 120000 }), runCli([...args, '--corpus', corpus, '--scenario', 'explosion'], { timeoutMs: 120000 })]);
    expect(meshRun.code).toBe(0);
    expect(localRun.code).toBe(0);
    const mesh = JSON.parse(meshRun.stdout) as AgentResult;
    const local = JSON.parse(localRun.stdout) as AgentResult;
    expect(mesh.passages.map((p) => p.source)).toEqual(['zoo.md#2', 'zoo.md#3']);
    expect(mesh.attempts[0].draft.steering).toMatchObject({ source: 'scenario explosion', nodes: 8 });
    const strip = (r: AgentResult) => ({ ...r, id: '', attempts: r.attempts.map((a) => ({ draft: { ...a.draft, id: '' }, verdict: { ...a.verdict, id: '' } })) });
    expect(strip(mesh)).toEqual(strip(local));
    expect(mesh.accepted).toBe(true);
    expect(mesh.answer).toBe(`${PROMPT}${mesh.text}\n\nSources: [1] zoo.md#2; [2] zoo.md#3`);
  });

  test('the readable output lists the passages used (none for this prompt), each draft\'s verdict with every check, and the answer', async () => {
    // greedy decoding after this prompt loops, steered or not
    const r = await runCli(['agent', '--broker', broker.url, '--prompt', 'Lily wanted to', '--k', '1', '--temperature', '0', '--tokens', '200', '--attempts', '3']);
    expect(r.code).toBe(0);
    const out = r.stdout.split('\n');
    expect(out[0]).toBe('passages: none'); // nothing in the corpus matches "Lily wanted to"
    expect(out[1]).toBe('verdicts:');
    expect(out[2]).toMatch(/^ {2}draft 1 \(temperature 0, seed 1, steered by scenario explosion on 8 nodes\): rejected$/);
    expect(out[3]).toMatch(/^ {4}FAIL degeneration: repeated 4-grams [\d.]+ % > 14\.1 %: the draft loops$/);
    expect(out[4]).toMatch(/^ {4}ok {3}coherence: perplexity [\d.]+ <= 3\.25$/);
    expect(out[5]).toBe('    ok   safety: no lexicon word');
    expect(r.stdout).toMatch(/\n {2}draft 2 \(temperature 0\.8, seed 7920, steered by scenario explosion on 8 nodes\): accepted\n/);
    expect(r.stdout).toMatch(/\nanswer:\nLily wanted to/);
  });

  test('the retrieval role adds the mesh\'s live readings and alerts to its index, with node and time', async () => {
    const client = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
    const t = topicsFor('default');
    const at = Date.UTC(2026, 11, 1, 23, 0, 0);
    await client.publishAsync(t.sensors('node-5'), JSON.stringify({ protocol: 1, node: 'node-5', at, readings: { soundDb: 121, vibrationG: 0.4 } }));
    await client.publishAsync(t.alerts, JSON.stringify({ protocol: 1, id: 'node-5:soundDb:threshold:1', node: 'node-5', channel: 'soundDb', detector: 'threshold', value: 121, onset: at, end: null, text: 'explosion: sound on node-5 at 121 dB' }));
    await client.publishAsync(t.alerts, '{"protocol": 1, "not": "an alert"}');
    await client.endAsync();
    let result: AgentResult | null = null;
    for (let i = 0; i < 20 && !result?.passages.length; i++) {
      const r = await runCli(['agent', '--broker', broker.url, '--prompt', 'explosion sound', '--k', '2', '--tokens', '16', '--json']);
      result = JSON.parse(r.stdout);
    }
    expect(result!.passages[0]).toMatchObject({ kind: 'alert', node: 'node-5', at, source: 'node-5@2026-12-01T23:00:00.000Z alert' });
    expect(result!.passages[1]).toMatchObject({ kind: 'reading', node: 'node-5', at, source: 'node-5@2026-12-01T23:00:00.000Z' });
    expect(roles[0].log.some((l) => /warn: dropped an alert on mesh-llm\/default\/alerts: alert fails schemas\/alert.json/.test(l))).toBe(true);
  });

  test('bad role command lines are one line and exit 2; a role that goes away is named by the orchestrator', async () => {
    const unknown = await runCli(['role', 'dance']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.split('\n')[0]).toBe('mesh-llm: error: role: expected one of retrieval, reasoning, filter, sensing first (got "dance")');
    const noSource = await runCli(['role', 'sensing', '--broker', broker.url]);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr.split('\n')[0]).toBe('mesh-llm: error: role sensing: give --scenario NAME, --sensors FILE or --live');
    const mixed = await runCli(['agent', '--broker', broker.url, '--prompt', 'x', '--corpus', corpus]);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr.split('\n')[0]).toBe('mesh-llm: error: agent: --corpus belongs to the roles when --broker is given (mesh-llm role ... --corpus)');
    const filter = roles[2];
    filter.child.kill('SIGKILL'); // no goodbye: the broker publishes its last will
    await filter.exited;
    const r = await runCli(['agent', '--broker', broker.url, '--prompt', 'Once upon a time', '--wait', '3000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('mesh-llm: error: roles not ready on mesh default after 3000 ms: filter\n');
  });
});

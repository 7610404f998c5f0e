/**
 * The retrieval role's index and the agent messages: BM25 over a labelled corpus the test
 * writes (precision at k), the sensor history (readings and alerts with node and time),
 * `mesh-llm index` to a file and back, and every message checked against its schema.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassageIndex, paragraphs } from '../lib/agent/retrieval';
import { AGENT_KINDS, AgentMessageError, checkAgentMessage, encodeAgentMessage, parseAgentMessage } from '../lib/agent/messages';
import { LocalAgentBus, topicMatches } from '../lib/agent/bus';
import { agentTopics } from '../lib/agent/topics';
import { Orchestrator } from '../lib/agent/orchestrator';
import { runCli } from './support/cli';

/** Four topics, three documents each; every query is labelled with the topic it asks about. */
const TOPICS: Record<string, string[]> = {
  dragon: [
    'The green dragon lived in a cave on the mountain. The dragon breathed fire at night.',
    'A dragon with red wings flew over the village, and the dragon landed near the castle.',
    'The old dragon slept on a pile of gold coins deep inside its cave.',
  ],
  garden: [
    'Lily planted seeds in her garden. The flowers grew tall and the garden smelled sweet.',
    'Every morning she watered the roses and the tulips in the garden beds.',
    'Worms helped the soil of the vegetable garden, and carrots grew under the ground.',
  ],
  boat: [
    'The little boat sailed across the lake. The wind pushed its white sail.',
    'Fishermen took their boat out to sea before the sun came up and caught fish.',
    'The captain steered the boat through the waves to the harbour.',
  ],
  rocket: [
    'The rocket roared and rose into the sky toward the moon and the stars.',
    'Astronauts in the rocket looked down at the earth from space.',
    'The rocket engines burned fuel, and the rocket left the launch pad.',
  ],
};
/** Each query names its topic's subject (so three passages can be relevant) and words of one document of it (which should rank first). */
const QUERIES: { query: string; topic: string }[] = [
  { query: 'Where did the dragon sleep?', topic: 'dragon' },
  { query: 'a dragon breathing fire', topic: 'dragon' },
  { query: 'flowers in the garden', topic: 'garden' },
  { query: 'watering roses and tulips in the garden', topic: 'garden' },
  { query: 'a boat on the sea', topic: 'boat' },
  { query: 'the captain steering his boat through the waves', topic: 'boat' },
  { query: 'a rocket to the moon', topic: 'rocket' },
  { query: 'astronauts flying a rocket in space', topic: 'rocket' },
];

function writeCorpus(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-corpus-'));
  Object.entries(TOPICS).forEach(([topic, docs], i) => {
    // half the topics as Markdown with a heading, half as plain text; one paragraph per document
    const md = i % 2 === 0;
    const text = md ? `# About ${topic}s\n\n${docs.join('\n\n')}\n` : `${docs.join('\n\n')}\n`;
    fs.mkdirSync(path.join(dir, 'stories'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'stories', `${topic}.${md ? 'md' : 'txt'}`), text);
  });
  fs.writeFileSync(path.join(dir, 'notes.json'), '{"not": "indexed"}');
  return dir;
}

const topicOf = (source: string) => path.basename(source.split('#')[0]).replace(/\.(md|txt)$/, '');

function precisionAtK(index: PassageIndex, k: number): number {
  let hits = 0;
  for (const q of QUERIES) hits += index.query(q.query, k).filter((p) => topicOf(p.source) === q.topic).length;
  return hits / (QUERIES.length * k);
}

describe('retrieval', () => {
  const dir = writeCorpus();
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('every paragraph of every .txt and .md file is a passage, cited as file#paragraph', () => {
    const index = PassageIndex.fromCorpus(dir);
    expect(index.counts()).toEqual({ document: 12 + 2, reading: 0, alert: 0 }); // two Markdown headings are paragraphs too
    expect(index.query('dragon slept on gold coins', 1)[0]).toMatchObject({ source: 'stories/dragon.md#4', kind: 'document', text: TOPICS.dragon[2] });
    expect(paragraphs(`# Title\n\n${'One sentence here. '.repeat(40)}`).every((p) => p.length <= 400)).toBe(true);
  });

  test('precision at k on the labelled corpus: 1.0 at k = 1, at least 0.9 at k = 3 (BM25, minisearch)', () => {
    const index = PassageIndex.fromCorpus(dir);
    expect(precisionAtK(index, 1)).toBe(1);
    expect(precisionAtK(index, 3)).toBeGreaterThanOrEqual(0.9);
  });

  test('the sensor history is searchable: readings and alerts with their node and time', () => {
    const index = PassageIndex.fromCorpus(dir);
    const t0 = Date.UTC(2026, 11, 1, 22, 0, 0);
    for (let i = 0; i < 60; i++) for (const node of ['node-1', 'node-2', 'node-3']) index.addReading({ node, at: t0 + i * 1000, readings: { soundDb: 41 + (i % 3), vibrationG: 0.02 } });
    index.addAlert({ protocol: 1, id: 'node-3:vibrationG:classic-sta-lta:1', node: 'node-3', channel: 'vibrationG', detector: 'classic-sta-lta', value: 9.5, onset: t0 + 61000, end: null, text: 'earthquake: vibration on node-3 rose 9.5 times above its background' });
    expect(index.counts()).toEqual({ document: 14, reading: 180, alert: 1 });
    const [alert] = index.query('earthquake vibration', 1);
    expect(alert).toMatchObject({ kind: 'alert', node: 'node-3', at: t0 + 61000, source: 'node-3@2026-12-01T22:01:01.000Z alert' });
    const readings = index.query('node-2 sound', 3);
    expect(readings.every((p) => p.kind === 'reading' && p.node === 'node-2')).toBe(true);
    expect(readings[0].text).toMatch(/^node-2 readings at 2026-12-01T22:00:\d\d\.000Z: sound 4\d\.00 dB SPL, vibration 0\.02000 g$/);
  });

  test('mesh-llm index writes an index of a corpus, a sensor trace and alerts that loads back with the same answers; a bad file is one line and exit 1, a bad command line exit 2', async () => {
    const out = path.join(dir, 'index.json');
    const csv = path.join(dir, 'trace.csv');
    fs.writeFileSync(csv, 'at,node,soundDb,vibrationG\n0,node-1,41,0.02\n1000,node-1,42,0.02\n2000,node-2,95,0.03\n');
    const alerts = path.join(dir, 'alerts.jsonl');
    const alert = { protocol: 1, id: 'node-2:soundDb:threshold:2000', node: 'node-2', channel: 'soundDb', detector: 'threshold', value: 95, onset: 2000, end: 9000 };
    fs.writeFileSync(alerts, `${JSON.stringify(alert)}\n`);
    const r = await runCli(['index', '--corpus', dir, '--sensors', csv, '--alerts', alerts, '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ passages: 18, document: 14, reading: 3, alert: 1 });
    expect(PassageIndex.load(out).query('threshold alert', 1)[0]).toMatchObject({ kind: 'alert', node: 'node-2', at: 2000, text: 'alert on node-2 (soundDb, threshold): threshold on soundDb, value 95.00; started 1970-01-01T00:00:02.000Z, ended 1970-01-01T00:00:09.000Z' });
    fs.writeFileSync(alerts, '{"protocol": 1}\n');
    const badAlert = await runCli(['index', '--alerts', alerts, '--out', out]);
    expect(badAlert.code).toBe(1);
    expect(badAlert.stderr).toMatch(/^mesh-llm: error: alerts .*alerts\.jsonl, entry 1: alert fails schemas\/alert\.json: \(root\) must have required property 'id'\n$/);
    await runCli(['index', '--corpus', dir, '--sensors', csv, '--out', out]);
    const loaded = PassageIndex.load(out);
    const fresh = PassageIndex.fromCorpus(dir);
    for (const q of QUERIES) expect(loaded.query(q.query, 3).map((p) => p.source)).toEqual(fresh.query(q.query, 3).map((p) => p.source));
    expect(loaded.query('node-2 sound', 1)[0]).toMatchObject({ kind: 'reading', node: 'node-2', at: 2000 });
    const missing = await runCli(['index', '--corpus', path.join(dir, 'nope'), '--out', out]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^mesh-llm: error: corpus .*nope is not a folder\n$/);
    const noOut = await runCli(['index', '--corpus', dir]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr.split('\n')[0]).toBe('mesh-llm: error: index: --out FILE is required');
    fs.writeFileSync(out, '{"format":"something else"}');
    expect(() => PassageIndex.load(out)).toThrow(/is not a mesh-llm index/);
  });
});

describe('agent messages', () => {
  const valid = {
    query: { protocol: 1, id: 'q1', prompt: 'Once upon a time', k: 3 },
    passages: { protocol: 1, id: 'q1', passages: [{ source: 'a.md#1', kind: 'document', text: 'The dragon.', score: 1.5 }] },
    reason: { protocol: 1, id: 'q1', attempt: 1, prompt: 'Once', passages: [], feedback: [{ check: 'degeneration', reason: 'loops' }], tokens: 64, temperature: 0.8, topP: 0.9, seed: 1 },
    draft: { protocol: 1, id: 'q1', attempt: 1, prompt: 'Once', text: ' upon', tokens: [5, 6], modelPrompt: 'Once', sources: [], temperature: 0.8, seed: 1, steering: null },
    verdict: { protocol: 1, id: 'q1', attempt: 1, accepted: false, text: ' upon', checks: [{ check: 'coherence', ok: false, value: 9.1, threshold: 3.25, reason: 'perplexity 9.10 > 3.25' }] },
    steering: { protocol: 1, source: 'scenario explosion', at: 0, readings: { 'node-1': { soundDb: 1 } } },
    status: { protocol: 1, role: 'filter', state: 'ready', pid: 12 },
  } as const;

  test('each kind has a schema the valid message passes and a wrong one fails with the schema named', () => {
    for (const kind of AGENT_KINDS) {
      expect(parseAgentMessage(kind, encodeAgentMessage(kind, valid[kind] as never))).toEqual(valid[kind]);
      expect(() => checkAgentMessage(kind, { ...valid[kind], protocol: 2 })).toThrow(new RegExp(`^${kind} message fails schemas/agent-${kind}.json: /protocol`));
      expect(() => checkAgentMessage(kind, { ...valid[kind], extra: true })).toThrow(AgentMessageError);
    }
    expect(() => checkAgentMessage('steering', { ...valid.steering, readings: { 'node-1': { soundDb: 3 } } })).toThrow(/must be <= 1/);
    expect(() => checkAgentMessage('steering', { ...valid.steering, readings: { 'node-1': { smell: 0.5 } } })).toThrow(/\/readings\/node-1 must be equal to one of the allowed values/);
    expect(() => parseAgentMessage('query', '{not json')).toThrow(/^query message is not JSON/);
  });

  test('topics live under mesh-llm/{mesh}/agent/, and the bus drops (and logs) a message that fails its schema', async () => {
    const t = agentTopics('lab');
    expect([t.query, t.passages, t.reason, t.draft, t.verdict, t.steering, t.status('sensing')]).toEqual(['query', 'passages', 'reason', 'draft', 'verdict', 'steering', 'status/sensing'].map((s) => `mesh-llm/lab/agent/${s}`));
    expect(topicMatches(t.statuses, t.status('filter'))).toBe(true);
    expect(topicMatches('mesh-llm/+/sensors/#', 'mesh-llm/lab/sensors/node-1')).toBe(true);
    expect(topicMatches(t.query, t.passages)).toBe(false);
    const logged: string[] = [];
    const bus = new LocalAgentBus('lab', (_l, m) => logged.push(m));
    const got: unknown[] = [];
    await bus.on('query', (m) => got.push(m));
    bus.publishRaw(t.query, JSON.stringify({ ...valid.query, k: -1 }));
    await bus.publish('query', valid.query);
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([valid.query]);
    expect(logged).toEqual([expect.stringMatching(/^dropped a message on mesh-llm\/lab\/agent\/query: query message fails schemas\/agent-query.json: \/k must be >= 0$/)]);
    await expect(bus.publish('query', { ...valid.query, k: 1000 })).rejects.toThrow(/must be <= 50/);
  });

  test('a role that does not answer is named with what the orchestrator knows of it, and the request leaves no timer behind', async () => {
    const bus = new LocalAgentBus('lab');
    const orchestrator = await Orchestrator.connect(bus);
    await expect(orchestrator.ask('Once upon a time', { k: 2, timeoutMs: 100 })).rejects.toThrow(
      'the retrieval role did not answer within 100 ms (no retrieval role has announced itself on mesh lab: start `mesh-llm role retrieval --broker URL`)',
    );
    await bus.publish('status', { protocol: 1, role: 'reasoning', state: 'ready', pid: 4242 }, true);
    await new Promise((r) => setImmediate(r));
    await expect(orchestrator.ask('Once upon a time', { k: 0, timeoutMs: 100 })).rejects.toThrow('the reasoning role did not answer within 100 ms (its status: ready, pid 4242)');
    expect((orchestrator as unknown as { waiting: Map<string, unknown> }).waiting.size).toBe(0);
  });
});

describe('the agent commands', () => {
  test('agent, role and index --help name every option they take', async () => {
    const { agentOptionSpec } = await import('../cli/commands/agent');
    const { roleOptionSpec } = await import('../cli/commands/role');
    const { indexCommandSpec } = await import('../cli/commands/index-cmd');
    for (const [command, spec] of [['agent', agentOptionSpec], ['role', roleOptionSpec], ['index', indexCommandSpec]] as const) {
      const r = await runCli([command, '--help']);
      expect(r.code).toBe(0);
      for (const flag of Object.keys(spec)) expect({ command, flag, named: r.stdout.includes(`--${flag}`) }).toEqual({ command, flag, named: true });
    }
  });
});

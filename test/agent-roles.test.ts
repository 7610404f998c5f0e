/**
 * Each role changes the outcome, measured on the real model (stories260K) with the roles in
 * one process on the agent bus: the passages raise the probability of their words in the
 * answer; the filter accepts the model's own drafts and rejects degenerate ones (rates on
 * labelled drafts, thresholds as calibrated); a rejected draft leads to a different accepted
 * one; the sensing role's steering moves the lexicon mass as docs/STEERING.md reports.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalAgent, startLocalAgent } from '../lib/agent/local';
import { CALIBRATION_SET, EVALUATION_SET, calibrateThresholds, degenerateDrafts, filterRates, normalDrafts } from '../lib/agent/calibrate';
import { DEFAULT_THRESHOLDS, DraftFilter } from '../lib/agent/filter';
import { passageWordMass, passageWords } from '../lib/agent/measure';
import { AgentSteeringMessage, Passage } from '../lib/agent/messages';
import { PassageIndex } from '../lib/agent/retrieval';
import { startSensing } from '../lib/agent/roles';
import { samplingFor } from '../lib/agent/reasoning';
import { lexiconTokens, meanLexiconMass } from '../lib/steering/lexicon';
import { simulate } from '../lib/steering/sensors';
import { scenarioReadings } from '../lib/steering/readings';
import { topicsFor } from '../lib/mesh/wire';
import { clearSteering } from '../lib/steering/steer';
import { modelPaths } from './support/fixtures';

/** Waits until `ok()` holds (messages on the bus arrive a moment later). */
async function until(ok: () => boolean, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

const passage = (text: string, source = 'story.md#1'): Passage => ({ source, kind: 'document', text, score: 1 });

describe('the roles on the model', () => {
  let agent: LocalAgent;

  beforeAll(async () => {
    const index = PassageIndex.empty();
    agent = await startLocalAgent({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, index });
  });

  afterAll(async () => {
    await agent?.close();
  });

  test('passages in the prompt raise the probability that the answer goes on with their words (at least 3x on each of three prompts)', async () => {
    const cases = [
      { prompt: 'Once upon a time, there was a little girl named Lily. She', text: 'Lily had a red kite. The kite flew high in the sky over the park.' },
      { prompt: 'Once upon a time, a boy went to the', text: 'The boy went to the beach with his dog. They played in the sand and the water.' },
      { prompt: 'Tom and his mom went to the', text: 'Tom and his mom went to the zoo. They saw a big lion and a tall giraffe.' },
    ];
    for (const c of cases) {
      const words = passageWords(agent.reasoner, [passage(c.text)], c.prompt);
      expect(words.length).toBeGreaterThanOrEqual(5);
      const mass = await passageWordMass(agent.reasoner, [passage(c.text)], c.prompt, words);
      expect(mass.with / mass.without).toBeGreaterThan(3);
    }
  });

  test('the request through the roles: the passages retrieved are in the model\'s prompt and cited in the answer', async () => {
    agent.index.addCorpus(writeCorpus());
    const r = await agent.orchestrator.ask('Tom and his mom went to the', { k: 2, seed: 3 });
    expect(r.passages.map((p) => p.source)).toEqual(['trip.md#1', 'trip.md#2']);
    const draft = r.attempts[0].draft;
    expect(draft.modelPrompt).toBe(`${r.passages[0].text}\n${r.passages[1].text}\nTom and his mom went to the`);
    expect(r.citations).toEqual(['trip.md#1', 'trip.md#2']);
    expect(r.answer).toBe(`Tom and his mom went to the${r.text}\n\nSources: [1] trip.md#1; [2] trip.md#2`);
    expect(r.accepted).toBe(true);
  });

  test('the filter\'s thresholds are what calibration on the model\'s own drafts gives; on held-out labelled drafts it accepts at least 90 % of normal ones and rejects every loop, stutter, shuffle and temperature-2 noise', async () => {
    const { engine } = agent.filter;
    const calibration = await calibrateThresholds(engine, await normalDrafts(engine, CALIBRATION_SET));
    expect(calibration.thresholds).toEqual(DEFAULT_THRESHOLDS);
    const held = await normalDrafts(engine, EVALUATION_SET);
    const rates = (await filterRates(new DraftFilter(engine), [...held, ...(await degenerateDrafts(engine, held, EVALUATION_SET))])).byLabel;
    expect(rates.normal).toMatchObject({ drafts: 40, measure: 'accepted' });
    expect(rates.normal.rate).toBeGreaterThanOrEqual(0.9);
    for (const label of ['loop', 'stutter', 'shuffled', 'noise']) expect(rates[label]).toEqual({ drafts: 40, rate: 1, measure: 'rejected' });
  });

  test('a degenerate draft is rejected with its reason, and the draft written with that feedback is a different one that is accepted', async () => {
    // greedy decoding of 200 tokens loops
    const r = await agent.orchestrator.ask('Once upon a time', { k: 0, temperature: 0, tokens: 200 });
    expect(r.attempts.length).toBeGreaterThanOrEqual(2);
    const [first] = r.attempts;
    expect(first.verdict.accepted).toBe(false);
    expect(first.verdict.checks.find((c) => !c.ok)).toMatchObject({ check: 'degeneration', reason: expect.stringMatching(/^repeated 4-grams \d+\.\d % > 14\.1 %: the draft loops$/) });
    const last = r.attempts[r.attempts.length - 1];
    expect(r.accepted).toBe(true);
    expect(last.verdict.accepted).toBe(true);
    expect(last.draft.text).not.toBe(first.draft.text);
    expect(last.draft.temperature).toBeGreaterThan(0);
    expect(r.text).toBe(last.draft.text);
  });

  test('a draft with a word of the safety lexicon is rejected for it; the next draft (a new seed, the word\'s tokens masked) is accepted without it', async () => {
    const filter = agent.filter;
    const first = await agent.orchestrator.ask('Once upon a time', { k: 0, seed: 5 });
    const word = first.text.toLowerCase().match(/\b(park|ball|mom|tree|dog|happy|play)\b/)![1];
    const strict = new DraftFilter(filter.engine, filter.thresholds, [word]);
    const verdict = await strict.verdict(first.attempts[0].draft);
    expect(verdict.accepted).toBe(false);
    expect(verdict.checks.find((c) => c.check === 'safety')).toMatchObject({ ok: false, value: 1, reason: `lexicon words: ${word}` });
    // the orchestrator's next attempt: same request, the safety feedback, a new seed
    const next = await agent.reasoner.draft({ ...first.attempts[0].draft, protocol: 1, passages: [], feedback: [{ check: 'safety', reason: verdict.checks[2].reason, words: [word] }], attempt: 2, tokens: 96, temperature: 0.8, topP: 0.9, seed: 5 }, null);
    expect(samplingFor({ attempt: 2, feedback: [{ check: 'safety', reason: '' }], temperature: 0.8, seed: 5 })).toEqual({ temperature: 0.8, seed: 5 + 7919 });
    expect(next.text).not.toBe(first.text);
    const again = await strict.verdict(next);
    expect(again.checks.find((c) => c.check === 'safety')).toMatchObject({ ok: true, value: 0 });
    expect(again.accepted).toBe(true);
  });

  test('the sensing role\'s steering moves the lexicon mass of each channel as docs/STEERING.md reports (every channel\'s mass ratio at full reading on every node, vibration 3.09x)', async () => {
    const { reasoner } = agent;
    const data = reasoner.steeringData;
    const contexts = data.settings.evaluation.map((p) => reasoner.engine.tokenizer.encode(p, true, false));
    const nodes = reasoner.nodes;
    const message = (channel: string, reading: number): AgentSteeringMessage => ({ protocol: 1, source: 'test', at: 0, readings: Object.fromEntries(nodes.map((n) => [n, { [channel]: reading }])) });
    const mass = async (m: AgentSteeringMessage, words: number[][]) => {
      const { runner } = reasoner.steer(m);
      const v = await meanLexiconMass(reasoner.engine, contexts, words, runner);
      clearSteering(reasoner.engine.heads);
      return v;
    };
    // docs/STEERING.md section 6: massRatioAtFull per channel
    const reported: Record<string, number> = { soundDb: 2.082, vibrationG: 3.095, lightLux: 2.033, temperatureC: 2.454, humidityPct: 2.315 };
    for (const channel of data.channels) {
      const words = lexiconTokens(reasoner.engine.tokenizer, channel.lexicon);
      const ratio = (await mass(message(channel.channel, 1), words)) / (await mass(message(channel.channel, 0), words));
      expect(ratio).toBeCloseTo(reported[channel.channel], 2);
    }
    // and through the bus: the sensing role's message reaches the reasoning role, which steers its drafts
    await startSensing(agent.bus, { readings: message('vibrationG', 1).readings }, () => undefined);
    const r = await agent.orchestrator.ask('Tom was playing in the park with his friend. Suddenly,', { k: 0, seed: 2 });
    expect(r.attempts[0].draft.steering).toEqual({ source: 'readings', alpha: data.settings.alpha, nodes: 8 });
    await startSensing(agent.bus, { readings: {} }, () => undefined);
  });

  test('the sensing role publishes a scenario\'s calibrated readings, and from live sensors the readings after its calibration window', async () => {
    const got: AgentSteeringMessage[] = [];
    await agent.bus.on('steering', (m) => got.push(m));
    await startSensing(agent.bus, { scenario: 'explosion' }, () => undefined);
    await until(() => got.at(-1)?.source === 'scenario explosion');
    expect(got.at(-1)!.readings).toEqual(JSON.parse(JSON.stringify(scenarioReadings('explosion', agent.reasoner.nodes).readings))); // -0 is 0 in JSON
    await startSensing(agent.bus, { live: { calibrationMs: 60000 } }, () => undefined);
    const nodes = ['node-1', 'node-2', 'node-3'];
    for (const m of simulate({ scenario: 'explosion', nodes, calmSeconds: 60, eventSeconds: 10, epicentre: 'node-2' })) agent.bus.publishRaw(topicsFor('default').sensors(m.node), JSON.stringify(m));
    await until(() => got.at(-1)?.source === 'live sensors' && got.at(-1)!.at === 69000);
    const last = got.at(-1)!;
    expect(last.source).toBe('live sensors');
    expect(last.readings['node-2'].soundDb).toBeGreaterThan(0.5);
    // one message per second of sensor time from the end of the calibration window (60 s .. 69 s), not one per reading
    expect(got.filter((m) => m.source === 'live sensors').map((m) => m.at)).toEqual(Array.from({ length: 10 }, (_, i) => 60000 + 1000 * i));
    await startSensing(agent.bus, { readings: {} }, () => undefined);
  });
});

function writeCorpus(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-agent-'));
  fs.writeFileSync(path.join(dir, 'trip.md'), 'Tom and his mom went to the zoo. They saw a big lion.\n\nAt the zoo Tom and his mom fed a tall giraffe.\n');
  fs.writeFileSync(path.join(dir, 'sea.txt'), 'The fish swam in the blue sea.\n');
  return dir;
}

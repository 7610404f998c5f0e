/**
 * `npm run bench:agent [-- --requests N]`: what each role of the agentic mesh does to the
 * output, measured on the model, and what a request costs in one process against the roles as
 * processes on the embedded broker. Prints tables; last line: one JSON object with every figure.
 */
import { parseOptions, intOption } from '../cli/args';
import { CALIBRATION_SET, EVALUATION_SET, calibrateThresholds, degenerateDrafts, filterRates, normalDrafts } from '../lib/agent/calibrate';
import { MqttAgentBus } from '../lib/agent/bus';
import { DraftFilter } from '../lib/agent/filter';
import { startLocalAgent } from '../lib/agent/local';
import { passageWordMass, passageWords, wordUseRate } from '../lib/agent/measure';
import { AgentSteeringMessage, Passage } from '../lib/agent/messages';
import { Orchestrator } from '../lib/agent/orchestrator';
import { spawnRole } from '../lib/agent/processes';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { startAedesBroker } from '../lib/mesh/broker';
import { lexiconTokens, meanLexiconMass } from '../lib/steering/lexicon';
import { VARIETY, modelWrittenPrompts } from '../lib/steering/measure';
import { clearSteering } from '../lib/steering/steer';

const CASES = [
  { prompt: 'Once upon a time, there was a little girl named Lily. She', text: 'Lily had a red kite. The kite flew high in the sky over the park.' },
  { prompt: 'Once upon a time, a boy went to the', text: 'The boy went to the beach with his dog. They played in the sand and the water.' },
  { prompt: 'Tom and his mom went to the', text: 'Tom and his mom went to the zoo. They saw a big lion and a tall giraffe.' },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const seconds = async (f: () => Promise<unknown>) => {
  const t0 = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

async function main(): Promise<void> {
  const v = parseOptions(process.argv.slice(2), { requests: { type: 'string' } }, 'bench:agent');
  const requests = intOption('requests', v.requests, 100, 1, 1000);
  const progress = (s: string) => process.stderr.write(`${s}\n`);
  const paths = await resolveOrFetchModelPaths({});
  const agent = await startLocalAgent({ modelPath: paths.model, tokenizerPath: paths.tokenizer });
  const { reasoner, filter } = agent;

  progress('filter: calibration and labelled drafts');
  const calibration = await calibrateThresholds(filter.engine, await normalDrafts(filter.engine, CALIBRATION_SET));
  const held = await normalDrafts(filter.engine, EVALUATION_SET);
  const rates = (await filterRates(new DraftFilter(filter.engine), [...held, ...(await degenerateDrafts(filter.engine, held, EVALUATION_SET))])).byLabel;

  progress('passages: word mass and word use');
  const passages = [];
  for (const c of CASES) {
    const ps: Passage[] = [{ source: 'case', kind: 'document', text: c.text, score: 1 }];
    const words = passageWords(reasoner, ps, c.prompt);
    const mass = await passageWordMass(reasoner, ps, c.prompt, words);
    const texts = async (with_: Passage[]) => {
      const out: string[] = [];
      for (let seed = 1; seed <= 16; seed++) out.push((await reasoner.draft({ protocol: 1, id: 'bench', attempt: 1, prompt: c.prompt, passages: with_, feedback: [], tokens: 48, temperature: 0.8, topP: 0.9, seed }, null)).text);
      return out;
    };
    passages.push({ prompt: c.prompt, words, massWithout: mass.without, massWith: mass.with, ratio: mass.with / mass.without, useWithout: wordUseRate(await texts([]), words), useWith: wordUseRate(await texts(ps), words) });
  }

  progress('sensing: lexicon mass through the reasoning role');
  const data = reasoner.steeringData;
  const contexts = data.settings.evaluation.map((p) => reasoner.engine.tokenizer.encode(p, true, false));
  const steering = [];
  for (const channel of data.channels) {
    const words = lexiconTokens(reasoner.engine.tokenizer, channel.lexicon);
    const at = async (reading: number) => {
      const m: AgentSteeringMessage = { protocol: 1, source: 'bench', at: 0, readings: Object.fromEntries(reasoner.nodes.map((n) => [n, { [channel.channel]: reading }])) };
      const mass = await meanLexiconMass(reasoner.engine, contexts, words, reasoner.steer(m).runner);
      clearSteering(reasoner.engine.heads);
      return mass;
    };
    steering.push({ channel: channel.channel, ratio: (await at(1)) / (await at(0)) });
  }

  progress(`requests: ${requests} model-written prompts through the roles`);
  const prompts = await modelWrittenPrompts(reasoner.engine, { ...VARIETY, promptsPerStart: Math.ceil(requests / VARIETY.starts.length), promptSeed: 400001, promptPositions: 12 });
  const attempts: number[] = [];
  let firstRejected = 0;
  let accepted = 0;
  const localSeconds: number[] = [];
  for (const [i, prompt] of prompts.slice(0, requests).entries()) {
    let r;
    // a seed per request: model-written prompts repeat, and the same prompt and seed give the same draft
    localSeconds.push(await seconds(async () => (r = await agent.orchestrator.ask(prompt, { k: 0, seed: 1 + 1000 * i }))));
    attempts.push(r!.attempts.length);
    if (!r!.attempts[0].verdict.accepted) firstRejected++;
    if (r!.accepted) accepted++;
  }
  await agent.close();

  progress('the same request in one process and through role processes on the embedded broker');
  const broker = await startAedesBroker({ port: 0 });
  const roles = [spawnRole('retrieval', broker.url), spawnRole('reasoning', broker.url), spawnRole('filter', broker.url), spawnRole('sensing', broker.url, ['--scenario', 'calm'])];
  await Promise.all(roles.map((r) => r.ready));
  const bus = await MqttAgentBus.connect({ url: broker.url, meshId: 'default', clientId: 'bench-agent', log: () => undefined });
  const orchestrator = await Orchestrator.connect(bus);
  await orchestrator.waitForRoles(['retrieval', 'reasoning', 'filter', 'sensing'], 20000);
  const local2 = await startLocalAgent({ modelPath: paths.model, tokenizerPath: paths.tokenizer, sensing: { scenario: 'calm' } });
  const meshTimes: number[] = [];
  const localTimes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const ask = { k: 3, seed: i + 1, maxAttempts: 1 };
    meshTimes.push(await seconds(() => orchestrator.ask('Once upon a time', ask)));
    localTimes.push(await seconds(() => local2.orchestrator.ask('Once upon a time', ask)));
  }
  await local2.close();
  await bus.close();
  await Promise.all(roles.map((r) => r.stop()));
  await broker.close();

  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const out: string[] = [];
  out.push(`filter thresholds (${calibration.normal.drafts} drafts, q ${calibration.quantile} x ${calibration.margin}): repeated 4-grams <= ${calibration.thresholds.maxRepeated4}, perplexity <= ${calibration.thresholds.maxPerplexity}`);
  out.push('| labelled drafts | n | rate |', '|---|---|---|');
  for (const [label, r] of Object.entries(rates)) out.push(`| ${label} | ${r.drafts} | ${pct(r.rate)} ${r.measure} |`);
  out.push('', '| prompt | first-word mass without -> with passage | ratio | drafts using a passage word, without -> with |', '|---|---|---|---|');
  for (const p of passages) out.push(`| ${p.prompt} | ${p.massWithout.toExponential(2)} -> ${p.massWith.toExponential(2)} | ${p.ratio.toFixed(1)}x | ${pct(p.useWithout)} -> ${pct(p.useWith)} |`);
  out.push('', '| channel | lexicon mass ratio at full reading (through the reasoning role) |', '|---|---|');
  for (const s of steering) out.push(`| ${s.channel} | ${s.ratio.toFixed(3)}x |`);
  out.push('', `requests: ${requests}; first draft rejected ${pct(firstRejected / requests)}; accepted within 4 drafts ${pct(accepted / requests)}; drafts per request: mean ${(attempts.reduce((a, b) => a + b, 0) / requests).toFixed(2)}, max ${Math.max(...attempts)}`);
  out.push(`one draft (k 3, 96 tokens): ${median(localTimes).toFixed(3)} s in one process, ${median(meshTimes).toFixed(3)} s through role processes on the embedded broker (median of 5, alternating)`);
  process.stdout.write(`${out.join('\n')}\n`);
  process.stdout.write(
    `${JSON.stringify({ thresholds: calibration.thresholds, rates, passages: passages.map(({ words: _w, ...p }) => p), steering, requests, firstRejected: firstRejected / requests, accepted: accepted / requests, meanDrafts: attempts.reduce((a, b) => a + b, 0) / requests, localSeconds: median(localTimes), meshSeconds: median(meshTimes) })}\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

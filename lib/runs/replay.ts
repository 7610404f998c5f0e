/**
 * Replay and comparison of recorded runs. A replay runs a recorded request again, from the
 * sensor readings recorded with it, on the engine (its heads cut into as many groups as the
 * run had nodes, named as they were) or on a mesh of head-node processes, records it as a new
 * run, and checks that its tokens, probabilities and attributions are the recorded ones.
 * Overrides (alpha, readings) make it a counterfactual run instead, to compare with diffRuns:
 * where the texts diverge, and which node's readings differ there.
 */
import { Engine, GenerationResult } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { runMeshGenerate } from '../mesh/run';
import { TokenAttribution, generateWithAttribution } from '../steering/attribution';
import { loadSteering } from '../steering/directions';
import { generateSteeredOnMesh, MeshSteering } from '../steering/mesh';
import { NodeReadings, Steering, localNodes } from '../steering/steer';
import { ModelIdentity, optionsOf } from './jobs';
import { RunRecorder } from './record';
import { MeshRecord, RunRecord, RunStore, TokenRecord } from './store';
import type { RadioSettings } from '../../gateway-bridge/radio-mesh';
import { runRadioGenerate } from '../../gateway-bridge/run';

export interface ReplayOptions {
  modelPath: string;
  tokenizerPath: string;
  model: ModelIdentity;
  /** Run on this many head-node processes (an embedded broker) instead of the engine. */
  mesh?: number;
  native?: boolean;
  /** Counterfactual: this alpha instead of the recorded one. */
  alpha?: number;
  /** Counterfactual: these readings (node -> channel -> [-1, 1]) instead of the recorded ones. */
  readings?: NodeReadings;
  /** Run on radio head nodes behind the LoRa bridge on the simulated channel (as many as the run had nodes). */
  radio?: RadioSettings;
}

export interface ReplayResult {
  id: string;
  counterfactual: boolean;
  /** Where the replay differs from the recording (empty: the same tokens, probabilities and attributions). */
  differences: string[];
  tokens: number;
}

/** The readings in force for a run: each node's readings recorded at its first position. */
export function recordedReadings(r: RunRecord): NodeReadings {
  const out: NodeReadings = {};
  for (const x of r.readings) out[x.node] ??= x.readings as Record<string, number>;
  return out;
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b));

/** What differs between a recorded run's tokens and its replay's, position by position. */
export function compareTokens(recorded: readonly TokenRecord[], replayed: readonly TokenRecord[]): string[] {
  const out: string[] = [];
  if (recorded.length !== replayed.length) out.push(`${recorded.length} tokens recorded, ${replayed.length} replayed`);
  for (let i = 0; i < Math.min(recorded.length, replayed.length); i++) {
    const a = recorded[i];
    const b = replayed[i];
    if (a.token !== b.token) {
      out.push(`position ${a.pos}: token ${a.token} ${JSON.stringify(a.piece)} recorded, ${b.token} ${JSON.stringify(b.piece)} replayed`);
      break; // after a different token every later position differs
    }
    if (a.probability != null && b.probability != null && !close(a.probability, b.probability)) out.push(`position ${a.pos}: probability ${a.probability} recorded, ${b.probability} replayed`);
    if (a.kl != null && b.kl != null && !close(a.kl, b.kl)) out.push(`position ${a.pos}: KL ${a.kl} recorded, ${b.kl} replayed`);
    if (a.node != null && a.node !== b.node) out.push(`position ${a.pos}: attributed to ${a.node} recorded, ${b.node ?? 'none'} replayed`);
  }
  return out;
}

/** Replays run `r` and records the replay in `store` (source replay:ID, or counterfactual:ID with overrides). */
export async function replayRun(store: RunStore, r: RunRecord, o: ReplayOptions): Promise<ReplayResult> {
  if (r.job.modelDigest !== o.model.digest) throw new MeshLlmError(`run ${r.job.id} ran on the model with digest ${r.job.modelDigest.slice(0, 12)}…; ${o.model.path} has ${o.model.digest.slice(0, 12)}…: a replay on another model would not be a replay`);
  const options = optionsOf(r.job.settings);
  const counterfactual = o.alpha !== undefined || o.readings !== undefined;
  const readings = o.readings ?? recordedReadings(r);
  const steered = Object.keys(readings).length > 0;
  const recordedAlpha = r.job.settings.alpha;
  const groups = r.job.mesh?.nodes.length || 1;
  if (o.radio && o.mesh !== undefined) throw new MeshLlmError('a replay runs on the radio or on --mesh N head-node processes, not both');
  const engine = o.mesh === undefined && !o.radio ? Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, groups }) : null;
  const promptTokens = (engine?.tokenizer ?? Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath }).tokenizer).encode(options.prompt, true, false).length;
  const mesh: MeshRecord = o.radio ? { kind: 'radio', nodes: [], quant: 'f32', radio: { ...o.radio } } : o.mesh === undefined ? { kind: 'engine', nodes: localNodes(engine!.heads).map((n) => ({ node: n.node, heads: n.heads, runtime: 'engine' })) } : { kind: 'mqtt', nodes: [], quant: 'f32' };
  const alphaOf = (data: ReturnType<typeof loadSteering>) => o.alpha ?? recordedAlpha ?? data.settings.alpha;
  let alpha: number | undefined;
  const recorder = new RunRecorder(store, { options, source: `${counterfactual ? 'counterfactual' : 'replay'}:${r.job.id}`, model: o.model, mesh, promptTokens });
  // kl: how far all the sensors moved the distribution, KL(steered || unsteered), as the mesh events tell it
  const onAttribution = (a: TokenAttribution) => store.setAttribution(recorder.id, a.pos, a.kl, a.top);
  let result: GenerationResult;
  if (o.radio) {
    // each position's gathers (their wall round trip; the airtime per position goes with the mesh record's radio report)
    const radio = await runRadioGenerate({
      ...o.radio,
      generate: options,
      modelPath: o.modelPath,
      tokenizerPath: o.tokenizerPath,
      nodes: groups,
      quant: 'f32',
      onToken: recorder.onToken,
      onEvent: (e) => {
        if (e.kind === 'gather') recorder.gather(e.pos, e.layer, e.ms);
      },
      log: () => undefined,
      // the recorded readings go to each radio node as its steering body (radio-1.. for node-1..)
      ...(steered ? { steer: { readings: radioReadings(readings), alpha: o.alpha ?? recordedAlpha, onAttribution: (a: TokenAttribution) => onAttribution(fromRadioNames(a)) } } : {}),
    });
    if (steered) alpha = radio.alpha;
    result = radio;
    const report = radio.radio;
    store.started(recorder.id, { ...mesh, nodes: radio.assignment.map((a) => ({ node: a.node, heads: a.heads, runtime: 'radio' })), radio: { ...o.radio, simulatedSecondsPerToken: report.simulatedSecondsPerToken, airtimeSeconds: report.airtimeSeconds, positions: report.positions } });
  } else if (engine) {
    if (steered) {
      const data = loadSteering(engine.g.dim, engine.g.nLayers);
      const steering = new Steering(engine.g, engine.gateway, data, localNodes(engine.heads));
      alpha = alphaOf(data);
      steering.apply(engine.heads, readings, alpha);
      result = await generateWithAttribution(engine.gateway, engine.heads, engine.tokenizer, steering.steeredNodes(readings, alpha), options, onAttribution, recorder.onToken);
    } else result = await engine.generate(options, recorder.onToken);
  } else {
    result = await runMeshGenerate({
      generate: options,
      modelPath: o.modelPath,
      tokenizerPath: o.tokenizerPath,
      mesh: o.mesh,
      native: o.native,
      groups: groups,
      log: () => undefined,
      nodeLog: () => undefined,
      onToken: recorder.onToken,
      generateOn: steered
        ? async (gw, assignment, broker) => {
            const data = loadSteering(gw.g.dim, gw.g.nLayers);
            const steering = new Steering(gw.g, gw.gateway, data, assignment.map((a) => ({ node: a.node, heads: a.heads })));
            alpha = alphaOf(data);
            const link = await MeshSteering.connect(broker);
            try {
              return await generateSteeredOnMesh(gw, link, steering, readings, alpha, options, onAttribution, recorder.onToken);
            } finally {
              await link.close();
            }
          }
        : undefined,
    });
  }
  recorder.finish(result);
  // the readings in force go with the replay's record
  for (const [node, values] of Object.entries(readings)) store.addReading(recorder.id, { pos: 0, node, readings: values });
  if (alpha !== undefined) store.setSettings(recorder.id, { ...r.job.settings, alpha });
  const replayed = store.tokens(recorder.id);
  return { id: recorder.id, counterfactual, differences: compareTokens(r.tokens, replayed), tokens: replayed.length };
}

/** Radio nodes are radio-N where the engine and the MQTT mesh have node-N: the readings move with the name. */
function radioReadings(readings: NodeReadings): NodeReadings {
  return Object.fromEntries(Object.entries(readings).map(([node, values]) => [node.replace(/^node-/, 'radio-'), values]));
}

function fromRadioNames(a: TokenAttribution): TokenAttribution {
  const name = (n: string) => n.replace(/^radio-/, 'node-');
  return { ...a, top: a.top === null ? null : name(a.top), nodes: a.nodes.map((n) => ({ ...n, node: name(n.node) })) };
}

export interface RunDiff {
  /** The first position whose token differs (null: the same tokens throughout). */
  pos: number | null;
  /** The texts up to there, and each text from there on. */
  common: string;
  a: string;
  b: string;
  /** Nodes whose readings in force at that position differ, with both values. */
  readings: { node: string; a: Record<string, number> | null; b: Record<string, number> | null }[];
  alpha: { a: number | null; b: number | null };
}

export function diffRuns(a: RunRecord, b: RunRecord): RunDiff {
  let i = 0;
  while (i < a.tokens.length && i < b.tokens.length && a.tokens[i].token === b.tokens[i].token) i++;
  const same = i === a.tokens.length && i === b.tokens.length;
  const text = (ts: readonly TokenRecord[]) => ts.map((t) => t.piece).join('');
  const ra = recordedReadings(a);
  const rb = recordedReadings(b);
  const nodes = [...new Set([...Object.keys(ra), ...Object.keys(rb)])].sort();
  const differs = (x?: Record<string, number>, y?: Record<string, number>) => JSON.stringify(x ?? null) !== JSON.stringify(y ?? null);
  return {
    pos: same ? null : (a.tokens[i] ?? b.tokens[i]).pos,
    common: text(a.tokens.slice(0, i)),
    a: text(a.tokens.slice(i)),
    b: text(b.tokens.slice(i)),
    readings: nodes.filter((n) => differs(ra[n], rb[n])).map((n) => ({ node: n, a: ra[n] ?? null, b: rb[n] ?? null })),
    alpha: { a: a.job.settings.alpha ?? null, b: b.job.settings.alpha ?? null },
  };
}

/**
 * What `mesh-llm generate --scenario NAME | --sensors FILE [--alpha A]` runs: readings for
 * every node (a simulated scenario, or a CSV trace calibrated on its first minute), the
 * nodes' steering set on the engine's head groups, and the generation with per-token
 * attribution.
 */
import { Engine, GenerateOptions, GenerationResult, TokenListener } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { TokenAttribution, generateWithAttribution } from './attribution';
import { loadSteering } from './directions';
import { readingsFromCsvTrace, scenarioReadings } from './readings';
import { SCENARIOS, ScenarioName, readSensorCsv } from './sensors';
import { NodeReadings, Steering, localNodes } from './steer';
import { MeshGateway, NodeAssignment } from '../mesh/gateway';
import { BrokerAddress } from '../mesh/mqtt';
import { MeshSteering, generateSteeredOnMesh } from './mesh';
import { WeightFormat } from '../llm/quant';

export interface SteeringSource {
  scenario?: string;
  sensors?: string;
  alpha?: number;
}

export interface SteeredGenerateOptions extends SteeringSource {
  generate: GenerateOptions;
  modelPath: string;
  tokenizerPath: string;
  groups?: string | number;
  quant?: WeightFormat;
  onToken?: (a: TokenAttribution) => void;
  onPiece?: TokenListener;
}

export interface SteeredGenerationResult extends GenerationResult {
  alpha: number;
  readings: NodeReadings;
  attributions: TokenAttribution[];
}

export function scenarioName(name: string): ScenarioName {
  if (!(name in SCENARIOS)) throw new MeshLlmError(`unknown scenario "${name}" (known: ${Object.keys(SCENARIOS).join(', ')})`);
  return name as ScenarioName;
}

/** Every node's normalised readings from a scenario or a CSV trace. */
export function readingsFor(source: SteeringSource, nodes: readonly string[]): NodeReadings {
  if (source.scenario !== undefined && source.sensors !== undefined) throw new MeshLlmError('give a scenario or a sensor trace, not both');
  if (source.scenario !== undefined) return scenarioReadings(scenarioName(source.scenario), nodes).readings;
  if (source.sensors !== undefined) return readingsFromCsvTrace(readSensorCsv(source.sensors)).readings;
  return {};
}

export async function runSteeredGenerate(o: SteeredGenerateOptions): Promise<SteeredGenerationResult> {
  const engine = Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, groups: o.groups, quant: o.quant });
  const data = loadSteering(engine.g.dim, engine.g.nLayers);
  const nodes = localNodes(engine.heads);
  const steering = new Steering(engine.g, engine.gateway, data, nodes);
  const alpha = o.alpha ?? data.settings.alpha;
  const readings = readingsFor(o, nodes.map((n) => n.node));
  steering.apply(engine.heads, readings, alpha);
  const result = await generateWithAttribution(engine.gateway, engine.heads, engine.tokenizer, steering.steeredNodes(readings, alpha), o.generate, o.onToken, o.onPiece);
  return { ...result, alpha, readings };
}

/** One line per generation: which node each token is attributed to, most often first. */
export function attributionSummary(attributions: readonly TokenAttribution[]): string {
  const counts = new Map<string, number>();
  for (const a of attributions) counts.set(a.top ?? 'none', (counts.get(a.top ?? 'none') ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} x${c}`).join(', ');
}

/**
 * The steered generation on an assigned mesh (runMeshGenerate's generateOn): the nodes are the
 * assignment's, their steering goes out over MQTT, attributions are published per token.
 */
export function steeredOnMesh(source: SteeringSource, options: GenerateOptions, listeners: { onToken?: (a: TokenAttribution) => void; onPiece?: TokenListener } = {}) {
  return async (gw: MeshGateway, assignment: NodeAssignment[], broker: BrokerAddress & { meshId: string }): Promise<SteeredGenerationResult> => {
    const data = loadSteering(gw.g.dim, gw.g.nLayers);
    const steering = new Steering(gw.g, gw.gateway, data, assignment.map((a) => ({ node: a.node, heads: a.heads })));
    const alpha = source.alpha ?? data.settings.alpha;
    const readings = readingsFor(source, assignment.map((a) => a.node));
    const link = await MeshSteering.connect(broker);
    try {
      const result = await generateSteeredOnMesh(gw, link, steering, readings, alpha, options, listeners.onToken, listeners.onPiece);
      return { ...result, alpha, readings };
    } finally {
      await link.close();
    }
  };
}

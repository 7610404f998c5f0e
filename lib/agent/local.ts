/**
 * All four roles and the orchestrator in one process on a LocalAgentBus: what `mesh-llm agent`
 * runs without --broker, with the same messages and topics the roles use over MQTT.
 */
import { Engine } from '../llm/engine';
import { Logger } from '../mesh/mqtt';
import { LocalAgentBus } from './bus';
import { DEFAULT_SAFETY_LEXICON, DEFAULT_THRESHOLDS, DraftFilter, FilterThresholds } from './filter';
import { Orchestrator } from './orchestrator';
import { Reasoner } from './reasoning';
import { PassageIndex } from './retrieval';
import { SensingSource, startFilter, startReasoning, startRetrieval, startSensing } from './roles';
import { ROLES } from './topics';

export interface LocalAgentOptions {
  modelPath: string;
  tokenizerPath: string;
  index?: PassageIndex;
  /** Steering: none when absent. */
  sensing?: SensingSource;
  thresholds?: FilterThresholds;
  lexicon?: readonly string[];
  log?: Logger;
  meshId?: string;
}

export interface LocalAgent {
  bus: LocalAgentBus;
  orchestrator: Orchestrator;
  reasoner: Reasoner;
  filter: DraftFilter;
  index: PassageIndex;
  close(): Promise<void>;
}

export async function startLocalAgent(o: LocalAgentOptions): Promise<LocalAgent> {
  const log = o.log ?? (() => undefined);
  const bus = new LocalAgentBus(o.meshId ?? 'default', log);
  const index = o.index ?? PassageIndex.empty();
  const reasoner = Reasoner.local({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath });
  const filter = new DraftFilter(Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath }), o.thresholds ?? DEFAULT_THRESHOLDS, o.lexicon ?? DEFAULT_SAFETY_LEXICON);
  const orchestrator = await Orchestrator.connect(bus);
  await startRetrieval(bus, index, log);
  await startReasoning(bus, reasoner, log);
  await startFilter(bus, filter, log);
  await startSensing(bus, o.sensing ?? { readings: {} }, log);
  await orchestrator.waitForRoles(ROLES, 5000);
  return { bus, orchestrator, reasoner, filter, index, close: () => bus.close() };
}

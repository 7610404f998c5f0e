/**
 * The four roles as mesh members: each subscribes to its requests on an AgentBus, does its
 * work, publishes its answer, and announces itself (retained status, last will offline).
 * `mesh-llm role NAME --broker URL` runs one of them as its own process; `mesh-llm agent`
 * without a broker runs all four on a LocalAgentBus in its own process.
 */
import { AlertMessage, alertProblem } from '../alerts/alerts';
import { topicsFor } from '../mesh/wire';
import { Logger } from '../mesh/mqtt';
import { Calibrator, CalibratorOptions } from '../steering/calibration';
import { readingsFor } from '../steering/run';
import { parseSensorMessage } from '../steering/sensors';
import { NodeReadings } from '../steering/steer';
import { AgentBus } from './bus';
import { DraftFilter } from './filter';
import { AgentSteeringMessage, ReasonMessage } from './messages';
import { Reasoner } from './reasoning';
import { PassageIndex } from './retrieval';
import { Role } from './topics';

export interface RunningRole {
  role: Role;
  /** Requests handled so far. */
  handled(): number;
}

function announce(bus: AgentBus, role: Role, detail?: string): Promise<void> {
  return bus.publish('status', { protocol: 1, role, state: 'ready', pid: process.pid, ...(detail ? { detail } : {}) }, true);
}

/** Runs handlers one at a time in arrival order (a role's model is one engine). */
function serial<T>(log: Logger, what: string, work: (m: T) => Promise<void>): (m: T) => void {
  let chain = Promise.resolve();
  return (m) => {
    chain = chain.then(() => work(m)).catch((e) => log('error', `${what}: ${(e as Error).message}`));
  };
}

/**
 * Retrieval: answers every query with the index's best passages; with `history`, adds the
 * head mesh's sensor readings and alerts (mesh-llm/{mesh}/sensors/+, alerts) to the index as
 * they arrive.
 */
export async function startRetrieval(bus: AgentBus, index: PassageIndex, log: Logger, o: { history?: boolean } = {}): Promise<RunningRole> {
  let handled = 0;
  if (o.history !== false) {
    const mesh = topicsFor(bus.meshId);
    await bus.onTopic(mesh.sensorsAll, (topic, payload) => {
      try {
        index.addReading(parseSensorMessage(payload));
      } catch (e) {
        log('warn', `dropped a reading on ${topic}: ${(e as Error).message}`);
      }
    });
    await bus.onTopic(mesh.alerts, (topic, payload) => {
      let a: unknown;
      try {
        a = JSON.parse(payload.toString());
      } catch {
        return log('warn', `dropped an alert on ${topic}: not JSON`);
      }
      const problem = alertProblem(a);
      if (problem) return log('warn', `dropped an alert on ${topic}: ${problem}`);
      index.addAlert(a as AlertMessage);
    });
  }
  await bus.on('query', (q) => {
    handled++;
    bus.publish('passages', { protocol: 1, id: q.id, passages: index.query(q.prompt, q.k) }).catch((e) => log('error', `passages for ${q.id}: ${(e as Error).message}`));
  });
  const c = index.counts();
  await announce(bus, 'retrieval', `${c.document} document passages, ${c.reading} readings, ${c.alert} alerts`);
  return { role: 'retrieval', handled: () => handled };
}

/** Reasoning: a draft for every reason request, steered by the last steering message. */
export async function startReasoning(bus: AgentBus, reasoner: Reasoner, log: Logger): Promise<RunningRole & { steering(): AgentSteeringMessage | null }> {
  let steering: AgentSteeringMessage | null = null;
  let handled = 0;
  await bus.on('steering', (m) => {
    steering = m;
    log('info', `steering from ${m.source}: ${Object.keys(m.readings).length} nodes`);
  });
  await bus.on(
    'reason',
    serial<ReasonMessage>(log, 'reason', async (req) => {
      const draft = await reasoner.draft(req, steering);
      handled++;
      await bus.publish('draft', draft);
    }),
  );
  await announce(bus, 'reasoning', `${reasoner.model.describe}, ${reasoner.nodes.length} steering nodes`);
  return { role: 'reasoning', handled: () => handled, steering: () => steering };
}

/** Filter: a verdict for every draft. */
export async function startFilter(bus: AgentBus, filter: DraftFilter, log: Logger): Promise<RunningRole> {
  let handled = 0;
  await bus.on(
    'draft',
    serial(log, 'draft', async (d) => {
      const v = await filter.verdict(d);
      handled++;
      await bus.publish('verdict', v);
    }),
  );
  const t = filter.thresholds;
  await announce(bus, 'filter', `repeated 4-grams <= ${t.maxRepeated4}, perplexity <= ${t.maxPerplexity}, ${filter.lexicon.length} lexicon words`);
  return { role: 'filter', handled: () => handled };
}

export interface SensingSource {
  /** A simulated scenario on `nodes` (calibrated on its calm minute). */
  scenario?: string;
  /** A CSV sensor trace, calibrated on its first minute. */
  sensors?: string;
  /** Readings given as they are (already normalised). */
  readings?: NodeReadings;
  /** The live sensors of the head mesh (mesh-llm/{mesh}/sensors/+), calibrated on their first calibrationMs. */
  live?: { calibrationMs: number; calibrator?: Partial<CalibratorOptions>; /** At most one steering message per this much sensor time (default 1000 ms). */ publishMs?: number };
  alpha?: number;
  /** Nodes of a scenario (default node-1..node-8, the reasoning model's groups). */
  nodes?: string[];
}

export const DEFAULT_SENSING_NODES = Array.from({ length: 8 }, (_, i) => `node-${i + 1}`);

/**
 * Sensing: the calibrated, normalised readings (lib/steering) as the reasoning role's steering,
 * retained, so a reasoning role that starts later gets them too. Live: once the calibration
 * window has passed (sensor time), a sensor message publishes every node's readings at its
 * time, at most once per publishMs of sensor time.
 */
export async function startSensing(bus: AgentBus, source: SensingSource, log: Logger): Promise<RunningRole> {
  let sent = 0;
  const send = async (what: string, readings: NodeReadings, at: number) => {
    const m: AgentSteeringMessage = { protocol: 1, source: what, at, readings };
    if (source.alpha !== undefined) m.alpha = source.alpha;
    await bus.publish('steering', m, true);
    sent++;
  };
  if (source.live) {
    const calibrator = new Calibrator(source.live.calibrator);
    let first: number | null = null;
    let calibrated = false;
    let lastSent = -Infinity;
    const publishMs = source.live.publishMs ?? 1000;
    await bus.onTopic(topicsFor(bus.meshId).sensorsAll, (topic, payload) => {
      let m;
      try {
        m = parseSensorMessage(payload);
      } catch (e) {
        return log('warn', `dropped a reading on ${topic}: ${(e as Error).message}`);
      }
      for (const r of calibrator.addMessage(m)) log('warn', `${m.node}: ${r.reason}`);
      first ??= m.at;
      if (!calibrated && m.at - first >= source.live!.calibrationMs) {
        calibrator.calibrate();
        calibrated = true;
        log('info', `calibrated ${calibrator.nodes().length} nodes`);
      }
      if (calibrated && m.at - lastSent >= publishMs) {
        lastSent = m.at;
        send('live sensors', calibrator.allNormalised(m.at), m.at).catch((e) => log('error', `steering: ${(e as Error).message}`));
      }
    });
  } else {
    const what = source.scenario !== undefined ? `scenario ${source.scenario}` : source.sensors !== undefined ? `trace ${source.sensors}` : 'readings';
    const readings = source.readings ?? readingsFor(source, source.nodes ?? DEFAULT_SENSING_NODES);
    await send(what, readings, Date.now());
  }
  await announce(bus, 'sensing', source.live ? 'live sensors' : `${Object.keys(source.readings ?? {}).length || 'scenario/trace'} readings`);
  return { role: 'sensing', handled: () => sent };
}

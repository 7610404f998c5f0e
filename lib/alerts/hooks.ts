/**
 * What the mesh-llm-alert node does with a message, without Node-RED: it recognises the input
 * (a sensor message, a node status, an attribution, or a KL value), runs the AlertEngine, and
 * returns the messages to send: alerts for the alerts topic, each node's alert state (ON/OFF,
 * retained) when it changes, and Home Assistant discovery configs (retained) for each node the
 * first time it is heard from and whenever it shows a new channel.
 */
import { MeshLlmError } from '../llm/errors';
import { parseControl, topicsFor, Topics } from '../mesh/wire';
import { ChannelName, SensorMessage, parseSensorMessage } from '../steering/sensors';
import { parseWithSchema } from '../steering/schemas';
import { AlertEngine, AlertMessage } from './alerts';
import { DEFAULT_DISCOVERY_PREFIX, DiscoveryMessage, nodeDiscovery } from './homeassistant';

/** The series a bare KL value belongs to when its message names no node. */
export const GATEWAY_SERIES = 'gateway';

export interface HookOptions {
  meshId: string;
  /** Home Assistant discovery prefix; null: no discovery messages. */
  discoveryPrefix: string | null;
}

export interface HookMessages {
  alerts: { topic: string; payload: AlertMessage; qos: 1 }[];
  states: { topic: string; payload: 'ON' | 'OFF'; retain: true; qos: 1 }[];
  discovery: DiscoveryMessage[];
}

type Input = { kind: 'sensors'; m: SensorMessage } | { kind: 'status'; node: string; state: string } | { kind: 'kl'; values: { node: string; kl: number; at?: number }[] };

const EXPECTED = 'a sensor message (schemas/sensors.json), a status message (schemas/status.json), an attribution message (schemas/attribution.json), or a KL value (a number, or {kl, node?, at?})';

/** What a payload is; a string or Buffer is read as JSON first. `topic` names a bare KL value's node when it is a node id. */
export function classifyInput(payload: unknown, topic: unknown): Input {
  let p = payload;
  if (Buffer.isBuffer(p) || typeof p === 'string') {
    try {
      p = JSON.parse(p.toString());
    } catch {
      throw new MeshLlmError(`mesh-llm-alert expects ${EXPECTED}; got text that is not JSON`);
    }
  }
  const topicNode = typeof topic === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(topic) ? topic : GATEWAY_SERIES;
  if (typeof p === 'number') return { kind: 'kl', values: [{ node: topicNode, kl: p }] };
  if (typeof p !== 'object' || p === null) throw new MeshLlmError(`mesh-llm-alert expects ${EXPECTED}; got ${JSON.stringify(p)}`);
  const o = p as Record<string, unknown>;
  const json = JSON.stringify(o);
  if ('readings' in o) return { kind: 'sensors', m: parseSensorMessage(json) };
  if ('state' in o) {
    const s = parseControl('status', json);
    return { kind: 'status', node: s.node, state: s.state };
  }
  if ('nodes' in o && 'pos' in o) {
    const a = parseWithSchema<{ nodes: { node: string; kl: number }[] }>('attribution', json);
    return { kind: 'kl', values: a.nodes };
  }
  if ('kl' in o) {
    if (o.node !== undefined && typeof o.node !== 'string') throw new MeshLlmError('a KL value\'s "node" must be a node id');
    if (o.at !== undefined && (typeof o.at !== 'number' || !Number.isFinite(o.at))) throw new MeshLlmError('a KL value\'s "at" must be a time in milliseconds');
    return { kind: 'kl', values: [{ node: (o.node as string | undefined) ?? topicNode, kl: o.kl as number, at: o.at as number | undefined }] };
  }
  throw new MeshLlmError(`mesh-llm-alert expects ${EXPECTED}; got an object with ${Object.keys(o).join(', ') || 'no properties'}`);
}

/** The AlertEngine behind a node: inputs in, hook messages out. */
export class AlertHooks {
  readonly engine: AlertEngine;
  private readonly topics: Topics;
  private readonly state = new Map<string, boolean>();
  private readonly discovered = new Map<string, Set<ChannelName>>();

  /** Refuses bad detectors and a bad mesh id, naming them (what the node reports at deploy). */
  constructor(
    detectors: unknown,
    readonly options: HookOptions = { meshId: 'default', discoveryPrefix: DEFAULT_DISCOVERY_PREFIX },
  ) {
    this.topics = topicsFor(options.meshId);
    this.engine = new AlertEngine(detectors);
  }

  /** One input message at `now` (the node's clock: arrival time, and the time of KL values without one). */
  handle(payload: unknown, topic: unknown, now: number): HookMessages {
    const input = classifyInput(payload, topic);
    const discovery = input.kind === 'sensors' ? this.discover(input.m) : [];
    const alerts = input.kind === 'sensors' ? this.engine.sensors(input.m, now) : input.kind === 'status' ? this.engine.status(input.node, input.state, now) : input.values.flatMap((v) => this.engine.kl(v.node, v.kl, v.at ?? now));
    return { ...this.messages(alerts, input.kind === 'sensors' ? [input.m.node] : []), discovery };
  }

  /** The periodic staleness check. */
  tick(now: number): HookMessages {
    return { ...this.messages(this.engine.check(now)), discovery: [] };
  }

  /** The alerts as messages, and the alert state of every node they concern (and of `heard`) that changed or was never sent. */
  private messages(alerts: AlertMessage[], heard: string[] = []): Omit<HookMessages, 'discovery'> {
    const states: HookMessages['states'] = [];
    for (const node of new Set([...heard, ...alerts.map((a) => a.node)])) {
      const on = this.engine.nodeActive(node);
      if (this.state.get(node) === on) continue;
      this.state.set(node, on);
      states.push({ topic: this.topics.alertState(node), payload: on ? 'ON' : 'OFF', retain: true, qos: 1 });
    }
    return { alerts: alerts.map((payload) => ({ topic: this.topics.alerts, payload, qos: 1 as const })), states };
  }

  /** Discovery configs for a node heard from for the first time, or showing a channel it had not shown. */
  private discover(m: SensorMessage): DiscoveryMessage[] {
    if (this.options.discoveryPrefix === null) return [];
    const seen = this.discovered.get(m.node) ?? new Set<ChannelName>();
    const channels = Object.keys(m.readings) as ChannelName[];
    if (this.discovered.has(m.node) && channels.every((c) => seen.has(c))) return [];
    for (const c of channels) seen.add(c);
    this.discovered.set(m.node, seen);
    return nodeDiscovery(this.options.meshId, m.node, [...seen], this.options.discoveryPrefix);
  }
}

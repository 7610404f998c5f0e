/**
 * Alerts: the alert message (schemas/alert.json), its topics, and the AlertEngine that runs
 * the configured detectors over every node's sensor readings, per-token KL values and status
 * messages, and turns their transitions into alert messages.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { ValidateFunction } from 'ajv';
import { MeshLlmError } from '../llm/errors';
import { packageRoot } from '../llm/resolve';
import { checkId } from '../mesh/wire';
import { checkReading } from '../steering/calibration';
import { CHANNEL_NAMES, SensorMessage } from '../steering/sensors';
import { KlSpikeDetector, OfflineDetector, RateDetector, StaLtaDetector, StaleDetector, ThresholdDetector, Transition, ValueDetector } from './detectors';
import { DETECTOR_KINDS, DetectorKind, DetectorSettings, checkDetectorList } from './settings';

export interface AlertMessage {
  protocol: 1;
  id: string;
  node: string;
  channel: string;
  detector: DetectorKind;
  name?: string;
  value: number;
  onset: number;
  end: number | null;
  text?: string;
}

let validator: ValidateFunction | null = null;

/** Checks an alert message against schemas/alert.json: null when it passes, else the first failure. */
export function alertProblem(msg: unknown): string | null {
  validator ??= new Ajv({ strict: true }).compile(JSON.parse(fs.readFileSync(path.join(packageRoot(), 'schemas', 'alert.json'), 'utf8')));
  if (validator(msg)) return null;
  const first = validator.errors?.[0];
  return `alert fails schemas/alert.json: ${first?.instancePath || '(root)'} ${first?.message ?? 'is invalid'}`;
}

/** The detector settings, checked, or an error listing every problem (what the node reports at deploy). */
export function parseDetectors(raw: unknown): DetectorSettings[] {
  const checked = checkDetectorList(raw, CHANNEL_NAMES);
  if (!checked.ok) throw new MeshLlmError(`bad alert settings: ${checked.problems.join('; ')}`);
  return checked.settings;
}

function valueDetector(s: DetectorSettings): ValueDetector {
  switch (s.kind) {
    case 'classic-sta-lta':
    case 'recursive-sta-lta':
      return new StaLtaDetector(s);
    case 'threshold':
      return new ThresholdDetector(s);
    case 'rate':
      return new RateDetector(s);
    case 'kl-spike':
      return new KlSpikeDetector(s);
    default:
      throw new MeshLlmError(`${s.kind} is not a detector of values`);
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();
const round = (v: number): number => Number(v.toPrecision(6));

/** The one line an alert carries for a person. */
function alertText(a: Omit<AlertMessage, 'text'>): string {
  const what = `${a.node} ${a.channel === 'node' ? '' : `${a.channel} `}${a.name ?? a.detector}`;
  return a.end === null ? `${what}: alert since ${iso(a.onset)} (${a.value})` : `${what}: alert ended ${iso(a.end)} (peak ${a.value}, since ${iso(a.onset)})`;
}

/** An alert message for one transition of detector `index` at `node`; checked against the schema. */
export function alertMessage(node: string, index: number, s: DetectorSettings, t: Transition): AlertMessage {
  const a: Omit<AlertMessage, 'text'> = {
    protocol: 1,
    id: `${node}:${s.channel}:${index + 1}-${s.kind}:${Math.round(t.onset)}`,
    node,
    channel: s.channel,
    detector: s.kind,
    ...(s.name ? { name: s.name } : {}),
    value: round(t.value),
    onset: t.onset,
    end: t.end,
  };
  const msg: AlertMessage = { ...a, text: alertText(a) };
  const problem = alertProblem(msg);
  if (problem) throw new MeshLlmError(problem);
  return msg;
}

/**
 * Every node's detectors. A node's detectors are made when it is first heard from; each value
 * detector sees the samples of its channel in arrival order (a missing or null reading, or one
 * outside the channel's physical range, is skipped). Alerts that have started and not ended
 * are kept, by id, in `active()`.
 */
export class AlertEngine {
  private readonly values = new Map<string, ValueDetector>();
  private readonly stale = new Map<string, StaleDetector>();
  private readonly offline = new Map<string, OfflineDetector>();
  private readonly open = new Map<string, AlertMessage>();
  readonly settings: readonly DetectorSettings[];

  /** `detectors` as an editor or a flow gives them; refused with every problem named (parseDetectors). */
  constructor(detectors: unknown) {
    this.settings = parseDetectors(detectors);
  }

  /** The alerts that have started and not ended. */
  active(): AlertMessage[] {
    return [...this.open.values()];
  }

  /** Whether any alert of `node` is active (its binary_sensor state). */
  nodeActive(node: string): boolean {
    return this.active().some((a) => a.node === node);
  }

  private record(node: string, index: number, t: Transition | null, out: AlertMessage[]): void {
    if (!t) return;
    const msg = alertMessage(node, index, this.settings[index], t);
    if (msg.end === null) this.open.set(msg.id, msg);
    else this.open.delete(msg.id);
    out.push(msg);
  }

  private detectorOf<T>(map: Map<string, T>, node: string, index: number, make: () => T): T {
    const key = `${node}\u0000${index}`;
    let d = map.get(key);
    if (!d) map.set(key, (d = make()));
    return d;
  }

  /** Runs the value detectors of `channel` of `node` over one sample of it. */
  private runValueDetectors(node: string, channel: string, sample: { at: number; value: number }, out: AlertMessage[]): void {
    this.settings.forEach((s, i) => {
      if (s.channel !== channel || DETECTOR_KINDS[s.kind].channels === 'node') return;
      this.record(node, i, this.detectorOf(this.values, node, i, () => valueDetector(s)).update(sample), out);
    });
  }

  /** One sensor message (schemas/sensors.json). `arrivedAt` is the watcher's clock, for staleness (default: the message's own time). */
  sensors(m: SensorMessage, arrivedAt = m.at): AlertMessage[] {
    const out: AlertMessage[] = [];
    this.settings.forEach((s, i) => {
      if (s.kind === 'stale') this.record(m.node, i, this.detectorOf(this.stale, m.node, i, () => new StaleDetector(s.after)).observe(arrivedAt), out);
    });
    for (const [channel, raw] of Object.entries(m.readings)) {
      if (raw === null || raw === undefined || !checkReading(channel, raw).ok) continue;
      this.runValueDetectors(m.node, channel, { at: m.at, value: raw }, out);
    }
    return out;
  }

  /** One value of a node's per-token KL series (nats); `node` is whose series (the gateway's own: "gateway"). */
  kl(node: string, kl: number, at: number): AlertMessage[] {
    checkId('node', node);
    if (!Number.isFinite(kl) || kl < 0) throw new MeshLlmError(`a KL value must be a number >= 0 (got ${kl})`);
    const out: AlertMessage[] = [];
    this.runValueDetectors(node, 'kl', { at, value: kl }, out);
    return out;
  }

  /** A node's status (schemas/status.json's state) as it arrived at `at`. */
  status(node: string, state: string, at: number): AlertMessage[] {
    checkId('node', node);
    const out: AlertMessage[] = [];
    this.settings.forEach((s, i) => {
      if (s.kind === 'offline') this.record(node, i, this.detectorOf(this.offline, node, i, () => new OfflineDetector()).status(state, at), out);
    });
    return out;
  }

  /** Checks every node heard from for staleness at `now` (the node calls this every second). */
  check(now: number): AlertMessage[] {
    const out: AlertMessage[] = [];
    for (const [key, d] of this.stale) {
      const [node, index] = key.split('\u0000');
      this.record(node, Number(index), d.check(now), out);
    }
    return out;
  }
}

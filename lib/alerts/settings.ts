/**
 * Alert detector settings: what each kind of detector takes, its defaults, and the checks that
 * refuse nonsense (an STA longer than its LTA, a trigger-off above the trigger-on, a negative
 * window). This module imports nothing: the mesh-llm-alert node serves its compiled JavaScript
 * to the Node-RED editor, so the editor's validators and the runtime's deploy check are the
 * same code.
 */

export type DetectorKind = 'classic-sta-lta' | 'recursive-sta-lta' | 'threshold' | 'rate' | 'stale' | 'offline' | 'kl-spike';

/** What a detector watches: a sensor channel, the per-token KL series, or the node itself. */
export type ChannelClass = 'sensor' | 'kl' | 'node';

/** One setting of a detector kind, as the editor shows it and the checks read it. */
export interface FieldSpec {
  key: string;
  label: string;
  unit: string;
  default: number | string;
  /** A string setting: one of these. */
  options?: readonly string[];
  /** A number setting: at least (or, with `exclusive`, above) this. */
  min?: number;
  exclusive?: boolean;
  integer?: boolean;
}

export interface KindSpec {
  description: string;
  channels: ChannelClass;
  fields: readonly FieldSpec[];
}

const seconds = (key: string, label: string, def: number): FieldSpec => ({ key, label, unit: 's', default: def, min: 0, exclusive: true });
const ratio = (key: string, label: string, def: number): FieldSpec => ({ key, label, unit: 'ratio', default: def, min: 0, exclusive: true });
const staLtaFields: readonly FieldSpec[] = [
  seconds('sta', 'STA window', 2),
  seconds('lta', 'LTA window', 30),
  ratio('on', 'trigger-on', 4),
  ratio('off', 'trigger-off', 1.5),
  { key: 'sampleRate', label: 'sample rate', unit: 'Hz', default: 1, min: 0, exclusive: true },
];

/** Every detector kind, its settings and their defaults (docs/ALERTS.md states the same table). */
export const DETECTOR_KINDS: Record<DetectorKind, KindSpec> = {
  'classic-sta-lta': { description: "ObsPy's classic_sta_lta with trigger_onset's on/off ratios", channels: 'sensor', fields: staLtaFields },
  'recursive-sta-lta': { description: "ObsPy's recursive_sta_lta with trigger_onset's on/off ratios", channels: 'sensor', fields: staLtaFields },
  threshold: {
    description: 'a level with hysteresis: on beyond trigger-on, off once back past trigger-off',
    channels: 'sensor',
    fields: [
      { key: 'direction', label: 'direction', unit: '', default: 'above', options: ['above', 'below'] },
      { key: 'on', label: 'trigger-on', unit: 'channel unit', default: 0 },
      { key: 'off', label: 'trigger-off', unit: 'channel unit', default: 0 },
    ],
  },
  rate: {
    description: 'rate of change over a window, with hysteresis',
    channels: 'sensor',
    fields: [
      { key: 'direction', label: 'direction', unit: '', default: 'either', options: ['rise', 'fall', 'either'] },
      { key: 'on', label: 'trigger-on', unit: 'unit/s', default: 1, min: 0, exclusive: true },
      { key: 'off', label: 'trigger-off', unit: 'unit/s', default: 0.5, min: 0 },
      seconds('window', 'window', 5),
    ],
  },
  stale: { description: 'no sample from the node for a while', channels: 'node', fields: [seconds('after', 'stale after', 10)] },
  offline: { description: "the node's status is offline or failed", channels: 'node', fields: [] },
  'kl-spike': {
    description: 'a spike in the per-token KL (steered vs unsteered) against its own running median and MAD',
    channels: 'kl',
    fields: [
      { key: 'window', label: 'baseline window', unit: 'tokens', default: 64, min: 2, integer: true },
      { key: 'warmup', label: 'warm-up', unit: 'tokens', default: 16, min: 2, integer: true },
      { key: 'on', label: 'trigger-on', unit: 'MADs', default: 6, min: 0, exclusive: true },
      { key: 'off', label: 'trigger-off', unit: 'MADs', default: 3 },
      { key: 'minKl', label: 'least KL', unit: 'nats', default: 0.05, min: 0 },
      { key: 'madFloor', label: 'least MAD', unit: 'nats', default: 0.01, min: 0, exclusive: true },
    ],
  },
};

/** The detectors a new alert node starts with: STA/LTA on vibration and sound, and every node's staleness and status. */
export const DEFAULT_DETECTORS: readonly Record<string, unknown>[] = [
  { kind: 'classic-sta-lta', channel: 'vibrationG' },
  { kind: 'recursive-sta-lta', channel: 'soundDb' },
  { kind: 'stale' },
  { kind: 'offline' },
];

export const KL_CHANNEL = 'kl';
export const NODE_CHANNEL = 'node';

interface Base {
  /** A label for the alert text (optional). */
  name?: string;
  channel: string;
}
export interface StaLtaSettings extends Base {
  kind: 'classic-sta-lta' | 'recursive-sta-lta';
  sta: number;
  lta: number;
  on: number;
  off: number;
  sampleRate: number;
}
export interface ThresholdSettings extends Base {
  kind: 'threshold';
  direction: 'above' | 'below';
  on: number;
  off: number;
}
export interface RateSettings extends Base {
  kind: 'rate';
  direction: 'rise' | 'fall' | 'either';
  on: number;
  off: number;
  window: number;
}
export interface StaleSettings extends Base {
  kind: 'stale';
  after: number;
}
export interface OfflineSettings extends Base {
  kind: 'offline';
}
export interface KlSpikeSettings extends Base {
  kind: 'kl-spike';
  window: number;
  warmup: number;
  on: number;
  off: number;
  minKl: number;
  madFloor: number;
}
export type DetectorSettings = StaLtaSettings | ThresholdSettings | RateSettings | StaleSettings | OfflineSettings | KlSpikeSettings;

/** A window in seconds as a count of samples, as ObsPy's Trace.trigger converts it: int(seconds * sampling rate). */
export function windowSamples(secondsLong: number, sampleRate: number): number {
  return Math.floor(secondsLong * sampleRate + 1e-9);
}

/** Reads a number setting given as a number or as the text of an editor field; NaN when it is neither. */
function numberOf(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '') return Number(v);
  return NaN;
}

function checkField(f: FieldSpec, raw: unknown, out: Record<string, unknown>): string | null {
  const v = raw === undefined || raw === '' ? f.default : raw;
  if (f.options) {
    if (typeof v !== 'string' || !f.options.includes(v)) return `${f.key} must be one of ${f.options.join(', ')} (got ${JSON.stringify(v)})`;
    out[f.key] = v;
    return null;
  }
  const n = numberOf(v);
  if (!Number.isFinite(n)) return `${f.key} must be a number (got ${JSON.stringify(v)})`;
  if (f.integer && !Number.isInteger(n)) return `${f.key} must be a whole number (got ${n})`;
  if (f.min !== undefined && (f.exclusive ? n <= f.min : n < f.min)) return `${f.key} must be ${f.exclusive ? 'above' : 'at least'} ${f.min}${f.unit && f.unit !== 'ratio' ? ` ${f.unit}` : ''} (got ${n})`;
  out[f.key] = n;
  return null;
}

/** The checks between settings of one kind, once each setting is well formed on its own. */
function checkRelations(s: DetectorSettings): string[] {
  const problems: string[] = [];
  if (s.kind === 'classic-sta-lta' || s.kind === 'recursive-sta-lta') {
    if (s.sta >= s.lta) problems.push(`the STA window (${s.sta} s) must be shorter than the LTA window (${s.lta} s)`);
    else if (windowSamples(s.sta, s.sampleRate) < 1) problems.push(`the STA window (${s.sta} s) is less than one sample at ${s.sampleRate} Hz`);
    else if (windowSamples(s.sta, s.sampleRate) >= windowSamples(s.lta, s.sampleRate)) problems.push(`at ${s.sampleRate} Hz the STA and LTA windows are both ${windowSamples(s.lta, s.sampleRate)} samples`);
  }
  if (s.kind === 'threshold' && s.direction === 'below') {
    if (s.off < s.on) problems.push(`trigger-off (${s.off}) is below trigger-on (${s.on}): for a "below" threshold it must be at or above it`);
  } else if ('off' in s && s.off > s.on) problems.push(`trigger-off (${s.off}) is above trigger-on (${s.on})`);
  if (s.kind === 'kl-spike' && s.warmup > s.window) problems.push(`the warm-up (${s.warmup} tokens) is longer than the baseline window (${s.window} tokens)`);
  return problems;
}

/**
 * Checks one detector's settings and fills in the defaults. `channels` are the sensor channels
 * a detector may watch. Returns the settings, or the problems, each naming the setting.
 */
export function checkDetector(raw: unknown, channels: readonly string[]): { ok: true; settings: DetectorSettings } | { ok: false; problems: string[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, problems: ['a detector must be an object with kind and channel'] };
  const r = raw as Record<string, unknown>;
  const kind = r.kind as DetectorKind;
  const spec = typeof kind === 'string' && Object.prototype.hasOwnProperty.call(DETECTOR_KINDS, kind) ? DETECTOR_KINDS[kind] : null;
  if (!spec) return { ok: false, problems: [`unknown detector kind ${JSON.stringify(r.kind)} (known: ${Object.keys(DETECTOR_KINDS).join(', ')})`] };
  const out: Record<string, unknown> = { kind };
  const problems: string[] = [];
  const channel = spec.channels === 'sensor' ? r.channel : spec.channels === 'kl' ? KL_CHANNEL : NODE_CHANNEL;
  if (spec.channels === 'sensor' && (typeof channel !== 'string' || !channels.includes(channel))) problems.push(`channel must be one of ${channels.join(', ')} (got ${JSON.stringify(r.channel)})`);
  out.channel = channel;
  if (r.name !== undefined && r.name !== '') {
    if (typeof r.name !== 'string' || r.name.length > 100) problems.push('name must be text of at most 100 characters');
    else out.name = r.name;
  }
  const known = new Set(['kind', 'channel', 'name', ...spec.fields.map((f) => f.key)]);
  for (const key of Object.keys(r)) if (!known.has(key)) problems.push(`${key} is not a setting of ${kind} (its settings: ${spec.fields.map((f) => f.key).join(', ') || 'none'})`);
  for (const f of spec.fields) {
    const p = checkField(f, r[f.key], out);
    if (p) problems.push(p);
  }
  if (problems.length === 0) problems.push(...checkRelations(out as unknown as DetectorSettings));
  return problems.length ? { ok: false, problems } : { ok: true, settings: out as unknown as DetectorSettings };
}

/** How a detector is named in errors: its position in the list, kind and channel. */
export function detectorLabel(index: number, raw: unknown): string {
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const where = r.channel && r.kind && DETECTOR_KINDS[r.kind as DetectorKind]?.channels === 'sensor' ? ` on ${String(r.channel)}` : '';
  return `detector ${index + 1} (${String(r.kind ?? '?')}${where})`;
}

/** Checks a whole list; every problem names its detector. An empty list is refused: the node would never alert. */
export function checkDetectorList(raw: unknown, channels: readonly string[]): { ok: true; settings: DetectorSettings[] } | { ok: false; problems: string[] } {
  if (!Array.isArray(raw)) return { ok: false, problems: ['the detectors must be a list'] };
  if (raw.length === 0) return { ok: false, problems: ['no detectors: add at least one'] };
  const settings: DetectorSettings[] = [];
  const problems: string[] = [];
  raw.forEach((d, i) => {
    const c = checkDetector(d, channels);
    if (c.ok) settings.push(c.settings);
    else problems.push(...c.problems.map((p) => `${detectorLabel(i, d)}: ${p}`));
  });
  return problems.length ? { ok: false, problems } : { ok: true, settings };
}

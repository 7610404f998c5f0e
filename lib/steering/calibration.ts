/**
 * Sensor calibration: per node and channel, a robust baseline (median and MAD) over a
 * calibration window, and readings normalised against it into [-1, 1]. Bad readings (not a
 * number, outside the channel's physical range, or stale) never reach the model: they are
 * rejected, and a channel whose last reading grows old decays linearly to neutral (0).
 */

export interface ChannelSpec {
  /** Physical range; readings outside it are rejected. */
  min: number;
  max: number;
  unit: string;
}

/** The sensor channels a head node may carry, with their physical ranges. */
export const CHANNELS: Record<string, ChannelSpec> = {
  soundDb: { min: 0, max: 194, unit: 'dB SPL' },
  vibrationG: { min: 0, max: 16, unit: 'g' },
  lightLux: { min: 0, max: 200000, unit: 'lux' },
  temperatureC: { min: -40, max: 85, unit: '°C' },
  humidityPct: { min: 0, max: 100, unit: '%RH' },
};

export interface Baseline {
  median: number;
  /** Median absolute deviation, scaled by 1.4826 to estimate a standard deviation. */
  mad: number;
  samples: number;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Median and scaled MAD of a window; MAD is floored so a constant signal does not divide by zero. */
export function robustBaseline(values: readonly number[], floor: number): Baseline {
  const m = median(values);
  const mad = 1.4826 * median(values.map((v) => Math.abs(v - m)));
  return { median: m, mad: Math.max(mad, floor), samples: values.length };
}

export type Verdict = { ok: true; value: number } | { ok: false; reason: string };

/** Checks a raw reading against its channel: a finite number inside the physical range. */
export function checkReading(channel: string, value: unknown): Verdict {
  const spec = CHANNELS[channel];
  if (!spec) return { ok: false, reason: `unknown channel ${channel}` };
  if (typeof value !== 'number' || !Number.isFinite(value)) return { ok: false, reason: `${channel} is not a finite number` };
  if (value < spec.min || value > spec.max) return { ok: false, reason: `${channel} ${value} ${spec.unit} is outside ${spec.min}..${spec.max}` };
  return { ok: true, value };
}

export interface CalibratorOptions {
  /** Readings per channel kept for the baseline. */
  window: number;
  /** Deviations (in MADs) that map to a full reading of 1. */
  fullScale: number;
  /** A reading older than this (ms) is stale: the channel starts decaying to neutral... */
  staleMs: number;
  /** ...and is neutral this long (ms) after it became stale. */
  decayMs: number;
  /** Deviations (in MADs) within which a reading is neutral: sensor noise does not steer. */
  deadband: number;
  /** Smallest MAD per channel, as a fraction of its physical range. */
  madFloorFraction: number;
}

export const DEFAULT_CALIBRATOR: CalibratorOptions = { window: 60, fullScale: 6, staleMs: 30000, decayMs: 30000, deadband: 2, madFloorFraction: 0.001 };

interface ChannelState {
  window: number[];
  baseline: Baseline | null;
  last: number | null;
  lastAt: number;
}

/** Calibration state of every node and channel. */
export class Calibrator {
  readonly options: CalibratorOptions;
  private readonly state = new Map<string, Map<string, ChannelState>>();

  constructor(options: Partial<CalibratorOptions> = {}) {
    this.options = { ...DEFAULT_CALIBRATOR, ...options };
  }

  private channel(node: string, channel: string): ChannelState {
    let byChannel = this.state.get(node);
    if (!byChannel) this.state.set(node, (byChannel = new Map()));
    let s = byChannel.get(channel);
    if (!s) byChannel.set(channel, (s = { window: [], baseline: null, last: null, lastAt: 0 }));
    return s;
  }

  /** Adds a node's readings taken at `at` (ms); returns the rejected ones with reasons. */
  add(node: string, readings: Record<string, unknown>, at: number): { channel: string; reason: string }[] {
    const rejected: { channel: string; reason: string }[] = [];
    if (!Number.isFinite(at)) return Object.keys(readings).map((channel) => ({ channel, reason: `time ${at} is not a number` }));
    for (const [channel, raw] of Object.entries(readings)) {
      const v = checkReading(channel, raw);
      if (!v.ok) {
        rejected.push({ channel, reason: v.reason });
        continue;
      }
      const s = this.channel(node, channel);
      s.window.push(v.value);
      if (s.window.length > this.options.window) s.window.shift();
      s.last = v.value;
      s.lastAt = at;
    }
    return rejected;
  }

  /** Recomputes every baseline from its current window (the calibration step; re-runnable). */
  calibrate(): Record<string, Record<string, Baseline>> {
    const out: Record<string, Record<string, Baseline>> = {};
    for (const [node, byChannel] of this.state) {
      for (const [channel, s] of byChannel) {
        if (s.window.length === 0) continue;
        const spec = CHANNELS[channel];
        s.baseline = robustBaseline(s.window, (spec.max - spec.min) * this.options.madFloorFraction);
        (out[node] ??= {})[channel] = s.baseline;
      }
    }
    return out;
  }

  /** Baselines as last calibrated. */
  baselines(): Record<string, Record<string, Baseline>> {
    const out: Record<string, Record<string, Baseline>> = {};
    for (const [node, byChannel] of this.state) for (const [channel, s] of byChannel) if (s.baseline) (out[node] ??= {})[channel] = s.baseline;
    return out;
  }

  /** Restores baselines saved earlier (e.g. from a file or a retained message). */
  restore(saved: Record<string, Record<string, Baseline>>): void {
    for (const [node, byChannel] of Object.entries(saved)) for (const [channel, b] of Object.entries(byChannel)) this.channel(node, channel).baseline = b;
  }

  /** Adds a sensor message (schemas/sensors.json); null readings are rejected like bad ones. */
  addMessage(m: { node: string; at: number; readings: Record<string, unknown> }): { channel: string; reason: string }[] {
    return this.add(m.node, m.readings, m.at);
  }

  /** Nodes with any state. */
  nodes(): string[] {
    return [...this.state.keys()];
  }

  /**
   * A node's normalised readings at time `now`: the deviation z = (last - median) / MAD,
   * neutral within the deadband, then (|z| - deadband) / (fullScale - deadband) with z's sign,
   * clipped to [-1, 1], and scaled down linearly to 0 over decayMs once the reading is older
   * than staleMs. 0 for a channel not calibrated or never read. Never NaN.
   */
  normalised(node: string, now: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [channel, s] of this.state.get(node) ?? []) {
      out[channel] = s.baseline && s.last !== null ? this.scale(s.last, s.baseline) * this.freshness(now - s.lastAt) : 0;
    }
    return out;
  }

  /** Normalised readings of every node at `now`. */
  allNormalised(now: number): Record<string, Record<string, number>> {
    return Object.fromEntries(this.nodes().map((n) => [n, this.normalised(n, now)]));
  }

  private scale(value: number, b: Baseline): number {
    const { deadband, fullScale } = this.options;
    const z = (value - b.median) / b.mad;
    const r = Math.sign(z) * Math.max(0, Math.abs(z) - deadband) / Math.max(fullScale - deadband, 1e-9);
    return Number.isFinite(r) ? Math.max(-1, Math.min(1, r)) : 0;
  }

  /** 1 while fresh, then linearly down to 0 over decayMs. */
  private freshness(ageMs: number): number {
    const { staleMs, decayMs } = this.options;
    if (!(ageMs > staleMs)) return 1;
    return decayMs > 0 ? Math.max(0, 1 - (ageMs - staleMs) / decayMs) : 0;
  }
}

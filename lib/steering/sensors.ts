/**
 * Sensor telemetry: the message a node publishes with its readings (schemas/sensors.json, on
 * mesh-llm/{mesh}/sensors/{node}), simulated sensors playing scenarios, and traces replayed
 * from CSV. Readings are raw physical values in the units their channel names state; the
 * Calibrator turns them into normalised readings.
 */
import * as fs from 'node:fs';
import { MeshLlmError } from '../llm/errors';
import { CHANNELS } from './calibration';
import { parseWithSchema } from './schemas';

/** One node's readings at one time. null: the sensor is present but gave nothing. */
export interface SensorMessage {
  protocol: 1;
  node: string;
  /** Milliseconds since the Unix epoch (simulations start at 0). */
  at: number;
  readings: Partial<Record<ChannelName, number | null>>;
}

export type ChannelName = 'soundDb' | 'vibrationG' | 'lightLux' | 'temperatureC' | 'humidityPct';
export const CHANNEL_NAMES = Object.keys(CHANNELS) as ChannelName[];

/** Checks a received sensor message against schemas/sensors.json. */
export function parseSensorMessage(payload: Buffer | string): SensorMessage {
  return parseWithSchema<SensorMessage>('sensors', payload);
}

// ---------------------------------------------------------------------------------------------
// Simulated sensors.

/** Deterministic uniform numbers in [0, 1) (mulberry32) and normal ones (Box-Muller). */
export class SimRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    return Math.sqrt(-2 * Math.log(1 - this.uniform())) * Math.cos(2 * Math.PI * this.uniform());
  }
}

/** A quiet indoor room: mean and noise (standard deviation) of every channel. */
export const CALM_ROOM: Record<ChannelName, { mean: number; noise: number }> = {
  soundDb: { mean: 38, noise: 1.5 },
  vibrationG: { mean: 0.02, noise: 0.004 },
  lightLux: { mean: 300, noise: 10 },
  temperatureC: { mean: 21, noise: 0.15 },
  humidityPct: { mean: 45, noise: 0.8 },
};

/**
 * What an event adds to the calm room at a node, `t` seconds after it began, at `distance`
 * hops from where it happened (0: the node that felt it first). Channels not listed stay calm.
 */
type EventShape = (t: number, distance: number) => Partial<Record<ChannelName, number>>;

export interface Scenario {
  name: ScenarioName;
  description: string;
  /** Seconds after the event at which its effect is strongest (where `generate --scenario` reads). */
  peakAfter: number;
  event: EventShape;
}

export type ScenarioName = 'calm' | 'explosion' | 'bright-flash' | 'earthquake';

const decay = (t: number, tau: number): number => (t < 0 ? 0 : Math.exp(-t / tau));

export const SCENARIOS: Record<ScenarioName, Scenario> = {
  calm: { name: 'calm', description: 'a quiet room: nothing but sensor noise', peakAfter: 0, event: () => ({}) },
  explosion: {
    name: 'explosion',
    description: 'a blast: a bang, a shock wave and a flash, strongest where it happens and weaker a hop away',
    peakAfter: 1,
    event: (t, d) => ({
      soundDb: 95 * decay(t, 4) * 0.7 ** d,
      vibrationG: 2.5 * decay(t, 2) * 0.5 ** d,
      lightLux: 40000 * decay(t, 0.8) * 0.3 ** d,
      temperatureC: 4 * decay(t, 30) * 0.5 ** d,
    }),
  },
  'bright-flash': {
    name: 'bright-flash',
    description: 'a bright flash of light and nothing else',
    peakAfter: 0,
    event: (t, d) => ({ lightLux: 90000 * decay(t, 1.5) * 0.4 ** d }),
  },
  earthquake: {
    name: 'earthquake',
    description: 'the ground shakes for half a minute, with a low rumble',
    peakAfter: 5,
    event: (t, d) => {
      const on = t >= 0 && t < 30 ? Math.sin((Math.PI * t) / 30) : 0;
      return { vibrationG: 0.9 * on * 0.85 ** d, soundDb: 30 * on * 0.85 ** d };
    },
  },
};

export interface SimulationOptions {
  scenario: ScenarioName;
  nodes: readonly string[];
  /** Seconds of calm before the event (the calibration window). */
  calmSeconds?: number;
  /** Seconds simulated after the event began. */
  eventSeconds?: number;
  /** Node nearest the event (default: the first); others are one hop further per position in `nodes`. */
  epicentre?: string;
  /** Only these nodes feel the event (default: all, attenuated by distance). */
  affected?: readonly string[];
  seed?: number;
}

/** One reading per node per second: calm noise, plus the scenario's event from calmSeconds on. */
export function simulate(o: SimulationOptions): SensorMessage[] {
  const scenario = SCENARIOS[o.scenario];
  if (!scenario) throw new MeshLlmError(`unknown scenario "${o.scenario}" (known: ${Object.keys(SCENARIOS).join(', ')})`);
  const calm = o.calmSeconds ?? 60;
  const total = calm + (o.eventSeconds ?? 30);
  const rng = new SimRng(o.seed ?? 1);
  const centre = Math.max(0, o.epicentre ? o.nodes.indexOf(o.epicentre) : 0);
  const out: SensorMessage[] = [];
  for (let s = 0; s < total; s++) {
    o.nodes.forEach((node, i) => {
      const felt = !o.affected || o.affected.includes(node);
      const extra = felt ? scenario.event(s - calm, Math.abs(i - centre)) : {};
      const readings: SensorMessage['readings'] = {};
      for (const c of CHANNEL_NAMES) {
        const spec = CHANNELS[c];
        const v = CALM_ROOM[c].mean + CALM_ROOM[c].noise * rng.normal() + (extra[c] ?? 0);
        readings[c] = Math.min(spec.max, Math.max(spec.min, Number(v.toPrecision(6))));
      }
      out.push({ protocol: 1, node, at: s * 1000, readings });
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// CSV traces: a header `at,node,<channel>...` (any subset of the channels, any order), then one
// row per node and time. An empty cell is a missing reading; NaN or nonsense is kept so that
// the Calibrator rejects it.

export function parseSensorCsv(text: string, source = 'CSV'): SensorMessage[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new MeshLlmError(`${source}: empty (expected a header at,node,<channels>)`);
  const header = lines[0].split(',').map((h) => h.trim());
  const atCol = header.indexOf('at');
  const nodeCol = header.indexOf('node');
  if (atCol < 0 || nodeCol < 0) throw new MeshLlmError(`${source}: the header needs columns "at" and "node" (got ${header.join(',')})`);
  const channelCols = header.map((h, i) => ({ h, i })).filter(({ h }) => h !== 'at' && h !== 'node');
  for (const { h } of channelCols) if (!(h in CHANNELS)) throw new MeshLlmError(`${source}: unknown channel column "${h}" (known: ${CHANNEL_NAMES.join(', ')})`);
  return lines.slice(1).map((line, k) => {
    const cells = line.split(',').map((c) => c.trim());
    const at = Number(cells[atCol]);
    if (!Number.isFinite(at)) throw new MeshLlmError(`${source} line ${k + 2}: "at" must be a time in milliseconds (got "${cells[atCol]}")`);
    const node = cells[nodeCol];
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(node ?? '')) throw new MeshLlmError(`${source} line ${k + 2}: bad node id "${node}"`);
    const readings: SensorMessage['readings'] = {};
    for (const { h, i } of channelCols) if ((cells[i] ?? '') !== '') readings[h as ChannelName] = Number(cells[i]);
    return { protocol: 1 as const, node, at, readings };
  });
}

export function toSensorCsv(messages: readonly SensorMessage[]): string {
  const rows = messages.map((m) => [m.at, m.node, ...CHANNEL_NAMES.map((c) => m.readings[c] ?? '')].join(','));
  return `${['at', 'node', ...CHANNEL_NAMES].join(',')}\n${rows.join('\n')}\n`;
}

export function readSensorCsv(file: string): SensorMessage[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new MeshLlmError(`sensor trace ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseSensorCsv(text, file);
}

/**
 * From sensor traces to the normalised readings steering uses: the first part of a trace is
 * the calibration window (baselines), the rest is replayed into the calibrator, and the
 * readings are taken at a chosen time.
 */
import { Calibrator, CalibratorOptions } from './calibration';
import { SCENARIOS, ScenarioName, SensorMessage, simulate } from './sensors';
import { NodeReadings } from './steer';

export interface TraceReadings {
  readings: NodeReadings;
  /** Readings the calibrator refused, with reasons (first few). */
  rejected: { node: string; at: number; channel: string; reason: string }[];
  calibrator: Calibrator;
}

/**
 * Calibrates on the messages before `calibrateUntil` (ms), replays the ones up to `at`, and
 * returns every node's normalised readings at `at`.
 */
export function readingsFromTrace(messages: readonly SensorMessage[], calibrateUntil: number, at: number, options: Partial<CalibratorOptions> = {}): TraceReadings {
  const calibrator = new Calibrator(options);
  const rejected: TraceReadings['rejected'] = [];
  const sorted = [...messages].sort((a, b) => a.at - b.at);
  const feed = (m: SensorMessage) => {
    for (const r of calibrator.addMessage(m)) if (rejected.length < 20) rejected.push({ node: m.node, at: m.at, ...r });
  };
  sorted.filter((m) => m.at < calibrateUntil).forEach(feed);
  calibrator.calibrate();
  sorted.filter((m) => m.at >= calibrateUntil && m.at <= at).forEach(feed);
  return { readings: calibrator.allNormalised(at), rejected, calibrator };
}

/** A CSV trace: calibrated on its first `calibrationMs`, read at its last time. */
export function readingsFromCsvTrace(messages: readonly SensorMessage[], calibrationMs = 60000): TraceReadings {
  if (messages.length === 0) return { readings: {}, rejected: [], calibrator: new Calibrator() };
  const first = Math.min(...messages.map((m) => m.at));
  const last = Math.max(...messages.map((m) => m.at));
  return readingsFromTrace(messages, first + calibrationMs, last);
}

/** A simulated scenario on some nodes: calibrated on the calm minute, read at the event's peak. */
export function scenarioReadings(scenario: ScenarioName, nodes: readonly string[], o: { epicentre?: string; affected?: readonly string[]; seed?: number } = {}): TraceReadings {
  const calmSeconds = 60;
  const trace = simulate({ scenario, nodes, calmSeconds, eventSeconds: 30, ...o });
  return readingsFromTrace(trace, calmSeconds * 1000, (calmSeconds + SCENARIOS[scenario].peakAfter) * 1000);
}

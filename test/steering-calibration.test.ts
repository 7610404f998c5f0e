/** Calibration on synthetic sensor traces: baselines, normalisation, bad and stale readings, scenarios, CSV replay. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Calibrator, robustBaseline } from '../lib/steering/calibration';
import { readingsFromCsvTrace, readingsFromTrace, scenarioReadings } from '../lib/steering/readings';
import { CHANNEL_NAMES, SimRng, parseSensorCsv, parseSensorMessage, readSensorCsv, simulate, toSensorCsv } from '../lib/steering/sensors';

/** A calm minute of one channel: 60 readings at 1 Hz around `mean` with normal noise. */
function calmTrace(mean: number, noise: number, seed: number): number[] {
  const rng = new SimRng(seed);
  return Array.from({ length: 60 }, () => mean + noise * rng.normal());
}

function calibrated(values: number[], channel = 'soundDb'): Calibrator {
  const c = new Calibrator();
  values.forEach((v, i) => c.add('n1', { [channel]: v }, i * 1000));
  c.calibrate();
  return c;
}

describe('robust baseline', () => {
  test('median and scaled MAD recover the centre and spread of a noisy trace, and ignore spikes', () => {
    const trace = calmTrace(40, 2, 7);
    trace[10] = 120; // a door slam in the calibration window
    trace[30] = 150;
    const b = robustBaseline(trace, 0.01);
    expect(b.median).toBeGreaterThan(39);
    expect(b.median).toBeLessThan(41);
    expect(b.mad).toBeGreaterThan(1.4);
    expect(b.mad).toBeLessThan(2.8);
  });

  test('a constant signal gets the MAD floor, not zero', () => {
    expect(robustBaseline([5, 5, 5, 5], 0.2)).toEqual({ median: 5, mad: 0.2, samples: 4 });
  });
});

describe('normalised readings', () => {
  test('neutral inside the deadband, rising with the deviation, clipped at full scale, signed', () => {
    const c = calibrated(calmTrace(40, 2, 3));
    const { median, mad } = c.baselines().n1.soundDb;
    const at = (value: number): number => {
      c.add('n1', { soundDb: value }, 60000);
      return c.normalised('n1', 60000).soundDb;
    };
    expect(at(median + 1 * mad)).toBe(0);
    const r3 = at(median + 3 * mad);
    const r5 = at(median + 5 * mad);
    expect(r3).toBeCloseTo(0.25, 6); // (3 - 2) / (6 - 2)
    expect(r5).toBeCloseTo(0.75, 6);
    expect(at(median + 50 * mad)).toBe(1);
    expect(at(median - 10 * mad)).toBe(-1); // 20 dB: inside the physical range
  });

  test('an uncalibrated or never-read channel is neutral', () => {
    const c = new Calibrator();
    c.add('n1', { lightLux: 300 }, 0);
    expect(c.normalised('n1', 0)).toEqual({ lightLux: 0 });
    expect(c.normalised('nobody', 0)).toEqual({});
  });
});

describe('bad readings never reach the model', () => {
  test('NaN, infinities, strings, null and values outside the physical range are rejected with reasons, and the last good reading stands', () => {
    const c = calibrated(calmTrace(40, 2, 5));
    c.add('n1', { soundDb: 90 }, 60000);
    const before = c.normalised('n1', 60000).soundDb;
    expect(before).toBe(1);
    const rejected = [NaN, Infinity, -Infinity, '80', null, -3, 200].flatMap((v) => c.add('n1', { soundDb: v }, 61000));
    expect(rejected).toHaveLength(7);
    expect(rejected[0].reason).toMatch(/not a finite number/);
    expect(rejected[5].reason).toMatch(/outside 0\.\.194/);
    expect(c.normalised('n1', 61000).soundDb).toBe(before);
    expect(c.add('n1', { soundDb: 50, smell: 3 }, 61000)).toEqual([{ channel: 'smell', reason: 'unknown channel smell' }]);
    expect(c.add('n1', { soundDb: 50 }, NaN)[0].reason).toMatch(/time NaN/);
  });

  test('a window of garbage calibrates nothing and normalises to finite values', () => {
    const c = new Calibrator();
    for (let i = 0; i < 60; i++) c.add('n1', { soundDb: NaN, vibrationG: -1, lightLux: 1e9 }, i * 1000);
    expect(c.calibrate()).toEqual({});
    for (const v of Object.values(c.normalised('n1', 60000))) expect(Number.isFinite(v)).toBe(true);
  });

  test('a stale reading keeps its value until staleMs, then decays linearly to neutral over decayMs', () => {
    const c = calibrated(calmTrace(40, 2, 9));
    c.add('n1', { soundDb: 100 }, 100000);
    const { staleMs, decayMs } = c.options;
    expect(c.normalised('n1', 100000 + staleMs).soundDb).toBe(1);
    expect(c.normalised('n1', 100000 + staleMs + decayMs / 2).soundDb).toBeCloseTo(0.5, 6);
    expect(c.normalised('n1', 100000 + staleMs + decayMs).soundDb).toBe(0);
    expect(c.normalised('n1', 100000 + 10 * staleMs).soundDb).toBe(0);
  });

  test('calibration is re-runnable and restorable: saved baselines give the same readings', () => {
    const c = calibrated(calmTrace(40, 2, 11));
    const saved = JSON.parse(JSON.stringify(c.calibrate()));
    const d = new Calibrator();
    d.restore(saved);
    c.add('n1', { soundDb: 47 }, 70000);
    d.add('n1', { soundDb: 47 }, 70000);
    expect(d.normalised('n1', 70000)).toEqual(c.normalised('n1', 70000));
  });
});

describe('simulated scenarios', () => {
  const nodes = ['node-1', 'node-2', 'node-3', 'node-4'];

  test('calm reads (near) neutral everywhere; every reading is finite and in [-1, 1]', () => {
    const { readings } = scenarioReadings('calm', nodes, { seed: 4 });
    for (const n of nodes) {
      expect(Object.keys(readings[n]).sort()).toEqual([...CHANNEL_NAMES].sort());
      for (const v of Object.values(readings[n])) {
        expect(Number.isFinite(v)).toBe(true);
        expect(Math.abs(v)).toBeLessThan(0.5);
      }
    }
  });

  test('an explosion at node-1 is loud, shaking and bright there, and weaker further away', () => {
    const { readings } = scenarioReadings('explosion', nodes, { epicentre: 'node-1', seed: 4 });
    expect(readings['node-1']).toMatchObject({ soundDb: 1, vibrationG: 1, lightLux: 1 });
    expect(readings['node-4'].lightLux).toBeLessThan(readings['node-1'].lightLux);
  });

  test('a bright flash moves light only; an earthquake moves vibration', () => {
    const flash = scenarioReadings('bright-flash', nodes, { seed: 5 }).readings['node-1'];
    expect(flash.lightLux).toBe(1);
    expect(Math.abs(flash.soundDb)).toBeLessThan(0.5);
    const quake = scenarioReadings('earthquake', nodes, { seed: 5 }).readings['node-2'];
    expect(quake.vibrationG).toBe(1);
    expect(Math.abs(quake.lightLux)).toBeLessThan(0.5);
  });

  test('a stimulus on one node only leaves the others calm', () => {
    const { readings } = scenarioReadings('explosion', nodes, { affected: ['node-3'], epicentre: 'node-3', seed: 2 });
    expect(readings['node-3'].soundDb).toBe(1);
    for (const n of ['node-1', 'node-2', 'node-4']) expect(Math.abs(readings[n].soundDb)).toBeLessThan(0.5);
  });
});

describe('telemetry messages and CSV replay', () => {
  test('simulated messages pass schemas/sensors.json; bad ones are refused', () => {
    const [m] = simulate({ scenario: 'calm', nodes: ['node-1'], calmSeconds: 1, eventSeconds: 0 });
    expect(parseSensorMessage(JSON.stringify(m))).toEqual(m);
    expect(() => parseSensorMessage('{"protocol":1,"node":"n","at":0,"readings":{"smell":1}}')).toThrow(/sensors\.json/);
    expect(() => parseSensorMessage('{"protocol":1,"node":"n","at":-5,"readings":{}}')).toThrow(/sensors\.json/);
    expect(() => parseSensorMessage('not json')).toThrow(/not JSON/);
  });

  test('a trace written as CSV replays to the same readings; NaN cells are rejected on the way', () => {
    const trace = simulate({ scenario: 'earthquake', nodes: ['a', 'b'], seed: 3 });
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-sensors-')), 'trace.csv');
    fs.writeFileSync(file, toSensorCsv(trace) + `${trace[trace.length - 1].at},a,NaN,,,,\n`);
    const replayed = readSensorCsv(file);
    expect(replayed.slice(0, trace.length)).toEqual(trace);
    const direct = readingsFromTrace(trace, 60000, trace[trace.length - 1].at);
    const fromCsv = readingsFromCsvTrace(replayed);
    expect(fromCsv.rejected).toEqual([{ node: 'a', at: trace[trace.length - 1].at, channel: 'soundDb', reason: 'soundDb is not a finite number' }]);
    expect(fromCsv.readings).toEqual(direct.readings);
  });

  test('CSV errors name the line and the problem', () => {
    expect(() => parseSensorCsv('node,soundDb\nx,3')).toThrow(/"at" and "node"/);
    expect(() => parseSensorCsv('at,node,smell\n0,x,3')).toThrow(/unknown channel column "smell"/);
    expect(() => parseSensorCsv('at,node,soundDb\nsoon,x,3', 't.csv')).toThrow(/t\.csv line 2/);
  });
});

/**
 * The alert detectors on synthetic traces, STA/LTA against ObsPy's formulas computed directly,
 * the settings checks, the alert schema, and the Home Assistant discovery payloads.
 */
import { AlertEngine, AlertMessage, alertProblem, parseDetectors } from '../lib/alerts/alerts';
import { KlSpikeDetector, RateDetector, Sample, StaLtaDetector, ThresholdDetector, Transition, ValueDetector } from '../lib/alerts/detectors';
import { alertDiscovery, nodeDiscovery, sensorDiscovery } from '../lib/alerts/homeassistant';
import { DEFAULT_DETECTORS, DetectorSettings, checkDetector } from '../lib/alerts/settings';
import { DOUBLE_TINY, classicStaLta, recursiveStaLta, triggerOnset } from '../lib/alerts/stalta';
import { CALM_ROOM, CHANNEL_NAMES, SensorMessage, SimRng, simulate } from '../lib/steering/sensors';

/** One node's vibration (g RMS) at `rate` Hz: calm-room noise plus `extra(t)` (t in seconds). */
function vibrationTrace(seconds: number, extra: (t: number) => number = () => 0, seed = 7, rate = 1): Sample[] {
  const rng = new SimRng(seed);
  const { mean, noise } = CALM_ROOM.vibrationG;
  return Array.from({ length: seconds * rate }, (_, i) => {
    const t = i / rate;
    return { at: t * 1000, value: Math.max(0, mean + noise * rng.normal() + extra(t)) };
  });
}

function run(d: ValueDetector, trace: readonly Sample[]): Transition[] {
  return trace.map((s) => d.update(s)).filter((t): t is Transition => t !== null);
}

const settings = (raw: object): DetectorSettings => {
  const c = checkDetector(raw, CHANNEL_NAMES);
  if (!c.ok) throw new Error(c.problems.join('; '));
  return c.settings;
};

const classic = () => new StaLtaDetector(settings({ kind: 'classic-sta-lta', channel: 'vibrationG' }) as never);
const recursive = () => new StaLtaDetector(settings({ kind: 'recursive-sta-lta', channel: 'vibrationG' }) as never);
const threshold = () => new ThresholdDetector(settings({ kind: 'threshold', channel: 'vibrationG', on: 0.3, off: 0.1 }) as never);
const rate = () => new RateDetector(settings({ kind: 'rate', channel: 'vibrationG', direction: 'rise', on: 0.05, off: 0.01, window: 5 }) as never);
const sensorDetectors: [string, () => ValueDetector][] = [
  ['classic STA/LTA', classic],
  ['recursive STA/LTA', recursive],
  ['threshold', threshold],
  ['rate of change', rate],
];

describe('detectors on synthetic traces', () => {
  test.each(sensorDetectors)('%s: an hour of a calm room gives no alert', (_name, make) => {
    expect(run(make(), vibrationTrace(3600))).toEqual([]);
  });

  // Tolerance: onset within 2 s (two samples at 1 Hz) of the event's start.
  test.each(sensorDetectors)('%s: a step to 0.5 g at 600 s is detected within 2 s and stays on', (_name, make) => {
    const alerts = run(make(), vibrationTrace(900, (t) => (t >= 600 ? 0.5 : 0)));
    expect(alerts.length).toBeGreaterThanOrEqual(1);
    expect(alerts[0].type).toBe('onset');
    expect(alerts[0].onset).toBeGreaterThanOrEqual(600000);
    expect(alerts[0].onset).toBeLessThanOrEqual(602000);
  });

  test.each(sensorDetectors)('%s: a 5 s burst of 0.8 g at 900 s is detected within 2 s and ends within 10 s of its end', (_name, make) => {
    const alerts = run(make(), vibrationTrace(1200, (t) => (t >= 900 && t < 905 ? 0.8 : 0)));
    expect(alerts.map((a) => a.type)).toEqual(['onset', 'end']);
    expect(alerts[0].onset - 900000).toBeLessThanOrEqual(2000);
    expect(alerts[0].onset).toBeGreaterThanOrEqual(900000);
    expect(alerts[1].end as number).toBeLessThanOrEqual(915000);
    expect(alerts[1].value).toBeGreaterThan(alerts[0].value * 0.99);
  });

  test("STA/LTA: the simulated earthquake's emergent shaking is picked within 3 s of its start", () => {
    const quake = simulate({ scenario: 'earthquake', nodes: ['n1'], calmSeconds: 120, eventSeconds: 60 });
    const trace = quake.map((m) => ({ at: m.at, value: m.readings.vibrationG as number }));
    for (const make of [classic, recursive]) {
      const alerts = run(make(), trace);
      expect(alerts[0].type).toBe('onset');
      expect(alerts[0].onset).toBeGreaterThanOrEqual(120000);
      expect(alerts[0].onset).toBeLessThanOrEqual(123000);
    }
  });

  test('STA/LTA at 20 Hz on signed ground motion: a P arrival at 60 s and an S wave 8 s later give one pick at the P within 0.5 s', () => {
    // Ground acceleration (g): noise, then a 5 Hz P wave and a stronger 2 Hz S wave, each with an exponentially decaying coda.
    const env = (t: number, at: number, amp: number, tau: number) => (t < at ? 0 : amp * Math.min(1, (t - at) / 0.3) * Math.exp(-(t - at) / tau));
    const rng = new SimRng(3);
    const trace = Array.from({ length: 120 * 20 }, (_, i) => {
      const t = i / 20;
      const ground = 0.002 * rng.normal() + env(t, 60, 0.05, 6) * Math.sin(2 * Math.PI * 5 * t) + env(t, 68, 0.3, 10) * Math.sin(2 * Math.PI * 2 * t);
      return { at: t * 1000, value: ground };
    });
    for (const kind of ['classic-sta-lta', 'recursive-sta-lta']) {
      const d = new StaLtaDetector(settings({ kind, channel: 'vibrationG', sta: 0.5, lta: 10, on: 3.5, off: 1.5, sampleRate: 20 }) as never);
      const alerts = run(d, trace);
      const onsets = alerts.filter((a) => a.type === 'onset');
      expect(onsets[0].onset).toBeGreaterThanOrEqual(60000);
      expect(onsets[0].onset).toBeLessThanOrEqual(60500);
      expect(onsets.every((a) => a.onset >= 60000)).toBe(true);
    }
  });

  test('hysteresis: a reading wandering around trigger-on gives one alert, not chatter; without hysteresis it chatters', () => {
    const rng = new SimRng(11);
    const wander = Array.from({ length: 300 }, (_, i) => ({ at: i * 1000, value: i < 50 ? 0.02 : 0.3 + 0.03 * rng.normal() }));
    const withHysteresis = run(threshold(), wander);
    expect(withHysteresis.map((a) => a.type)).toEqual(['onset']);
    const without = run(new ThresholdDetector(settings({ kind: 'threshold', channel: 'vibrationG', on: 0.3, off: 0.3 }) as never), wander);
    expect(without.length).toBeGreaterThan(20);
  });

  test('a "below" threshold alerts under trigger-on and ends above trigger-off, reporting the lowest reading', () => {
    const d = new ThresholdDetector(settings({ kind: 'threshold', channel: 'lightLux', direction: 'below', on: 10, off: 50 }) as never);
    const values = [300, 300, 5, 2, 30, 40, 60, 300];
    const alerts = run(d, values.map((value, i) => ({ at: i * 1000, value })));
    expect(alerts).toEqual([
      { type: 'onset', onset: 2000, end: null, value: 5 },
      { type: 'end', onset: 2000, end: 5000, value: 2 },
    ]);
  });

  test('rate of change: "fall" alerts on a drop faster than trigger-on per second, "rise" does not', () => {
    const drop = [300, 300, 300, 100, 100, 100, 100].map((value, i) => ({ at: i * 1000, value }));
    const fall = new RateDetector(settings({ kind: 'rate', channel: 'lightLux', direction: 'fall', on: 50, off: 10, window: 1 }) as never);
    expect(run(fall, drop)).toEqual([
      { type: 'onset', onset: 3000, end: null, value: 200 },
      { type: 'end', onset: 3000, end: 3000, value: 200 },
    ]);
    expect(run(new RateDetector(settings({ kind: 'rate', channel: 'lightLux', direction: 'rise', on: 50, off: 10, window: 1 }) as never), drop)).toEqual([]);
    expect(run(new RateDetector(settings({ kind: 'rate', channel: 'lightLux', on: 50, off: 10, window: 1 }) as never), drop)).toHaveLength(2);
  });

  test('kl-spike: a calm KL series gives nothing; a three-token spike is caught at its first token and ends after it', () => {
    const rng = new SimRng(5);
    const kl = Array.from({ length: 300 }, (_, i) => ({ at: i * 250, value: Math.abs(0.01 + 0.004 * rng.normal()) + (i >= 200 && i < 203 ? 0.8 : 0) }));
    const make = () => new KlSpikeDetector(settings({ kind: 'kl-spike' }) as never);
    expect(run(make(), kl.slice(0, 200))).toEqual([]);
    const alerts = run(make(), kl);
    expect(alerts.map((a) => [a.type, a.onset, a.end])).toEqual([
      ['onset', 200 * 250, null],
      ['end', 200 * 250, 202 * 250],
    ]);
    expect(alerts[1].value).toBeGreaterThan(0.8);
  });

  test('kl-spike: steering off (KL always 0) never alerts, and a value under the least KL never starts one', () => {
    const zeros = Array.from({ length: 100 }, (_, i) => ({ at: i, value: i === 60 ? 0.04 : 0 }));
    expect(run(new KlSpikeDetector(settings({ kind: 'kl-spike' }) as never), zeros)).toEqual([]);
  });
});

describe('the alert engine', () => {
  test("the new node's default detectors on the simulated scenarios: an hour of calm on 8 nodes gives nothing; explosion and earthquake are picked within 2 s", () => {
    const nodes = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8'];
    const onsets = (scenario: 'calm' | 'explosion' | 'earthquake', calmSeconds: number) => {
      const engine = new AlertEngine(DEFAULT_DETECTORS);
      return simulate({ scenario, nodes, calmSeconds, eventSeconds: 60, seed: 3 }).flatMap((m) => engine.sensors(m)).filter((a) => a.end === null);
    };
    expect(onsets('calm', 3600)).toEqual([]);
    for (const scenario of ['explosion', 'earthquake'] as const) {
      const alerts = onsets(scenario, 120);
      expect(alerts.find((a) => a.node === 'n1' && a.channel === 'vibrationG')).toBeDefined();
      for (const a of alerts) expect(a.onset - 120000).toBeLessThanOrEqual(2000);
      expect(alerts.every((a) => a.onset >= 120000)).toBe(true);
    }
  });


  const msg = (node: string, at: number, vibrationG: number | null): SensorMessage => ({ protocol: 1, node, at, readings: { vibrationG, soundDb: 38 } });

  test('a stale node is reported once it has sent nothing for `after` seconds, and the alert ends when it is heard again', () => {
    const engine = new AlertEngine([{ kind: 'stale', after: 10 }]);
    for (let s = 0; s <= 30; s++) expect(engine.sensors(msg('n1', s * 1000, 0.02))).toEqual([]);
    expect(engine.check(39999)).toEqual([]);
    const [onset] = engine.check(41000);
    expect(onset).toMatchObject({ node: 'n1', channel: 'node', detector: 'stale', onset: 40000, end: null, value: 11 });
    expect(engine.check(45000)).toEqual([]);
    expect(engine.active()).toEqual([onset]);
    expect(engine.nodeActive('n1')).toBe(true);
    const [end] = engine.sensors(msg('n1', 50000, 0.02));
    expect(end).toMatchObject({ id: onset.id, onset: 40000, end: 50000 });
    expect(engine.active()).toEqual([]);
    for (const a of [onset, end]) expect(alertProblem(a)).toBeNull();
  });

  test('an offline status is an alert until the node is back', () => {
    const engine = new AlertEngine([{ kind: 'offline' }]);
    expect(engine.status('n2', 'ready', 0)).toEqual([]);
    const [down] = engine.status('n2', 'offline', 5000);
    expect(down).toMatchObject({ node: 'n2', detector: 'offline', onset: 5000, end: null });
    expect(engine.status('n2', 'failed', 6000)).toEqual([]);
    const [up] = engine.status('n2', 'online', 9000);
    expect(up).toMatchObject({ id: down.id, end: 9000 });
  });

  test('detectors run per node and per channel; null, missing and out-of-range readings are skipped', () => {
    const engine = new AlertEngine([{ kind: 'threshold', channel: 'vibrationG', on: 0.3, off: 0.1, name: 'shaking' }]);
    const out: AlertMessage[] = [];
    out.push(...engine.sensors(msg('n1', 0, 0.5)), ...engine.sensors(msg('n2', 0, 0.02)), ...engine.sensors(msg('n2', 1000, null)), ...engine.sensors(msg('n2', 2000, 99)));
    expect(out.map((a) => [a.node, a.name, a.end])).toEqual([['n1', 'shaking', null]]);
    expect(out[0].text).toMatch(/^n1 vibrationG shaking: alert since 1970-01-01T00:00:00.000Z/);
  });

  test('KL values feed the kl-spike detectors of their node', () => {
    const engine = new AlertEngine([{ kind: 'kl-spike', warmup: 4 }]);
    const out = [0.01, 0.012, 0.011, 0.009, 0.01, 0.9].flatMap((v, i) => engine.kl('gateway', v, i * 100));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ node: 'gateway', channel: 'kl', detector: 'kl-spike', onset: 500, value: 0.9 });
    expect(() => engine.kl('gateway', -1, 0)).toThrow(/KL value must be a number >= 0/);
    expect(() => engine.kl('bad node', 1, 0)).toThrow(/node id "bad node"/);
  });
});

describe('STA/LTA against ObsPy', () => {
  /** ObsPy's classic_sta_lta_py, computed as it is written: cumulative sums of the squares. */
  function obspyClassic(a: number[], nsta: number, nlta: number): number[] {
    const cum: number[] = [];
    a.reduce((s, x, i) => (cum[i] = s + x * x), 0);
    const sta = cum.map((c, i) => (i >= nsta ? c - cum[i - nsta] : c) / nsta);
    const lta = cum.map((c, i) => (i >= nlta ? c - cum[i - nlta] : c) / nlta);
    for (let i = 0; i < nlta - 1; i++) sta[i] = 0;
    return sta.map((s, i) => s / (lta[i] < DOUBLE_TINY ? DOUBLE_TINY : lta[i]));
  }
  /** ObsPy's recursive_sta_lta_py, as it is written. */
  function obspyRecursive(a: number[], nsta: number, nlta: number): number[] {
    const csta = 1 / nsta;
    const clta = 1 / nlta;
    let sta = 0;
    let lta = DOUBLE_TINY;
    const charfct = a.map(() => 0);
    for (let i = 1; i < a.length; i++) {
      const sq = a[i] ** 2;
      sta = csta * sq + (1 - csta) * sta;
      lta = clta * sq + (1 - clta) * lta;
      charfct[i] = i < nlta ? 0 : sta / lta;
    }
    return charfct;
  }
  const rng = new SimRng(2);
  const trace = Array.from({ length: 60 }, (_, i) => rng.normal() * (i >= 40 && i < 46 ? 8 : 1));

  test.each([
    [3, 10],
    [1, 2],
    [5, 30],
  ])('classic and recursive with nsta %i, nlta %i match sample for sample', (nsta, nlta) => {
    const classicValues = classicStaLta(trace, nsta, nlta);
    obspyClassic(trace, nsta, nlta).forEach((v, i) => expect(classicValues[i]).toBeCloseTo(v, 10));
    const recursiveValues = recursiveStaLta(trace, nsta, nlta);
    obspyRecursive(trace, nsta, nlta).forEach((v, i) => expect(recursiveValues[i]).toBeCloseTo(v, 12));
    expect(classicValues.slice(0, nlta - 1).every((v) => v === 0)).toBe(true);
    expect(classicValues[nlta - 1]).toBeGreaterThan(0);
    if (nlta >= 10) expect(Math.max(...classicValues.slice(40, 48))).toBeGreaterThan(3);
  });

  test('a silent trace: the zero LTA is replaced by the smallest double, as ObsPy does', () => {
    expect(classicStaLta([0, 0, 0, 0], 1, 2)).toEqual([0, 0, 0, 0]);
  });

  test("trigger_onset's picks: onset at the first value above on, end at the last value above off", () => {
    expect(triggerOnset([0, 1, 5, 6, 3, 2, 1, 0, 5, 0], 4, 2)).toEqual([
      [2, 4],
      [8, 8],
    ]);
    expect(triggerOnset([0, 5, 5], 4, 2)).toEqual([[1, 2]]);
    expect(triggerOnset([0, 1, 2], 4, 2)).toEqual([]);
  });

  test('windows are converted from seconds as ObsPy does, int(seconds * sampling rate)', () => {
    const d = settings({ kind: 'classic-sta-lta', channel: 'soundDb', sta: 0.5, lta: 10, sampleRate: 20 });
    expect(d).toMatchObject({ sta: 0.5, lta: 10, sampleRate: 20 });
    expect(() => new StaLtaDetector(d as never)).not.toThrow();
  });
});

describe('detector settings', () => {
  test.each([
    [{ kind: 'classic-sta-lta', channel: 'vibrationG', sta: 40, lta: 30 }, /STA window \(40 s\) must be shorter than the LTA window \(30 s\)/],
    [{ kind: 'recursive-sta-lta', channel: 'vibrationG', on: 2, off: 3 }, /trigger-off \(3\) is above trigger-on \(2\)/],
    [{ kind: 'classic-sta-lta', channel: 'vibrationG', sta: -1 }, /sta must be above 0 s \(got -1\)/],
    [{ kind: 'classic-sta-lta', channel: 'vibrationG', sta: 0.5, lta: 0.9 }, /STA window \(0.5 s\) is less than one sample at 1 Hz/],
    [{ kind: 'rate', channel: 'soundDb', window: 0 }, /window must be above 0 s/],
    [{ kind: 'threshold', channel: 'soundDb', on: 80, off: 85 }, /trigger-off \(85\) is above trigger-on \(80\)/],
    [{ kind: 'threshold', channel: 'soundDb', direction: 'below', on: 20, off: 10 }, /for a "below" threshold it must be at or above it/],
    [{ kind: 'threshold', channel: 'smellPpm', on: 1, off: 0 }, /channel must be one of soundDb, .*\(got "smellPpm"\)/],
    [{ kind: 'threshold', channel: 'soundDb', on: 'loud' }, /on must be a number \(got "loud"\)/],
    [{ kind: 'stale', after: 10, sta: 2 }, /sta is not a setting of stale \(its settings: after\)/],
    [{ kind: 'kl-spike', warmup: 100 }, /warm-up \(100 tokens\) is longer than the baseline window \(64 tokens\)/],
    [{ kind: 'fft' }, /unknown detector kind "fft"/],
  ])('%j is refused', (raw, message) => {
    const c = checkDetector(raw, CHANNEL_NAMES);
    expect(c.ok).toBe(false);
    expect(!c.ok && c.problems.join('; ')).toMatch(message);
  });

  test('the defaults fill what is not given, and editor text fields are read as numbers', () => {
    expect(settings({ kind: 'classic-sta-lta', channel: 'soundDb' })).toEqual({ kind: 'classic-sta-lta', channel: 'soundDb', sta: 2, lta: 30, on: 4, off: 1.5, sampleRate: 1 });
    expect(settings({ kind: 'threshold', channel: 'soundDb', on: '85', off: '80', name: '' })).toEqual({ kind: 'threshold', channel: 'soundDb', direction: 'above', on: 85, off: 80 });
  });

  test('a list names the detector of each problem; an empty list is refused', () => {
    expect(() => parseDetectors([{ kind: 'stale' }, { kind: 'classic-sta-lta', channel: 'vibrationG', sta: 40 }])).toThrow(/detector 2 \(classic-sta-lta on vibrationG\): the STA window \(40 s\)/);
    expect(() => parseDetectors([])).toThrow(/no detectors/);
    expect(() => new AlertEngine('nope')).toThrow(/detectors must be a list/);
  });
});

describe('the alert schema', () => {
  const good: AlertMessage = { protocol: 1, id: 'n1:vibrationG:1-classic-sta-lta:1000', node: 'n1', channel: 'vibrationG', detector: 'classic-sta-lta', value: 12.5, onset: 1000, end: null, text: 'n1 vibrationG: alert' };

  test('accepts an active and an ended alert', () => {
    expect(alertProblem(good)).toBeNull();
    expect(alertProblem({ ...good, end: 5000, name: 'quake' })).toBeNull();
  });

  test.each([
    ['no end', { ...good, end: undefined }, /must have required property 'end'/],
    ['an extra property', { ...good, severity: 'high' }, /must NOT have additional properties/],
    ['an unknown detector', { ...good, detector: 'fft' }, /\/detector must be equal to one of the allowed values/],
    ['an unknown channel', { ...good, channel: 'smellPpm' }, /\/channel must be equal to one of the allowed values/],
    ['a bad node id', { ...good, node: 'node 1' }, /\/node must match pattern/],
    ['a value that is not a number', { ...good, value: 'high' }, /\/value must be number/],
    ['another protocol', { ...good, protocol: 2 }, /\/protocol must be equal to constant/],
  ])('refuses %s', (_what, bad, message) => {
    expect(alertProblem(JSON.parse(JSON.stringify(bad)))).toMatch(message);
  });
});

describe('Home Assistant MQTT discovery', () => {
  const required = ['name', 'unique_id', 'state_topic', 'device'];

  test("a sensor per channel, its state read from the mesh's sensors topic", () => {
    const m = sensorDiscovery('default', 'node-1', 'soundDb');
    expect(m.topic).toBe('homeassistant/sensor/mesh_llm_default_node-1_soundDb/config');
    expect(m.retain).toBe(true);
    for (const k of required) expect(m.payload[k]).toBeDefined();
    expect(m.payload).toMatchObject({ state_topic: 'mesh-llm/default/sensors/node-1', value_template: '{{ value_json.readings.soundDb | default(none) }}', unit_of_measurement: 'dB', device_class: 'sound_pressure', state_class: 'measurement', availability_topic: 'mesh-llm/default/status/node-1' });
    expect((m.payload.device as { identifiers: string[] }).identifiers).toEqual(['mesh_llm_default_node-1']);
  });

  test('an alert binary_sensor per node with payload_on and payload_off on its alert-state topic', () => {
    const m = alertDiscovery('default', 'node.7');
    expect(m.topic).toBe('homeassistant/binary_sensor/mesh_llm_default_node_7_alert/config');
    for (const k of [...required, 'payload_on', 'payload_off']) expect(m.payload[k]).toBeDefined();
    expect(m.payload).toMatchObject({ state_topic: 'mesh-llm/default/alert-state/node.7', payload_on: 'ON', payload_off: 'OFF', device_class: 'problem' });
  });

  test("a node's messages: one sensor per channel it carries, then its binary_sensor, all on one device with unique ids", () => {
    const all = nodeDiscovery('m1', 'n3', CHANNEL_NAMES, 'ha');
    expect(all.map((m) => m.topic.split('/').slice(0, 2).join('/'))).toEqual([...CHANNEL_NAMES.map(() => 'ha/sensor'), 'ha/binary_sensor']);
    expect(new Set(all.map((m) => m.payload.unique_id)).size).toBe(all.length);
    expect(new Set(all.map((m) => JSON.stringify(m.payload.device))).size).toBe(1);
    for (const m of all) expect(m.topic).toMatch(/^ha\/(sensor|binary_sensor)\/[A-Za-z0-9_-]+\/config$/);
  });
});

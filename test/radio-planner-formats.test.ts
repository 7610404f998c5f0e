/**
 * The planner over weight formats, transports and channel plans: every combination's bytes,
 * frames and token time come from the real body and frame encoders and the airtime code, its
 * fidelity from the measured table; the fastest meeting the floor is marked; 2-bit TinyLlama
 * heads come to about 1 MB each; the power figures follow from the schedule.
 */
import { main } from '../cli/mesh-llm';
import { timeOnAirMs } from '../lib/radio/airtime';
import { namedChannelPlan } from '../lib/radio/channel-plans';
import { measuredFidelity } from '../lib/radio/fidelity';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { PlanOptions, headShareBytes, plan } from '../lib/radio/planner';
import { CURRENTS_MA, SX1262_TX_MA } from '../lib/radio/power';
import { geometry } from '../lib/llm/config';

const tinyllama = (o: Partial<PlanOptions> = {}): PlanOptions => ({
  model: MODEL_PRESETS.tinyllama, modelName: 'tinyllama', nodes: 16, quant: 'int8', region: 'US915', sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: 'us915-500', ...o,
});

describe('planner on us915-500, TinyLlama 16 nodes x 2 heads', () => {
  const p = plan(tinyllama());

  test('every weight format x transport, each transport\'s schedule that of a plan run with it', () => {
    expect(p.combinations.map((c) => `${c.weights}/${c.transport}`)).toEqual(['f32', 'int8', 'int4', 'int2'].flatMap((w) => ['f32', 'int8', 'int7', 'int7h', 'int4'].map((t) => `${w}/${t}`)));
    for (const t of ['f32', 'int8', 'int7', 'int7h', 'int4'] as const) {
      const q = plan(tinyllama({ transport: t }));
      for (const c of p.combinations.filter((x) => x.transport === t)) {
        expect(c.secondsPerToken).toBeCloseTo(q.wallPerTokenSeconds, 9);
        expect(c.bytesPerLayer).toBe(q.bytesPerLayer.broadcast + q.bytesPerLayer.results);
        expect(c.framesPerLayer).toBe(q.framesPerLayer.broadcast + q.framesPerLayer.results);
      }
    }
    for (const c of p.combinations) expect(c.fidelity.top1Agreement).toBe(measuredFidelity(c.weights, c.transport).top1Agreement);
  });

  test('the broadcast is on 923.3 MHz at SF7/500: int8 is 10 frames of 228 bytes and one of 224, each at that airtime', () => {
    expect(p.channelPlan).toMatchObject({ name: 'us915-500', broadcastChannels: 1, uplinkChannels: 9 });
    expect(p.framesPerLayer.broadcast).toBe(11);
    expect(p.frameAirtimeMs.broadcast).toBeCloseTo(timeOnAirMs(228, { sf: 7, bandwidthKHz: 500 }), 9);
    // one reply frame of 184 bytes per node: the 500 kHz uplink channel (SF8) is the fastest
    expect(p.frameAirtimeMs.result).toBeCloseTo(timeOnAirMs(184, { sf: 8, bandwidthKHz: 500 }), 9);
    expect(p.wallPerTokenSeconds).toBeGreaterThanOrEqual(p.boundPerTokenSeconds - 1e-9);
    expect(p.wallPerTokenSeconds / p.boundPerTokenSeconds).toBeLessThanOrEqual(1.05);
  });

  test('the fastest combination meeting the floor on a module that holds it is marked; a lower floor picks a faster transport, none meets 99.99%', () => {
    // int7h: int7's bytes (under 30 s a token) at 99.30% with int8 weights
    expect(p.fastest).toEqual({ weights: 'int8', transport: 'int7h', minTop1: 0.99 });
    expect(p.combinations.find((c) => c.fastest)!.secondsPerToken!).toBeLessThanOrEqual(30);
    expect(p.combinations.filter((c) => c.fastest)).toHaveLength(1);
    const low = plan(tinyllama({ minTop1: 0.9 }));
    expect(low.fastest).toMatchObject({ weights: 'int8', transport: 'int4' }); // int4 ties f32/int4 on time, with fewer weight bytes
    expect(low.combinations.find((c) => c.fastest)!.secondsPerToken!).toBeLessThan(p.combinations.find((c) => c.fastest)!.secondsPerToken!);
    // float32 weights (44 MiB a node) fit no module: f32 x int7 meets the floor (99.38%) but is not offered
    const f32int7 = p.combinations.find((c) => c.weights === 'f32' && c.transport === 'int7')!;
    expect([f32int7.meetsFloor, f32int7.fitsModule]).toEqual([true, null]);
    expect(plan(tinyllama({ minTop1: 0.985 })).fastest).toMatchObject({ weights: 'int8', transport: 'int7' });
    expect(plan(tinyllama({ minTop1: 0.9999 })).fastest).toBeNull();
  });

  test('2-bit heads of TinyLlama take about 1 MB each (a head\'s W_Q and its share of W_K, W_V), with their measured fidelity', () => {
    const int2 = p.combinations.find((c) => c.weights === 'int2' && c.transport === 'int8')!;
    const g = geometry(MODEL_PRESETS.tinyllama);
    // per layer 64 W_Q rows + 2 x 64 / 8 kv rows of 2048 2-bit values and a scale and min per 128
    expect(int2.weightBytesPerHead).toBe(headShareBytes(g, 'int2'));
    expect(int2.weightBytesPerHead).toBe(22 * 80 * (512 + 16 * 8));
    expect(int2.weightBytesPerHead).toBeLessThan(1.15e6);
    expect(int2.fidelity.top1Agreement).toBe(measuredFidelity('int2', 'int8').top1Agreement);
  });

  test('power: the largest node\'s charge per token from its reply airtime, the broadcast airtime and the compute window', () => {
    const w = p.power;
    const txS = (22 * timeOnAirMs(184, { sf: 8, bandwidthKHz: 500 })) / 1000;
    // the scheduled airtime per node is each frame on its fastest channel
    expect(w.chargePerToken.tx).toBeCloseTo(SX1262_TX_MA[14] * txS, 6);
    expect(w.chargePerToken.rx).toBeCloseTo(CURRENTS_MA.radioRx * (22 * (10 * timeOnAirMs(228, { sf: 7, bandwidthKHz: 500 }) + timeOnAirMs(224, { sf: 7, bandwidthKHz: 500 }))) / 1000, 6);
    expect(w.energyPerTokenJoules).toBeCloseTo(((w.chargePerToken.tx + w.chargePerToken.rx + w.chargePerToken.mcu) / 1000) * 3.3, 9);
    expect(w.tokensPerHour).toBeCloseTo(3600 / p.wallPerTokenSeconds, 9);
  });
});

test('eu868-split spreads the broadcast over five sub-bands; a plan of another region is refused', () => {
  const p = plan(tinyllama({ region: 'EU868', channelPlan: 'eu868-split' }));
  expect(p.channelPlan?.broadcastChannels).toBe(namedChannelPlan('eu868-split').broadcasts.length);
  expect(p.wallPerTokenSeconds).toBeGreaterThan(240); // the 4-minute target is beyond EU868's LoRa budgets with a 99% transport (eu868-fsk meets it)
  expect(() => plan(tinyllama({ region: 'EU868' }))).toThrow('--channel-plan us915-500 is a US915 plan, not EU868');
});

test('eu868-fsk: the planner marks int8 weights x int7h transport the fastest at the 99% floor, under the 4 minutes a token', () => {
  const p = plan(tinyllama({ region: 'EU868', channelPlan: 'eu868-fsk' }));
  expect(p.fastest).toEqual({ weights: 'int8', transport: 'int7h', minTop1: 0.99 });
  const best = p.combinations.find((c) => c.fastest)!;
  expect(best.secondsPerToken!).toBeLessThan(240);
  expect(best.fidelity.top1Agreement).toBeGreaterThanOrEqual(0.99);
  expect(p.wallPerTokenSeconds).toBeGreaterThanOrEqual(p.boundPerTokenSeconds - 1e-9);
});

test('mesh-llm plan --channel-plan --json carries the combinations, the fastest and the power fields', async () => {
  const out: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => (out.push(s), true)) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main(['plan', '--preset', 'tinyllama', '--nodes', '16', '--channel-plan', 'us915-500', '--tx-power', '22', '--tokens-per-hour', '10', '--battery-mah', '2000', '--sun-hours', '3', '--json']);
  } finally {
    process.stdout.write = write;
  }
  expect(code).toBe(0);
  const j = JSON.parse(out.join(''));
  expect(j.radio.region).toBe('US915');
  expect(j.fastest).toEqual({ weights: 'int8', transport: 'int7h', minTop1: 0.99 });
  expect(j.power).toMatchObject({ txDbm: 22, tokensPerHour: 10, batteryMah: 2000 });
  expect(Object.keys(j.power)).toEqual(expect.arrayContaining(['energyPerTokenJoules', 'averageMa', 'batteryLifeHours', 'dailyWattHours', 'solarPanelWatts', 'solarBatteryMah']));
  expect(j.power.batteryLifeHours).toBeCloseTo(2000 / j.power.averageMa, 9);
});

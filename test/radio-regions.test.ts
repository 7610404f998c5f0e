import { timeOnAirMs } from '../lib/radio/airtime';
import { DutyCycleTracker, EU868, RegulatoryError, US915, channelPlan, dataRate, maxFrameBytesFor, meshFrameBytes, offTimeMs, subBandOf } from '../lib/radio/regions';

const MHz = 1e6;

describe('EU868', () => {
  test('sub-bands carry their ETSI duty cycles', () => {
    const at = (f: number) => subBandOf(EU868, { frequencyHz: f * MHz, bandwidthKHz: 125 });
    expect(at(868.1)).toMatchObject({ name: 'g1', dutyCycle: 0.01 });
    expect(at(867.5)).toMatchObject({ name: 'g (865-868 MHz)', dutyCycle: 0.01 });
    expect(at(864.1)).toMatchObject({ dutyCycle: 0.001 });
    expect(at(869.0)).toMatchObject({ name: 'g2', dutyCycle: 0.001 });
    expect(at(869.525)).toMatchObject({ name: 'g3', dutyCycle: 0.1 });
    expect(at(869.85)).toMatchObject({ name: 'g4', dutyCycle: 0.01 });
    // 868.65 MHz lies between g1 and g2; a 125 kHz channel at 868.55 MHz straddles g1's edge.
    expect(() => at(868.65)).toThrow(RegulatoryError);
    expect(() => at(868.55)).toThrow(RegulatoryError);
  });

  test('maximum payload per data rate', () => {
    expect(dataRate(EU868, 12, 125)).toMatchObject({ dr: 0, maxPayloadBytes: 64 });
    expect(dataRate(EU868, 9, 125)).toMatchObject({ dr: 3, maxPayloadBytes: 128 });
    expect(dataRate(EU868, 7, 250)).toMatchObject({ dr: 6, maxPayloadBytes: 255 });
    expect(maxFrameBytesFor(EU868, { sf: 12, bandwidthKHz: 125 })).toBe(64);
    // The mesh's frames: the seed's 230 bytes where the data rate allows more, the data rate's limit below.
    expect(meshFrameBytes(EU868, { sf: 7, bandwidthKHz: 125 })).toBe(230);
    expect(meshFrameBytes(EU868, { sf: 9, bandwidthKHz: 125 })).toBe(128);
    expect(meshFrameBytes(US915, { sf: 10, bandwidthKHz: 125 })).toBe(24);
    expect(() => dataRate(EU868, 7, 500)).toThrow(/EU868 has no data rate SF7\/500/);
  });

  test('after each transmission a transmitter stays silent in that sub-band for airtime x (1/dc - 1)', () => {
    const gateway = new DutyCycleTracker(EU868);
    const { uplink, broadcast } = channelPlan(EU868, 1, 125);
    expect(broadcast.frequencyHz).toBe(869.525 * MHz);
    const airtime = timeOnAirMs(222, { sf: 7, bandwidthKHz: 125 });
    expect(gateway.transmit(uplink[0], 0, airtime)).toBeCloseTo(airtime, 9);
    const g1Free = airtime / 0.01;
    expect(gateway.earliestStartMs(uplink[0], 0)).toBeCloseTo(g1Free, 6);
    expect(() => gateway.transmit(uplink[0], g1Free - 1, airtime)).toThrow(/g1 off-time \(1% duty cycle\)/);
    // Another sub-band is free as soon as the radio is: g3 only waits for the transmission to end.
    expect(gateway.earliestStartMs(broadcast, 0)).toBeCloseTo(airtime, 9);
    const end = gateway.transmit(broadcast, airtime, airtime);
    expect(gateway.earliestStartMs(broadcast, 0)).toBeCloseTo(end + offTimeMs(airtime, 0.1), 6);
    expect(offTimeMs(airtime, 0.1)).toBeCloseTo(9 * airtime, 9);
    expect(() => gateway.transmit(uplink[0], g1Free, airtime)).not.toThrow();
    expect(gateway.airtimeMs).toBeCloseTo(3 * airtime, 9);
  });

  test('a radio cannot start a transmission while it is still transmitting', () => {
    const node = new DutyCycleTracker(EU868);
    const g3 = { frequencyHz: 869.525 * MHz, bandwidthKHz: 125 } as const;
    const ch868 = { frequencyHz: 868.1 * MHz, bandwidthKHz: 125 } as const;
    node.transmit(g3, 0, 100);
    expect(() => node.transmit(ch868, 50, 100)).toThrow(/while still transmitting/);
  });

  test('8-channel plan: the three default channels, then 867.1..867.9 MHz', () => {
    expect(channelPlan(EU868, 8, 125).uplink.map((c) => c.frequencyHz / MHz)).toEqual([868.1, 868.3, 868.5, 867.1, 867.3, 867.5, 867.7, 867.9]);
    expect(() => channelPlan(EU868, 8, 250)).toThrow(/1 uplink channel/);
  });
});

describe('US915', () => {
  test('64 + 8 uplink channels', () => {
    const narrow = US915.uplinkChannels.filter((c) => c.bandwidthKHz === 125);
    const wide = US915.uplinkChannels.filter((c) => c.bandwidthKHz === 500);
    expect(narrow).toHaveLength(64);
    expect(wide).toHaveLength(8);
    expect(narrow[0].frequencyHz).toBe(902.3 * MHz);
    expect(narrow[63].frequencyHz).toBe(914.9 * MHz);
    expect(wide[7].frequencyHz).toBe(914.2 * MHz);
    expect(channelPlan(US915, 8, 125).uplink.map((c) => c.frequencyHz / MHz)).toEqual([903.9, 904.1, 904.3, 904.5, 904.7, 904.9, 905.1, 905.3]);
    expect(channelPlan(US915, 1, 500).uplink.map((c) => c.frequencyHz / MHz)).toEqual([904.6]);
  });

  test('maximum payload per data rate, cut further where a frame would exceed the 400 ms dwell time', () => {
    expect(dataRate(US915, 10, 125)).toMatchObject({ dr: 0, maxPayloadBytes: 24 });
    expect(dataRate(US915, 7, 125)).toMatchObject({ dr: 3, maxPayloadBytes: 255 });
    expect(dataRate(US915, 7, 500)).toMatchObject({ dr: 13 });
    for (const d of US915.dataRates) {
      const n = maxFrameBytesFor(US915, d);
      expect(timeOnAirMs(n, d)).toBeLessThanOrEqual(400);
      // The uplink data rates (DR0-DR4) already respect the dwell time at their LoRaWAN maximum.
      if (d.dr <= 4) expect(n).toBe(d.maxPayloadBytes);
      else expect(n === d.maxPayloadBytes || timeOnAirMs(n + 1, d) > 400).toBe(true);
    }
    // SF12/500 (DR8): 66 bytes would take 616 ms.
    expect(maxFrameBytesFor(US915, { sf: 12, bandwidthKHz: 500 })).toBeLessThan(66);
    expect(() => dataRate(US915, 7, 250)).toThrow(/US915 has no data rate/);
  });

  test('no duty cycle, but a transmission longer than 400 ms is refused', () => {
    const node = new DutyCycleTracker(US915);
    const ch = channelPlan(US915, 1, 125).uplink[0];
    const sf7 = timeOnAirMs(222, { sf: 7, bandwidthKHz: 125 });
    let t = 0;
    for (let i = 0; i < 10; i++) t = node.transmit(ch, t, sf7); // back to back
    expect(t).toBeCloseTo(10 * sf7, 6);
    expect(() => node.transmit(ch, t, timeOnAirMs(222, { sf: 9, bandwidthKHz: 125 }))).toThrow(/exceeds the 400 ms dwell time/);
  });
});

describe('channel plans', () => {
  test.each([['EU868', EU868], ['US915', US915]] as const)('every %s mesh channel is a region channel inside a sub-band', (_name, r) => {
    for (const [bw, mesh] of Object.entries(r.meshChannels)) {
      for (const count of [1, mesh!.uplink.length]) {
        const plan = channelPlan(r, count, Number(bw) as 125);
        expect(plan.uplink).toHaveLength(count);
        for (const ch of plan.uplink) expect(r.uplinkChannels).toContainEqual(ch);
        for (const ch of [...plan.uplink, plan.broadcast]) expect(() => subBandOf(r, ch)).not.toThrow();
      }
    }
  });
});


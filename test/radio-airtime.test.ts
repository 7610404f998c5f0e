import { maxPayloadWithinMs, payloadSymbols, modulation, requiresLowDataRateOptimize, symbolTimeMs, timeOnAirMs } from '../lib/radio/airtime';

describe('LoRa time on air', () => {
  const reference = { bandwidthKHz: 125, codingRate: 5, preambleSymbols: 8, explicitHeader: true, crc: true } as const;

  test.each([
    [7, 348.4],
    [9, 1106.9],
    [12, 8036.4],
  ] as const)('222-byte payload at SF%i/BW125, CR4/5, preamble 8, explicit header, CRC: %f ms', (sf, ms) => {
    expect(Math.abs(timeOnAirMs(222, { ...reference, sf }) - ms)).toBeLessThan(0.05);
  });

  test('the LoRaWAN EU868 DR0 maximum (64-byte PHY payload at SF12/BW125) takes 2793.5 ms', () => {
    expect(Math.abs(timeOnAirMs(64, { ...reference, sf: 12 }) - 2793.5)).toBeLessThan(0.05);
  });

  test('low-data-rate optimisation is on exactly when the symbol time reaches 16 ms', () => {
    expect(symbolTimeMs(11, 125)).toBeCloseTo(16.384, 9);
    expect(requiresLowDataRateOptimize(11, 125)).toBe(true);
    expect(requiresLowDataRateOptimize(12, 250)).toBe(true);
    expect(requiresLowDataRateOptimize(10, 125)).toBe(false);
    expect(requiresLowDataRateOptimize(11, 250)).toBe(false);
    expect(requiresLowDataRateOptimize(12, 500)).toBe(false);
    // Forcing it off at SF12 packs more bits per symbol: fewer symbols than the default.
    const auto = timeOnAirMs(222, { ...reference, sf: 12 });
    const off = timeOnAirMs(222, { ...reference, sf: 12, lowDataRateOptimize: false });
    expect(off).toBeLessThan(auto);
  });

  test('SF5 and SF6 use the SX126x variant: preamble + 6.25 symbols and no 8-bit header term', () => {
    // SX126x datasheet 6.1.4 / LoRaMac-node: SF6, BW125, 10 bytes, CR4/5, preamble 12, explicit header, CRC:
    // ceil((80 + 16 - 24 + 20) / 24) = 4 blocks -> 8 + 20 payload symbols; 12 + 6.25 preamble; 46.25 x 0.512 ms.
    const m = modulation({ sf: 6, bandwidthKHz: 125, preambleSymbols: 12 });
    expect(payloadSymbols(10, m)).toBe(28);
    expect(timeOnAirMs(10, m)).toBeCloseTo(23.68, 9);
    // SF5, same payload: ceil((80 + 16 - 20 + 20) / 20) = 5 blocks -> 8 + 25 payload symbols.
    expect(payloadSymbols(10, modulation({ sf: 5, bandwidthKHz: 125 }))).toBe(33);
    // SF7 would add the 8-bit term of the SX127x formula: ceil((80 + 16 - 28 + 8 + 20) / 28) = 4 blocks.
    expect(payloadSymbols(10, modulation({ sf: 7, bandwidthKHz: 125 }))).toBe(28);
  });

  test('header mode, CRC, coding rate and bandwidth change the time as the formula says', () => {
    const base = { sf: 7, bandwidthKHz: 125 } as const;
    // 51 bytes at SF7: 424 bits = 16 blocks of 28 with an explicit header and CRC, 15 without either.
    const t = timeOnAirMs(51, base);
    const block = 5 * symbolTimeMs(7, 125);
    expect(t - timeOnAirMs(51, { ...base, explicitHeader: false })).toBeCloseTo(block, 9);
    expect(t - timeOnAirMs(51, { ...base, crc: false })).toBeCloseTo(block, 9);
    expect(timeOnAirMs(51, { ...base, codingRate: 8 }) - t).toBeCloseTo(16 * 3 * symbolTimeMs(7, 125), 9);
    expect(timeOnAirMs(51, { ...base, bandwidthKHz: 500 })).toBeCloseTo(t / 4, 9);
    expect(timeOnAirMs(51, { ...base, preambleSymbols: 16 }) - t).toBeCloseTo(8 * symbolTimeMs(7, 125), 9);
  });

  test('maxPayloadWithinMs finds the largest payload within a time limit', () => {
    const m = { sf: 10, bandwidthKHz: 125 } as const;
    const n = maxPayloadWithinMs(400, m);
    expect(timeOnAirMs(n, m)).toBeLessThanOrEqual(400);
    expect(timeOnAirMs(n + 1, m)).toBeGreaterThan(400);
    expect(maxPayloadWithinMs(1, m)).toBe(-1);
  });

  test('out-of-range parameters are refused', () => {
    expect(() => timeOnAirMs(256, { sf: 7, bandwidthKHz: 125 })).toThrow(RangeError);
    expect(() => timeOnAirMs(10, { sf: 13 as 12, bandwidthKHz: 125 })).toThrow(/SF5..SF12/);
    expect(() => timeOnAirMs(10, { sf: 7, bandwidthKHz: 62 as 125 })).toThrow(/bandwidth/);
    expect(() => timeOnAirMs(10, { sf: 7, bandwidthKHz: 125, codingRate: 9 as 8 })).toThrow(/coding rate/);
  });
});

describe('FSK time on air (LoRaWAN RP002 EU868 DR7)', () => {
  test('every byte of preamble (5), sync word (3), length (1), payload and CRC (2) at 50 kbps: 230 bytes take 38.56 ms, an empty packet 1.76 ms', () => {
    expect(timeOnAirMs(230, { kind: 'fsk', bitrateBps: 50000 })).toBeCloseTo((241 * 8) / 50, 9);
    expect(timeOnAirMs(0, { kind: 'fsk', bitrateBps: 50000 })).toBeCloseTo(1.76, 9);
    // about 4.7x less than SF7/250 (DR6) for the same frame
    expect(timeOnAirMs(230, { sf: 7, bandwidthKHz: 250 }) / timeOnAirMs(230, { kind: 'fsk', bitrateBps: 50000 })).toBeCloseTo(4.72, 2);
  });

  test('refuses a payload over 255 bytes or a bit rate that is not positive, naming the value', () => {
    expect(() => timeOnAirMs(256, { kind: 'fsk', bitrateBps: 50000 })).toThrow('payload of 256 bytes: expected 0..255');
    expect(() => timeOnAirMs(10, { kind: 'fsk', bitrateBps: 0 })).toThrow('FSK bit rate 0: expected a positive number of bits per second');
  });
});

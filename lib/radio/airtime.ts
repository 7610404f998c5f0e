/**
 * LoRa time on air, as Semtech states it (SX1276 datasheet section 4.1.1.7 and AN1200.13 for
 * SF7-SF12; SX1261/2 datasheet section 6.1.4 for SF5 and SF6). Times are in milliseconds.
 *
 *   T_sym      = 2^SF / BW
 *   SF7..SF12: symbols = N_preamble + 4.25 + 8 + ceil(max(8 PL + 16 CRC - 4 SF + 8 + 20 H, 0) / (4 (SF - 2 DE))) (CR + 4)
 *   SF5, SF6:  symbols = N_preamble + 6.25 + 8 + ceil(max(8 PL + 16 CRC - 4 SF + 20 H, 0) / (4 SF)) (CR + 4)
 *
 * PL payload bytes, CRC 1 when the payload CRC is on, H 1 for an explicit header, DE 1 with
 * low-data-rate optimisation (on by default when T_sym >= 16 ms; SF5/SF6 never need it), and
 * CR + 4 the denominator of the coding rate 4/(CR + 4).
 *
 * FSK, as LoRaWAN uses the SX126x's FSK modem (RP002-1.0 EU863-870 DR7, 50 kbps GFSK):
 *
 *   T = 8 (N_preamble + N_sync + 1 + PL + 2) / bitrate
 *
 * a preamble of 5 bytes, a 3-byte sync word, the length byte, the payload and a CRC-16
 * (the Semtech LoRaWAN stack's FSK packet: preamble 5, sync word C1 94 C1, variable length, CRC on).
 */

export const SPREADING_FACTORS = [5, 6, 7, 8, 9, 10, 11, 12] as const;
export type SpreadingFactor = (typeof SPREADING_FACTORS)[number];

export const BANDWIDTHS_KHZ = [125, 250, 500] as const;
export type BandwidthKHz = (typeof BANDWIDTHS_KHZ)[number];

/** The coding rate 4/5 .. 4/8, named by its denominator. */
export const CODING_RATES = [5, 6, 7, 8] as const;
export type CodingRate = (typeof CODING_RATES)[number];

/** The largest payload a LoRa modem sends in one packet (the SX127x/SX126x FIFO length field). */
export const MAX_LORA_PAYLOAD_BYTES = 255;

/** Symbol time at or above which low-data-rate optimisation is required (Semtech: 16 ms). */
export const LDRO_SYMBOL_MS = 16;

export interface LoRaModulation {
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  /** Denominator of the coding rate 4/x (default 5: 4/5). */
  codingRate?: CodingRate;
  /** Programmed preamble length in symbols (default 8). */
  preambleSymbols?: number;
  /** Explicit header (default true); false = implicit header mode. */
  explicitHeader?: boolean;
  /** Payload CRC (default true). */
  crc?: boolean;
  /** Low-data-rate optimisation; default: on exactly when the symbol time is at least 16 ms. */
  lowDataRateOptimize?: boolean;
}

/** An FSK channel's packet format (an SX126x in FSK mode): the bit rate and the bytes around the payload. */
export interface FskModulation {
  kind: 'fsk';
  bitrateBps: number;
  /** Preamble bytes (default 5, LoRaWAN's). */
  preambleBytes?: number;
  /** Sync word bytes (default 3, LoRaWAN's). */
  syncWordBytes?: number;
}

/** Either modem of a LoRa transceiver. */
export type RadioModulation = LoRaModulation | FskModulation;

export function isFsk(m: RadioModulation): m is FskModulation {
  return (m as FskModulation).kind === 'fsk';
}

/** LoRaWAN's FSK data rate (RP002 EU863-870 DR7): 50 kbps, 25 kHz deviation. */
export const LORAWAN_FSK_BITRATE_BPS = 50000;

/** Time on air of one FSK packet in milliseconds: every byte of it at the bit rate. */
export function fskTimeOnAirMs(payloadBytes: number, m: FskModulation): number {
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > MAX_LORA_PAYLOAD_BYTES) {
    throw new RangeError(`payload of ${payloadBytes} bytes: expected 0..${MAX_LORA_PAYLOAD_BYTES}`);
  }
  if (!(m.bitrateBps > 0)) throw new RangeError(`FSK bit rate ${m.bitrateBps}: expected a positive number of bits per second`);
  const bytes = (m.preambleBytes ?? 5) + (m.syncWordBytes ?? 3) + 1 + payloadBytes + 2;
  return (8 * bytes * 1000) / m.bitrateBps;
}

/** The modulation with every default filled in. */
export type Modulation = Required<LoRaModulation>;

/** Symbol time in milliseconds: 2^SF / BW. */
export function symbolTimeMs(sf: SpreadingFactor, bandwidthKHz: BandwidthKHz): number {
  return 2 ** sf / bandwidthKHz;
}

/** Whether Semtech requires low-data-rate optimisation: symbol time of 16 ms or more. */
export function requiresLowDataRateOptimize(sf: SpreadingFactor, bandwidthKHz: BandwidthKHz): boolean {
  return symbolTimeMs(sf, bandwidthKHz) >= LDRO_SYMBOL_MS;
}

/** Checks a modulation and fills in its defaults. */
export function modulation(m: LoRaModulation): Modulation {
  if (!(SPREADING_FACTORS as readonly number[]).includes(m.sf)) throw new RangeError(`spreading factor ${m.sf}: expected SF5..SF12`);
  if (!(BANDWIDTHS_KHZ as readonly number[]).includes(m.bandwidthKHz)) throw new RangeError(`bandwidth ${m.bandwidthKHz} kHz: expected 125, 250 or 500`);
  const codingRate = m.codingRate ?? 5;
  if (!(CODING_RATES as readonly number[]).includes(codingRate)) throw new RangeError(`coding rate 4/${codingRate}: expected 4/5..4/8`);
  const preambleSymbols = m.preambleSymbols ?? 8;
  if (!Number.isInteger(preambleSymbols) || preambleSymbols < 6 || preambleSymbols > 65535) {
    throw new RangeError(`preamble of ${preambleSymbols} symbols: expected a whole number from 6 to 65535`);
  }
  return {
    sf: m.sf,
    bandwidthKHz: m.bandwidthKHz,
    codingRate,
    preambleSymbols,
    explicitHeader: m.explicitHeader ?? true,
    crc: m.crc ?? true,
    lowDataRateOptimize: m.lowDataRateOptimize ?? requiresLowDataRateOptimize(m.sf, m.bandwidthKHz),
  };
}

/** Symbols before the payload: the programmed preamble, the sync word and SFD (4.25, or 6.25 at SF5/SF6). */
export function preambleSymbols(m: Modulation): number {
  return m.preambleSymbols + (m.sf <= 6 ? 6.25 : 4.25);
}

/** Symbols of the header and payload: 8 + ceil(bits / bits per block) * (CR + 4). */
export function payloadSymbols(payloadBytes: number, m: Modulation): number {
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > MAX_LORA_PAYLOAD_BYTES) {
    throw new RangeError(`payload of ${payloadBytes} bytes: expected 0..${MAX_LORA_PAYLOAD_BYTES}`);
  }
  const legacy = m.sf >= 7;
  const bits = 8 * payloadBytes + (m.crc ? 16 : 0) - 4 * m.sf + (legacy ? 8 : 0) + (m.explicitHeader ? 20 : 0);
  const bitsPerBlock = 4 * (m.sf - (legacy && m.lowDataRateOptimize ? 2 : 0));
  return 8 + Math.ceil(Math.max(bits, 0) / bitsPerBlock) * m.codingRate;
}

/** Time on air of one packet in milliseconds, LoRa or FSK. */
export function timeOnAirMs(payloadBytes: number, m: RadioModulation): number {
  if (isFsk(m)) return fskTimeOnAirMs(payloadBytes, m);
  const full = modulation(m);
  return (preambleSymbols(full) + payloadSymbols(payloadBytes, full)) * symbolTimeMs(full.sf, full.bandwidthKHz);
}

/** The largest payload whose time on air is at most `limitMs`; -1 when not even an empty packet fits. */
export function maxPayloadWithinMs(limitMs: number, m: RadioModulation): number {
  let best = -1;
  for (let pl = 0; pl <= MAX_LORA_PAYLOAD_BYTES; pl++) {
    if (timeOnAirMs(pl, m) <= limitMs) best = pl;
    else break;
  }
  return best;
}

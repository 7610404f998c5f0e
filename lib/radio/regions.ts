/**
 * Radio regions: where a transmitter may transmit, how large a packet may be at each data
 * rate, and how long it must then stay silent. Frequencies are in Hz, times in milliseconds,
 * duty cycles are fractions (0.01 = 1%).
 *
 * EU868 follows ETSI EN 300 220 / ERC Recommendation 70-03 (sub-bands g..g4, each with its
 * own duty cycle per transmitter); US915 follows FCC part 15.247 as LoRaWAN applies it (no
 * duty cycle, at most 400 ms dwell time per transmission, 64 + 8 uplink channels). Maximum
 * payloads per data rate are the LoRaWAN Regional Parameters (RP002-1.0) figures M + 5
 * (MACPayload plus MHDR and MIC), i.e. the largest PHY payload a data rate allows.
 */
import { MeshLlmError } from '../llm/errors';
import { BandwidthKHz, LoRaModulation, RadioModulation, SpreadingFactor, isFsk, timeOnAirMs } from './airtime';
import { DEFAULT_MAX_FRAME_BYTES } from './frame';

export const REGION_NAMES = ['EU868', 'US915'] as const;
export type RegionName = (typeof REGION_NAMES)[number];

/** A frequency range with one duty-cycle limit per transmitter. */
export interface SubBand {
  name: string;
  lowHz: number;
  highHz: number;
  /** Fraction of time one transmitter may be on air in this sub-band (1 = no limit). */
  dutyCycle: number;
}

export interface DataRate {
  dr: number;
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  /** Largest PHY payload at this data rate (LoRaWAN M + 5), bytes. */
  maxPayloadBytes: number;
}

/** An FSK data rate of a region (LoRaWAN's one: EU868 DR7, 50 kbps). */
export interface FskDataRate {
  dr: number;
  bitrateBps: number;
  /** Largest PHY payload at this data rate (LoRaWAN M + 5), bytes. */
  maxPayloadBytes: number;
}

export interface Channel {
  frequencyHz: number;
  /** The channel's width (for an FSK channel, the receive bandwidth its signal fits in: 125 kHz at 50 kbps, 25 kHz deviation). */
  bandwidthKHz: BandwidthKHz;
  /** The spreading factor a channel plan (channel-plans.ts) runs on this channel; absent: the mesh's. */
  sf?: SpreadingFactor;
  /** The channel carries FSK at this bit rate instead of LoRa (a channel plan's; the radio switches modem per frame). */
  fskBitrateBps?: number;
}

export interface Region {
  name: RegionName;
  subBands: readonly SubBand[];
  dataRates: readonly DataRate[];
  /** FSK data rates (EU868's DR7), which only a channel plan's FSK channels use. */
  fskDataRates?: readonly FskDataRate[];
  /** Longest single transmission, ms (Infinity where the region sets none). */
  maxDwellMs: number;
  /** Every uplink channel the region defines. */
  uplinkChannels: readonly Channel[];
  /**
   * The mesh's channels per bandwidth: its receive channels in the order a gateway with fewer
   * uses them, and where the gateway broadcasts (default: the first receive channel).
   */
  meshChannels: Partial<Record<BandwidthKHz, { uplink: readonly Channel[]; broadcast?: Channel }>>;
}

/**
 * The mesh's channels: node results go out on `uplink`, the gateway's broadcasts on
 * `broadcast`, or spread over `broadcasts` where a plan gives several (each in its own
 * sub-band, with its own duty-cycle budget; `broadcast` is the first of them).
 */
export interface ChannelPlan {
  uplink: Channel[];
  broadcast: Channel;
  broadcasts?: Channel[];
}

/** Every channel the gateway may broadcast on. */
export function broadcastChannels(p: ChannelPlan): Channel[] {
  return p.broadcasts ?? [p.broadcast];
}

/** The modulation of a channel: FSK where the channel says so; else LoRa at its own bandwidth and (in a channel plan) spreading factor, else the mesh's. */
export function channelModulation(base: LoRaModulation, ch: Channel): RadioModulation {
  if (ch.fskBitrateBps !== undefined) return { kind: 'fsk', bitrateBps: ch.fskBitrateBps };
  return { sf: ch.sf ?? base.sf, bandwidthKHz: ch.bandwidthKHz, codingRate: base.codingRate };
}

/** How a channel is named in messages: frequency, width and its data rate (SF or FSK bit rate). */
export function channelName(ch: Channel): string {
  const rate = ch.fskBitrateBps !== undefined ? ` FSK ${ch.fskBitrateBps / 1000} kbps` : ch.sf === undefined ? '' : ` SF${ch.sf}`;
  return `${(ch.frequencyHz / 1e6).toFixed(3)} MHz ${ch.bandwidthKHz} kHz${rate}`;
}

/** A transmission the region forbids. */
export class RegulatoryError extends MeshLlmError {
  constructor(message: string) {
    super(message);
    this.name = 'RegulatoryError';
  }
}

const MHz = 1e6;

function channels(firstHz: number, stepHz: number, count: number, bandwidthKHz: BandwidthKHz): Channel[] {
  return Array.from({ length: count }, (_, i) => ({ frequencyHz: Math.round(firstHz + i * stepHz), bandwidthKHz }));
}

/** The three mandatory LoRaWAN channels (g1), then the five common extra ones (865-868 MHz). */
const EU868_125 = [...channels(868.1 * MHz, 0.2 * MHz, 3, 125), ...channels(867.1 * MHz, 0.2 * MHz, 5, 125)];
/** The one 250 kHz channel of the common plans (SF7/250, "the LoRa standard channel"). */
const EU868_250: Channel = { frequencyHz: 868.3 * MHz, bandwidthKHz: 250 };
/** g3's centre: 250 kHz wide, so a 125 or 250 kHz channel fits. */
const EU868_G3_HZ = 869.525 * MHz;

/**
 * EU868 sub-bands. ERC 70-03 band g is 863-870 MHz at 0.1%, raised to 1% in 865-868 MHz;
 * g1..g4 are its historical sub-bands. 868.6-868.7 and 869.2-869.4 MHz belong to other
 * annexes (alarms) and are left out, so no channel here falls into them.
 */
export const EU868: Region = {
  name: 'EU868',
  subBands: [
    { name: 'g (863-865 MHz)', lowHz: 863.0 * MHz, highHz: 865.0 * MHz, dutyCycle: 0.001 },
    { name: 'g (865-868 MHz)', lowHz: 865.0 * MHz, highHz: 868.0 * MHz, dutyCycle: 0.01 },
    { name: 'g1', lowHz: 868.0 * MHz, highHz: 868.6 * MHz, dutyCycle: 0.01 },
    { name: 'g2', lowHz: 868.7 * MHz, highHz: 869.2 * MHz, dutyCycle: 0.001 },
    { name: 'g3', lowHz: 869.4 * MHz, highHz: 869.65 * MHz, dutyCycle: 0.1 },
    { name: 'g4', lowHz: 869.7 * MHz, highHz: 870.0 * MHz, dutyCycle: 0.01 },
  ],
  dataRates: [
    { dr: 0, sf: 12, bandwidthKHz: 125, maxPayloadBytes: 64 },
    { dr: 1, sf: 11, bandwidthKHz: 125, maxPayloadBytes: 64 },
    { dr: 2, sf: 10, bandwidthKHz: 125, maxPayloadBytes: 64 },
    { dr: 3, sf: 9, bandwidthKHz: 125, maxPayloadBytes: 128 },
    { dr: 4, sf: 8, bandwidthKHz: 125, maxPayloadBytes: 255 },
    { dr: 5, sf: 7, bandwidthKHz: 125, maxPayloadBytes: 255 },
    { dr: 6, sf: 7, bandwidthKHz: 250, maxPayloadBytes: 255 },
  ],
  fskDataRates: [{ dr: 7, bitrateBps: 50000, maxPayloadBytes: 255 }],
  maxDwellMs: Infinity,
  uplinkChannels: [...EU868_125, EU868_250],
  // Broadcasts go to g3, where a transmitter has 10% rather than 1%.
  meshChannels: {
    125: { uplink: EU868_125, broadcast: { frequencyHz: EU868_G3_HZ, bandwidthKHz: 125 } },
    250: { uplink: [EU868_250], broadcast: { frequencyHz: EU868_G3_HZ, bandwidthKHz: 250 } },
  },
};

/**
 * US915: 64 x 125 kHz uplink channels from 902.3 MHz, 8 x 500 kHz from 903.0 MHz. The mesh
 * holds every transmission (the gateway's too) to the 400 ms dwell time, which LoRaWAN applies
 * to uplinks: at SF12/500 and SF11/500 that cuts frames below the data rate's maximum.
 */
export const US915: Region = {
  name: 'US915',
  subBands: [{ name: '902-928 MHz', lowHz: 902.0 * MHz, highHz: 928.0 * MHz, dutyCycle: 1 }],
  dataRates: [
    { dr: 0, sf: 10, bandwidthKHz: 125, maxPayloadBytes: 24 },
    { dr: 1, sf: 9, bandwidthKHz: 125, maxPayloadBytes: 66 },
    { dr: 2, sf: 8, bandwidthKHz: 125, maxPayloadBytes: 138 },
    { dr: 3, sf: 7, bandwidthKHz: 125, maxPayloadBytes: 255 },
    { dr: 4, sf: 8, bandwidthKHz: 500, maxPayloadBytes: 255 },
    { dr: 8, sf: 12, bandwidthKHz: 500, maxPayloadBytes: 66 },
    { dr: 9, sf: 11, bandwidthKHz: 500, maxPayloadBytes: 142 },
    { dr: 10, sf: 10, bandwidthKHz: 500, maxPayloadBytes: 255 },
    { dr: 11, sf: 9, bandwidthKHz: 500, maxPayloadBytes: 255 },
    { dr: 12, sf: 8, bandwidthKHz: 500, maxPayloadBytes: 255 },
    { dr: 13, sf: 7, bandwidthKHz: 500, maxPayloadBytes: 255 },
  ],
  maxDwellMs: 400,
  uplinkChannels: [...channels(902.3 * MHz, 0.2 * MHz, 64, 125), ...channels(903.0 * MHz, 1.6 * MHz, 8, 500)],
  // Sub-band 2 (channels 8..15 and 65), as most US915 gateways ship; the broadcast shares the
  // first channel, since there is no duty cycle to spread.
  meshChannels: {
    125: { uplink: channels(903.9 * MHz, 0.2 * MHz, 8, 125) },
    500: { uplink: [...channels(904.6 * MHz, 1.6 * MHz, 7, 500), { frequencyHz: 903.0 * MHz, bandwidthKHz: 500 }] },
  },
};

export const REGIONS: Record<RegionName, Region> = { EU868, US915 };

export function region(name: string): Region {
  const r = (REGIONS as Record<string, Region | undefined>)[name];
  if (!r) throw new MeshLlmError(`region ${JSON.stringify(name)}: expected one of ${REGION_NAMES.join(', ')}`);
  return r;
}

/** The data rate of a region with this spreading factor and bandwidth. */
export function dataRate(r: Region, sf: number, bandwidthKHz: number): DataRate {
  const d = r.dataRates.find((x) => x.sf === sf && x.bandwidthKHz === bandwidthKHz);
  if (!d) {
    const known = r.dataRates.map((x) => `SF${x.sf}/${x.bandwidthKHz}`).join(', ');
    throw new MeshLlmError(`${r.name} has no data rate SF${sf}/${bandwidthKHz} kHz (it has ${known})`);
  }
  return d;
}

/** The sub-band a channel lies in: the whole channel must fit inside it. */
export function subBandOf(r: Region, ch: Channel): SubBand {
  const half = (ch.bandwidthKHz * 1e3) / 2;
  const s = r.subBands.find((b) => ch.frequencyHz - half >= b.lowHz && ch.frequencyHz + half <= b.highHz);
  if (!s) throw new RegulatoryError(`${r.name}: a ${ch.bandwidthKHz} kHz channel at ${(ch.frequencyHz / MHz).toFixed(3)} MHz lies in no sub-band`);
  return s;
}

/** The mesh's channels for a gateway with `count` receive channels at a bandwidth. */
export function channelPlan(r: Region, count: number, bandwidthKHz: BandwidthKHz): ChannelPlan {
  const mesh = r.meshChannels[bandwidthKHz];
  const available = mesh?.uplink.length ?? 0;
  if (!mesh || available < count) {
    throw new MeshLlmError(`${r.name} offers ${available} uplink channel(s) of ${bandwidthKHz} kHz in this plan, not ${count}`);
  }
  const uplink = mesh.uplink.slice(0, count);
  return { uplink, broadcast: mesh.broadcast ?? uplink[0] };
}

/** The FSK data rate of a region with this bit rate. */
export function fskDataRate(r: Region, bitrateBps: number): FskDataRate {
  const d = r.fskDataRates?.find((x) => x.bitrateBps === bitrateBps);
  if (!d) {
    const known = (r.fskDataRates ?? []).map((x) => `${x.bitrateBps / 1000} kbps`).join(', ');
    throw new MeshLlmError(`${r.name} has no FSK data rate of ${bitrateBps / 1000} kbps (${known ? `it has ${known}` : 'it has none'})`);
  }
  return d;
}

/** The longest frame a region allows at a modulation: the data rate's limit, within the dwell time. */
export function maxFrameBytesFor(r: Region, m: RadioModulation): number {
  const limit = isFsk(m) ? fskDataRate(r, m.bitrateBps).maxPayloadBytes : dataRate(r, m.sf, m.bandwidthKHz).maxPayloadBytes;
  let n = limit;
  while (n > 0 && timeOnAirMs(n, m) > r.maxDwellMs) n--;
  return n;
}

/** The mesh's frame size at a modulation: the seed's 230 bytes, or less where the region allows less. */
export function meshFrameBytes(r: Region, m: LoRaModulation): number {
  return Math.min(DEFAULT_MAX_FRAME_BYTES, maxFrameBytesFor(r, m));
}

/** Throws when one transmission would exceed the region's dwell time. */
export function checkDwell(r: Region, airtimeMs: number): void {
  if (airtimeMs > r.maxDwellMs) {
    throw new RegulatoryError(`${r.name}: a transmission of ${airtimeMs.toFixed(1)} ms exceeds the ${r.maxDwellMs} ms dwell time`);
  }
}

/** Silence a transmitter owes after `airtimeMs` on air in a sub-band: airtime * (1/dc - 1). */
export function offTimeMs(airtimeMs: number, dutyCycle: number): number {
  return airtimeMs * (1 / dutyCycle - 1);
}

/**
 * The regulatory clock of one transmitter (one half-duplex radio): after each transmission
 * in a sub-band it stays silent there for airtime * (1/dc - 1), as LoRaWAN end devices do;
 * it never transmits twice at once, and no transmission exceeds the dwell time.
 */
export class DutyCycleTracker {
  readonly region: Region;
  /** Per sub-band name: when this transmitter may next transmit there. */
  private readonly availableAt = new Map<string, number>();
  /** End of the transmission in progress (half duplex: one at a time). */
  private busyUntil = -Infinity;
  /** Total time on air so far, ms. */
  airtimeMs = 0;

  constructor(r: Region) {
    this.region = r;
  }

  /** The earliest start at or after `nowMs` at which this transmitter may use the channel. */
  earliestStartMs(ch: Channel, nowMs: number): number {
    const band = subBandOf(this.region, ch);
    return Math.max(nowMs, this.busyUntil, this.availableAt.get(band.name) ?? -Infinity);
  }

  /** Records a transmission; throws RegulatoryError if it breaks the duty cycle, the dwell time or half duplex. Returns its end time. */
  transmit(ch: Channel, startMs: number, airtimeMs: number): number {
    checkDwell(this.region, airtimeMs);
    const band = subBandOf(this.region, ch);
    const allowed = this.earliestStartMs(ch, -Infinity);
    if (startMs < allowed) {
      const why = startMs < this.busyUntil ? 'while still transmitting' : `during its ${band.name} off-time (${band.dutyCycle * 100}% duty cycle)`;
      throw new RegulatoryError(`${this.region.name}: transmission at ${startMs.toFixed(1)} ms ${why}; allowed from ${allowed.toFixed(1)} ms`);
    }
    const end = startMs + airtimeMs;
    this.busyUntil = end;
    this.availableAt.set(band.name, end + offTimeMs(airtimeMs, band.dutyCycle));
    this.airtimeMs += airtimeMs;
    return end;
  }
}

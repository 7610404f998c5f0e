/**
 * The simulated LoRa channel: radios that transmit frames with their true time on air
 * (airtime.ts), under their region's duty cycle and dwell time (regions.ts), and receive what
 * the physics of the situation lets them:
 *
 * - half duplex: a radio hears nothing while it transmits, and transmits one frame at a time;
 * - a radio hears only the channels it listens on (a head node its one receive frequency, a
 *   gateway its 1 or 8 receive channels);
 * - two transmissions that overlap in time on the same frequency and spreading factor collide,
 *   and both are lost at every receiver (no capture effect);
 * - any reception may also be lost at random, with a configurable probability drawn from a
 *   seeded generator, so a run is reproducible.
 *
 * A plan's channel may also carry FSK (LoRaWAN's 50 kbps): its frames take FSK's time on air
 * and collide only with FSK frames on the same channel.
 *
 * A frame is delivered at the end of its transmission, when a real modem raises RX_DONE.
 *
 * Given the mesh's channel plan, the channel refuses (RegulatoryError) a transmission on any
 * channel outside it, as it refuses one over a duty-cycle budget or the dwell time; a plan's
 * channel may carry its own bandwidth and spreading factor (channel-plans.ts), and its frames
 * take their time on air at that modulation.
 */
import { FskModulation, LoRaModulation, Modulation, isFsk, modulation as fullModulation, timeOnAirMs } from './airtime';
import { Clock } from './clock';
import { inPlan } from './channel-plans';
import { Channel, ChannelPlan, DutyCycleTracker, Region, RegulatoryError, channelModulation, channelName } from './regions';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Transmission {
  id: number;
  sender: Radio;
  bytes: Buffer;
  channel: Channel;
  /** The spreading factor, 0 for FSK: frames collide only at the same one. */
  sf: number;
  startMs: number;
  endMs: number;
}

export interface Reception {
  bytes: Buffer;
  channel: Channel;
  modulation: Modulation | FskModulation;
  startMs: number;
  /** When the last symbol arrived (the modem's RX_DONE): the time a receiver reasons from. */
  endMs: number;
  /** Simulated signal quality, for the modem protocols (dBm, dB). */
  rssi: number;
  snr: number;
}

export type LossReason = 'collision' | 'halfDuplex' | 'random';

export interface ChannelStats {
  transmissions: number;
  airtimeMs: number;
  delivered: number;
  lost: Record<LossReason, number>;
}

export interface RadioChannelOptions {
  clock: Clock;
  region: Region;
  modulation: LoRaModulation;
  /** Probability that any one reception is lost (default 0). */
  loss?: number;
  /** The mesh's channel plan: a transmission on any other channel is refused (default: any channel). */
  plan?: ChannelPlan;
  /** Seed of the loss generator (default 1). */
  seed?: number;
}

export interface RadioOptions {
  name: string;
  /** Channels the radio receives on. */
  listen: readonly Channel[];
  onReceive?: (r: Reception) => void;
}

function sameChannel(a: Channel, b: Channel): boolean {
  return a.frequencyHz === b.frequencyHz && a.bandwidthKHz === b.bandwidthKHz;
}

function overlaps(a: Transmission, b: Transmission): boolean {
  return a.startMs < b.endMs && b.startMs < a.endMs;
}

/** One transceiver on the channel, with its own duty-cycle clock. */
export class Radio {
  readonly name: string;
  readonly dutyCycle: DutyCycleTracker;
  listen: readonly Channel[];
  onReceive: (r: Reception) => void;

  constructor(
    private readonly medium: RadioChannel,
    o: RadioOptions,
  ) {
    this.name = o.name;
    this.listen = o.listen;
    this.onReceive = o.onReceive ?? (() => undefined);
    this.dutyCycle = new DutyCycleTracker(medium.region);
  }

  /** Time on air of a frame at the modulation of a channel (default: the mesh's), ms. */
  airtimeMs(bytes: number, ch?: Channel): number {
    return this.medium.airtimeMs(bytes, ch);
  }

  /** The earliest start at or after `notBeforeMs` the region allows this radio on a channel. */
  earliestStartMs(ch: Channel, notBeforeMs: number): number {
    return this.dutyCycle.earliestStartMs(ch, notBeforeMs);
  }

  /**
   * Transmits a frame starting at `startMs` (now by default; later to schedule it). Throws
   * RegulatoryError when the duty cycle, the dwell time or half duplex forbid it.
   */
  transmit(bytes: Buffer, channel: Channel, startMs = this.medium.clock.now()): Transmission {
    return this.medium.send(this, bytes, channel, startMs);
  }

  hears(ch: Channel): boolean {
    return this.listen.some((l) => sameChannel(l, ch));
  }
}

export class RadioChannel {
  readonly clock: Clock;
  readonly region: Region;
  readonly modulation: Modulation;
  readonly loss: number;
  readonly plan: ChannelPlan | undefined;
  readonly stats: ChannelStats = { transmissions: 0, airtimeMs: 0, delivered: 0, lost: { collision: 0, halfDuplex: 0, random: 0 } };
  private readonly random: () => number;
  private readonly radios: Radio[] = [];
  /** Transmissions that may still overlap one in progress. */
  private active: Transmission[] = [];
  private nextId = 1;

  constructor(o: RadioChannelOptions) {
    if (!(o.loss === undefined || (o.loss >= 0 && o.loss < 1))) throw new RangeError(`loss ${o.loss}: expected a probability in [0, 1)`);
    this.clock = o.clock;
    this.region = o.region;
    this.modulation = fullModulation(o.modulation);
    this.loss = o.loss ?? 0;
    this.plan = o.plan;
    this.random = seededRandom(o.seed ?? 1);
  }

  attach(o: RadioOptions): Radio {
    const r = new Radio(this, o);
    this.radios.push(r);
    return r;
  }

  /** The modulation of a channel: FSK, or LoRa at its own bandwidth and spreading factor, where the plan gives them. */
  modulationOf(ch?: Channel): Modulation | FskModulation {
    if (!ch) return this.modulation;
    const m = channelModulation(this.modulation, ch);
    return isFsk(m) ? m : fullModulation(m);
  }

  airtimeMs(bytes: number, ch?: Channel): number {
    return timeOnAirMs(bytes, this.modulationOf(ch));
  }

  /** Called by Radio.transmit. */
  send(sender: Radio, bytes: Buffer, channel: Channel, startMs: number): Transmission {
    const now = this.clock.now();
    // A real-time clock's timers run late on a busy event loop: the plan, not the wakeup, is the truth.
    if (startMs < now - this.clock.lateToleranceMs - 1e-9) throw new RangeError(`${sender.name}: transmission at ${startMs.toFixed(1)} ms is in the past (now ${now.toFixed(1)} ms)`);
    if (this.plan && !inPlan(this.plan, channel)) throw new RegulatoryError(`${sender.name}: ${channelName(channel)} is not a channel of the mesh's plan`);
    const airtime = this.airtimeMs(bytes.length, channel);
    sender.dutyCycle.transmit(channel, startMs, airtime);
    const m = this.modulationOf(channel);
    const tx: Transmission = { id: this.nextId++, sender, bytes: Buffer.from(bytes), channel, sf: isFsk(m) ? 0 : m.sf, startMs, endMs: startMs + airtime };
    this.stats.transmissions++;
    this.stats.airtimeMs += airtime;
    this.active.push(tx);
    this.clock.at(tx.endMs, () => this.finish(tx));
    return tx;
  }

  /** The end of a transmission: who heard it. */
  private finish(tx: Transmission): void {
    const others = this.active.filter((o) => o !== tx && overlaps(o, tx));
    const collided = others.some((o) => sameChannel(o.channel, tx.channel) && o.sf === tx.sf);
    for (const r of this.radios) {
      if (r === tx.sender || !r.hears(tx.channel)) continue;
      if (collided) this.stats.lost.collision++;
      else if (others.some((o) => o.sender === r)) this.stats.lost.halfDuplex++;
      else if (this.loss > 0 && this.random() < this.loss) this.stats.lost.random++;
      else {
        this.stats.delivered++;
        r.onReceive({ bytes: tx.bytes, channel: tx.channel, modulation: this.modulationOf(tx.channel), startMs: tx.startMs, endMs: tx.endMs, rssi: -90, snr: 7.5 });
      }
    }
    // Keep what may still overlap a transmission that has not ended.
    const horizon = Math.min(...this.active.filter((o) => o.endMs > tx.endMs).map((o) => o.startMs), tx.endMs);
    this.active = this.active.filter((o) => o.endMs > horizon);
  }
}

/**
 * Named channel plans: which channels, at which data rates, a mesh broadcasts and replies on,
 * beyond the one-bandwidth plans of regions.ts (`--channels 1|8`). Each channel carries its
 * own spreading factor; a plan may spread the gateway's broadcast over several sub-bands, each
 * with its own duty-cycle budget. The MAC (mac.ts) schedules frames on them, the simulated
 * channel (channel.ts) refuses a transmission on any other channel or over a budget, and the
 * planner runs its schedule on them.
 *
 * - us915-500: the broadcast on US915's first 500 kHz downlink channel (923.3 MHz, DR13 =
 *   SF7/500), replies on the eight 125 kHz uplink channels of sub-band 2 (903.9-905.3 MHz,
 *   DR3 = SF7/125) and the 500 kHz uplink channel beside them (904.6 MHz, DR4 = SF8/500): the
 *   nine channels an 8-channel US915 gateway (SX1301/SX1302) receives. No duty cycle; every
 *   frame within the 400 ms dwell time.
 * - eu868-split: the broadcast over every EU868 sub-band a gateway may use, each at its own
 *   budget: g3 (869.4-869.65 MHz, 10%) at 250 kHz (SF7/250, the sub-band's whole width), the
 *   1% bands g (865-868 MHz) and g4 at 125 kHz, and the 0.1% bands g (863-865 MHz) and g2 at
 *   125 kHz; replies on the eight receive channels of a common EU868 gateway (868.1/868.3/868.5
 *   in g1, 867.1-867.9 in g 865-868 MHz, SF7/125), each node at 1% in each of the two
 *   sub-bands. g1 carries no broadcast: its three channels are the gateway's receive channels.
 * - eu868-wide: every sub-band the gateway may transmit in carries the broadcast at SF7/250
 *   (LoRaWAN RP002 EU863-870 DR6, half the airtime of SF7/125 for the same frame, so each
 *   budget carries twice the frames): g3 (869.525 MHz, 10%; ERC/REC 70-03 Annex 1 lets the
 *   whole 869.4-869.65 MHz band be one channel), g1 (868.3 MHz, DR6's usual channel, 1%),
 *   g 865-868 MHz (865.5 MHz, 1%), g4 (869.85 MHz, 1%), g 863-865 MHz (864.5 MHz, 0.1%) and
 *   g2 (868.95 MHz, 0.1%): 13.2% of the gateway's time in all, against 12.2% at mostly 125 kHz.
 *   Replies on the eight 125 kHz receive channels of eu868-split plus the gateway's one
 *   single-data-rate channel (the SX1301/SX1302 "LoRa service channel") at SF7/250 in g3, so
 *   each node spends three budgets by turns (g1, g 865-868 MHz, g3) instead of two. Broadcast
 *   and replies never overlap in time (a layer's replies need its whole broadcast, the next
 *   layer's broadcast needs every reply), so the gateway's radio stays half duplex.
 * - eu868-fsk: eu868-wide with g3 at FSK: the broadcast at 50 kbps FSK (LoRaWAN RP002
 *   EU863-870 DR7, 25 kHz deviation, about 125 kHz wide) on 869.525 MHz in g3 (10%), 4.7x less
 *   airtime a frame than SF7/250, and at SF7/250 in the other five sub-bands as eu868-wide;
 *   replies at FSK on the same 869.525 MHz, each node under its own 10% in g3 (a 150-byte
 *   result is 27 ms on air). FSK buys speed with range: LoRa at SF7 decodes below the noise
 *   floor and FSK does not (docs/RADIO.md). An SX1301/SX1302 gateway has one FSK demodulator,
 *   which this plan's one reply channel needs; the SX1262 switches modems in standby.
 */
import { MeshLlmError } from '../llm/errors';
import { LORAWAN_FSK_BITRATE_BPS, LoRaModulation } from './airtime';
import { DEFAULT_MAX_FRAME_BYTES } from './frame';
import { Channel, ChannelPlan, Region, channelModulation, channelName, dataRate, fskDataRate, maxFrameBytesFor, region as regionByName, subBandOf } from './regions';

const MHz = 1e6;

export interface NamedChannelPlan extends ChannelPlan {
  name: string;
  region: Region;
  broadcasts: Channel[];
  description: string;
}

const khz125 = (mhz: number, sf: 7 | 8 = 7): Channel => ({ frequencyHz: Math.round(mhz * MHz), bandwidthKHz: 125, sf });

function us915(): NamedChannelPlan {
  const broadcasts: Channel[] = [{ frequencyHz: 923.3 * MHz, bandwidthKHz: 500, sf: 7 }];
  const uplink: Channel[] = [...[903.9, 904.1, 904.3, 904.5, 904.7, 904.9, 905.1, 905.3].map((f) => khz125(f)), { frequencyHz: 904.6 * MHz, bandwidthKHz: 500, sf: 8 }];
  return { name: 'us915-500', region: regionByName('US915'), broadcasts, broadcast: broadcasts[0], uplink, description: 'broadcast 923.3 MHz SF7/500 (DR13); replies 8 x 125 kHz SF7 (903.9-905.3 MHz) + 904.6 MHz SF8/500' };
}

function eu868(): NamedChannelPlan {
  const broadcasts: Channel[] = [
    { frequencyHz: 869.525 * MHz, bandwidthKHz: 250, sf: 7 }, // g3, 10%
    khz125(865.5), // g 865-868 MHz, 1%
    khz125(869.85), // g4, 1%
    khz125(864.5), // g 863-865 MHz, 0.1%
    khz125(868.95), // g2, 0.1%
  ];
  const uplink = [868.1, 868.3, 868.5, 867.1, 867.3, 867.5, 867.7, 867.9].map((f) => khz125(f));
  return { name: 'eu868-split', region: regionByName('EU868'), broadcasts, broadcast: broadcasts[0], uplink, description: 'broadcast over g3 SF7/250 (10%), g 865-868 and g4 SF7/125 (1%), g 863-865 and g2 SF7/125 (0.1%); replies 8 x 125 kHz SF7 (g1 and g 865-868)' };
}

function eu868Wide(): NamedChannelPlan {
  const khz250 = (mhz: number): Channel => ({ frequencyHz: Math.round(mhz * MHz), bandwidthKHz: 250, sf: 7 });
  // g3 10%; then the 1% sub-bands g1, g 865-868 MHz, g4; then the 0.1% ones g 863-865 MHz, g2
  const broadcasts = [869.525, 868.3, 865.5, 869.85, 864.5, 868.95].map(khz250);
  const uplink = [...[868.1, 868.3, 868.5, 867.1, 867.3, 867.5, 867.7, 867.9].map((f) => khz125(f)), khz250(869.525)];
  return { name: 'eu868-wide', region: regionByName('EU868'), broadcasts, broadcast: broadcasts[0], uplink, description: 'broadcast SF7/250 in all six sub-bands (g3 10%; g1, g 865-868, g4 1%; g 863-865, g2 0.1%); replies 8 x 125 kHz SF7 (g1 and g 865-868) + 869.525 MHz SF7/250 (g3)' };
}

function eu868Fsk(): NamedChannelPlan {
  const khz250 = (mhz: number): Channel => ({ frequencyHz: Math.round(mhz * MHz), bandwidthKHz: 250, sf: 7 });
  const fsk: Channel = { frequencyHz: 869.525 * MHz, bandwidthKHz: 125, fskBitrateBps: LORAWAN_FSK_BITRATE_BPS };
  // g3 at FSK (10%); the 1% sub-bands g1, g 865-868 MHz, g4 and the 0.1% ones g 863-865 MHz, g2 at SF7/250
  const broadcasts = [fsk, ...[868.3, 865.5, 869.85, 864.5, 868.95].map(khz250)];
  return { name: 'eu868-fsk', region: regionByName('EU868'), broadcasts, broadcast: broadcasts[0], uplink: [fsk], description: 'broadcast FSK 50 kbps in g3 (869.525 MHz, 10%; DR7) and SF7/250 in the other five sub-bands; replies FSK 50 kbps on 869.525 MHz (g3)' };
}

const PLANS: Record<string, () => NamedChannelPlan> = { 'us915-500': us915, 'eu868-split': eu868, 'eu868-wide': eu868Wide, 'eu868-fsk': eu868Fsk };
export const CHANNEL_PLAN_NAMES = Object.keys(PLANS);

/** A named plan, checked against its region (every channel in a sub-band, at a data rate the region defines). */
export function namedChannelPlan(name: string): NamedChannelPlan {
  const make = PLANS[name];
  if (!make) throw new MeshLlmError(`channel plan ${JSON.stringify(name)}: expected one of ${CHANNEL_PLAN_NAMES.join(', ')}`);
  const p = make();
  for (const ch of [...p.broadcasts, ...p.uplink]) {
    subBandOf(p.region, ch);
    if (ch.fskBitrateBps !== undefined) fskDataRate(p.region, ch.fskBitrateBps);
    else dataRate(p.region, ch.sf!, ch.bandwidthKHz);
  }
  return p;
}

/** The largest frame every channel of a plan carries (the data rates' limits within the dwell time, at most the mesh's default). */
export function planFrameBytes(p: ChannelPlan, r: Region, base: LoRaModulation): number {
  return Math.min(DEFAULT_MAX_FRAME_BYTES, ...[...(p.broadcasts ?? [p.broadcast]), ...p.uplink].map((ch) => maxFrameBytesFor(r, channelModulation(base, ch))));
}

/** The plan's FSK channels (none but on eu868-fsk). */
export function fskChannels(p: ChannelPlan): Channel[] {
  return [...(p.broadcasts ?? [p.broadcast]), ...p.uplink].filter((ch) => ch.fskBitrateBps !== undefined);
}

/**
 * Why `who` (the firmware's radio node, the serial modem protocol, the packet-forwarder link),
 * which speaks LoRa only, cannot run on this plan; null where the plan is LoRa throughout.
 */
export function loRaOnlyRefusal(p: ChannelPlan, who: string): string | null {
  const fsk = fskChannels(p);
  if (fsk.length === 0) return null;
  const name = 'name' in p ? `channel plan ${(p as NamedChannelPlan).name}` : 'this channel plan';
  return `${name} sends FSK frames (${channelName(fsk[0])}); ${who} speaks LoRa only: use eu868-wide, or TypeScript radio nodes on the simulated channel`;
}

/** Throws loRaOnlyRefusal's reason, if any. */
export function requireLoRaOnly(p: ChannelPlan, who: string): void {
  const why = loRaOnlyRefusal(p, who);
  if (why) throw new MeshLlmError(why);
}

/** Is this channel one of the plan's (frequency, bandwidth, spreading factor or FSK bit rate)? */
export function inPlan(p: ChannelPlan, ch: Channel): boolean {
  const same = (a: Channel) => a.frequencyHz === ch.frequencyHz && a.bandwidthKHz === ch.bandwidthKHz && (a.sf ?? null) === (ch.sf ?? null) && (a.fskBitrateBps ?? null) === (ch.fskBitrateBps ?? null);
  return [...(p.broadcasts ?? [p.broadcast]), ...p.uplink].some(same);
}

/**
 * The named channel plans (lib/radio/channel-plans.ts): US915's 500 kHz broadcast with nine
 * reply channels, EU868's broadcast split over its sub-bands. The simulated channel refuses a
 * transmission outside the plan or over a sub-band's budget; each channel's frames take the
 * airtime of that channel's own data rate; the MAC spreads the broadcast over the plan's
 * channels within each budget and its layers stay within 1.05x of the airtime bound.
 */
import { geometry } from '../lib/llm/config';
import { timeOnAirMs } from '../lib/radio/airtime';
import { RadioChannel, Reception } from '../lib/radio/channel';
import { CHANNEL_PLAN_NAMES, inPlan, namedChannelPlan } from '../lib/radio/channel-plans';
import { VirtualClock } from '../lib/radio/clock';
import { broadcastBody, macConfig, replyMakespanBoundMs } from '../lib/radio/mac';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { RegulatoryError, subBandOf } from '../lib/radio/regions';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { nodeJoinPlan } from '../lib/radio/sim-socket';

const MHz = 1e6;
const SF7 = { sf: 7 as const, bandwidthKHz: 125 as const };

function world(planName: string) {
  const p = namedChannelPlan(planName);
  const clock = new VirtualClock();
  const channel = new RadioChannel({ clock, region: p.region, modulation: SF7, plan: p });
  return { p, clock, channel };
}

test('the plans are the regions\' channels at data rates the regions define', () => {
  expect(CHANNEL_PLAN_NAMES).toEqual(['us915-500', 'eu868-split', 'eu868-wide', 'eu868-fsk']);
  const us = namedChannelPlan('us915-500');
  expect(us.broadcasts.map((c) => [c.frequencyHz / MHz, c.bandwidthKHz, c.sf])).toEqual([[923.3, 500, 7]]);
  expect(us.uplink.filter((c) => c.bandwidthKHz === 125).map((c) => c.frequencyHz / MHz)).toEqual([903.9, 904.1, 904.3, 904.5, 904.7, 904.9, 905.1, 905.3]);
  expect(us.uplink.filter((c) => c.bandwidthKHz === 500).map((c) => [c.frequencyHz / MHz, c.sf])).toEqual([[904.6, 8]]);
  const eu = namedChannelPlan('eu868-split');
  expect(eu.broadcasts.map((c) => `${subBandOf(eu.region, c).name} ${c.bandwidthKHz}`)).toEqual(['g3 250', 'g (865-868 MHz) 125', 'g4 125', 'g (863-865 MHz) 125', 'g2 125']);
  expect(eu.uplink.map((c) => subBandOf(eu.region, c).name)).toEqual([...Array(3).fill('g1'), ...Array(5).fill('g (865-868 MHz)')]);
  const wide = namedChannelPlan('eu868-wide');
  expect(wide.broadcasts.map((c) => `${subBandOf(wide.region, c).name} ${c.bandwidthKHz} SF${c.sf}`)).toEqual(['g3 250 SF7', 'g1 250 SF7', 'g (865-868 MHz) 250 SF7', 'g4 250 SF7', 'g (863-865 MHz) 250 SF7', 'g2 250 SF7']);
  expect(wide.uplink.map((c) => `${subBandOf(wide.region, c).name} ${c.bandwidthKHz}`)).toEqual([...Array(3).fill('g1 125'), ...Array(5).fill('g (865-868 MHz) 125'), 'g3 250']);
  const fsk = namedChannelPlan('eu868-fsk');
  const rate = (c: { sf?: number; fskBitrateBps?: number }) => (c.fskBitrateBps ? `FSK ${c.fskBitrateBps / 1000} kbps` : `SF${c.sf}`);
  expect(fsk.broadcasts.map((c) => `${subBandOf(fsk.region, c).name} ${c.bandwidthKHz} ${rate(c)}`)).toEqual(['g3 125 FSK 50 kbps', 'g1 250 SF7', 'g (865-868 MHz) 250 SF7', 'g4 250 SF7', 'g (863-865 MHz) 250 SF7', 'g2 250 SF7']);
  expect(fsk.uplink.map((c) => `${c.frequencyHz / MHz} ${subBandOf(fsk.region, c).name} ${rate(c)}`)).toEqual(['869.525 g3 FSK 50 kbps']);
  expect(() => namedChannelPlan('as923')).toThrow(/expected one of us915-500, eu868-split, eu868-wide, eu868-fsk/);
});

test('eu868-fsk: an FSK frame takes FSK\'s airtime (RP002 DR7, 50 kbps) under g3\'s 10%, and a channel at another bit rate or modem is refused', async () => {
  const { p, clock, channel } = world('eu868-fsk');
  const heard: Reception[] = [];
  channel.attach({ name: 'node', listen: p.broadcasts, onReceive: (r) => heard.push(r) });
  const gw = channel.attach({ name: 'gateway', listen: p.uplink });
  const g3 = p.broadcast;
  // 5 preamble + 3 sync word + 1 length + 230 payload + 2 CRC bytes at 50 kbps: 241 x 8 / 50 = 38.56 ms
  const a = gw.transmit(Buffer.alloc(230), g3, 0);
  expect(a.endMs).toBeCloseTo(38.56, 9);
  expect(() => gw.transmit(Buffer.alloc(230), g3, a.endMs + 100)).toThrow(/g3 off-time \(10% duty cycle\)/);
  expect(() => gw.transmit(Buffer.alloc(230), g3, a.endMs * 10 - 1e-3)).toThrow(RegulatoryError);
  expect(() => gw.transmit(Buffer.alloc(230), g3, a.endMs * 10 + 1e-6)).not.toThrow();
  expect(() => gw.transmit(Buffer.alloc(50), { ...g3, fskBitrateBps: 100000 }, 1000)).toThrow('gateway: 869.525 MHz 125 kHz FSK 100 kbps is not a channel of the mesh\'s plan');
  expect(() => gw.transmit(Buffer.alloc(50), { frequencyHz: g3.frequencyHz, bandwidthKHz: 125, sf: 7 }, 1000)).toThrow('gateway: 869.525 MHz 125 kHz SF7 is not a channel of the mesh\'s plan');
  while (clock.pending) await new Promise((r) => setImmediate(r));
  expect(heard.map((r) => r.modulation)).toEqual([{ kind: 'fsk', bitrateBps: 50000 }, { kind: 'fsk', bitrateBps: 50000 }]);
});

test('eu868-fsk is refused, naming who speaks LoRa only, where a firmware radio node or a real radio link would have to send FSK', () => {
  const g = geometry(MODEL_PRESETS.stories260k);
  expect(() => new SimulatedRadioMesh({ geometry: g, nodes: 2, nativeAddresses: new Set([1, 2]), quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: 'eu868-fsk', loss: 0 })).toThrow(
    "channel plan eu868-fsk sends FSK frames (869.525 MHz 125 kHz FSK 50 kbps); the firmware's radio node (--native) speaks LoRa only: use eu868-wide, or TypeScript radio nodes on the simulated channel",
  );
  const mesh = new SimulatedRadioMesh({ geometry: g, nodes: 2, quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: 'eu868-fsk', loss: 0, nodesOnChannel: false });
  // the join plan an ESP32 would be provisioned with (mesh-llm provision): refused, not silently LoRa
  expect(nodeJoinPlan(mesh.layout, g, 1, [0, 1, 2, 3])).toMatch(/sends FSK frames \(869.525 MHz 125 kHz FSK 50 kbps\); the firmware's radio node speaks LoRa only/);
});

test('the simulated channel refuses a transmission outside the plan, naming the channel', () => {
  const { p, channel } = world('us915-500');
  const gw = channel.attach({ name: 'gateway', listen: p.uplink });
  const elsewhere = { frequencyHz: 902.3 * MHz, bandwidthKHz: 125 as const, sf: 7 as const };
  expect(inPlan(p, elsewhere)).toBe(false);
  expect(() => gw.transmit(Buffer.alloc(50), elsewhere, 0)).toThrow(RegulatoryError);
  expect(() => gw.transmit(Buffer.alloc(50), elsewhere, 0)).toThrow('gateway: 902.300 MHz 125 kHz SF7 is not a channel of the mesh\'s plan');
  // the plan's broadcast channel at another spreading factor is not the plan's channel either
  expect(() => gw.transmit(Buffer.alloc(50), { ...p.broadcast, sf: 9 }, 0)).toThrow(/923.300 MHz 500 kHz SF9 is not a channel/);
  expect(() => gw.transmit(Buffer.alloc(50), p.broadcast, 0)).not.toThrow();
});

test('a frame on a plan channel takes that channel\'s airtime, and is heard there at that modulation', async () => {
  const { p, clock, channel } = world('us915-500');
  const heard: Reception[] = [];
  const node = channel.attach({ name: 'node', listen: p.broadcasts, onReceive: (r) => heard.push(r) });
  const gw = channel.attach({ name: 'gateway', listen: p.uplink });
  const tx = gw.transmit(Buffer.alloc(230), p.broadcast, 0);
  expect(tx.endMs).toBeCloseTo(timeOnAirMs(230, { sf: 7, bandwidthKHz: 500 }), 9);
  expect(node.airtimeMs(100, p.uplink[8])).toBeCloseTo(timeOnAirMs(100, { sf: 8, bandwidthKHz: 500 }), 9);
  while (clock.pending) await new Promise((r) => setImmediate(r));
  expect(heard.map((r) => ('sf' in r.modulation ? [r.modulation.sf, r.modulation.bandwidthKHz] : ['fsk']))).toEqual([[7, 500]]);
});

test('over a sub-band\'s budget is refused: EU868 g3 allows 10%, g2 0.1%', () => {
  const { p, channel } = world('eu868-split');
  const gw = channel.attach({ name: 'gateway', listen: p.uplink });
  const [g3, , , , g2] = p.broadcasts;
  const a = gw.transmit(Buffer.alloc(200), g3, 0);
  const air = a.endMs;
  expect(() => gw.transmit(Buffer.alloc(200), g3, air + 1)).toThrow(/g3 off-time \(10% duty cycle\)/);
  expect(() => gw.transmit(Buffer.alloc(200), g3, air * 10 + 1e-6)).not.toThrow();
  // another sub-band has a budget of its own
  const b = gw.transmit(Buffer.alloc(200), g2, air * 12);
  expect(() => gw.transmit(Buffer.alloc(200), g2, b.endMs + 10)).toThrow(/g2 off-time \(0.1% duty cycle\)/);
});

test('equal reply frames: the bound is the least makespan of whole frames over the channels', () => {
  // 16 frames, eight channels of 290 ms and one of 127 ms: two on every slow channel (580 ms), or
  // four on the fast one and 12 on eight slow ones: still 580 ms
  const slow = () => 290;
  const fast = () => 127;
  expect(replyMakespanBoundMs(Array(16).fill(168), [...Array(8).fill(slow), fast])).toBe(580);
  expect(replyMakespanBoundMs(Array(8).fill(168), [...Array(8).fill(slow), fast])).toBe(290);
  expect(replyMakespanBoundMs(Array(2).fill(168), [slow, fast])).toBe(254); // both on the fast channel
  expect(replyMakespanBoundMs(Array(3).fill(168), [slow, fast])).toBe(290); // two fast, one slow
});

test('eu868-wide: a 250 kHz broadcast outside the plan is refused, and each sub-band keeps its own budget', () => {
  const { p, channel } = world('eu868-wide');
  const gw = channel.attach({ name: 'gateway', listen: p.uplink });
  // DR6 exists in EU868, but 867.5 MHz at 250 kHz is not one of the plan's channels
  expect(() => gw.transmit(Buffer.alloc(200), { frequencyHz: 867.5 * MHz, bandwidthKHz: 250, sf: 7 }, 0)).toThrow(/867.500 MHz 250 kHz SF7 is not a channel of the mesh's plan/);
  const [g3, g1, g865, g4] = p.broadcasts;
  const a = gw.transmit(Buffer.alloc(230), g1, 0);
  expect(a.endMs).toBeCloseTo(timeOnAirMs(230, { sf: 7, bandwidthKHz: 250 }), 9);
  expect(() => gw.transmit(Buffer.alloc(230), g1, a.endMs * 50)).toThrow(/g1 off-time \(1% duty cycle\)/);
  // the other sub-bands are free meanwhile
  const b = gw.transmit(Buffer.alloc(230), g865, a.endMs + 1);
  const c = gw.transmit(Buffer.alloc(230), g4, b.endMs + 1);
  const d = gw.transmit(Buffer.alloc(230), g3, c.endMs + 1);
  expect(() => gw.transmit(Buffer.alloc(230), g3, d.endMs + 1)).toThrow(/g3 off-time \(10% duty cycle\)/);
  expect(() => gw.transmit(Buffer.alloc(230), g1, a.endMs * 100 + 1e-6)).not.toThrow();
});

describe.each(['us915-500', 'eu868-split', 'eu868-wide', 'eu868-fsk'])('the MAC on %s (TinyLlama geometry, 16 nodes x 2 heads, int8)', (planName) => {
  test('layers go through with frames only on the plan\'s channels; the broadcast uses every budget it needs', async () => {
    const g = geometry(MODEL_PRESETS.tinyllama);
    const p = namedChannelPlan(planName);
    const mesh = new SimulatedRadioMesh({ geometry: g, nodes: 16, quant: 'int8', region: p.region.name, sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: planName, loss: 0 });
    const broadcastOn = new Map<string, number>();
    mesh.channel.attach({ name: 'listener', listen: p.broadcasts, onReceive: (r) => broadcastOn.set(subBandOf(p.region, r.channel).name, (broadcastOn.get(subBandOf(p.region, r.channel).name) ?? 0) + 1) });
    const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
    const addresses = mesh.infos.map((i) => i.address);
    const xb = new Float32Array(g.dim).map((_, i) => Math.sin(i));
    // two tokens: the first starts with every duty-cycle clock fresh (a warm-up), the second is the steady state
    let seq = 0;
    for (let pos = 0; pos < 2; pos++) for (let layer = 0; layer < g.nLayers; layer++) await mac.exchange(broadcastBody(mesh.layout.encodings.broadcast, { session: 1, seq: ++seq, pos, layer }, xb), addresses);
    expect(mesh.errors).toEqual([]);
    const report = mesh.report(1);
    expect(report.ratio).toBeGreaterThanOrEqual(1 - 1e-9);
    expect(report.ratio).toBeLessThanOrEqual(1.05);
    if (planName === 'us915-500') {
      expect([...broadcastOn.keys()]).toEqual(['902-928 MHz']);
    } else if (planName === 'eu868-fsk') {
      // g3 at FSK carries most of the broadcast, the other five sub-bands the rest; every reply is FSK in g3
      expect([...broadcastOn.keys()].sort()).toEqual(['g (863-865 MHz)', 'g (865-868 MHz)', 'g1', 'g2', 'g3', 'g4']);
      expect(broadcastOn.get('g3')).toBeGreaterThan([...broadcastOn.values()].reduce((a, b) => a + b, 0) / 2);
      expect(mesh.layout.slotSets.length).toBe(1);
      expect(new Set([...mesh.layout.slots.values()].map((s) => s.channel.fskBitrateBps))).toEqual(new Set([50000]));
    } else if (planName === 'eu868-wide') {
      // every one of the six sub-bands carries broadcast frames
      expect([...broadcastOn.keys()].sort()).toEqual(['g (863-865 MHz)', 'g (865-868 MHz)', 'g1', 'g2', 'g3', 'g4']);
      // each node replies in g1, g 865-868 MHz and g3 by turns
      expect(mesh.layout.slotSets.map((s) => subBandOf(p.region, s.get(1)!.channel).name)).toEqual(['g1', 'g (865-868 MHz)', 'g3']);
    } else {
      // g3's 10% alone does not carry a token's broadcasts: the 1% and 0.1% sub-bands take frames too
      expect(broadcastOn.get('g3')).toBeGreaterThan(0);
      expect(broadcastOn.size).toBeGreaterThan(1);
      // each node replies in g1 and in g 865-868 MHz by turns, so it spends both budgets
      expect(mesh.layout.slotSets.map((s) => subBandOf(p.region, s.get(1)!.channel).name)).toEqual(['g1', 'g (865-868 MHz)']);
    }
  }, 120_000);
});

test('macConfig refuses a plan of another region', () => {
  expect(() => macConfig({ region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 8, channelPlan: 'us915-500' })).toThrow('channel plan us915-500 is a US915 plan, not EU868');
});

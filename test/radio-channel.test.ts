/**
 * The simulated LoRa channel: true airtime, half duplex, collisions, the gateway's receive
 * channels, seeded loss, duty-cycle and dwell-time enforcement, and both clocks.
 */
import { timeOnAirMs } from '../lib/radio/airtime';
import { Radio, RadioChannel, Reception } from '../lib/radio/channel';
import { RealTimeClock, VirtualClock } from '../lib/radio/clock';
import { Channel, EU868, RegulatoryError, US915, channelPlan } from '../lib/radio/regions';

const SF7 = { sf: 7 as const, bandwidthKHz: 125 as const };
const plan = channelPlan(EU868, 8, 125);
const [CH1, CH2] = plan.uplink;

function world(o: { loss?: number; seed?: number; region?: typeof EU868 } = {}) {
  const clock = new VirtualClock();
  const channel = new RadioChannel({ clock, region: o.region ?? EU868, modulation: SF7, loss: o.loss, seed: o.seed });
  const heard = new Map<string, Reception[]>();
  const radio = (name: string, listen: Channel[]): Radio => {
    heard.set(name, []);
    return channel.attach({ name, listen, onReceive: (r) => heard.get(name)?.push(r) });
  };
  /** Runs the virtual clock until nothing is left to do. */
  const settle = () =>
    new Promise<void>((resolve) => {
      const check = () => (clock.pending === 0 ? resolve() : setImmediate(check));
      check();
    });
  return { clock, channel, heard, radio, settle };
}

test('a frame arrives when its last symbol does: Semtech time on air after it started', async () => {
  const w = world();
  const a = w.radio('a', [CH1]);
  w.radio('b', [CH1]);
  a.transmit(Buffer.alloc(222, 7), CH1, 100);
  await w.settle();
  const [r] = w.heard.get('b') as Reception[];
  expect(r.startMs).toBe(100);
  expect(r.endMs).toBeCloseTo(100 + 348.4, 1); // the published SF7/BW125 figure for 222 bytes
  expect(r.bytes).toEqual(Buffer.alloc(222, 7));
  expect(w.clock.now()).toBeCloseTo(r.endMs, 6);
  expect(w.heard.get('a')).toEqual([]); // nobody hears itself
});

test('overlapping transmissions on one channel and spreading factor collide: both are lost', async () => {
  const w = world();
  const a = w.radio('a', [CH1]);
  const b = w.radio('b', [CH1, CH2]);
  w.radio('gw', [CH1, CH2]);
  a.transmit(Buffer.alloc(50, 1), CH1, 0);
  b.transmit(Buffer.alloc(50, 2), CH1, timeOnAirMs(50, SF7) - 1); // overlaps a's last millisecond
  await w.settle();
  expect(w.heard.get('gw')).toEqual([]);
  expect(w.channel.stats.lost.collision).toBeGreaterThanOrEqual(2);

  // Another channel, or strictly after the first ended: no collision.
  const t = w.clock.now() + 10;
  a.transmit(Buffer.alloc(50, 3), CH1, t + 10000);
  b.transmit(Buffer.alloc(50, 4), CH2, t + 10000);
  await w.settle();
  expect((w.heard.get('gw') as Reception[]).map((r) => r.bytes[0]).sort()).toEqual([3, 4]);
});

test('half duplex: a radio hears nothing while it transmits', async () => {
  const w = world();
  const a = w.radio('a', [CH1]);
  const b = w.radio('b', [CH1]);
  a.transmit(Buffer.alloc(100), CH1, 0);
  b.transmit(Buffer.alloc(10), CH2, 20); // b transmits elsewhere during a's frame
  await w.settle();
  expect(w.heard.get('b')).toEqual([]);
  expect(w.channel.stats.lost.halfDuplex).toBe(1);
});

test('a gateway with one receive channel does not hear the others; with eight it does', async () => {
  const w = world();
  const one = w.radio('one', channelPlan(EU868, 1, 125).uplink);
  const eight = w.radio('eight', plan.uplink);
  const node = w.radio('node', []);
  plan.uplink.forEach((ch, i) => node.transmit(Buffer.from([i]), ch, i * 100000));
  await w.settle();
  expect(w.heard.get('one')?.map((r) => r.bytes[0])).toEqual([0]);
  expect(w.heard.get('eight')?.map((r) => r.bytes[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(one.listen).toHaveLength(1);
  expect(eight.listen).toHaveLength(8);
});

test('duty cycle: after a frame in a 1% sub-band the radio stays silent 99x its airtime, and the channel refuses it earlier', async () => {
  const w = world();
  const node = w.radio('node', []);
  const airtime = timeOnAirMs(200, SF7);
  node.transmit(Buffer.alloc(200), CH1, 0);
  expect(() => node.transmit(Buffer.alloc(200), CH2, airtime + 1)).toThrow(RegulatoryError); // same sub-band g1
  expect(() => node.transmit(Buffer.alloc(200), CH1, airtime * 100 - 1)).toThrow(/off-time/);
  expect(node.earliestStartMs(CH1, 0)).toBeCloseTo(airtime * 100, 6);
  // g3 (the broadcast channel, 10%) has its own budget; the (865-868 MHz) sub-band too.
  expect(() => node.transmit(Buffer.alloc(200), plan.broadcast, airtime + 1)).not.toThrow();
  expect(() => node.transmit(Buffer.alloc(200), plan.uplink[3], airtime + 1)).toThrow(/while still transmitting/); // half duplex
  expect(() => node.transmit(Buffer.alloc(200), plan.uplink[3], 2 * airtime + 2)).not.toThrow();
  expect(() => node.transmit(Buffer.alloc(200), CH1, airtime * 100)).not.toThrow();
  await w.settle();
  expect(node.dutyCycle.airtimeMs).toBeCloseTo(4 * airtime, 6);
});

test('US915: no duty cycle, but no transmission longer than the 400 ms dwell time', () => {
  const clock = new VirtualClock();
  const SF8 = { sf: 8 as const, bandwidthKHz: 125 as const };
  const channel = new RadioChannel({ clock, region: US915, modulation: SF8 });
  const r = channel.attach({ name: 'r', listen: [] });
  const ch = channelPlan(US915, 1, 125).uplink[0];
  expect(timeOnAirMs(200, SF8)).toBeGreaterThan(400);
  expect(() => r.transmit(Buffer.alloc(200), ch, 0)).toThrow(/dwell time/);
  expect(timeOnAirMs(120, SF8)).toBeLessThan(400);
  const end = r.transmit(Buffer.alloc(120), ch, 0).endMs;
  expect(() => r.transmit(Buffer.alloc(120), ch, end)).not.toThrow(); // back to back: no duty cycle
});

test('random loss is seeded: the same seed loses the same receptions, at about the configured rate', async () => {
  const run = async (seed: number) => {
    const w = world({ loss: 0.3, seed });
    const tx = w.radio('tx', []);
    w.radio('rx', [CH1]);
    for (let i = 0; i < 400; i++) tx.transmit(Buffer.from([i & 0xff, i >> 8]), i % 2 ? CH1 : CH1, i * 1e5);
    await w.settle();
    return (w.heard.get('rx') as Reception[]).map((r) => r.bytes.readUInt16LE(0));
  };
  const a = await run(7);
  expect(await run(7)).toEqual(a);
  expect(await run(8)).not.toEqual(a);
  expect(a.length).toBeGreaterThan(400 * 0.6);
  expect(a.length).toBeLessThan(400 * 0.8);
});

test('a held virtual clock does not advance until released', async () => {
  const clock = new VirtualClock();
  const fired: number[] = [];
  clock.at(1000, () => fired.push(clock.now()));
  const release = clock.hold();
  await new Promise((r) => setTimeout(r, 20));
  expect(fired).toEqual([]);
  expect(clock.now()).toBe(0);
  release();
  await new Promise((r) => setTimeout(r, 20));
  expect(fired).toEqual([1000]);
});

test('real-time pacing: at 10x a 348 ms frame takes about 35 ms of wall time', async () => {
  const clock = new RealTimeClock(10);
  const channel = new RadioChannel({ clock, region: EU868, modulation: SF7 });
  const a = channel.attach({ name: 'a', listen: [] });
  const t0 = performance.now();
  const heard = new Promise<number>((resolve) => channel.attach({ name: 'b', listen: [CH1], onReceive: () => resolve(performance.now() - t0) }));
  a.transmit(Buffer.alloc(222), CH1);
  const wall = await heard;
  expect(wall).toBeGreaterThanOrEqual(33);
  expect(wall).toBeLessThan(300);
});

test('a real-time clock that pauses while held (a simulated channel with native nodes): simulated time stands still while a hold lasts, then goes on from there at its pace', async () => {
  const clock = new RealTimeClock(1000, 0, true);
  const release = clock.hold();
  const held = clock.now();
  await new Promise((r) => setTimeout(r, 50)); // 50 wall ms: 50 000 simulated ms if time ran on
  expect(clock.now()).toBe(held);
  release();
  await new Promise((r) => setTimeout(r, 20));
  expect(clock.now()).toBeGreaterThan(held);
  expect(clock.now()).toBeLessThan(held + 45000);
  // without the pause, time runs on under a hold (events wait for the release, time does not)
  const plain = new RealTimeClock(1000);
  const free = plain.hold();
  const t0 = plain.now();
  await new Promise((r) => setTimeout(r, 50));
  expect(plain.now()).toBeGreaterThanOrEqual(t0 + 45000);
  free();
});

test('real-time pacing keeps simulated order: a late wakeup runs due events earliest first, each at its own instant', async () => {
  const clock = new RealTimeClock(10);
  const order: [string, number][] = [];
  clock.at(100, () => order.push(['a', clock.now()]));
  const until = performance.now() + 30; // the event loop is busy for 300 simulated ms
  while (performance.now() < until);
  clock.at(50, () => order.push(['b', clock.now()]));
  await new Promise((r) => setTimeout(r, 50));
  expect(order).toEqual([
    ['b', 50],
    ['a', 100],
  ]);
  expect(clock.now()).toBeGreaterThan(300);
});

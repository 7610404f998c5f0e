/**
 * Medium access on the simulated channel: reply slots that never collide, layers within 5% of
 * the analytic airtime bound, NACK-driven selective retransmission under loss, duty cycles
 * kept by every transmitter, and a clear failure when a node never answers.
 */
import { Geometry, geometry } from '../lib/llm/config';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { HeadComputer } from '../lib/radio/node';
import { broadcastBody, macConfig, meshLayout, resultBody } from '../lib/radio/mac';
import { BodyType, checkBody, decodeBody } from '../lib/link/body';
import { timeOnAirMs } from '../lib/radio/airtime';
import { subBandOf } from '../lib/radio/regions';
import { SimulatedRadioMesh, SimulatedRadioMeshOptions } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';

const TINYLLAMA = geometry(MODEL_PRESETS.tinyllama);
const STORIES = geometry(MODEL_PRESETS.stories260k);

/** A node's stand-in computation: its output depends on the node, the position, the layer and the broadcast. */
function standIn(g: Geometry) {
  return (address: number, heads: number[]): HeadComputer => {
    const out = new Float32Array(heads.length * g.headSize);
    return {
      forward(xb, pos, layer) {
        for (let i = 0; i < out.length; i++) out[i] = xb[(i * 7 + address) % xb.length] + address * 0.25 + pos * 0.01 + layer;
        return out;
      },
    };
  };
}

function simulate(o: Partial<SimulatedRadioMeshOptions> & { geometry: Geometry; nodes: number }) {
  const mesh = new SimulatedRadioMesh({ quant: 'f32', region: 'US915', sf: 7, bandwidthKHz: 125, channels: 8, loss: 0, seed: 3, standIn: standIn(o.geometry), ...o });
  const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
  const addresses = mesh.infos.map((i) => i.address);
  // Sequence numbers run on from anywhere: start just below a message-number wrap.
  let seq = 0x3fff_fffe;
  const run = async (positions: number, layers = o.geometry.nLayers) => {
    const out: Map<number, Buffer>[] = [];
    for (let pos = 0; pos < positions; pos++) {
      for (let layer = 0; layer < layers; layer++) {
        const xb = new Float32Array(o.geometry.dim).map((_, i) => Math.sin(i + pos * 31 + layer * 7));
        out.push(await mac.exchange(broadcastBody(mesh.layout.encodings.broadcast, { session: 9, seq: seq++, pos, layer }, xb), addresses));
      }
    }
    return out;
  };
  return { mesh, mac, addresses, run };
}

test('the slot plan: node k on receive channel k mod C, slots on a channel one after another, none overlapping', () => {
  const config = macConfig({ region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 8 });
  const layout = meshLayout(config, TINYLLAMA, 'int8', Array.from({ length: 16 }, (_, i) => ({ address: i + 1, heads: 2 })));
  const slots = [...layout.slots.values()];
  expect(new Set(slots.map((s) => s.channel.frequencyHz)).size).toBe(8);
  for (const a of slots) {
    expect(a.offsetMs).toBeGreaterThanOrEqual(config.computeMs);
    expect(a.offsetMs + a.lengthMs).toBeLessThanOrEqual(layout.windowMs + 1e-9);
    for (const b of slots) {
      if (a === b || a.channel.frequencyHz !== b.channel.frequencyHz) continue;
      expect(a.offsetMs + a.lengthMs <= b.offsetMs || b.offsetMs + b.lengthMs <= a.offsetMs).toBe(true);
    }
  }
  // One 184-byte result frame per node (a 168-byte body: 2 heads of 64, int8), two slots per channel.
  expect(layout.resultFrames.get(1)).toEqual([184]);
  expect(layout.broadcastBytes).toBe(2328);
  expect(layout.broadcastFrames).toEqual([...Array(10).fill(228), 224]);
  expect(layout.windowMs).toBeCloseTo(config.computeMs + 2 * (timeOnAirMs(184, config.modulation) + config.guardMs), 6);
});

test('TinyLlama, 16 nodes x 2 heads, one token on 8 channels: no collision, every result exact, within 1.05x of the airtime bound', async () => {
  const s = simulate({ geometry: TINYLLAMA, nodes: 16 });
  const sent = new Map(s.mesh.nodes.map((n) => [n.address, [] as Buffer[]]));
  for (const n of s.mesh.nodes) n.onResult = (b) => sent.get(n.address)?.push(b);
  const results = await s.run(1);
  expect(results).toHaveLength(TINYLLAMA.nLayers);
  const expected = standIn(TINYLLAMA);
  results.forEach((byNode, layer) => {
    const xb = new Float32Array(TINYLLAMA.dim).map((_, i) => Math.sin(i + layer * 7));
    for (const info of s.mesh.infos) {
      const got = byNode.get(info.address) as Buffer;
      expect(got.equals(sent.get(info.address)?.[layer] as Buffer)).toBe(true); // the body exactly as the node sent it
      expect(checkBody(got)).toMatchObject({ type: BodyType.Result, sender: info.address, session: 9, seq: 0x3fff_fffe + layer, pos: 0, layer });
      expect(decodeBody(got).values).toEqual(expected(info.address, info.heads).forward(xb, 0, layer));
    }
  });
  expect(s.mesh.channel.stats.lost).toEqual({ collision: 0, halfDuplex: expect.any(Number), random: 0 });
  expect(s.mesh.channel.stats.lost.collision).toBe(0);
  const r = s.mesh.report();
  expect(r.perToken[0].rounds).toBe(TINYLLAMA.nLayers); // one round per layer: nothing was resent
  expect(r.ratio).toBeGreaterThanOrEqual(1);
  expect(r.ratio).toBeLessThanOrEqual(1.05);
  expect(s.mesh.errors).toEqual([]);
});

test('with 20% of receptions lost, NACKs and selective resends deliver exactly what a lossless channel does', async () => {
  const clean = simulate({ geometry: STORIES, nodes: 8 });
  const lossy = simulate({ geometry: STORIES, nodes: 8, loss: 0.2, seed: 11 });
  const expected = await clean.run(3);
  const got = await lossy.run(3);
  expect(got).toEqual(expected); // the same result bodies, byte for byte
  expect(lossy.mesh.channel.stats.lost.random).toBeGreaterThan(20);
  expect(lossy.mac.counters.nacksReceived).toBeGreaterThan(0); // nodes asked for broadcast fragments
  expect(lossy.mac.counters.nacksSent).toBeGreaterThan(0); // the gateway asked for results
  expect(lossy.mac.counters.retransmittedFragments).toBeGreaterThan(0);
  const air = lossy.mesh.ledger.total();
  expect(air.resent).toBeGreaterThan(0);
  expect(air.nack).toBeGreaterThan(0);
  // Selective: a resent round carries far fewer broadcast frames than a full broadcast per round.
  const rounds = lossy.mac.counters.rounds - 3 * STORIES.nLayers;
  expect(lossy.mac.counters.retransmittedFragments).toBeLessThan(rounds * clean.mesh.layout.broadcastFrames.length + 1);
  expect(lossy.mesh.errors).toEqual([]);
  expect(lossy.mesh.report().ratio).toBeGreaterThan(clean.mesh.report().ratio);
});

test('EU868 with loss: every transmitter keeps its duty cycle, and the gateway paces its broadcast to its 10% in g3', async () => {
  const s = simulate({ geometry: STORIES, nodes: 4, region: 'EU868', channels: 1, loss: 0.1, seed: 5 });
  await s.run(2);
  expect(s.mesh.errors).toEqual([]); // a RegulatoryError inside the simulation would land here
  const config = s.mesh.config;
  expect(subBandOf(config.region, config.plan.broadcast).dutyCycle).toBe(0.1);
  const broadcastMs = s.mesh.layout.broadcastFrames.map((b) => timeOnAirMs(b, config.modulation)).reduce((a, b) => a + b, 0);
  // Two positions of 5 layers: each layer's broadcast costs the gateway 10x its airtime.
  expect(s.mesh.clock.now()).toBeGreaterThan(2 * STORIES.nLayers * (broadcastMs / 0.1) * 0.9);
  for (const n of s.mesh.nodes) expect(n.counters.results).toBe(2 * STORIES.nLayers);
});

test('a node that hears nothing fails its layer after the round limit, named', async () => {
  const s = simulate({ geometry: STORIES, nodes: 3 });
  // Node 2 listens on no channel: it never hears a broadcast.
  s.mesh.nodeRadios[1].listen = [];
  await expect(s.run(1, 1)).rejects.toThrow(/radio node\(s\) 2 did not deliver layer 0 at position 0 in 32 rounds/);
});

test('a message number that comes round again (a new gateway runner starting its sequence numbers anywhere) is a new message on both sides', async () => {
  const s = simulate({ geometry: STORIES, nodes: 2 });
  const xb = (k: number) => new Float32Array(STORIES.dim).map((_, i) => Math.cos(i * k));
  const layout = s.mesh.layout.encodings.broadcast;
  const first = await s.mac.exchange(broadcastBody(layout, { session: 1, seq: 0x0001_0005, pos: 0, layer: 0 }, xb(1)), s.addresses);
  await s.mac.exchange(broadcastBody(layout, { session: 1, seq: 0x0001_0006, pos: 0, layer: 1 }, xb(2)), s.addresses);
  // Another session whose sequence number has the first broadcast's low 16 bits.
  const again = await s.mac.exchange(broadcastBody(layout, { session: 2, seq: 0x0007_0005, pos: 0, layer: 0 }, xb(3)), s.addresses);
  for (const a of s.addresses) {
    expect(checkBody(again.get(a) as Buffer)).toMatchObject({ session: 2, seq: 0x0007_0005, sender: a });
    expect(decodeBody(again.get(a) as Buffer).values).toEqual(standIn(STORIES)(a, s.mesh.infos[a - 1].heads).forward(xb(3), 0, 0));
    expect((again.get(a) as Buffer).equals(first.get(a) as Buffer)).toBe(false);
  }
  expect(s.mesh.report().perToken[0].rounds).toBe(3); // one round each: no fragment was taken for a duplicate
});

test('the gateway refuses to broadcast a body that is not a broadcast of the layout\'s size, naming the reason', async () => {
  const s = simulate({ geometry: STORIES, nodes: 2 });
  const f32 = s.mesh.layout.encodings.broadcast;
  await expect(s.mac.exchange(Buffer.from('nonsense'), s.addresses)).rejects.toThrow(/the body to broadcast is malformed: body is 8 bytes/);
  await expect(s.mac.exchange(broadcastBody(f32, { session: 1, seq: 1, pos: 0, layer: 0 }, new Float32Array(32)), s.addresses)).rejects.toThrow(/the broadcast is 152 bytes \(32 f32 values\); the radio's layout plans 280/);
  const result = resultBody(f32, 1, { session: 1, seq: 1, pos: 0, layer: 0 }, new Float32Array(STORIES.dim));
  await expect(s.mac.exchange(result, s.addresses)).rejects.toThrow(/the body to broadcast has type 2, not broadcast \(1\)/);
  // Still ready for a good one.
  const ok = await s.mac.exchange(broadcastBody(f32, { session: 1, seq: 2, pos: 0, layer: 0 }, new Float32Array(STORIES.dim)), s.addresses);
  expect([...ok.keys()]).toEqual(s.addresses);
});

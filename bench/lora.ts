/**
 * `npm run bench:lora`: the seed's TinyLlama mesh on the simulated radio. TinyLlama geometry
 * (dim 2048, 22 layers, 32 heads, 4 kv heads), 16 nodes x 2 heads, int8 bodies, SF7/BW125,
 * 1 and 8 gateway receive channels, in US915 and EU868. The heads' math is skipped (each node
 * answers with zeros of its result's length): what is measured is the radio traffic of
 * real-size frames under the MAC, its slots, guard times and the regions' duty cycles.
 *
 * Per case: simulated seconds per token against the analytic airtime bound for the same
 * frames (target at most 1.05x), the planner's schedule, and the seed's estimate (13-15
 * minutes a token, 5-7 with optimisations). Table, then one JSON line.
 *
 * The channel-plan cases (lib/radio/channel-plans.ts) run the regions' full plans: US915 with
 * the 500 kHz broadcast and nine reply channels (target at most 30 s a token), EU868 with the
 * broadcast split over its sub-bands (target at most 4 minutes), each with the int8 and int4
 * transports; every case carries the transport's measured top-1 agreement with float32 (the
 * transport alone, float32 weights: lib/radio/fidelity-table.json, npm run bench:fidelity),
 * whose floor is 99%, and the agreement of the case's weights and transport together.
 * eu868-wide puts the broadcast at SF7/250 in all six EU868 sub-bands and the replies in three;
 * int7h (int7 codes of each group's Walsh-Hadamard transform) has int7's bytes at int8's
 * top-1 (99.77% alone, 99.30% with int8 weights). eu868-fsk is eu868-wide with g3 at FSK
 * 50 kbps (LoRaWAN's DR7) for the broadcast and every reply.
 * Heads' math is skipped, so the weight format does not change the traffic.
 */
import { geometry } from '../lib/llm/config';
import { broadcastBody } from '../lib/radio/mac';
import { plan } from '../lib/radio/planner';
import { measuredFidelity } from '../lib/radio/fidelity';
import { Encoding } from '../lib/llm/quant';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { RadioRunReport, SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';

/** Tokens simulated per case; the first is a warm-up (every duty-cycle clock starts fresh) and is not averaged. */
const TOKENS = 4;
const NODES = 16;
const SEED_ESTIMATE_S = { plain: [13 * 60, 15 * 60], optimised: [5 * 60, 7 * 60] };

interface Case {
  region: 'US915' | 'EU868';
  channels: 1 | 8;
  /** A named channel plan (then `channels` is ignored). */
  plan?: 'us915-500' | 'eu868-split' | 'eu868-wide' | 'eu868-fsk';
  transport: Encoding;
}

async function run(c: Case): Promise<{ report: RadioRunReport; plannerWallS: number; wallMs: number; channels: number }> {
  const g = geometry(MODEL_PRESETS.tinyllama);
  const mesh = new SimulatedRadioMesh({ geometry: g, nodes: NODES, quant: c.transport, region: c.region, sf: 7, bandwidthKHz: 125, channels: c.channels, channelPlan: c.plan, loss: 0 });
  const mac = mesh.createMac(new SimulatedChannelLink(mesh.attachGatewayRadio()));
  const addresses = mesh.infos.map((i) => i.address);
  const xb = new Float32Array(g.dim).map((_, i) => Math.sin(i));
  const t0 = performance.now();
  let seq = 0;
  for (let pos = 0; pos < TOKENS; pos++) {
    for (let layer = 0; layer < g.nLayers; layer++) await mac.exchange(broadcastBody(mesh.layout.encodings.broadcast, { session: 1, seq: ++seq, pos, layer }, xb), addresses);
    process.stderr.write(`  ${c.plan ?? `${c.region} ${c.channels} ch`} ${c.transport}: token ${pos + 1}/${TOKENS} at ${(mesh.clock.now() / 1000).toFixed(0)} s simulated\n`);
  }
  if (mesh.errors.length) throw mesh.errors[0];
  const p = plan({ model: MODEL_PRESETS.tinyllama, modelName: 'tinyllama', nodes: NODES, quant: 'int8', transport: c.transport, region: c.region, sf: 7, bandwidthKHz: 125, channels: c.channels, channelPlan: c.plan });
  return { report: mesh.report(1), plannerWallS: p.wallPerTokenSeconds, wallMs: performance.now() - t0, channels: mesh.config.plan.uplink.length + (mesh.config.plan.broadcasts ?? [mesh.config.plan.broadcast]).length };
}

function minutes(s: number): string {
  return `${s.toFixed(1)} s (${(s / 60).toFixed(1)} min)`;
}

async function main(): Promise<void> {
  const cases: Case[] = [
    { region: 'US915', channels: 1, transport: 'int8' },
    { region: 'US915', channels: 8, transport: 'int8' },
    { region: 'EU868', channels: 1, transport: 'int8' },
    { region: 'EU868', channels: 8, transport: 'int8' },
    { region: 'US915', channels: 8, plan: 'us915-500', transport: 'int8' },
    { region: 'US915', channels: 8, plan: 'us915-500', transport: 'int7' },
    { region: 'US915', channels: 8, plan: 'us915-500', transport: 'int7h' },
    { region: 'US915', channels: 8, plan: 'us915-500', transport: 'int4' },
    { region: 'EU868', channels: 8, plan: 'eu868-split', transport: 'int8' },
    { region: 'EU868', channels: 8, plan: 'eu868-split', transport: 'int7' },
    { region: 'EU868', channels: 8, plan: 'eu868-split', transport: 'int4' },
    { region: 'EU868', channels: 8, plan: 'eu868-wide', transport: 'int8' },
    { region: 'EU868', channels: 8, plan: 'eu868-wide', transport: 'int7' },
    { region: 'EU868', channels: 8, plan: 'eu868-wide', transport: 'int7h' },
    { region: 'EU868', channels: 8, plan: 'eu868-fsk', transport: 'int8' },
    { region: 'EU868', channels: 8, plan: 'eu868-fsk', transport: 'int7h' },
    { region: 'EU868', channels: 8, plan: 'eu868-fsk', transport: 'int4' },
  ];
  process.stderr.write(`TinyLlama geometry, ${NODES} nodes x 2 heads, int8, SF7/BW125, ${TOKENS} tokens per case (the first a warm-up)\n`);
  const rows = [];
  for (const c of cases) {
    const r = await run(c);
    rows.push({ ...c, ...r, channels: c.plan ? r.channels : c.channels });
  }
  const seed = `${SEED_ESTIMATE_S.plain[0] / 60}-${SEED_ESTIMATE_S.plain[1] / 60} min (${SEED_ESTIMATE_S.optimised[0] / 60}-${SEED_ESTIMATE_S.optimised[1] / 60} optimised)`;
  console.log('| region | plan | transport (top-1; with int8 weights) | simulated per token | bound per token | ratio | planner schedule | frames | vs seed estimate | wall time |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const s = r.report.simulatedSecondsPerToken;
    const vsSeed = `${(s / SEED_ESTIMATE_S.plain[1]).toFixed(2)}-${(s / SEED_ESTIMATE_S.plain[0]).toFixed(2)}x of ${seed.split(' (')[0]}`;
    console.log(
      `| ${r.region} | ${r.plan ?? `${r.channels} x 125 kHz`} | ${r.transport} (${(100 * top1(r.transport)).toFixed(2)}%; ${(100 * measuredFidelity('int8', r.transport).top1Agreement).toFixed(2)}%) | ${minutes(s)} | ${minutes(r.report.boundSecondsPerToken)} | ${r.report.ratio.toFixed(3)} | ${minutes(r.plannerWallS)} | ${r.report.channel.transmissions / TOKENS} per token | ${vsSeed} | ${(r.wallMs / 1000).toFixed(1)} s |`,
    );
  }
  console.log(`\nseed's estimate: ${seed} per token`);
  const json = rows.map((r) => ({
    region: r.region,
    plan: r.plan ?? `${r.channels}x125`,
    weights: 'int8',
    transport: r.transport,
    top1Agreement: round(top1(r.transport), 4),
    weightsAndTransportTop1Agreement: round(measuredFidelity('int8', r.transport).top1Agreement, 4),
    channels: r.channels,
    simulatedSecondsPerToken: round(r.report.simulatedSecondsPerToken),
    boundSecondsPerToken: round(r.report.boundSecondsPerToken),
    ratio: round(r.report.ratio, 4),
  }));
  console.log(JSON.stringify({ cases: json }));
}

/** The transport's measured top-1 agreement with float32 (the transport alone: float32 weights, stories260K). */
function top1(transport: Encoding): number {
  return measuredFidelity('f32', transport).top1Agreement;
}

function round(x: number, digits = 2): number {
  return Number(x.toFixed(digits));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});

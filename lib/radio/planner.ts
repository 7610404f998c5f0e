/**
 * The feasibility planner: before anything is bought, does a model fit a mesh of ESP32-S3 head
 * nodes, and how long does a token take over LoRa? Memory comes from the model's geometry and
 * the head partition; radio time from the real body and frame encoders (lib/link/body.ts,
 * lib/radio/frame.ts), the Semtech time-on-air formula and the region's duty-cycle clock, run
 * over a few tokens of the gateway's schedule. Compute time on the nodes and the gateway is not counted: only the radio.
 *
 * Per layer the gateway broadcasts the attention input [dim] to every node, then every node
 * sends its head outputs [heads x headSize] back; the gateway schedules each reply on the
 * receive channel where it can start soonest, and each transmitter keeps its region's duty
 * cycle (airtime x (1/dc - 1) of silence after each frame in that sub-band).
 */
import { Geometry, ModelConfig, geometry } from '../llm/config';
import { MeshLlmError } from '../llm/errors';
import { kvHeadsFor, partitionHeads, weightGroupSize } from '../llm/head';
import { BandwidthKHz, LoRaModulation, SpreadingFactor, timeOnAirMs } from './airtime';
import { BROADCAST_ADDRESS, FrameSender, GATEWAY_ADDRESS, MAX_FRAGMENTS, fragmentCapacity } from './frame';
import { DEFAULT_COMPUTE_MS, broadcastBody, layerBoundMs, macConfig, meshBodyBytes, meshEncodings, resultBody } from './mac';
import { Channel, ChannelPlan, DutyCycleTracker, Region, RegionName, broadcastChannels, channelModulation, channelPlan, dataRate, meshFrameBytes, region as regionByName, subBandOf } from './regions';
import { Encoding, FORMAT_SPECS, TRANSPORT_ENCODINGS, WEIGHT_FORMATS as FORMATS, WeightFormat, storageBytes } from '../llm/quant';
import { NamedChannelPlan, namedChannelPlan, planFrameBytes } from './channel-plans';
import { FIDELITY_TABLE, MeasuredFidelity, measuredFidelity } from './fidelity';
import { NodePower, PowerOptions, nodePower } from './power';

const KiB = 1024;
const MiB = 1024 * KiB;

/** An ESP32-S3 module variant: N<flash MB>R<PSRAM MB>. */
export interface ModuleVariant {
  name: string;
  flashBytes: number;
  psramBytes: number;
  sramBytes: number;
}

/** ESP32-S3-WROOM-1 variants; every ESP32-S3 has 512 KB of internal SRAM. */
export const ESP32_S3_MODULES: readonly ModuleVariant[] = [
  { name: 'N8R2', flashBytes: 8 * MiB, psramBytes: 2 * MiB, sramBytes: 512 * KiB },
  { name: 'N8R8', flashBytes: 8 * MiB, psramBytes: 8 * MiB, sramBytes: 512 * KiB },
  { name: 'N16R8', flashBytes: 16 * MiB, psramBytes: 8 * MiB, sramBytes: 512 * KiB },
];

/**
 * What the firmware keeps for itself (assumptions, stated in docs/RADIO.md): flash for the
 * bootloader, partition table, a 1.5 MB application and NVS; PSRAM for the heap the radio
 * and network stacks use; SRAM for the caches, ESP-IDF, FreeRTOS stacks and the LoRa driver.
 */
export const FIRMWARE_RESERVE = { flashBytes: 2 * MiB, psramBytes: 256 * KiB, sramBytes: 160 * KiB };

/** Weight storage (lib/llm/quant.ts FORMAT_SPECS): bits per value, values per group, float32 parameters per group. */
export const WEIGHT_FORMATS = FORMAT_SPECS;
export type { WeightFormat };

export interface PlanOptions {
  /** The model's header, and the name to show for it. */
  model: ModelConfig;
  modelName: string;
  nodes: number;
  quant: WeightFormat;
  /** How vectors cross the radio (default int8 groups, as the engine's int8 transport). */
  transport?: Encoding;
  region: RegionName;
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  channels: 1 | 8;
  /** A named channel plan (channel-plans.ts) instead of `channels` at one bandwidth; it sets the region. */
  channelPlan?: string;
  /** The fidelity floor the fastest combination must meet: top-1 agreement with float32 (default 0.99). */
  minTop1?: number;
  /** The node's power figures (power.ts). */
  power?: PowerOptions;
  /** Time a node computes its heads per layer, ms (default 20, the MAC's compute window). */
  computeMs?: number;
  /** Context length the KV cache holds (default 512). */
  context?: number;
  /** Coding rate 4/x (default 5). */
  codingRate?: 5 | 6 | 7 | 8;
  /** Tokens of schedule to run; the last one is reported (default 3: past the start-up transient). */
  simulatedTokens?: number;
}

export interface NodeBudget {
  node: number;
  heads: number[];
  kvHeads: number[];
  /** W_Q rows of its heads and W_K, W_V rows of its kv heads, every layer (flash). */
  weightBytes: number;
  /** Keys and values of its kv heads at the context length, float32, every layer (PSRAM). */
  kvCacheBytes: number;
  /** Working vectors, message bodies and frame buffers (SRAM). */
  bufferBytes: number;
}

export interface VariantVerdict {
  module: string;
  /** Free bytes after the largest node's needs and the firmware reserve (negative: short). */
  flashHeadroomBytes: number;
  psramHeadroomBytes: number;
  sramHeadroomBytes: number;
  fits: boolean;
  /** Why not, one line per resource that is short. */
  shortOf: string[];
}

export interface Plan {
  model: { name: string; dim: number; hiddenDim: number; nLayers: number; nHeads: number; nKvHeads: number; headSize: number; vocabSize: number; seqLen: number };
  nodes: number;
  headsPerNode: number[];
  quant: WeightFormat;
  transport: Encoding;
  context: number;
  radio: { region: RegionName; dataRate: number; sf: SpreadingFactor; bandwidthKHz: BandwidthKHz; codingRate: number; channels: number; maxFrameBytes: number; broadcastSubBand: string; broadcastDutyCycle: number; uplinkSubBands: string[]; uplinkDutyCycle: number; maxDwellMs: number | null };
  /** Frames of one layer each way: the gateway's broadcast, and all nodes' results together. */
  framesPerLayer: { broadcast: number; results: number; resultsPerNode: number[] };
  bytesPerLayer: { broadcast: number; results: number };
  /** Time on air of one frame of each kind, ms (the largest frame when they differ). */
  frameAirtimeMs: { broadcast: number; result: number };
  /** Total time on air of every frame of one token, s. */
  airtimePerTokenSeconds: number;
  /** Shortest token the channels allow without duty cycles: broadcast, the nodes' compute, then replies spread over the channels, s. */
  channelBoundPerTokenSeconds: number;
  /** The busiest transmitter's airtime per token divided by its duty cycle (1 where none applies), s: no schedule beats it. */
  transmitterBoundPerTokenSeconds: number;
  /** The schedule's steady-state token time under the duty cycles, s. */
  wallPerTokenSeconds: number;
  perNode: NodeBudget[];
  largestNode: Omit<NodeBudget, 'node' | 'heads' | 'kvHeads'>;
  variants: VariantVerdict[];
  /** Verdict per module variant. */
  fits: Record<string, boolean>;
  /** The channel plan, when a named one is used. */
  channelPlan: { name: string; description: string; broadcastChannels: number; uplinkChannels: number } | null;
  /** The airtime bound of the mesh's MAC for this schedule (mac.ts layerBoundMs), s per token. */
  boundPerTokenSeconds: number;
  /** Every weight format and transport the planner offers, with the measured fidelity (lib/radio/fidelity-table.json). */
  combinations: Combination[];
  /** The fastest combination whose top-1 agreement meets the floor (null: none does). */
  fastest: { weights: WeightFormat; transport: Encoding; minTop1: number } | null;
  /** The fidelity table's provenance: the model it was measured on. */
  fidelityMeasuredOn: string;
  /** The largest node's energy per token, battery life and solar needs under this plan's transport. */
  power: NodePower;
}

export interface Combination {
  weights: WeightFormat;
  transport: Encoding;
  /** The largest node's weights, bytes; a head's share of the model's W_Q/W_K/W_V (kv heads shared by kvMul query heads), bytes. */
  weightBytesPerNode: number;
  weightBytesPerHead: number;
  bytesPerLayer: number;
  framesPerLayer: number;
  /** The schedule's token time, s (null where the frames do not fit a message). */
  secondsPerToken: number | null;
  fidelity: Pick<MeasuredFidelity, 'top1Agreement' | 'meanKl' | 'perplexity'>;
  meetsFloor: boolean;
  /** The smallest ESP32-S3 module the largest node fits (null: none). */
  fitsModule: string | null;
  /** The fastest that meets the floor and fits a module. */
  fastest: boolean;
}

/** Bytes of a weight row of n values in a storage format (groups of weightGroupSize): packed values plus float32 group parameters. */
export function weightStorageBytes(n: number, f: WeightFormat): number {
  return f === 'f32' ? 4 * n : storageBytes(n, f, weightGroupSize(f, n));
}

/** A head's share of the model's W_Q, W_K and W_V in a format: its W_Q rows, and 1/kvMul of a kv head's W_K and W_V rows, every layer. */
export function headShareBytes(g: Geometry, f: WeightFormat): number {
  return g.nLayers * (g.headSize + (2 * g.headSize) / g.kvMul) * weightStorageBytes(g.dim, f);
}

/** What one head node holds. Weight rows are quantised row by row, so sizes add per row. */
export function nodeBudget(g: Geometry, node: number, heads: number[], quant: WeightFormat, context: number, transport: Encoding): NodeBudget {
  const kvHeads = kvHeadsFor(heads, g.kvMul);
  const rowBytes = weightStorageBytes(g.dim, quant);
  const rowsPerLayer = (heads.length + 2 * kvHeads.length) * g.headSize;
  const kvCacheBytes = g.nLayers * kvHeads.length * context * g.headSize * 2 * 4;
  const f32 = 4;
  const working = f32 * (g.dim /* xb */ + heads.length * g.headSize /* q */ + 2 * kvHeads.length * g.headSize /* k, v */ + context /* scores */ + heads.length * g.headSize /* out */);
  const sizes = meshBodyBytes(g, transport);
  const bodies = sizes.broadcast + sizes.result(heads.length);
  const frameBuffers = 2 * 255;
  return { node, heads, kvHeads, weightBytes: g.nLayers * rowsPerLayer * rowBytes, kvCacheBytes, bufferBytes: working + bodies + frameBuffers };
}

function verdict(m: ModuleVariant, need: { weightBytes: number; kvCacheBytes: number; bufferBytes: number }): VariantVerdict {
  const flash = m.flashBytes - FIRMWARE_RESERVE.flashBytes - need.weightBytes;
  const psram = m.psramBytes - FIRMWARE_RESERVE.psramBytes - need.kvCacheBytes;
  const sram = m.sramBytes - FIRMWARE_RESERVE.sramBytes - need.bufferBytes;
  const shortOf: string[] = [];
  if (flash < 0) shortOf.push(`flash: weights need ${mib(need.weightBytes)}, ${mib(m.flashBytes - FIRMWARE_RESERVE.flashBytes)} free`);
  if (psram < 0) shortOf.push(`PSRAM: KV cache needs ${mib(need.kvCacheBytes)}, ${mib(m.psramBytes - FIRMWARE_RESERVE.psramBytes)} free`);
  if (sram < 0) shortOf.push(`SRAM: buffers need ${kib(need.bufferBytes)}, ${kib(m.sramBytes - FIRMWARE_RESERVE.sramBytes)} free`);
  return { module: m.name, flashHeadroomBytes: flash, psramHeadroomBytes: psram, sramHeadroomBytes: sram, fits: shortOf.length === 0, shortOf };
}

/** Frame sizes of one layer, made by the body and frame encoders: the broadcast, and each node's result. */
function layerFrames(g: Geometry, groups: number[][], transport: Encoding, maxFrameBytes: number): { broadcast: number[]; results: number[][] } {
  const key = Buffer.alloc(16);
  const meshId = 0;
  const gateway = new FrameSender({ key, meshId, source: GATEWAY_ADDRESS, maxFrameBytes });
  const header = { session: 1, seq: 0, pos: 0, layer: 0 };
  const enc = meshEncodings(g, transport);
  const xb = broadcastBody(enc.broadcast, header, new Float32Array(g.dim));
  const broadcast = gateway.frames(gateway.body(BROADCAST_ADDRESS, xb)).map((f) => f.length);
  const results = groups.map((heads, i) => {
    const node = new FrameSender({ key, meshId, source: i + 1, maxFrameBytes });
    const out = resultBody(enc.result, i + 1, header, new Float32Array(heads.length * g.headSize));
    return node.frames(node.body(GATEWAY_ADDRESS, out)).map((f) => f.length);
  });
  return { broadcast, results };
}

/** A message carries at most 255 fragments: slow data rates with small frames cannot carry a large vector. */
function checkFragmentLimit(g: Geometry, groups: number[][], transport: Encoding, maxFrameBytes: number, rate: string): void {
  const capacity = fragmentCapacity(maxFrameBytes);
  const sizes = meshBodyBytes(g, transport);
  const mostHeads = Math.max(...groups.map((h) => h.length));
  const largest = [
    { what: `a broadcast of ${g.dim} values`, bytes: sizes.broadcast },
    { what: `a result of ${mostHeads} heads`, bytes: sizes.result(mostHeads) },
  ];
  for (const { what, bytes } of largest) {
    const fragments = Math.ceil(bytes / capacity);
    if (fragments > MAX_FRAGMENTS) {
      throw new MeshLlmError(`${what} needs ${fragments} frames of ${maxFrameBytes} bytes at ${rate}; a message has at most ${MAX_FRAGMENTS}: choose a faster data rate`);
    }
  }
}

interface Schedule {
  r: Region;
  plan: ChannelPlan;
  /** Time on air of a frame on a channel (at that channel's modulation), ms. */
  toa: (ch: Channel, bytes: number) => number;
  /** When each channel's current transmission ends, by frequency. */
  channelFree: Map<number, number>;
  /** A node's compute time per layer, between the broadcast it hears and its reply, ms. */
  computeMs: number;
}

/** Sends one frame from a transmitter on whichever of the channels lets it end soonest; returns its end, ms. */
function sendFrame(s: Schedule, tx: DutyCycleTracker, channels: Channel[], bytes: number, notBeforeMs: number): number {
  let best: { ch: Channel; start: number; ms: number } | undefined;
  for (const ch of channels) {
    const start = Math.max(tx.earliestStartMs(ch, notBeforeMs), s.channelFree.get(ch.frequencyHz) ?? -Infinity);
    const ms = s.toa(ch, bytes);
    if (!best || start + ms < best.start + best.ms) best = { ch, start, ms };
  }
  const end = tx.transmit(best!.ch, best!.start, best!.ms);
  s.channelFree.set(best!.ch.frequencyHz, end);
  return end;
}

/** Runs the gateway's schedule for some tokens (frames as bytes); returns each token's end time, ms. */
function simulate(s: Schedule, layers: number, broadcastFrames: number[], resultFrames: number[][], tokens: number): number[] {
  const gateway = new DutyCycleTracker(s.r);
  const nodes = resultFrames.map(() => new DutyCycleTracker(s.r));
  const broadcasts = broadcastChannels(s.plan);
  const ends: number[] = [];
  let t = 0;
  for (let token = 0; token < tokens; token++) {
    for (let layer = 0; layer < layers; layer++) {
      for (const bytes of broadcastFrames) t = sendFrame(s, gateway, broadcasts, bytes, t);
      const heard = t + s.computeMs; // no node answers before it has computed on the broadcast
      const rounds = Math.max(...resultFrames.map((f) => f.length));
      for (let k = 0; k < rounds; k++) {
        resultFrames.forEach((frames, n) => {
          if (k < frames.length) t = Math.max(t, sendFrame(s, nodes[n], s.plan.uplink, frames[k], heard));
        });
      }
    }
    ends.push(t);
  }
  return ends;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

interface RadioSetup {
  r: Region;
  m: LoRaModulation;
  channels: ChannelPlan;
  named: NamedChannelPlan | null;
  maxFrameBytes: number;
  toa: (ch: Channel, bytes: number) => number;
  rate: string;
}

/** One transport's traffic on the radio: frames, airtime, the schedule's token time and the MAC's bound. */
interface Traffic {
  frames: { broadcast: number[]; results: number[][] };
  broadcastMs: number[];
  resultMs: number[][];
  wallMs: number;
  boundMs: number;
}

function traffic(g: Geometry, groups: number[][], transport: Encoding, radio: RadioSetup, o: PlanOptions): Traffic {
  checkFragmentLimit(g, groups, transport, radio.maxFrameBytes, radio.rate);
  const frames = layerFrames(g, groups, transport, radio.maxFrameBytes);
  const fastest = (chs: Channel[], bytes: number) => Math.min(...chs.map((ch) => radio.toa(ch, bytes)));
  const broadcastMs = frames.broadcast.map((b) => fastest(broadcastChannels(radio.channels), b));
  const resultMs = frames.results.map((f) => f.map((b) => fastest(radio.channels.uplink, b)));
  const tokens = o.simulatedTokens ?? 3;
  const computeMs = o.computeMs ?? DEFAULT_COMPUTE_MS;
  const ends = simulate({ r: radio.r, plan: radio.channels, toa: radio.toa, channelFree: new Map(), computeMs }, g.nLayers, frames.broadcast, frames.results, tokens);
  const wallMs = ends[tokens - 1] - (tokens > 1 ? ends[tokens - 2] : 0);
  const config = macConfig({ region: radio.r, sf: radio.m.sf, bandwidthKHz: radio.m.bandwidthKHz, channels: radio.channels.uplink.length, codingRate: radio.m.codingRate, channelPlan: radio.named ?? undefined, computeMs });
  const boundMs = g.nLayers * layerBoundMs({ ...config, plan: radio.channels }, frames.broadcast, frames.results);
  return { frames, broadcastMs, resultMs, wallMs, boundMs };
}

export function plan(o: PlanOptions): Plan {
  const g = geometry(o.model);
  const context = o.context ?? 512;
  const transport = o.transport ?? 'int8';
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > g.nHeads) {
    throw new MeshLlmError(`--nodes ${o.nodes}: expected a node count from 1 to the model's ${g.nHeads} heads`);
  }
  if (!Number.isInteger(context) || context < 1 || context > g.seqLen) {
    throw new MeshLlmError(`--context ${context}: expected a length from 1 to the model's ${g.seqLen} positions`);
  }
  const named = o.channelPlan === undefined ? null : namedChannelPlan(o.channelPlan);
  if (named && named.region.name !== o.region) throw new MeshLlmError(`--channel-plan ${named.name} is a ${named.region.name} plan, not ${o.region}`);
  const r = named ? named.region : regionByName(o.region);
  const dr = dataRate(r, o.sf, o.bandwidthKHz);
  const m: LoRaModulation = { sf: o.sf, bandwidthKHz: o.bandwidthKHz, codingRate: o.codingRate ?? 5 };
  const channels: ChannelPlan = named ?? channelPlan(r, o.channels, o.bandwidthKHz);
  const maxFrameBytes = named ? planFrameBytes(named, r, m) : meshFrameBytes(r, m);
  const radio: RadioSetup = { r, m, channels, named, maxFrameBytes, toa: (ch, bytes) => timeOnAirMs(bytes, channelModulation(m, ch)), rate: named ? `channel plan ${named.name}` : `${r.name} SF${o.sf}/${o.bandwidthKHz}` };

  const groups = partitionHeads(g.nHeads, o.nodes);
  const perNode = groups.map((heads, i) => nodeBudget(g, i + 1, heads, o.quant, context, transport));
  const largestNode = {
    weightBytes: Math.max(...perNode.map((n) => n.weightBytes)),
    kvCacheBytes: Math.max(...perNode.map((n) => n.kvCacheBytes)),
    bufferBytes: Math.max(...perNode.map((n) => n.bufferBytes)),
  };
  const variants = ESP32_S3_MODULES.map((mod) => verdict(mod, largestNode));

  const t = traffic(g, groups, transport, radio, o);
  const { frames, broadcastMs, resultMs } = t;
  const layerBroadcastMs = sum(broadcastMs);
  const layerResultsMs = sum(resultMs.map(sum));

  const broadcastBand = subBandOf(r, channels.broadcast);
  const uplinkBands = [...new Set(channels.uplink.map((c) => subBandOf(r, c)))];
  // A node may spread its frames over every uplink sub-band, each with its own budget.
  const uplinkDutyBudget = sum(uplinkBands.map((b) => b.dutyCycle));
  const broadcastDutyBudget = sum([...new Map(broadcastChannels(channels).map((c) => subBandOf(r, c)).map((b) => [b.name, b.dutyCycle])).values()]);
  const channelBoundLayerMs = layerBroadcastMs + (o.computeMs ?? DEFAULT_COMPUTE_MS) + Math.max(Math.max(...resultMs.map(sum)), layerResultsMs / channels.uplink.length);
  const transmitterBoundMs = g.nLayers * Math.max(layerBroadcastMs / broadcastDutyBudget, Math.max(...resultMs.map(sum)) / uplinkDutyBudget);

  // every weight format x transport the fidelity table measured
  const minTop1 = o.minTop1 ?? 0.99;
  const byTransport = new Map<Encoding, Traffic | null>();
  for (const tr of TRANSPORT_ENCODINGS) {
    try {
      byTransport.set(tr, tr === transport ? t : traffic(g, groups, tr, radio, o));
    } catch (e) {
      if (!(e instanceof MeshLlmError)) throw e;
      byTransport.set(tr, null); // its messages do not fit at this data rate
    }
  }
  const combinations: Combination[] = [];
  for (const w of FORMATS) {
    for (const tr of TRANSPORT_ENCODINGS) {
      const tt = byTransport.get(tr) ?? null;
      const f = measuredFidelity(w, tr);
      const nodes = groups.map((heads, i) => nodeBudget(g, i + 1, heads, w, context, tr));
      const need = { weightBytes: Math.max(...nodes.map((n) => n.weightBytes)), kvCacheBytes: Math.max(...nodes.map((n) => n.kvCacheBytes)), bufferBytes: Math.max(...nodes.map((n) => n.bufferBytes)) };
      combinations.push({
        weights: w,
        transport: tr,
        weightBytesPerNode: Math.max(...nodes.map((n) => n.weightBytes)),
        weightBytesPerHead: headShareBytes(g, w),
        bytesPerLayer: tt ? sum(tt.frames.broadcast) + sum(tt.frames.results.map(sum)) : NaN,
        framesPerLayer: tt ? tt.frames.broadcast.length + sum(tt.frames.results.map((x) => x.length)) : NaN,
        secondsPerToken: tt ? tt.wallMs / 1000 : null,
        fidelity: { top1Agreement: f.top1Agreement, meanKl: f.meanKl, perplexity: f.perplexity },
        meetsFloor: f.top1Agreement >= minTop1,
        fitsModule: ESP32_S3_MODULES.find((mod) => verdict(mod, need).fits)?.name ?? null,
        fastest: false,
      });
    }
  }
  const candidates = combinations.filter((c) => c.meetsFloor && c.fitsModule !== null && c.secondsPerToken !== null);
  const best = candidates.sort((a, b) => a.secondsPerToken! - b.secondsPerToken! || a.weightBytesPerNode - b.weightBytesPerNode)[0];
  if (best) best.fastest = true;

  const busiest = resultMs.reduce((iMax, f, i) => (sum(f) > sum(resultMs[iMax]) ? i : iMax), 0);
  const computeMs = o.computeMs ?? DEFAULT_COMPUTE_MS;
  const power = nodePower({ txSeconds: (g.nLayers * sum(resultMs[busiest])) / 1000, rxSeconds: (g.nLayers * layerBroadcastMs) / 1000, computeSeconds: (g.nLayers * computeMs) / 1000 }, t.wallMs / 1000, o.power);

  const fits: Record<string, boolean> = {};
  for (const v of variants) fits[v.module] = v.fits;
  return {
    model: { name: o.modelName, dim: g.dim, hiddenDim: g.hiddenDim, nLayers: g.nLayers, nHeads: g.nHeads, nKvHeads: g.nKvHeads, headSize: g.headSize, vocabSize: g.vocabSize, seqLen: g.seqLen },
    nodes: o.nodes,
    headsPerNode: groups.map((h) => h.length),
    quant: o.quant,
    transport,
    context,
    radio: {
      region: r.name,
      dataRate: dr.dr,
      sf: o.sf,
      bandwidthKHz: o.bandwidthKHz,
      codingRate: m.codingRate ?? 5,
      channels: channels.uplink.length,
      maxFrameBytes,
      broadcastSubBand: broadcastBand.name,
      broadcastDutyCycle: broadcastBand.dutyCycle,
      uplinkSubBands: uplinkBands.map((b) => b.name),
      uplinkDutyCycle: Math.min(...uplinkBands.map((b) => b.dutyCycle)),
      maxDwellMs: Number.isFinite(r.maxDwellMs) ? r.maxDwellMs : null,
    },
    framesPerLayer: { broadcast: frames.broadcast.length, results: sum(frames.results.map((f) => f.length)), resultsPerNode: frames.results.map((f) => f.length) },
    bytesPerLayer: { broadcast: sum(frames.broadcast), results: sum(frames.results.map(sum)) },
    frameAirtimeMs: { broadcast: Math.max(...broadcastMs), result: Math.max(...resultMs.flat()) },
    airtimePerTokenSeconds: (g.nLayers * (layerBroadcastMs + layerResultsMs)) / 1000,
    channelBoundPerTokenSeconds: (g.nLayers * channelBoundLayerMs) / 1000,
    transmitterBoundPerTokenSeconds: transmitterBoundMs / 1000,
    wallPerTokenSeconds: t.wallMs / 1000,
    perNode,
    largestNode,
    variants,
    fits,
    channelPlan: named ? { name: named.name, description: named.description, broadcastChannels: named.broadcasts.length, uplinkChannels: named.uplink.length } : null,
    boundPerTokenSeconds: t.boundMs / 1000,
    combinations,
    fastest: best ? { weights: best.weights, transport: best.transport, minTop1 } : null,
    fidelityMeasuredOn: FIDELITY_TABLE.model,
    power,
  };
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(2)} MiB`;
}

function kib(bytes: number): string {
  return `${(bytes / KiB).toFixed(1)} KiB`;
}

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${seconds.toFixed(0)} s (${(seconds / 60).toFixed(1)} min)`;
  return `${seconds.toFixed(0)} s (${(seconds / 3600).toFixed(1)} h)`;
}

/** The plan as a person reads it. */
export function formatPlan(p: Plan): string {
  const r = p.radio;
  const sizes = [...new Set(p.headsPerNode)].sort((a, b) => b - a).join(' or ');
  const pct = (dc: number) => `${+(dc * 100).toFixed(1)}%`;
  const dwell = r.maxDwellMs === null ? '' : `, ${r.maxDwellMs} ms dwell`;
  const lines = [
    `model     ${p.model.name}: dim ${p.model.dim}, ${p.model.nLayers} layers, ${p.model.nHeads} heads / ${p.model.nKvHeads} kv heads of ${p.model.headSize}`,
    `mesh      ${p.nodes} nodes x ${sizes} head(s), ${p.quant} weights, ${p.transport} transport, context ${p.context}`,
    p.channelPlan
      ? `radio     ${r.region} channel plan ${p.channelPlan.name}: ${p.channelPlan.description}; frames <= ${r.maxFrameBytes} bytes${dwell}`
      : `radio     ${r.region} DR${r.dataRate} SF${r.sf}/${r.bandwidthKHz} kHz CR4/${r.codingRate}, ${r.channels} receive channel(s), frames <= ${r.maxFrameBytes} bytes${dwell}`,
    p.channelPlan
      ? `          broadcast over ${p.channelPlan.broadcastChannels} channel(s) from ${r.broadcastSubBand}, replies over ${p.channelPlan.uplinkChannels} in ${r.uplinkSubBands.join(' + ')}`
      : `          broadcast in ${r.broadcastSubBand} (${pct(r.broadcastDutyCycle)} duty cycle), replies in ${r.uplinkSubBands.join(' + ')} (${pct(r.uplinkDutyCycle)})`,
    `frames    per layer: broadcast ${p.framesPerLayer.broadcast} (${p.bytesPerLayer.broadcast} bytes, ${p.frameAirtimeMs.broadcast.toFixed(1)} ms each), results ${p.framesPerLayer.results} (${p.bytesPerLayer.results} bytes, ${p.framesPerLayer.resultsPerNode[0]} per node, ${p.frameAirtimeMs.result.toFixed(1)} ms each)`,
    `per token airtime ${duration(p.airtimePerTokenSeconds)}; channel bound ${duration(p.channelBoundPerTokenSeconds)}; busiest-radio bound ${duration(p.transmitterBoundPerTokenSeconds)}`,
    `          wall time ${duration(p.wallPerTokenSeconds)} (radio and the nodes' compute, scheduled under the duty cycles); the MAC's airtime bound ${duration(p.boundPerTokenSeconds)}`,
    `node      largest: weights ${mib(p.largestNode.weightBytes)} (flash), KV cache ${mib(p.largestNode.kvCacheBytes)} (PSRAM), buffers ${kib(p.largestNode.bufferBytes)} (SRAM)`,
    '',
    `module  flash free   PSRAM free   SRAM free    verdict`,
    ...p.variants.map((v) => `${v.module.padEnd(7)} ${mib(v.flashHeadroomBytes).padStart(11)}  ${mib(v.psramHeadroomBytes).padStart(11)}  ${kib(v.sramHeadroomBytes).padStart(11)}  ${v.fits ? 'fits' : `does not fit (${v.shortOf.join('; ')})`}`),
    '',
    `weights x transport (fidelity measured on ${p.fidelityMeasuredOn}, npm run bench:fidelity)`,
    'weights transport  per node    per head    bytes/layer frames/layer  s/token     top-1    mean KL   perplexity  module',
    ...p.combinations.map((c) =>
      [
        c.weights.padEnd(7),
        c.transport.padEnd(9),
        mib(c.weightBytesPerNode).padStart(10),
        mib(c.weightBytesPerHead).padStart(10),
        String(c.bytesPerLayer).padStart(11),
        String(c.framesPerLayer).padStart(12),
        (c.secondsPerToken === null ? 'too large' : c.secondsPerToken.toFixed(1)).padStart(9),
        `${(100 * c.fidelity.top1Agreement).toFixed(2)}%`.padStart(9),
        c.fidelity.meanKl.toExponential(2).padStart(9),
        c.fidelity.perplexity.toFixed(3).padStart(11),
        ` ${(c.fitsModule ?? 'none').padEnd(6)}`,
        c.fastest ? ` <- fastest with top-1 >= ${(100 * p.fastest!.minTop1).toFixed(0)}% that fits` : c.meetsFloor ? '' : ' (below the floor)',
      ].join(' '),
    ),
    p.fastest ? '' : `no combination meets the floor`,
    `power     largest node at +${p.power.txDbm} dBm: ${p.power.energyPerTokenJoules.toFixed(2)} J a token (TX ${(p.power.chargePerToken.tx / 1000).toFixed(2)} C, RX ${(p.power.chargePerToken.rx / 1000).toFixed(2)} C, MCU ${(p.power.chargePerToken.mcu / 1000).toFixed(2)} C); at ${p.power.tokensPerHour.toFixed(1)} tokens/h ${p.power.averageMa.toFixed(2)} mA mean`,
    `          ${p.power.batteryMah} mAh lasts ${duration(p.power.batteryLifeHours * 3600)}; solar: ${p.power.dailyWattHours.toFixed(2)} Wh a day needs a ${p.power.solarPanelWatts.toFixed(2)} W panel and a ${p.power.solarBatteryMah.toFixed(0)} mAh cell (docs/POWER.md)`,
  ];
  return `${lines.join('\n')}\n`;
}

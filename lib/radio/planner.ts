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
import { INT8_GROUP_SIZE, kvHeadsFor, partitionHeads } from '../llm/head';
import { BandwidthKHz, LoRaModulation, SpreadingFactor, timeOnAirMs } from './airtime';
import { BROADCAST_ADDRESS, FrameSender, GATEWAY_ADDRESS, MAX_FRAGMENTS, fragmentCapacity } from './frame';
import { broadcastBody, meshBodyBytes, meshEncodings, resultBody } from './mac';
import { Channel, ChannelPlan, DutyCycleTracker, Region, RegionName, channelPlan, dataRate, meshFrameBytes, region as regionByName, subBandOf } from './regions';
import { Encoding } from '../llm/quant';

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

/** Weight storage: values of `bits` bits, one float32 scale per group of `groupSize`. */
export const WEIGHT_FORMATS = {
  int8: { bits: 8, groupSize: INT8_GROUP_SIZE },
  int4: { bits: 4, groupSize: INT8_GROUP_SIZE },
} as const;
export type WeightFormat = keyof typeof WEIGHT_FORMATS;

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
  /** Shortest token the channels allow without duty cycles: broadcast, then replies spread over the channels, s. */
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
}

/** Bytes of n weights in a storage format: packed values plus a float32 scale per group. */
export function weightStorageBytes(n: number, f: WeightFormat): number {
  const { bits, groupSize } = WEIGHT_FORMATS[f];
  return Math.ceil((n * bits) / 8) + 4 * Math.ceil(n / groupSize);
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
  /** When each channel's current transmission ends, by frequency. */
  channelFree: Map<number, number>;
}

/** Sends one frame from a transmitter on whichever of the channels lets it start soonest; returns its end, ms. */
function sendFrame(s: Schedule, tx: DutyCycleTracker, channels: Channel[], airtimeMs: number, notBeforeMs: number): number {
  let best: { ch: Channel; start: number } | undefined;
  for (const ch of channels) {
    const start = Math.max(tx.earliestStartMs(ch, notBeforeMs), s.channelFree.get(ch.frequencyHz) ?? -Infinity);
    if (!best || start < best.start) best = { ch, start };
  }
  const end = tx.transmit(best!.ch, best!.start, airtimeMs);
  s.channelFree.set(best!.ch.frequencyHz, end);
  return end;
}

/** Runs the gateway's schedule for some tokens; returns each token's end time, ms. */
function simulate(s: Schedule, layers: number, broadcastMs: number[], resultMs: number[][], tokens: number): number[] {
  const gateway = new DutyCycleTracker(s.r);
  const nodes = resultMs.map(() => new DutyCycleTracker(s.r));
  const ends: number[] = [];
  let t = 0;
  for (let token = 0; token < tokens; token++) {
    for (let layer = 0; layer < layers; layer++) {
      for (const ms of broadcastMs) t = sendFrame(s, gateway, [s.plan.broadcast], ms, t);
      const heard = t;
      const rounds = Math.max(...resultMs.map((f) => f.length));
      for (let k = 0; k < rounds; k++) {
        resultMs.forEach((frames, n) => {
          if (k < frames.length) t = Math.max(t, sendFrame(s, nodes[n], s.plan.uplink, frames[k], heard));
        });
      }
    }
    ends.push(t);
  }
  return ends;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

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
  const r = regionByName(o.region);
  const dr = dataRate(r, o.sf, o.bandwidthKHz);
  const m: LoRaModulation = { sf: o.sf, bandwidthKHz: o.bandwidthKHz, codingRate: o.codingRate ?? 5 };
  const maxFrameBytes = meshFrameBytes(r, m);
  const channels = channelPlan(r, o.channels, o.bandwidthKHz);

  const groups = partitionHeads(g.nHeads, o.nodes);
  checkFragmentLimit(g, groups, transport, maxFrameBytes, `${r.name} SF${o.sf}/${o.bandwidthKHz}`);
  const perNode = groups.map((heads, i) => nodeBudget(g, i + 1, heads, o.quant, context, transport));
  const largestNode = {
    weightBytes: Math.max(...perNode.map((n) => n.weightBytes)),
    kvCacheBytes: Math.max(...perNode.map((n) => n.kvCacheBytes)),
    bufferBytes: Math.max(...perNode.map((n) => n.bufferBytes)),
  };
  const variants = ESP32_S3_MODULES.map((mod) => verdict(mod, largestNode));

  const frames = layerFrames(g, groups, transport, maxFrameBytes);
  const toa = (bytes: number) => timeOnAirMs(bytes, m);
  const broadcastMs = frames.broadcast.map(toa);
  const resultMs = frames.results.map((f) => f.map(toa));
  const layerBroadcastMs = sum(broadcastMs);
  const layerResultsMs = sum(resultMs.map(sum));

  const broadcastBand = subBandOf(r, channels.broadcast);
  const uplinkBands = [...new Set(channels.uplink.map((c) => subBandOf(r, c)))];
  // A node may spread its frames over every uplink sub-band, each with its own budget.
  const uplinkDutyBudget = sum(uplinkBands.map((b) => b.dutyCycle));
  const channelBoundLayerMs = layerBroadcastMs + Math.max(Math.max(...resultMs.map(sum)), layerResultsMs / channels.uplink.length);
  const transmitterBoundMs = g.nLayers * Math.max(layerBroadcastMs / broadcastBand.dutyCycle, Math.max(...resultMs.map(sum)) / uplinkDutyBudget);

  const tokens = o.simulatedTokens ?? 3;
  const ends = simulate({ r, plan: channels, channelFree: new Map() }, g.nLayers, broadcastMs, resultMs, tokens);
  const wallMs = ends[tokens - 1] - (tokens > 1 ? ends[tokens - 2] : 0);

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
    wallPerTokenSeconds: wallMs / 1000,
    perNode,
    largestNode,
    variants,
    fits,
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
    `radio     ${r.region} DR${r.dataRate} SF${r.sf}/${r.bandwidthKHz} kHz CR4/${r.codingRate}, ${r.channels} receive channel(s), frames <= ${r.maxFrameBytes} bytes${dwell}`,
    `          broadcast in ${r.broadcastSubBand} (${pct(r.broadcastDutyCycle)} duty cycle), replies in ${r.uplinkSubBands.join(' + ')} (${pct(r.uplinkDutyCycle)})`,
    `frames    per layer: broadcast ${p.framesPerLayer.broadcast} (${p.bytesPerLayer.broadcast} bytes, ${p.frameAirtimeMs.broadcast.toFixed(1)} ms each), results ${p.framesPerLayer.results} (${p.bytesPerLayer.results} bytes, ${p.framesPerLayer.resultsPerNode[0]} per node, ${p.frameAirtimeMs.result.toFixed(1)} ms each)`,
    `per token airtime ${duration(p.airtimePerTokenSeconds)}; channel bound ${duration(p.channelBoundPerTokenSeconds)}; busiest-radio bound ${duration(p.transmitterBoundPerTokenSeconds)}`,
    `          wall time ${duration(p.wallPerTokenSeconds)} (radio only, scheduled under the duty cycles)`,
    `node      largest: weights ${mib(p.largestNode.weightBytes)} (flash), KV cache ${mib(p.largestNode.kvCacheBytes)} (PSRAM), buffers ${kib(p.largestNode.bufferBytes)} (SRAM)`,
    '',
    `module  flash free   PSRAM free   SRAM free    verdict`,
    ...p.variants.map((v) => `${v.module.padEnd(7)} ${mib(v.flashHeadroomBytes).padStart(11)}  ${mib(v.psramHeadroomBytes).padStart(11)}  ${kib(v.sramHeadroomBytes).padStart(11)}  ${v.fits ? 'fits' : `does not fit (${v.shortOf.join('; ')})`}`),
  ];
  return `${lines.join('\n')}\n`;
}

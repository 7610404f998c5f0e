/**
 * A simulated radio mesh: the channel, its clock, and head nodes behind the radio, each with
 * the weight slices of its head group (or, for airtime studies at sizes the tests cannot
 * load, a stand-in that answers with zeros of the right length). The gateway's radio is
 * attached separately, to be driven directly (link c) or through a simulated serial modem
 * (link a) or packet forwarder (link b).
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Checkpoint } from '../lib/llm/checkpoint';
import { Geometry, geometry } from '../lib/llm/config';
import { HeadWeights, kvHeadsFor, loadHeadSlices, partitionHeads } from '../lib/llm/head';
import { BandwidthKHz, SpreadingFactor } from '../lib/radio/airtime';
import { Radio, RadioChannel } from '../lib/radio/channel';
import { broadcastChannels } from '../lib/radio/regions';
import { Clock, RealTimeClock, VirtualClock } from '../lib/radio/clock';
import { requireLoRaOnly } from '../lib/radio/channel-plans';
import { AirtimeBreakdown, AirtimeLedger, GatewayMac, GatewayRadioLink, LayerReport, MacConfig, MeshLayout, emptyBreakdown, macConfig, meshLayout } from '../lib/radio/mac';
import { HeadComputer, RadioHeadNode } from '../lib/radio/node';
import { RadioNodeInfo } from './bridge';
import { Encoding, WeightFormat } from '../lib/llm/quant';
import { MeshLlmError } from '../lib/llm/errors';
import { MeshEventInput } from '../lib/mesh/events';
import { subBandOf } from '../lib/radio/regions';
import { SensorReadings } from '../lib/radio/sensor-report';

/** The head weights a radio mesh of a transport holds: its own format, int8 under int7 (no int7 weights). */
export function weightsOf(transport: Encoding): WeightFormat {
  return transport === 'int7' || transport === 'int7h' ? 'int8' : transport;
}

export interface RadioSettings {
  region: string;
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  /** Receive channels of the gateway: 1 or 8. */
  channels: number;
  /** A named channel plan (lib/radio/channel-plans.ts) instead of `channels` at `bandwidthKHz`. */
  channelPlan?: string;
  /** Probability that any one reception is lost. */
  loss: number;
  /** Seed of the loss generator. */
  seed?: number;
  /** Simulated ms per wall ms (1 = true airtime); 0 or undefined: the virtual clock, as fast as possible. */
  timeScale?: number;
}

export interface SimulatedRadioMeshOptions extends RadioSettings {
  /** A llama2.c checkpoint: nodes compute their heads. Without one, `geometry` and traffic only. */
  modelPath?: string;
  geometry?: Geometry;
  /** Without a model: what a node computes in a session (default: zeros of its result's length). */
  standIn?: (address: number, heads: number[]) => HeadComputer;
  nodes: number;
  /**
   * Spare radio nodes (addresses nodes+1..nodes+spares), each flashed with the head group of
   * node 1, 2, ... in turn: idle until a failover gives one the heads of a lost node holding
   * the same group (a radio node cannot load other heads over LoRa). Default 0.
   */
  spares?: number;
  /** int8: int8 weight slices and int8 tensors on the air (as the engine's quant int8). */
  quant: Encoding;
  /** Radio mesh id (one byte, default 1) and network key (default random). */
  radioMeshId?: number;
  key?: Buffer;
  idPrefix?: string;
  /**
   * false: the head nodes are real radios (behind a serial modem or a packet forwarder); only
   * the layout, the clock and the node list are made, for the bridge and its MAC (default true).
   */
  nodesOnChannel?: boolean;
  /** Addresses whose head nodes are native processes (native-radio.ts) joining the channel's socket: no TypeScript node for them. */
  nativeAddresses?: ReadonlySet<number>;
  /**
   * A data folder where the TypeScript radio nodes (radio-N.json) and the gateway's MAC
   * (gateway.json) keep their frame counters and replay windows (lib/radio/state.ts), so a
   * restarted mesh refuses frames it took before (default: kept in memory only).
   */
  stateDir?: string;
  /** Where the TypeScript radio nodes say why they dropped a frame or refused a broadcast. */
  nodeLog?: (address: number, level: 'debug' | 'warn', message: string) => void;
  /**
   * Sensor reports over the radio: every node's slot holds a report frame; the TypeScript
   * nodes read `read(address)` every `everyMs` of simulated time (native nodes their own
   * sensor HAL), and the bridge publishes what the gateway hears as the nodes' sensor telemetry.
   */
  sensors?: { everyMs: number; read: (address: number) => SensorReadings };
}

export interface TokenRadioReport {
  pos: number;
  simulatedSeconds: number;
  boundSeconds: number;
  ratio: number;
  rounds: number;
  airtimeSeconds: AirtimeBreakdown;
}

export interface RadioRunReport {
  /** Positions in the averages (all but the warm-up). */
  positions: number;
  simulatedSeconds: number;
  simulatedSecondsPerToken: number;
  boundSecondsPerToken: number;
  ratio: number;
  /** Airtime of every frame sent, by kind, s. */
  airtimeSeconds: AirtimeBreakdown;
  channel: RadioChannel['stats'];
  perToken: TokenRadioReport[];
}

const zeros = (n: number): HeadComputer => {
  const out = new Float32Array(n);
  return { forward: () => out };
};

export class SimulatedRadioMesh {
  readonly clock: Clock;
  readonly channel: RadioChannel;
  readonly config: MacConfig;
  readonly layout: MeshLayout;
  readonly ledger = new AirtimeLedger();
  readonly g: Geometry;
  readonly transport: Encoding;
  readonly key: Buffer;
  readonly radioMeshId: number;
  readonly nodes: RadioHeadNode[] = [];
  /** The nodes' transceivers, in node order. */
  readonly nodeRadios: Radio[] = [];
  readonly infos: RadioNodeInfo[] = [];
  /** Errors thrown inside simulated events (none expected). */
  readonly errors: Error[] = [];
  readonly layers: LayerReport[] = [];
  private readonly stateDir?: string;
  /** The nodes that carry the model's heads (the first `primaries` of infos); the others are spares. */
  readonly primaries: number;

  constructor(o: SimulatedRadioMeshOptions) {
    this.stateDir = o.stateDir;
    // on the simulated channel, paced or not, simulated time stands still while a native node holds the clock (sim-socket.ts)
    this.clock = o.timeScale ? new RealTimeClock(o.timeScale, 0, o.nodesOnChannel ?? true) : new VirtualClock();
    this.clock.onError = (e) => this.errors.push(e as Error);
    this.config = macConfig({ region: o.region, sf: o.sf, bandwidthKHz: o.bandwidthKHz, channels: o.channels, channelPlan: o.channelPlan });
    if (o.nativeAddresses?.size) requireLoRaOnly(this.config.plan, 'the firmware\'s radio node (--native)');
    this.channel = new RadioChannel({ clock: this.clock, region: this.config.region, modulation: this.config.modulation, plan: this.config.plan, loss: o.loss, seed: o.seed });
    this.key = o.key ?? randomBytes(16);
    this.radioMeshId = o.radioMeshId ?? 1;
    this.transport = o.quant;
    const ckpt = o.modelPath ? Checkpoint.open(o.modelPath) : null;
    try {
      const g = ckpt ? geometry(ckpt.info.config) : o.geometry;
      if (!g) throw new Error('a simulated radio mesh needs a model or a geometry');
      this.g = g;
      const primary = partitionHeads(g.nHeads, o.nodes);
      const groups = [...primary, ...Array.from({ length: o.spares ?? 0 }, (_, k) => primary[k % primary.length])];
      this.primaries = primary.length;
      this.layout = meshLayout(this.config, g, o.quant, groups.map((heads, i) => ({ address: i + 1, heads: heads.length, ...(o.sensors ? { sensors: true } : {}) })));
      groups.forEach((heads, i) => {
        const address = i + 1;
        // a node's weights are loaded once (its flash); every session adds only a KV cache
        const weights = ckpt ? new HeadWeights(g, loadHeadSlices(ckpt, g, heads, weightsOf(o.quant))) : null;
        const standIn = o.standIn ?? ((_a: number, h: number[]) => zeros(h.length * g.headSize));
        const newSession = weights ? () => weights.session() : () => standIn(address, heads);
        const id = `${o.idPrefix ?? 'radio-'}${address}`;
        if ((o.nodesOnChannel ?? true) && !o.nativeAddresses?.has(address)) {
          const radio = this.channel.attach({ name: id, listen: broadcastChannels(this.config.plan) });
          this.nodeRadios.push(radio);
          const statePath = o.stateDir && path.join(o.stateDir, `radio-${address}.json`);
          const log = o.nodeLog && ((level: 'debug' | 'warn', m: string) => o.nodeLog?.(address, level, m));
          this.nodes.push(new RadioHeadNode({ address, heads, newSession, g, layout: this.layout, clock: this.clock, radio, key: this.key, meshId: this.radioMeshId, ledger: this.ledger, statePath, log, sensors: o.sensors && { everyMs: o.sensors.everyMs, read: () => o.sensors?.read(address) ?? {} } }));
        }
        this.infos.push({ id, address, heads, kvHeads: kvHeadsFor(heads, g.kvMul), weights: weightsOf(o.quant), weightBytes: weights?.weightBytes ?? 0 });
      });
    } finally {
      ckpt?.close();
    }
  }

  /**
   * A simulated fault: the radio node goes silent (its transceiver hears nothing, so it sends
   * nothing), as a node that lost power or its antenna. Only nodes simulated in this process.
   */
  silence(id: string): void {
    const radio = this.nodeRadios.find((r) => r.name === id);
    if (!radio) throw new MeshLlmError(`no radio node ${id} simulated in this process (nodes: ${this.nodeRadios.map((r) => r.name).join(', ')})`);
    radio.listen = [];
  }

  /** The gateway's radio: it receives on the receive channels of the plan. */
  attachGatewayRadio(): Radio {
    return this.channel.attach({ name: 'gateway', listen: this.config.plan.uplink });
  }

  /** The gateway's medium access over a link to its radio; its layer reports feed report(). */
  createMac(link: GatewayRadioLink): GatewayMac {
    const statePath = this.stateDir && path.join(this.stateDir, 'gateway.json');
    const mac = new GatewayMac({ clock: this.clock, link, layout: this.layout, key: this.key, meshId: this.radioMeshId, ledger: this.ledger, statePath });
    mac.onLayer = (r) => this.layers.push(r);
    return mac;
  }

  /**
   * The radio side of one position as a mesh event: airtime by kind, and the duty-cycle budget
   * used on the broadcast sub-band by the gateway (broadcasts, NACKs, resent fragments) and on
   * the reply sub-band by the average node (its results), each as airtime / (duty cycle x the
   * position's simulated time).
   */
  radioEvent(mac: GatewayMac, t: TokenRadioReport, session: number): MeshEventInput {
    const region = this.config.region;
    const bcast = subBandOf(region, this.config.plan.broadcast);
    const reply = subBandOf(region, this.config.plan.uplink[0]);
    const a = t.airtimeSeconds;
    const budget = (airtimeS: number, duty: number) => (t.simulatedSeconds > 0 ? Number((airtimeS / (duty * t.simulatedSeconds)).toFixed(4)) : 0);
    const lost = Object.values(this.channel.stats.lost).reduce((n, x) => n + x, 0);
    return {
      kind: 'radio',
      session: session || undefined,
      pos: t.pos,
      simulatedSeconds: t.simulatedSeconds,
      boundSeconds: t.boundSeconds,
      airtimeSeconds: { ...a },
      framesLost: lost,
      framesResent: mac.counters.retransmittedFragments,
      dutyCycle: [
        { band: `${bcast.name} gateway`, used: budget(a.broadcast + a.nack + a.resent, bcast.dutyCycle) },
        { band: `${reply.name} per node`, used: budget(a.result / Math.max(1, this.infos.length), reply.dutyCycle) },
      ],
      nodes: this.infos.flatMap((i) => {
        const q = mac.signal.get(i.address);
        return q ? [{ node: i.id, rssi: q.rssi, snr: q.snr }] : [];
      }),
    };
  }

  /** Sets the pace of the real-time clock (simulated s per wall s); the virtual clock has none to set. */
  setTimeScale(scale: number): void {
    if (!(this.clock instanceof RealTimeClock)) throw new MeshLlmError('this radio runs on the virtual clock (as fast as it can): start it with a time scale to pace it');
    this.clock.setScale(scale);
  }

  /**
   * Per token (position): simulated time from the previous position's end, against the bound
   * for its frames. `warmup` positions are left out of the averages: the first token starts
   * with every duty-cycle clock fresh, so it can beat the steady-state bound.
   */
  report(warmup = 0): RadioRunReport {
    const byPos = new Map<number, LayerReport[]>();
    for (const l of this.layers) {
      if (!byPos.has(l.pos)) byPos.set(l.pos, []);
      byPos.get(l.pos)?.push(l);
    }
    const perToken: TokenRadioReport[] = [];
    let previousEnd = NaN;
    let bound = 0;
    for (const [pos, layers] of [...byPos.entries()].sort((a, b) => a[0] - b[0])) {
      const end = Math.max(...layers.map((l) => l.endMs));
      const start = Number.isNaN(previousEnd) ? Math.min(...layers.map((l) => l.startMs)) : previousEnd;
      const boundMs = layers.reduce((n, l) => n + l.boundMs, 0);
      bound += boundMs;
      const air = this.ledger.byPosition.get(pos) ?? emptyBreakdown();
      perToken.push({
        pos,
        simulatedSeconds: (end - start) / 1000,
        boundSeconds: boundMs / 1000,
        ratio: (end - start) / boundMs,
        rounds: layers.reduce((n, l) => n + l.rounds, 0),
        airtimeSeconds: seconds(air),
      });
      previousEnd = end;
    }
    const counted = perToken.slice(Math.min(warmup, Math.max(0, perToken.length - 1)));
    const total = counted.reduce((n, t) => n + t.simulatedSeconds, 0);
    bound = counted.reduce((n, t) => n + t.boundSeconds * 1000, 0);
    const positions = counted.length;
    return {
      positions,
      simulatedSeconds: total,
      simulatedSecondsPerToken: positions ? total / positions : 0,
      boundSecondsPerToken: positions ? bound / 1000 / positions : 0,
      ratio: bound > 0 ? (total * 1000) / bound : 0,
      airtimeSeconds: seconds(this.ledger.total()),
      channel: this.channel.stats,
      perToken,
    };
  }
}

function seconds(b: AirtimeBreakdown): AirtimeBreakdown {
  return { broadcast: b.broadcast / 1000, result: b.result / 1000, nack: b.nack / 1000, resent: b.resent / 1000 };
}

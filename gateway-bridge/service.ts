/**
 * The LoRa-to-MQTT bridge as a running service: the radio side (the simulated channel with
 * its head nodes computing there, a serial LoRa modem, or a Semtech UDP packet forwarder), the
 * gateway's MAC on it, and the bridge that shows the radio head nodes to the mesh's MQTT
 * topics. What `mesh-llm bridge` and the Node-RED mesh-llm-lora-bridge node run.
 */
import { MeshLlmError } from '../lib/llm/errors';
import { Logger } from '../lib/mesh/mqtt';
import { BandwidthKHz, SpreadingFactor, modulation } from '../lib/radio/airtime';
import { requireLoRaOnly } from '../lib/radio/channel-plans';
import { GatewayRadioLink } from '../lib/radio/mac';
import { RadioBridge } from './bridge';
import { RadioRunReport, SimulatedRadioMesh, TokenRadioReport } from './radio-mesh';
import { SemtechUdpLink } from './semtech';
import { SerialModemLink } from './serial';
import { SimulatedChannelLink } from './sim-link';
import { NativeRadioNodes } from './native-radio';
import { Encoding } from '../lib/llm/quant';
import { MeshEventStream } from '../lib/mesh/events';

export type BridgeLinkKind = 'sim' | 'serial' | 'udp';

export interface BridgeServiceOptions {
  brokerUrl: string;
  username?: string;
  password?: string;
  meshId: string;
  modelPath: string;
  quant: Encoding;
  link: BridgeLinkKind;
  /** serial: the modem's port and speed. */
  serialPath?: string;
  baudRate?: number;
  /** udp: where the packet forwarder's PUSH_DATA/PULL_DATA arrive. */
  udpHost?: string;
  udpPort?: number;
  region: string;
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  channels: number;
  /** A region's full channel plan by name (lib/radio/channel-plans.ts) instead of the single-region one. */
  channelPlan?: string;
  /** Radio head nodes (each holds one head group in flash). */
  nodes: number;
  /** Spare radio nodes (addresses nodes+1..nodes+spares), each flashed with the head group of node 1, 2, ... in turn: idle until a failover gives one the heads of a lost node of its group. */
  spares?: number;
  /** sim only: the head nodes 1..N are the firmware's radio node built for the host (processes, native-radio.ts) instead of TypeScript ones (spares stay TypeScript nodes). */
  native?: boolean;
  /** sim only: probability that any one reception is lost. */
  loss?: number;
  /** sim only: simulated ms per wall ms; undefined: the virtual clock. Real radios run at 1. */
  timeScale?: number;
  /** The mesh's 16-byte network key; without one a random key is used (real radios cannot know it). */
  key?: Buffer;
  /** Called after the last layer of each token position, with the radio's account of it. */
  onToken?: (t: TokenRadioReport) => void;
  log?: Logger;
  /** Where the gateway's radio (and simulated nodes) keep frame counters and replay windows across restarts. */
  stateDir?: string;
}

export interface RunningBridge {
  /** Radio head nodes announced on the mesh. */
  nodes: number;
  /** Their ids on the mesh. */
  ids: string[];
  /** Resolves with a reason if the broker connection drops. */
  lost: Promise<string>;
  report(): RadioRunReport;
  /** Paces the simulated radio (simulated s per wall s); refused on the virtual clock and on real radios. */
  setTimeScale(scale: number): void;
  close(): Promise<void>;
}

async function openLink(o: BridgeServiceOptions, mesh: SimulatedRadioMesh): Promise<GatewayRadioLink> {
  const m = modulation(mesh.config.modulation);
  if (o.link !== 'sim') requireLoRaOnly(mesh.config.plan, o.link === 'serial' ? 'the serial modem protocol' : 'the packet-forwarder link');
  if (o.link === 'serial') {
    if (!o.serialPath) throw new MeshLlmError('the serial link needs the modem\'s serial port (--serial PATH)');
    const path = o.serialPath;
    return SerialModemLink.open({ path, baudRate: o.baudRate ?? 115200, clock: mesh.clock, modulation: m }).catch((e: Error) => {
      throw new MeshLlmError(`cannot open the LoRa modem's serial port ${path}: ${e.message.replace(/^Error: /, '')}`);
    });
  }
  if (o.link === 'udp') return SemtechUdpLink.listen({ clock: mesh.clock, modulation: m, host: o.udpHost ?? '0.0.0.0', port: o.udpPort ?? 1700 });
  return new SimulatedChannelLink(mesh.attachGatewayRadio());
}

export async function startBridge(o: BridgeServiceOptions): Promise<RunningBridge> {
  if (o.key && o.key.length !== 16) throw new MeshLlmError('the network key must be 16 bytes (32 hex digits)');
  const simulated = o.link === 'sim';
  if (o.native && !simulated) throw new MeshLlmError('native radio head nodes run on the simulated channel only (link sim); on a real radio the nodes are boards');
  const spares = o.spares ?? 0;
  // native nodes take their address from their shard, which is cut for the nodes 1..N: spares run as TypeScript radio nodes
  const nativeAddresses = new Set(o.native ? Array.from({ length: o.nodes }, (_, i) => i + 1) : []);
  const mesh = new SimulatedRadioMesh({
    modelPath: o.modelPath,
    nodes: o.nodes,
    spares,
    nativeAddresses,
    quant: o.quant,
    region: o.region,
    sf: o.sf,
    bandwidthKHz: o.bandwidthKHz,
    channels: o.channels,
    channelPlan: o.channelPlan,
    loss: simulated ? (o.loss ?? 0) : 0,
    timeScale: simulated ? o.timeScale : 1,
    key: o.key,
    nodesOnChannel: simulated,
    stateDir: o.stateDir,
  });
  const natives = nativeAddresses.size ? await NativeRadioNodes.start({ mesh, modelPath: o.modelPath, addresses: [...nativeAddresses] }) : undefined;
  const link = await openLink(o, mesh).catch(async (e: unknown) => {
    await natives?.close();
    throw e;
  });
  const mac = mesh.createMac(link);
  const collect = mac.onLayer;
  // the radio's side of each position, on the mesh's events topic (the gateway tells the rest)
  const events = new MeshEventStream();
  events.on((e) => bridge?.publishEvent(e));
  mac.onLayer = (r) => {
    collect(r);
    if (r.layer !== mesh.g.nLayers - 1) return;
    const t = mesh.report().perToken.find((p) => p.pos === r.pos);
    if (!t) return;
    o.onToken?.(t);
    events.emit(mesh.radioEvent(mac, t, r.session));
  };
  let bridge: RadioBridge | undefined;
  try {
    bridge = await RadioBridge.connect({ url: o.brokerUrl, username: o.username, password: o.password, meshId: o.meshId, mac, g: mesh.g, transport: mesh.transport, nodes: mesh.infos, log: o.log });
  } catch (e) {
    await link.close();
    await natives?.close();
    throw e;
  }
  return {
    nodes: mesh.infos.length,
    ids: mesh.infos.map((i) => i.id),
    lost: bridge.lost,
    report: () => mesh.report(),
    setTimeScale: (scale) => {
      if (!simulated) throw new MeshLlmError('a real radio runs in real time: only the simulated channel has a time scale');
      mesh.setTimeScale(scale);
    },
    close: async () => {
      await bridge?.close();
      await link.close();
      await natives?.close();
    },
  };
}

/**
 * A generation through the bridge and the radio: the mesh gateway of lib/mesh on an MQTT
 * broker, the bridge announcing the radio nodes there, and the radio nodes on the simulated
 * channel behind the gateway radio of some link.
 */
import { GenerateOptions, GenerationResult, TokenListener } from '../lib/llm/engine';
import { RunningBroker, startAedesBroker } from '../lib/mesh/broker';
import { MeshGateway, NodeAssignment } from '../lib/mesh/gateway';
import { FailoverEvent, MeshError } from '../lib/mesh/runner';
import { MeshEventSink } from '../lib/mesh/events';
import { Logger, stderrLogger } from '../lib/mesh/mqtt';
import { GatewayRadioLink, layerBoundMs } from '../lib/radio/mac';
import { RadioBridge } from './bridge';
import { RadioRunReport, RadioSettings, SimulatedRadioMesh, TokenRadioReport, weightsOf } from './radio-mesh';
import { SimulatedChannelLink } from './sim-link';
import { NativeRadioNodes } from './native-radio';
import { TokenAttribution } from '../lib/steering/attribution';
import { loadSteering } from '../lib/steering/directions';
import { MeshSteering, generateSteeredOnMesh } from '../lib/steering/mesh';
import { NodeReadings, Steering } from '../lib/steering/steer';

/** A steered generation on the radio: fixed readings per radio node (radio-1, ...), as on the MQTT mesh. */
export interface RadioSteering {
  readings: NodeReadings;
  /** Default: the steering data's own alpha. */
  alpha?: number;
  onAttribution?: (a: TokenAttribution) => void;
}

export interface BridgeGenerateOptions {
  mesh: SimulatedRadioMesh;
  link: GatewayRadioLink;
  brokerUrl: string;
  meshId: string;
  modelPath: string;
  tokenizerPath: string;
  generate: GenerateOptions;
  onToken?: TokenListener;
  /** Called as each position completes on the radio. */
  onProgress?: (t: TokenRadioReport) => void;
  /** Gets every mesh event the gateway publishes, radio events included. */
  onEvent?: MeshEventSink;
  gatherTimeoutMs?: number;
  log?: Logger;
  /** Simulated faults: each radio node goes silent once position `pos` is done (SimulatedRadioMesh.silence). */
  faults?: RadioFault[];
  /** Steer the generation (each node's steering goes to it over the radio as a steering body). */
  steer?: RadioSteering;
}

export interface RadioFault {
  node: string;
  pos: number;
}

/** A failover on the radio (lib/mesh/runner.ts's event) with what its replay cost on the air. */
export interface RadioFailover extends FailoverEvent {
  /** Airtime of every frame from the loss being declared to the end of the replay (broadcasts, results, NACKs, resent fragments), s. */
  replayAirtimeSeconds: number;
  /** Simulated time from the loss being declared to the end of the replay, s. */
  replaySimulatedSeconds: number;
}

export interface RadioGenerationResult extends GenerationResult {
  assignment: NodeAssignment[];
  radio: RadioRunReport;
  /** The failovers of the run, only when there were any. */
  failovers?: RadioFailover[];
  /** A steered run: each token's attribution. */
  attributions?: TokenAttribution[];
  /** A steered run: the alpha it ran with. */
  alpha?: number;
  /** A steered run: airtime of the steering deliveries (the bodies, their retransmissions and the nodes' acknowledgements), s. */
  steeringAirtimeSeconds?: number;
}

/** Generates through a bridge on `link`; the bridge and the mesh gateway are closed when it settles. */
export async function generateOverRadio(o: BridgeGenerateOptions): Promise<RadioGenerationResult> {
  const log = o.log ?? stderrLogger('radio');
  const mac = o.mesh.createMac(o.link);
  let bridge: RadioBridge | undefined;
  let gw: MeshGateway | undefined;
  // In one process, a failure on the radio fails the generation at once rather than at the gather timeout.
  const fail = (e: unknown) => gw?.runner.fail(new MeshError(`the radio failed: ${(e as Error).message}`));
  o.mesh.clock.onError = (e) => {
    o.mesh.errors.push(e as Error);
    fail(e);
  };
  for (const f of o.faults ?? []) if (!o.mesh.nodeRadios.some((r) => r.name === f.node)) throw new MeshError(`a simulated fault names radio node ${f.node}; the nodes simulated here are ${o.mesh.nodeRadios.map((r) => r.name).join(', ')}`);
  try {
    bridge = await RadioBridge.connect({ url: o.brokerUrl, meshId: o.meshId, mac, g: o.mesh.g, transport: o.mesh.transport, nodes: o.mesh.infos, log, onFailure: fail });
    gw = await MeshGateway.connect({ url: o.brokerUrl, meshId: o.meshId, modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, gatherTimeoutMs: o.gatherTimeoutMs ?? 60000, log });
    if (o.onEvent) gw.events.on(o.onEvent);
    const ids = await gw.discover({ count: o.mesh.infos.length, timeoutMs: 20000 });
    // The radio nodes' heads are in their flash: assign exactly those groups, each to its node; spares stay idle (standby for a failover).
    const primaries = o.mesh.infos.slice(0, o.mesh.primaries).filter((i) => ids.includes(i.id));
    const nodes = primaries.map((i) => i.id);
    const groups = primaries.map((i) => i.heads);
    const assignment = await gw.assign(nodes, { groups, quant: weightsOf(o.mesh.transport), transport: o.mesh.transport });
    // What a failover's replay costs on the air: from the bridge declaring the loss to the runner's failover event (the replay's end).
    const failovers: RadioFailover[] = [];
    const airtimeMs = () => Object.values(o.mesh.ledger.total()).reduce((n, x) => n + x, 0);
    let since: { airtimeMs: number; simMs: number } | null = null;
    bridge.onLost = () => (since ??= { airtimeMs: airtimeMs(), simMs: o.mesh.clock.now() });
    gw.events.on((e) => {
      if (e.kind !== 'failover') return;
      const f = gw?.runner.failovers.at(-1);
      if (!f || !since) return;
      const r: RadioFailover = { ...f, replayAirtimeSeconds: Number(((airtimeMs() - since.airtimeMs) / 1000).toFixed(3)), replaySimulatedSeconds: Number(((o.mesh.clock.now() - since.simMs) / 1000).toFixed(3)) };
      failovers.push(r);
      log('warn', `failover at position ${f.pos}: ${f.lost.join(', ')} lost, heads moved (${f.moves.map((m) => `[${m.heads.join(',')}] ${m.from} -> ${m.to}`).join('; ')}), ${f.replayed} bodies replayed in ${r.replaySimulatedSeconds} s simulated, ${r.replayAirtimeSeconds} s of airtime`);
      since = null;
    });
    const faults = [...(o.faults ?? [])];
    let reported = 0;
    const events = gw.events;
    const onToken: TokenListener = (token, piece, pos, logits) => {
      o.onToken?.(token, piece, pos, logits);
      for (const f of faults.filter((x) => pos >= x.pos)) {
        faults.splice(faults.indexOf(f), 1);
        log('warn', `simulated fault: radio node ${f.node} goes silent after position ${pos}`);
        o.mesh.silence(f.node);
      }
      const tokens = o.mesh.report().perToken;
      for (; reported < tokens.length; reported++) {
        o.onProgress?.(tokens[reported]);
        events.emit(o.mesh.radioEvent(mac, tokens[reported], gw?.runner.session ?? 0));
      }
    };
    const result = o.steer ? await steeredOverRadio(gw, o.brokerUrl, o.meshId, assignment, o.steer, o.generate, onToken) : await gw.generate(o.generate, onToken, 'radio');
    if (o.mesh.errors.length) throw o.mesh.errors[0];
    const steeringAirtime = o.steer ? { steeringAirtimeSeconds: Number((mac.counters.steeringAirtimeMs / 1000).toFixed(3)) } : {};
    return { ...result, assignment, radio: o.mesh.report(), ...(failovers.length ? { failovers } : {}), ...steeringAirtime };
  } finally {
    await gw?.close().catch(() => undefined);
    await bridge?.close().catch(() => undefined);
    await o.link.close().catch(() => undefined);
  }
}

/** The steered generation of lib/steering/mesh.ts on the mesh gateway whose nodes are behind the radio. */
async function steeredOverRadio(gw: MeshGateway, url: string, meshId: string, assignment: NodeAssignment[], s: RadioSteering, options: GenerateOptions, onToken: TokenListener): Promise<GenerationResult & { attributions: TokenAttribution[]; alpha: number }> {
  const data = loadSteering(gw.g.dim, gw.g.nLayers);
  const steering = new Steering(gw.g, gw.gateway, data, assignment.map((a) => ({ node: a.node, heads: a.heads })));
  const alpha = s.alpha ?? data.settings.alpha;
  const link = await MeshSteering.connect({ url, meshId });
  try {
    return { ...(await generateSteeredOnMesh(gw, link, steering, s.readings, alpha, options, s.onAttribution, onToken)), alpha };
  } finally {
    await link.close();
  }
}

export interface RadioGenerateOptions extends RadioSettings {
  generate: GenerateOptions;
  modelPath: string;
  tokenizerPath: string;
  nodes: number;
  quant: 'f32' | 'int8';
  /** An MQTT broker to use (default: an embedded aedes broker on a free port). */
  brokerUrl?: string;
  meshId?: string;
  onToken?: TokenListener;
  onProgress?: (t: TokenRadioReport) => void;
  onEvent?: MeshEventSink;
  log?: Logger;
  /** Head nodes run as the firmware's native radio node (native-radio.ts): true for all, or these radio addresses. */
  native?: boolean | readonly number[];
  /** Spare radio nodes (SimulatedRadioMeshOptions.spares). */
  spares?: number;
  faults?: RadioFault[];
  steer?: RadioSteering;
}

/** `generate --radio sim`: the radio nodes on the simulated channel, the gateway radio on it directly. */
export async function runRadioGenerate(o: RadioGenerateOptions): Promise<RadioGenerationResult> {
  const nativeAddresses = o.native === true ? Array.from({ length: o.nodes }, (_, i) => i + 1) : o.native ? [...o.native] : [];
  const mesh = new SimulatedRadioMesh({ ...o, modelPath: o.modelPath, nativeAddresses: new Set(nativeAddresses) });
  let broker: RunningBroker | undefined;
  let natives: NativeRadioNodes | undefined;
  try {
    if (nativeAddresses.length) natives = await NativeRadioNodes.start({ mesh, modelPath: o.modelPath, addresses: nativeAddresses });
    if (!o.brokerUrl) broker = await startAedesBroker({ port: 0 });
    // Paced in real time, a layer takes its airtime over the time scale on the wall clock; allow for retransmission rounds.
    const l = mesh.layout;
    const layerWallMs = o.timeScale ? (10 * layerBoundMs(l.config, l.broadcastFrames, [...l.resultFrames.values()])) / o.timeScale : 0;
    return await generateOverRadio({
      mesh,
      link: new SimulatedChannelLink(mesh.attachGatewayRadio()),
      brokerUrl: o.brokerUrl ?? (broker as RunningBroker).url,
      meshId: o.meshId ?? 'radio',
      modelPath: o.modelPath,
      tokenizerPath: o.tokenizerPath,
      generate: o.generate,
      onToken: o.onToken,
      onProgress: o.onProgress,
      onEvent: o.onEvent,
      gatherTimeoutMs: Math.max(60000, Math.ceil(layerWallMs)),
      log: o.log,
      faults: o.faults,
      steer: o.steer,
    });
  } finally {
    await natives?.close();
    await broker?.close();
  }
}

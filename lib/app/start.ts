/**
 * The whole system on one machine, as `npm start` runs it: the embedded MQTT broker, one
 * head-node process per attention head (or as many as asked), and Node-RED with the shipped
 * flow, whose mesh-llm nodes run the gateway.
 */
import * as path from 'node:path';
import { Checkpoint } from '../llm/checkpoint';
import { resolveOrFetchModelPaths } from '../llm/provide';
import { RunningBroker, checkPortFree, startAedesBroker } from '../mesh/broker';
import { connectMqtt, endClient, subscribe } from '../mesh/mqtt';
import { NodeProcesses, spawnHeadNodes } from '../mesh/processes';
import { MeshLlmSettingsOptions, adminAuth } from '../../settings';
import { RunningNodeRed, startNodeRed } from './nodered';
import { RunningSensors, startSensorSimulation } from './sensors';
import { ScenarioName } from '../steering/sensors';
import { RunningBridge, startBridge } from '../../gateway-bridge/service';
import { BandwidthKHz, SpreadingFactor } from '../radio/airtime';
import { receiveControl, topicsFor } from '../mesh/wire';
import { openStartRunStore } from '../runs/start';
import { GATEWAY_USER, isLoopback } from '../mesh/acl';
import { busCredentials } from './bus';

export interface StartOptions extends MeshLlmSettingsOptions {
  model?: string;
  tokenizer?: string;
  /** Head-node processes to start (default: one per attention head). */
  nodes?: number;
  /** Use this broker (and head nodes already on it) instead of the embedded one. */
  broker?: string;
  meshId: string;
  quant: 'f32' | 'int8';
  /** Start native head nodes (the firmware core built for the host) instead of node.js ones. */
  native?: boolean;
  /** Sensor scenario the simulated head nodes feel (default calm); null: no simulated sensors. */
  scenario?: ScenarioName | null;
  /** Run the head nodes behind the LoRa bridge on the simulated channel instead of as processes on MQTT. */
  radio?: RadioStartSettings;
  /** Where the embedded broker listens (default 127.0.0.1:any); beyond loopback it requires the bus credentials. */
  busHost?: string;
  busPort?: number;
}

type Login = { username: string; password: string };

export interface RadioStartSettings {
  region: string;
  sf: SpreadingFactor;
  bandwidthKHz: BandwidthKHz;
  channels: number;
  channelPlan?: string;
  nodes: number;
  /** Spare radio nodes flashed with the head groups of nodes 1, 2, ... (idle until a failover). */
  spares?: number;
  loss: number;
  /** Simulated s per wall s (1: true airtime); the dashboard's control changes it while running. */
  timeScale?: number;
}

/** How long the flow's gather waits for a layer on the simulated radio (a layer there takes seconds of airtime, more when slowed down). */
const RADIO_GATHER_TIMEOUT_MS = 600_000;

/**
 * The simulated LoRa mesh of `start --radio sim`: the bridge with its radio head nodes on the
 * embedded broker, and the dashboard's time-scale control (timeScale on mesh-llm/{mesh}/sim/control).
 */
async function startRadio(o: StartOptions & { radio: RadioStartSettings }, brokerUrl: string, login: Login, modelPath: string, log: (line: string) => void): Promise<{ bridge: RunningBridge; close: () => Promise<void> }> {
  const bridge = await startBridge({ brokerUrl, ...login, meshId: o.meshId, modelPath, quant: o.quant, link: 'sim', native: o.native, ...o.radio, timeScale: o.radio.timeScale ?? 1, log: (level, text) => level !== 'debug' && log(`radio ${level}: ${text}`) });
  const t = topicsFor(o.meshId);
  const control = await connectMqtt({ url: brokerUrl, ...login, clientId: `mesh-llm-${o.meshId}-radio-control-${process.pid}`.slice(0, 64) });
  control.on('message', (_topic, payload) => {
    const m = receiveControl('sim-control', payload, () => undefined); // the sensor simulation reports bad ones
    if (m?.timeScale === undefined) return;
    try {
      bridge.setTimeScale(m.timeScale);
      log(`radio time scale now ${m.timeScale}x`);
    } catch (e) {
      log(`radio time scale refused: ${(e as Error).message}`);
    }
  });
  await subscribe(control, [t.simControl], 0);
  return {
    bridge,
    close: async () => {
      await endClient(control).catch(() => undefined);
      await bridge.close();
    },
  };
}

export interface RunningSystem {
  editorUrl: string;
  brokerUrl: string;
  nodeCount: number;
  /** Resolves with a reason if the broker the system was given (--broker) goes away; the embedded one cannot. */
  lost: Promise<string>;
  /** Stops everything; HTTP requests in flight are answered 503 with the reason. */
  stop(reason?: string): Promise<void>;
}

/** A connection that only watches an external broker: it says when the broker goes away. */
async function watchBroker(url: string): Promise<{ lost: Promise<string>; close: () => Promise<void> }> {
  const client = await connectMqtt({ url, clientId: `mesh-llm-start-${process.pid}`.slice(0, 64) });
  let closing = false;
  const lost = new Promise<string>((resolve) => client.on('close', () => !closing && resolve(`lost the connection to the MQTT broker ${url}`)));
  return {
    lost,
    close: () => {
      closing = true;
      return endClient(client);
    },
  };
}

export async function startSystem(o: StartOptions, log: (line: string) => void): Promise<RunningSystem> {
  // a busy editor port, or an editor beyond loopback without a login, is said before anything is started (and anything started is stopped on any later failure)
  adminAuth(o.host);
  await checkPortFree(o.host, o.port, 'the Node-RED editor');
  const runs = openStartRunStore(o.dataDir); // a corrupt or locked run store stops start here, with the reason
  const paths = await resolveOrFetchModelPaths({ model: o.model, tokenizer: o.tokenizer });
  const ckpt = Checkpoint.open(paths.model);
  const nHeads = ckpt.info.config.nHeads;
  ckpt.close();
  let broker: RunningBroker | undefined;
  let children: NodeProcesses | undefined;
  let nodeRed: RunningNodeRed | undefined;
  let sensors: RunningSensors | undefined;
  let watcher: Awaited<ReturnType<typeof watchBroker>> | undefined;
  let radio: Awaited<ReturnType<typeof startRadio>> | undefined;
  const stop = async (reason?: string) => {
    await radio?.close().catch(() => undefined);
    await watcher?.close().catch(() => undefined);
    await sensors?.stop().catch(() => undefined);
    await nodeRed?.close(reason).catch(() => undefined);
    await children?.stop();
    await broker?.close();
    runs.close();
  };
  try {
    let brokerUrl = o.broker;
    let nodeCount = o.nodes ?? 0;
    let busLogin: Login | undefined; // the gateway's login on the embedded broker
    if (brokerUrl) watcher = await watchBroker(brokerUrl);
    if (!brokerUrl) {
      const bus = busCredentials(o.dataDir, o.meshId, o.radio ? [] : Array.from({ length: o.nodes ?? nHeads }, (_, i) => `node-${i + 1}`));
      busLogin = bus.login(GATEWAY_USER);
      const host = o.busHost ?? '127.0.0.1';
      // the ACL always holds; on loopback a client without a login may still watch, as an observer
      broker = await startAedesBroker({ host, port: o.busPort ?? 0, credentials: bus.credentials, anonymousObservers: true, onRefused: (what) => log(`bus: refused ${what}`) });
      brokerUrl = broker.url;
      log(`embedded MQTT broker on ${brokerUrl}${isLoopback(host) ? ' (a client without a login only observes)' : ' (credentials required)'}; bus credentials ${bus.created ? 'made in' : 'from'} ${bus.file}`);
      let ids: string[];
      if (o.radio) {
        radio = await startRadio({ ...o, radio: o.radio }, brokerUrl, busLogin, paths.model, log);
        nodeCount = radio.bridge.nodes;
        ids = radio.bridge.ids;
        const spares = o.radio.spares ?? 0;
        const kinds = `${nodeCount - spares} ${o.native ? 'native ' : ''}radio head nodes${spares ? ` and ${spares} spares flashed with the first nodes' heads` : ''}`;
        log(`the LoRa bridge with ${kinds} (${ids.join(', ')}) on the simulated channel: ${o.radio.region}, SF${o.radio.sf}, ${o.radio.bandwidthKHz} kHz, ${o.radio.timeScale ?? 1}x real time`);
      } else {
        nodeCount = o.nodes ?? nHeads;
        children = spawnHeadNodes({ count: nodeCount, brokerUrl, meshId: o.meshId, modelPath: paths.model, native: o.native, credentials: (id) => bus.login(id) });
        ids = children.nodes.map((n) => n.id);
        log(`started ${nodeCount} ${o.native ? 'native ' : ''}head-node processes (${ids.join(', ')})`);
      }
      if (o.scenario !== null) {
        const scenario = o.scenario ?? 'calm';
        sensors = await startSensorSimulation({ brokerUrl, ...busLogin, meshId: o.meshId, nodes: ids, scenario });
        log(`simulated sensors on every head node: ${scenario === 'calm' ? 'a calm room' : `scenario "${scenario}" (a calm minute, then the event, repeating)`}`);
      }
    }
    const url = new URL(brokerUrl);
    // The shipped flow reads its broker and node count from these.
    process.env.MESH_LLM_BROKER = brokerUrl;
    process.env.MESH_LLM_BROKER_HOST = url.hostname;
    process.env.MESH_LLM_BROKER_PORT = url.port || '1883';
    process.env.MESH_LLM_NODES = nodeCount ? String(nodeCount) : '';
    process.env.MESH_LLM_ALERTS_FILE ??= path.join(o.dataDir, 'alerts.jsonl');
    process.env.MESH_LLM_GATHER_TIMEOUT = o.radio ? String(RADIO_GATHER_TIMEOUT_MS) : (process.env.MESH_LLM_GATHER_TIMEOUT ?? '2000');
    process.env.MESH_LLM_MODEL_DIR ??= path.dirname(paths.model);
    nodeRed = await startNodeRed(o, { busLogin });
    return { editorUrl: nodeRed.url, brokerUrl, nodeCount, lost: watcher?.lost ?? new Promise<string>(() => undefined), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * What the CLI runs: a head node until it is told to stop, the embedded broker until it is
 * told to stop, and a whole mesh generation (`generate --mesh N` or `--broker URL`).
 */
import { MeshEventSink } from './events';
import { GenerateOptions, GenerationResult, TokenListener } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { RunningBroker, startAedesBroker } from './broker';
import { MeshGateway, NodeAssignment } from './gateway';
import { BrokerAddress, Logger, stderrLogger } from './mqtt';
import { HeadNode, HeadNodeOptions } from './node';
import { spawnHeadNodes } from './processes';
import { FailoverEvent } from './runner';
import { MeshCredentials } from './acl';
import { Encoding, WeightFormat } from '../llm/quant';

export const DEFAULT_MESH_ID = 'default';
export const DEFAULT_BROKER_URL = 'mqtt://127.0.0.1:1883';

/** Resolves once one of the signals arrives (or the parent's IPC channel closes). */
export function untilStopped(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    if (process.send) {
      process.once('disconnect', () => resolve('parent went away'));
      process.channel?.unref(); // the channel only watches the parent; it must not keep this process alive
    }
  });
}

/**
 * Runs a head node until SIGINT/SIGTERM (or, as a child, until its parent goes away): exit code
 * 0. If the broker connection drops, the node ends with exit code 1.
 */
export async function runHeadNode(o: HeadNodeOptions): Promise<number> {
  const log = o.log ?? stderrLogger(o.id);
  const node = new HeadNode(o);
  const stopped = untilStopped().then((why) => ({ why, lost: false }));
  await node.start();
  const lost = node.lost.then((why) => ({ why, lost: true }));
  const end = await Promise.race([stopped, lost]);
  log(end.lost ? 'error' : 'info', end.lost ? end.why : `stopping (${end.why})`); // no reconnect: the gateway has already counted a lost node out
  await node.stop();
  return end.lost ? 1 : 0;
}

/** Runs the embedded aedes broker until SIGINT/SIGTERM. */
export async function runBroker(o: { host?: string; port?: number; username?: string; password?: string; credentials?: MeshCredentials; tls?: { cert: string; key: string } }): Promise<number> {
  const broker = await startAedesBroker({ ...o, onRefused: (what) => process.stderr.write(`mesh-llm broker: refused ${what}\n`) });
  const stopped = untilStopped(); // listening for SIGTERM before saying it is ready: a signal right after the line is not fatal
  process.stderr.write(`mesh-llm broker listening on ${broker.url}\n`);
  await stopped;
  await broker.close();
  return 0;
}

export interface MeshGenerateOptions {
  generate: GenerateOptions;
  modelPath: string;
  tokenizerPath: string;
  /** Start an embedded broker and this many head-node processes. */
  mesh?: number;
  /** With mesh: start native head nodes (the firmware core built for the host) instead of node.js ones. */
  native?: boolean;
  /** With native: a folder of weight shards (node-K.shard), each node loading its own instead of the checkpoint. */
  shards?: string;
  /** Or use head nodes already running on this broker. */
  broker?: string;
  username?: string;
  password?: string;
  meshId?: string;
  /** With --broker: how many nodes to wait for (default: whoever is up after a short settle). */
  nodes?: number;
  /** Head partition (default: one group per node). */
  groups?: string | number | number[][];
  quant?: WeightFormat;
  /** Overrides the transport the weights imply. */
  transport?: Encoding;
  gatherTimeoutMs?: number;
  onToken?: TokenListener;
  log?: Logger;
  /** Receives the stderr lines of the head-node processes --mesh starts (default: this process's stderr). */
  nodeLog?: (node: string, line: string) => void;
  /** Runs the generation on the assigned mesh instead of gw.generate (a steered generation: lib/steering/run.ts). */
  generateOn?: (gw: MeshGateway, assignment: NodeAssignment[], broker: BrokerAddress & { meshId: string }) => Promise<GenerationResult>;
  /** Gets every mesh event the gateway publishes (lib/mesh/events.ts), as it publishes it. */
  onEvent?: MeshEventSink;
}

export interface MeshGenerationResult extends GenerationResult {
  assignment: NodeAssignment[];
  /** Head nodes lost during the run, where their heads went and the replay that rebuilt them (empty: no fault). */
  failovers: FailoverEvent[];
}

async function generateOn(gw: MeshGateway, o: MeshGenerateOptions, nodeIds: string[], broker: BrokerAddress & { meshId: string }): Promise<MeshGenerationResult> {
  const assignment = await gw.assign(nodeIds, { groups: o.groups, quant: o.quant, transport: o.transport });
  const log = o.log ?? stderrLogger('gateway');
  for (const a of assignment) log('info', `${a.node}: heads [${a.heads.join(',')}] kv heads [${a.kvHeads.join(',')}], ${a.weightBytes} weight bytes`);
  const result = await (o.generateOn ? o.generateOn(gw, assignment, broker) : gw.generate(o.generate, o.onToken));
  return { ...result, assignment, failovers: [...gw.runner.failovers] };
}

/** One generation through a mesh of head-node processes; every process it started is gone when it settles. */
export async function runMeshGenerate(o: MeshGenerateOptions): Promise<MeshGenerationResult> {
  const meshId = o.meshId ?? DEFAULT_MESH_ID;
  if (o.mesh === undefined && o.broker === undefined) throw new MeshLlmError('a mesh generation needs --mesh N or --broker URL');
  let broker: RunningBroker | undefined;
  let children: ReturnType<typeof spawnHeadNodes> | undefined;
  let gw: MeshGateway | undefined;
  try {
    if (o.broker === undefined) {
      if (!Number.isInteger(o.mesh) || (o.mesh as number) < 1) throw new MeshLlmError(`--mesh ${o.mesh}: expected a node count of at least 1`);
      broker = await startAedesBroker({ port: 0 });
      children = spawnHeadNodes({ count: o.mesh as number, brokerUrl: broker.url, meshId, modelPath: o.modelPath, native: o.native, shards: o.shards, onLog: o.nodeLog });
    }
    const url = broker?.url ?? (o.broker as string);
    gw = await MeshGateway.connect({ url, username: o.username, password: o.password, meshId, modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, gatherTimeoutMs: o.gatherTimeoutMs, embeddedBroker: broker?.aedes, log: o.log });
    if (o.onEvent) gw.events.on(o.onEvent);
    const discovering = gw.discover({ count: o.mesh ?? o.nodes, timeoutMs: 20000 });
    const nodeIds = await (children ? Promise.race([discovering, children.firstExit]) : discovering);
    // a head node that exits mid-run is a lost node: the runner moves its heads (its last will tells the gateway)
    return await generateOn(gw, o, nodeIds, { url, username: o.username, password: o.password, meshId });
  } finally {
    await gw?.close().catch(() => undefined);
    await children?.stop();
    await broker?.close();
  }
}

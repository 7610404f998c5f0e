/**
 * Native radio head nodes: the firmware's own radio path (`dist/firmware/mesh-llm-radio-node`,
 * firmware/core/radio_node.cpp on the host HALs) as processes on the simulated channel, one
 * per radio address, each loading its weight shard (lib/firmware/shard.ts) as a board loads
 * its flash partition, with a folder for its frame counter (its NVS). They join through the
 * channel's socket (lib/radio/sim-socket.ts); the rest of the mesh does not know they are
 * not TypeScript nodes.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshLlmError } from '../lib/llm/errors';
import { firmwareBinary } from '../lib/firmware/build';
import { shardFileName, writeShards } from '../lib/firmware/shard';
import { SimRadioServer } from '../lib/radio/sim-socket';
import { SensorReadings } from '../lib/radio/sensor-report';
import { SimulatedRadioMesh } from './radio-mesh';

export interface NativeRadioNodesOptions {
  mesh: SimulatedRadioMesh;
  /** The checkpoint the shards are cut from. */
  modelPath: string;
  /** Radio addresses to run natively (the mesh must have been made with them as nativeAddresses). */
  addresses: readonly number[];
  /** Where shards and counters go (default: a fresh temporary folder, removed on close). */
  dir?: string;
  /** The nodes' stderr lines (default: warnings and errors to this process's stderr). */
  onLine?: (address: number, line: string) => void;
  /** Called with every frame a native node transmits. */
  onTransmit?: (address: number, frame: Buffer) => void;
  logLevel?: 'debug' | 'info' | 'warn';
  /** How long a node may take to join (ms, default 20000). */
  joinTimeoutMs?: number;
  /** The nodes' sensors (the host's fixed-reading sensor HAL), reported every `everyMs` of simulated time; the mesh must carry sensor reports (SimulatedRadioMeshOptions.sensors). */
  sensors?: { everyMs: number; read: (address: number) => SensorReadings };
}

export class NativeRadioNodes {
  readonly server: SimRadioServer;
  readonly dir: string;
  readonly processes = new Map<number, ChildProcess>();
  /** Exit codes of nodes that stopped on their own. */
  readonly exits = new Map<number, number | null>();
  private readonly o: NativeRadioNodesOptions;
  private readonly ownDir: boolean;

  private constructor(o: NativeRadioNodesOptions, server: SimRadioServer, dir: string, ownDir: boolean) {
    this.o = o;
    this.server = server;
    this.dir = dir;
    this.ownDir = ownDir;
  }

  /** Cuts the shards, opens the channel's socket and starts every node; resolves once all have joined. */
  static async start(o: NativeRadioNodesOptions): Promise<NativeRadioNodes> {
    const binary = firmwareBinary('mesh-llm-radio-node');
    const ownDir = o.dir === undefined;
    const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-native-radio-'));
    const m = o.mesh;
    if (m.transport !== 'f32' && m.transport !== 'int8') throw new MeshLlmError(`native radio nodes load f32 or int8 shards, not ${m.transport} weights`);
    writeShards(o.modelPath, m.primaries, m.transport, path.join(dir, 'shards')); // a spare loads the shard of the node whose group it holds
    const heads = new Map(m.infos.map((i) => [i.address, i.heads]));
    const server = await SimRadioServer.listen({ channel: m.channel, clock: m.clock, layout: m.layout, g: m.g, heads, ledger: m.ledger, onTransmit: o.onTransmit, log: (_l, msg) => process.stderr.write(`[radio] ${msg}\n`) });
    const nodes = new NativeRadioNodes(o, server, dir, ownDir);
    nodes.binary = binary;
    try {
      await Promise.all(o.addresses.map((a) => nodes.startNode(a)));
    } catch (e) {
      await nodes.close();
      throw e;
    }
    return nodes;
  }

  private binary = '';

  /** The shard file of a node. */
  shardPath(address: number): string {
    const primaries = this.o.mesh.primaries;
    const holder = address <= primaries ? address : ((address - primaries - 1) % primaries) + 1;
    return path.join(this.dir, 'shards', shardFileName(holder));
  }

  /** Starts (or starts again) the node at `address`; resolves once it has joined, rejects with its stderr when it exits first. */
  startNode(address: number, shard = this.shardPath(address), join?: string): Promise<void> {
    // join: the node's join record (mesh-llm provision) in place of the key, mesh id and the channel's plan
    const mesh = join ? ['--join', join] : ['--key', this.o.mesh.key.toString('hex'), '--mesh-id', String(this.o.mesh.radioMeshId)];
    const args = ['--socket', this.server.path, '--shard', shard, ...mesh, '--storage', path.join(this.dir, `storage-${address}`), '--log', this.o.logLevel ?? 'info'];
    const sensors = this.o.sensors;
    if (sensors) {
      const readings = Object.entries(sensors.read(address)).filter((e): e is [string, number] => typeof e[1] === 'number');
      args.push('--sensors', readings.map(([c, v]) => `${c}=${v}`).join(','), '--sensors-every', String(sensors.everyMs));
    }
    const child = spawn(this.binary, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    this.processes.set(address, child);
    this.exits.delete(address);
    const lines: string[] = [];
    let partial = '';
    child.stderr?.on('data', (d: Buffer) => {
      const text = partial + d.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (this.o.onLine) this.o.onLine(address, line);
        else if (/ (warn|error): /.test(line)) process.stderr.write(`${line}\n`);
      }
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new MeshLlmError(`native radio node ${address} did not join within ${this.o.joinTimeoutMs ?? 20000} ms: ${lines.join(' | ')}`)), this.o.joinTimeoutMs ?? 20000);
      child.once('exit', (code) => {
        this.exits.set(address, code);
        clearTimeout(timer);
        reject(new MeshLlmError(`native radio node ${address} exited with code ${code} before joining: ${lines.filter((l) => l.trim()).join(' | ')}`));
      });
      this.server.joined(address, exited).then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Kills a node at once (SIGKILL: a power cut) and waits for it to be gone. */
  async kill(address: number): Promise<void> {
    const child = this.processes.get(address);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.processes.values()].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
            c.kill('SIGCONT'); // a stopped node (SIGSTOP) takes its SIGTERM only once it runs again
          }),
      ),
    );
    await this.server.close();
    if (this.ownDir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface NativeModemOptions {
  mesh: SimulatedRadioMesh;
  /** The serial port (a pty) the modem's host build speaks the bridge's framing on. */
  serialPath: string;
  onLine?: (line: string) => void;
}

/**
 * The gateway's radio modem, host build (`dist/firmware/mesh-llm-modem`): the radio-modem
 * firmware's serial side on `serialPath`, its radio the gateway's on the simulated channel.
 * Resolves once it has joined the channel.
 */
export async function startNativeModem(o: NativeModemOptions): Promise<{ server: SimRadioServer; process: ChildProcess; close: () => Promise<void> }> {
  const binary = firmwareBinary('mesh-llm-modem');
  const m = o.mesh;
  const heads = new Map(m.infos.map((i) => [i.address, i.heads]));
  const server = await SimRadioServer.listen({ channel: m.channel, clock: m.clock, layout: m.layout, g: m.g, heads });
  const child = spawn(binary, ['--serial', o.serialPath, '--socket', server.path], { stdio: ['pipe', 'ignore', 'pipe'] });
  const lines: string[] = [];
  child.stderr?.on('data', (d: Buffer) => {
    for (const line of d.toString('utf8').split('\n').filter((l) => l)) {
      lines.push(line);
      o.onLine?.(line);
    }
  });
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    }
    await server.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new MeshLlmError(`the modem's host build exited with code ${code}: ${lines.join(' | ')}`)));
      server.joined(0).then(resolve);
    });
  } catch (e) {
    await close();
    throw e;
  }
  return { server, process: child, close };
}

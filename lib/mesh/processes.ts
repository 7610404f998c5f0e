/**
 * Head nodes as separate OS processes: `mesh-llm node` children of the gateway. Each child
 * holds an IPC channel to its parent and exits when that channel closes, so no node outlives
 * the process that started it, even one that was killed.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { MeshLlmError } from '../llm/errors';
import { nativeNodeBinary } from '../firmware/build';
import { shardFileName } from '../firmware/shard';

export interface SpawnNodesOptions {
  count: number;
  brokerUrl: string;
  meshId: string;
  modelPath: string;
  /** Ids are `${prefix}${i}` for i = 1..count. */
  prefix?: string;
  heartbeatMs?: number;
  /**
   * Run the native head node (the firmware core built for the host, dist/firmware/mesh-llm-node)
   * instead of `mesh-llm node` on node.js. Same topics, frames, schemas and head outputs.
   */
  native?: boolean;
  /**
   * With native: a folder of weight shards (`mesh-llm shard --out DIR`); node i loads
   * node-i.shard (lib/firmware/shard.ts shardFileName) instead of the whole checkpoint.
   */
  shards?: string;
  /** Receives each child's stderr lines (default: copied to this process's stderr). */
  onLog?: (node: string, line: string) => void;
  /** Each node's broker username and password (a bus with per-node credentials: lib/mesh/acl.ts). */
  credentials?: (node: string) => { username: string; password: string } | undefined;
  /** Environment variables added to the children's (such as MESH_LLM_CA, the CA file trusted for mqtts://). */
  env?: Record<string, string>;
}

export interface NodeProcess {
  id: string;
  child: ChildProcess;
  /** Resolves with a description once the child has exited. */
  exited: Promise<string>;
}

export interface NodeProcesses {
  nodes: NodeProcess[];
  /** Rejects as soon as any child exits (with its id and exit status). */
  firstExit: Promise<never>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when every child is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** The compiled CLI entry point (dist/cli/mesh-llm.js). */
export function cliEntry(): string {
  return path.resolve(__dirname, '..', '..', 'cli', 'mesh-llm.js');
}

function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let rest = '';
  return (chunk) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) if (l) onLine(l);
  };
}

/**
 * Command line of the native head node: the options of `mesh-llm node`. With shardPath the node
 * loads that weight shard instead of reading its rows from the checkpoint.
 */
export function nativeNodeArgs(id: string, o: { brokerUrl: string; meshId: string; modelPath: string; shardPath?: string; heartbeatMs?: number; username?: string; password?: string }): string[] {
  const args = ['--id', id, '--broker', o.brokerUrl, '--mesh', o.meshId, ...(o.shardPath ? ['--shard', o.shardPath] : ['--model', o.modelPath])];
  if (o.heartbeatMs !== undefined) args.push('--heartbeat', String(o.heartbeatMs));
  if (o.username) args.push('--username', o.username);
  if (o.password) args.push('--password', o.password);
  return args;
}

function spawnNode(id: string, index: number, o: SpawnNodesOptions): NodeProcess {
  let child: ChildProcess;
  const login = o.credentials?.(id);
  // the password goes in the environment, not on the command line (which every local user can read in the process list)
  const env = { ...process.env, ...o.env, ...(login ? { MESH_LLM_PASSWORD: login.password } : {}) };
  if (o.native) {
    const shardPath = o.shards === undefined ? undefined : path.join(o.shards, shardFileName(index));
    // its standard input is a pipe from this process: it exits when the pipe closes
    child = spawn(nativeNodeBinary(), nativeNodeArgs(id, { ...o, username: login?.username, shardPath }), { stdio: ['pipe', 'ignore', 'pipe'], env });
  } else {
    const args = [cliEntry(), 'node', '--id', id, '--broker', o.brokerUrl, '--mesh', o.meshId, '--model', o.modelPath];
    if (o.heartbeatMs !== undefined) args.push('--heartbeat', String(o.heartbeatMs));
    if (login) args.push('--username', login.username);
    child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env });
  }
  const onLog = o.onLog ?? ((node, line) => process.stderr.write(`${line.startsWith('[') ? '' : `[${node}] `}${line}\n`));
  child.stderr?.on('data', lineSplitter((line) => onLog(id, line)));
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(`head node ${id} (pid ${child.pid}) exited ${signal ? `on ${signal}` : `with code ${code}`}`));
    child.once('error', (e) => resolve(`head node ${id} could not start: ${e.message}`));
  });
  return { id, child, exited };
}

function stopChild(p: NodeProcess, graceMs: number): Promise<void> {
  const { child } = p;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return p.exited.then(() => undefined);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  return p.exited.then(() => clearTimeout(timer));
}

/**
 * `mesh-llm broker` as a child process on the given port; resolves once it listens. Like the
 * head nodes, it exits when its parent goes away.
 */
export function spawnBroker(port: number, extraArgs: string[] = []): Promise<{ url: string; child: ChildProcess; close(): Promise<void> }> {
  const child = spawn(process.execPath, [cliEntry(), 'broker', '--port', String(port), ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (\S+)/.exec(stderr);
      if (m) resolve({ url: m[1], child, close });
    });
    child.once('exit', (code) => reject(new Error(`mesh-llm broker exited with code ${code}: ${stderr.trim()}`)));
  });
}

export function spawnHeadNodes(o: SpawnNodesOptions): NodeProcesses {
  if (o.shards !== undefined && !o.native) throw new MeshLlmError('weight shards are loaded by native head nodes only (--native)');
  const nodes = Array.from({ length: o.count }, (_, i) => spawnNode(`${o.prefix ?? 'node-'}${i + 1}`, i + 1, o));
  const firstExit = Promise.race(nodes.map((n) => n.exited)).then((why) => Promise.reject(new MeshLlmError(why)));
  firstExit.catch(() => undefined);
  return {
    nodes,
    firstExit,
    stop: (graceMs = 2000) => Promise.all(nodes.map((n) => stopChild(n, graceMs))).then(() => undefined),
  };
}

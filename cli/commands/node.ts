/** `mesh-llm node`: a head-node process that computes the head group the gateway assigns it. */
import * as fs from 'node:fs';
import { trustCaFile } from '../../lib/mesh/mqtt';
import * as path from 'node:path';
import { UsageError, intOption, parseOptions } from '../args';
import { provideModelFiles } from '../../lib/llm/provide';
import { DEFAULT_MODEL } from '../../lib/llm/resolve';
import { DEFAULT_BROKER_URL, DEFAULT_MESH_ID, runHeadNode } from '../../lib/mesh/run';
import { nativeNodeBinary } from '../../lib/firmware/build';
import { nativeNodeArgs } from '../../lib/mesh/processes';
import { checkId } from '../../lib/mesh/wire';
import { spawn } from 'node:child_process';

/**
 * Runs the native node in the foreground: its stderr is this process's, signals are passed on,
 * and its exit code becomes this command's.
 */
function runNative(binary: string, args: string[]): Promise<number> {
  const child = spawn(binary, args, { stdio: ['pipe', 'inherit', 'inherit'] });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const onTerm = forward('SIGTERM');
  const onInt = forward('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return new Promise((resolve) => {
    child.once('error', (e) => {
      process.stderr.write(`mesh-llm node --native: cannot start ${binary}: ${e.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

/** --shard PATH: a shard file, or a folder of them where this node's is ID.shard. */
function shardFileFor(p: string, id: string): string {
  const abs = path.resolve(p);
  if (!fs.existsSync(abs)) throw new UsageError(`node: --shard ${p}: no such file or folder`);
  if (!fs.statSync(abs).isDirectory()) return abs;
  const file = path.join(abs, `${id}.shard`);
  if (!fs.existsSync(file)) throw new UsageError(`node: --shard ${p}: no ${id}.shard in that folder (mesh-llm shard names them node-1.shard .. node-N.shard; give --id node-K or the file itself)`);
  return file;
}

export const usage = `mesh-llm node --id ID [--broker URL] [--username U] [--password P] [--ca FILE] [--mesh ID] [--model PATH] [--heartbeat MS] [--native [--shard PATH]]

  --id ID            this node's id (letters, digits, _ . -), unique on the mesh
  --broker URL       MQTT broker (default ${DEFAULT_BROKER_URL})
  --username U       broker username (or in the URL: mqtt://user:pass@host:port)
  --password P       broker password (default: MESH_LLM_PASSWORD from the environment, which no other user can read)
  --ca FILE          with an mqtts:// broker (TLS): the PEM file of the CA that signed its certificate
                     (node.js node only: the native node speaks plain MQTT)
  --mesh ID          mesh id: the topic tree mesh-llm/ID/... (default ${DEFAULT_MESH_ID})
  --model PATH       llama2.c checkpoint to read this node's weight slices from (default: the model resolution order)
  --heartbeat MS     telemetry interval (default 1000)
  --native           run the native head node (the firmware core built for the host, C++;
                     dist/firmware/mesh-llm-node, compiled on first use) instead of the node.js one
  --shard PATH       with --native: load this weight shard (mesh-llm shard) instead of the checkpoint;
                     PATH a shard file, or the folder mesh-llm shard wrote (then ID.shard in it, e.g.
                     --id node-2 takes node-2.shard)`;

const spec = {
  id: { type: 'string' },
  broker: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  ca: { type: 'string' },
  mesh: { type: 'string' },
  model: { type: 'string' },
  heartbeat: { type: 'string' },
  native: { type: 'boolean' },
  shard: { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, spec, 'node');
  if (!v.id) throw new UsageError('node: --id ID is required');
  trustCaFile(v.ca);
  if (v.shard !== undefined && !v.native) throw new UsageError('node: --shard is for the native head node (--native); the node.js node reads its rows from --model');
  const shardPath = v.shard === undefined ? undefined : shardFileFor(v.shard, v.id);
  const model = shardPath ? '' : v.model ? path.resolve(v.model) : (await provideModelFiles([DEFAULT_MODEL]))[0];
  const heartbeatMs = intOption('heartbeat', v.heartbeat, 1000, 10, 3_600_000);
  if (v.native) {
    checkId('node', v.id);
    checkId('mesh', v.mesh ?? DEFAULT_MESH_ID);
    const url = v.broker ?? DEFAULT_BROKER_URL;
    return runNative(nativeNodeBinary(), nativeNodeArgs(v.id, { brokerUrl: url, meshId: v.mesh ?? DEFAULT_MESH_ID, modelPath: model, shardPath, heartbeatMs, username: v.username, password: v.password }));  // without --password the native node reads MESH_LLM_PASSWORD itself
  }
  return runHeadNode({
    id: v.id,
    url: v.broker ?? DEFAULT_BROKER_URL,
    username: v.username,
    password: v.password ?? process.env.MESH_LLM_PASSWORD,
    meshId: v.mesh ?? DEFAULT_MESH_ID,
    modelPath: model,
    heartbeatMs,
  });
}

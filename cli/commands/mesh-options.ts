/** The mesh options of `mesh-llm generate`: --mesh N starts a mesh, --broker URL uses one. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trustCaFile } from '../../lib/mesh/mqtt';
import { Checkpoint } from '../../lib/llm/checkpoint';
import { shardFileName } from '../../lib/firmware/shard';
import { GenerationResult, TokenListener } from '../../lib/llm/engine';
import { ModelPaths } from '../../lib/llm/resolve';
import { DEFAULT_MESH_ID, MeshGenerateOptions, runMeshGenerate } from '../../lib/mesh/run';
import { busCredentials, busCredentialsFile as busCredentialsFileOf } from '../../lib/app/bus';
import { GATEWAY_USER } from '../../lib/mesh/acl';
import { UsageError, intOption } from '../args';
import { withEventLog } from '../output';
import type { GenerateCommand } from './generate';

export const meshOptionSpec = {
  mesh: { type: 'string' },
  broker: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  ca: { type: 'string' },
  data: { type: 'string' },
  'mesh-id': { type: 'string' },
  nodes: { type: 'string' },
  'gather-timeout': { type: 'string' },
  native: { type: 'boolean' },
  shards: { type: 'string' },
} as const;

export const meshUsage = `
  --mesh N           run the heads on N head-node processes over an embedded MQTT broker (aedes)
  --native           with --mesh: native head nodes (the firmware core built for the host, C++)
  --shards DIR       with --mesh N --native: each node loads its weight shard DIR/node-K.shard
                     (the folder mesh-llm shard wrote for N nodes in the --quant format) instead of
                     the checkpoint
  --broker URL       run the heads on head nodes already started on this broker (mqtt://host:port)
  --username U       broker username, with --password P (or in the URL: mqtt://user:pass@host:port)
  --data DIR         with --broker: log in as the gateway with the bus credentials mesh-llm start made in
                     DIR (DIR/bus/<mesh>.credentials.json); its embedded broker lets a client without a
                     login only observe, so a request on it needs this (or --username/--password)
  --ca FILE          with an mqtts:// broker (TLS): the PEM file of the CA that signed its certificate
  --mesh-id ID       mesh id, the topic tree mesh-llm/ID/... (default ${DEFAULT_MESH_ID})
  --nodes K          with --broker: wait for K head nodes (default: whoever is up after 0.5 s)
  --gather-timeout MS  fail if a head node has not answered a layer within MS (default 2000)
  With --mesh or --broker, --groups defaults to one group per node.
  With --broker URL and a gateway online on the mesh (mesh-llm start on that broker), the request is
  a durable job on that gateway, followed to its end (tokens as they come; the job id on stderr);
  the gateway's own model and mesh run it (docs/RUNS.md). Without one, generate is a gateway of its own.`;

type MeshValues = { [K in Exclude<keyof typeof meshOptionSpec, 'native'>]?: string } & { groups?: string; native?: boolean };

/**
 * The values with `--data DIR` turned into the gateway's login from the bus credentials
 * `mesh-llm start` made in DIR (for --broker on the broker start runs).
 */
export function withBrokerLogin<V extends MeshValues>(values: V): V {
  if (values.data === undefined) return values;
  if (values.broker === undefined) throw new UsageError('generate: --data DIR gives the login for --broker URL (the broker mesh-llm start runs on DIR)');
  if (values.username !== undefined || values.password !== undefined) throw new UsageError('generate: give --data DIR or --username/--password, not both');
  const file = busCredentialsFileOf(values.data, values['mesh-id'] ?? DEFAULT_MESH_ID);
  if (!fs.existsSync(file)) throw new UsageError(`generate: ${file} does not exist: is DIR the --data folder of a mesh-llm start that ran its embedded broker?`);
  const login = busCredentials(values.data, values['mesh-id'] ?? DEFAULT_MESH_ID, []).login(GATEWAY_USER);
  return { ...values, username: login.username, password: login.password };
}

export function wantsMesh(values: MeshValues): boolean {
  return values.mesh !== undefined || values.broker !== undefined;
}

/** `generate --mesh N` / `--broker URL`: the same generation, through head-node processes. */
export function runMeshCommand(values: MeshValues, cmd: GenerateCommand, paths: ModelPaths, onToken?: TokenListener, generateOn?: MeshGenerateOptions['generateOn']): Promise<GenerationResult> {
  trustCaFile(values.ca);
  if (values.mesh !== undefined && values.broker !== undefined) throw new UsageError('generate: --mesh N starts its own broker; give --mesh or --broker, not both');
  if (values.native && values.mesh === undefined) throw new UsageError('generate: --native chooses the head nodes --mesh N starts (with --broker, start them yourself: mesh-llm node --native)');
  if (values.native) requireLlama2cForNative(paths.model);
  if (values.shards !== undefined && !(values.native && values.mesh !== undefined)) throw new UsageError('generate: --shards DIR is for the native head nodes --mesh N --native starts (mesh-llm node --native --shard FILE for one node)');
  const shards = values.shards === undefined ? undefined : path.resolve(values.shards);
  if (shards !== undefined) requireShardFiles(shards, intOption('mesh', values.mesh, 1, 1, 1024));
  return withEventLog(cmd.events, (onEvent) => runMeshGenerate({
    onEvent,
    generate: cmd.generate,
    modelPath: paths.model,
    tokenizerPath: paths.tokenizer,
    mesh: values.mesh === undefined ? undefined : intOption('mesh', values.mesh, 1, 1, 1024),
    native: values.native,
    shards,
    broker: values.broker,
    username: values.username,
    password: values.password,
    meshId: values['mesh-id'],
    nodes: values.nodes === undefined ? undefined : intOption('nodes', values.nodes, 1, 1, 1024),
    groups: values.groups,
    quant: cmd.quant,
    transport: cmd.transport,
    gatherTimeoutMs: intOption('gather-timeout', values['gather-timeout'], 2000, 1, 600_000),
    onToken,
    generateOn,
  }));
}

/** Native head nodes (the C++ firmware core) read llama2.c checkpoints only: say so before starting them. */
function requireLlama2cForNative(model: string): void {
  const ckpt = Checkpoint.open(model);
  const format = ckpt.info.format;
  ckpt.close();
  if (format !== 'llama2c') throw new UsageError(`generate --native: native head nodes read llama2.c checkpoints; ${model} is ${format === 'gguf' ? 'a GGUF file' : 'a Hugging Face folder'} (run node.js head nodes: leave out --native)`);
}

/** --shards DIR must hold a shard per node (what is in each, the nodes check, saying why they refuse it). */
function requireShardFiles(dir: string, nodes: number): void {
  const missing = Array.from({ length: nodes }, (_, i) => shardFileName(i + 1)).filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length) throw new UsageError(`generate --shards ${dir}: no ${missing.join(', ')} there (cut them with mesh-llm shard --nodes ${nodes} --out ${dir})`);
}

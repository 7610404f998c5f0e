/** `mesh-llm node`: a head-node process that computes the head group the gateway assigns it. */
import * as path from 'node:path';
import { UsageError, intOption, parseOptions } from '../args';
import { resolveModelPaths } from '../../lib/llm/resolve';
import { DEFAULT_BROKER_URL, DEFAULT_MESH_ID, runHeadNode } from '../../lib/mesh/run';

export const usage = `mesh-llm node --id ID [--broker URL] [--username U] [--password P] [--mesh ID] [--model PATH] [--heartbeat MS]

  --id ID            this node's id (letters, digits, _ . -), unique on the mesh
  --broker URL       MQTT broker (default ${DEFAULT_BROKER_URL})
  --username U       broker username (or in the URL: mqtt://user:pass@host:port)
  --password P       broker password
  --mesh ID          mesh id: the topic tree mesh-llm/ID/... (default ${DEFAULT_MESH_ID})
  --model PATH       llama2.c checkpoint to read this node's weight slices from (default: the model resolution order)
  --heartbeat MS     telemetry interval (default 1000)`;

const spec = {
  id: { type: 'string' },
  broker: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  mesh: { type: 'string' },
  model: { type: 'string' },
  heartbeat: { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, spec, 'node');
  if (!v.id) throw new UsageError('node: --id ID is required');
  const model = v.model ? path.resolve(v.model) : resolveModelPaths({}).model;
  return runHeadNode({
    id: v.id,
    url: v.broker ?? DEFAULT_BROKER_URL,
    username: v.username,
    password: v.password,
    meshId: v.mesh ?? DEFAULT_MESH_ID,
    modelPath: model,
    heartbeatMs: intOption('heartbeat', v.heartbeat, 1000, 10, 3_600_000),
  });
}

/**
 * `mesh-llm credentials create`: fresh per-client credentials for a mesh (the gateway, an
 * observer, each head node) and, with --mosquitto DIR, the same rules for Mosquitto: a
 * password file (hashed by mosquitto_passwd) and an ACL file.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from '../../lib/llm/errors';
import { createCredentials, mosquittoAcl, writeCredentials } from '../../lib/mesh/acl';
import { DEFAULT_MESH_ID } from '../../lib/mesh/run';
import { UsageError, intOption, parseOptions } from '../args';

export const usage = `mesh-llm credentials create --out FILE [--mesh ID] [--nodes N | --node-ids A,B,...] [--mosquitto DIR]

  --out FILE         where the credentials go (JSON, readable by this user only); mesh-llm broker --credentials FILE enforces them
  --mesh ID          the mesh (default ${DEFAULT_MESH_ID})
  --nodes N          head nodes node-1 .. node-N (default 8)
  --node-ids LIST    or these node ids
  --mosquitto DIR    also write DIR/passwd (mosquitto_passwd) and DIR/acl for Mosquitto's password_file and acl_file`;

const spec = {
  out: { type: 'string' },
  mesh: { type: 'string' },
  nodes: { type: 'string' },
  'node-ids': { type: 'string' },
  mosquitto: { type: 'string' },
} as const;

/** Mosquitto's password file (hashes, by mosquitto_passwd) and ACL file for these credentials. */
export function writeMosquittoFiles(dir: string, c: ReturnType<typeof createCredentials>): { passwd: string; acl: string } {
  fs.mkdirSync(dir, { recursive: true });
  const passwd = path.join(dir, 'passwd');
  const acl = path.join(dir, 'acl');
  fs.writeFileSync(passwd, '', { mode: 0o600 });
  for (const [user, u] of Object.entries(c.users)) {
    try {
      execFileSync('mosquitto_passwd', ['-b', passwd, user, u.password], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new MeshLlmError(`mosquitto_passwd failed (install Debian's mosquitto package): ${(e as Error).message}`);
    }
  }
  fs.writeFileSync(acl, mosquittoAcl(c), { mode: 0o600 });
  return { passwd, acl };
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'create') throw new UsageError(`credentials: expected "create" (got ${sub ?? 'nothing'})`);
  const v = parseOptions(rest, spec, 'credentials create');
  if (!v.out) throw new UsageError('credentials create: --out FILE is required');
  const ids = v['node-ids'] ? v['node-ids'].split(',').filter(Boolean) : Array.from({ length: intOption('nodes', v.nodes, 8, 1, 1024) }, (_, i) => `node-${i + 1}`);
  const c = createCredentials(v.mesh ?? DEFAULT_MESH_ID, ids);
  writeCredentials(v.out, c);
  process.stderr.write(`credentials for mesh ${c.mesh} (gateway, observer, ${ids.length} head nodes) in ${v.out}\n`);
  if (v.mosquitto) {
    const files = writeMosquittoFiles(v.mosquitto, c);
    process.stderr.write(`Mosquitto: password_file ${files.passwd}, acl_file ${files.acl}\n`);
  }
  return 0;
}

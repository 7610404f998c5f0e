/**
 * The bus credentials of `mesh-llm start`: made on the first run of a data folder
 * (<data>/bus/<mesh>.credentials.json, mode 0600, never in the flow), read on every later run,
 * and handed to everything start runs on its embedded broker: the broker (which always enforces
 * them; on loopback a client without a login may still observe), the head nodes (each its own login), the LoRa bridge, the
 * sensor simulation, and the flow's config nodes, as Node-RED credentials (encrypted in the
 * flow's credentials file with the installation's credential secret).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from '../llm/errors';
import { MeshCredentials, createCredentials, readCredentials, writeCredentials } from '../mesh/acl';

export interface BusCredentials {
  file: string;
  credentials: MeshCredentials;
  /** Whether this run made them (the data folder's first run on this mesh). */
  created: boolean;
  /** A user's login. */
  login(user: string): { username: string; password: string };
}

/** Where a data folder keeps the bus credentials of a mesh. */
export function busCredentialsFile(dataDir: string, meshId: string): string {
  return path.join(dataDir, 'bus', `${meshId}.credentials.json`);
}

/**
 * The data folder's bus credentials for this mesh, with a user for each of `nodes`: read if
 * there, made (random) if not; node ids it does not have yet are added, the others kept.
 */
export function busCredentials(dataDir: string, meshId: string, nodes: readonly string[]): BusCredentials {
  const file = busCredentialsFile(dataDir, meshId);
  const created = !fs.existsSync(file);
  let credentials = created ? createCredentials(meshId, nodes) : readCredentials(file);
  if (credentials.mesh !== meshId) throw new MeshLlmError(`${file} holds the credentials of mesh ${credentials.mesh}, not ${meshId}`);
  const missing = nodes.filter((n) => !Object.hasOwn(credentials.users, n));
  if (missing.length) credentials = { ...credentials, users: { ...credentials.users, ...createCredentials(meshId, missing).users, ...credentials.users } };
  if (created || missing.length) writeCredentials(file, credentials);
  return {
    file,
    credentials,
    created,
    login: (user) => {
      const u = credentials.users[user];
      if (!u) throw new MeshLlmError(`${file} has no user ${user}`);
      return { username: user, password: u.password };
    },
  };
}

/** Node-RED's credentials encryption: aes-256-ctr with key sha256(secret), {"$": iv hex + base64}. */
function decryptCredentials(text: string, secret: string, file: string): Record<string, Record<string, unknown>> {
  const body = JSON.parse(text) as { $?: string } & Record<string, Record<string, unknown>>;
  if (typeof body.$ !== 'string') return body; // not encrypted
  const decipher = createDecipheriv('aes-256-ctr', createHash('sha256').update(secret).digest(), Buffer.from(body.$.slice(0, 32), 'hex'));
  const clear = decipher.update(body.$.slice(32), 'base64', 'utf8') + decipher.final('utf8');
  try {
    return JSON.parse(clear) as Record<string, Record<string, unknown>>;
  } catch {
    throw new MeshLlmError(`cannot decrypt Node-RED's credentials file ${file} with this installation's credential secret`);
  }
}

function encryptCredentials(creds: object, secret: string): string {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(secret).digest(), iv);
  return JSON.stringify({ $: iv.toString('hex') + cipher.update(JSON.stringify(creds), 'utf8', 'base64') + cipher.final('base64') });
}

/**
 * Gives the flow's connections to the embedded broker the gateway's login, as Node-RED
 * credentials: each mesh-llm-config node whose broker is ${MESH_LLM_BROKER} (username,
 * password) and each mqtt-broker node whose broker is ${MESH_LLM_BROKER_HOST} (user,
 * password). Nodes on other brokers keep theirs. The flow file is not changed.
 */
export function giveFlowBusLogin(flowFile: string, secret: string, login: { username: string; password: string }): void {
  const { dir, name, ext } = path.parse(flowFile);
  const credFile = path.join(dir, `${name}_cred${ext}`);
  const flow = JSON.parse(fs.readFileSync(flowFile, 'utf8')) as { id: string; type: string; broker?: string }[];
  const creds = fs.existsSync(credFile) ? decryptCredentials(fs.readFileSync(credFile, 'utf8'), secret, credFile) : {};
  for (const n of Array.isArray(flow) ? flow : []) {
    if (n.type === 'mesh-llm-config' && n.broker === '${MESH_LLM_BROKER}') creds[n.id] = { ...creds[n.id], username: login.username, password: login.password };
    if (n.type === 'mqtt-broker' && n.broker === '${MESH_LLM_BROKER_HOST}') creds[n.id] = { ...creds[n.id], user: login.username, password: login.password };
  }
  fs.writeFileSync(credFile, encryptCredentials(creds, secret), { mode: 0o600 });
}

/**
 * Node-RED settings for mesh-llm, as a typed object passed to RED.init by `npm start`
 * (lib/app/nodered.ts). The editor and the HTTP endpoints share one port. Node-RED runs the
 * flow in its user directory, a copy of the shipped flow made on the instance's first run
 * (lib/app/nodered.ts), so a deploy from the editor never rewrites the package's files.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LocalSettings } from '@node-red/runtime';
import { MeshLlmError } from './lib/llm/errors';
import { packageRoot } from './lib/llm/resolve';

/** The secret of installations made before each got its own: kept where it already encrypts a credentials file. */
const LEGACY_CREDENTIAL_SECRET = 'mesh-llm-local-credentials';

/**
 * The key Node-RED encrypts the flow's credentials with: MESH_LLM_CREDENTIAL_SECRET, or one
 * random per installation, made on its first run in <userDir>/.credential-secret (readable by
 * this user only). An installation whose credentials file predates it keeps the old fixed key.
 */
export function credentialSecret(userDir: string, flowFile: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.MESH_LLM_CREDENTIAL_SECRET) return env.MESH_LLM_CREDENTIAL_SECRET;
  const file = path.join(userDir, '.credential-secret');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const { dir, name, ext } = path.parse(flowFile);
  const secret = fs.existsSync(path.join(dir, `${name}_cred${ext}`)) ? LEGACY_CREDENTIAL_SECRET : randomBytes(32).toString('hex');
  fs.mkdirSync(userDir, { recursive: true });
  fs.writeFileSync(file, secret, { mode: 0o600 });
  return secret;
}

/** Whether an address is this machine only. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * Node-RED's adminAuth from MESH_LLM_ADMIN_USER and MESH_LLM_ADMIN_PASSWORD_HASH (a bcrypt
 * hash: npx node-red admin hash-pw). Required when the editor listens beyond this machine:
 * without it anyone who reaches the port could read and deploy flows.
 */
export function adminAuth(host: string, env: NodeJS.ProcessEnv = process.env): LocalSettings['adminAuth'] | undefined {
  const user = env.MESH_LLM_ADMIN_USER;
  const hash = env.MESH_LLM_ADMIN_PASSWORD_HASH;
  if (user && hash) return { type: 'credentials', users: [{ username: user, password: hash, permissions: '*' }] };
  if (isLoopbackHost(host)) return undefined;
  throw new MeshLlmError(`the Node-RED editor would listen on ${host}, beyond this machine, without a login: set MESH_LLM_ADMIN_USER and MESH_LLM_ADMIN_PASSWORD_HASH (a bcrypt hash: npx node-red admin hash-pw), or listen on 127.0.0.1`);
}

export interface MeshLlmSettingsOptions {
  /** Interface to listen on (default 127.0.0.1). */
  host: string;
  /** Editor and HTTP port (default 1880). */
  port: number;
  /** Where Node-RED keeps its state, the running flow included: <dataDir>/node-red (default ./data). */
  dataDir: string;
  /** The flow an instance starts from, copied into its user directory on its first run (default flows/mesh-llm.json of the package). */
  flowTemplate: string;
}

export function defaultSettingsOptions(env: NodeJS.ProcessEnv = process.env): MeshLlmSettingsOptions {
  return {
    host: env.HOST ?? '127.0.0.1',
    port: env.PORT ? Number(env.PORT) : 1880,
    dataDir: path.resolve(env.MESH_LLM_DATA_DIR ?? 'data'),
    flowTemplate: path.join(packageRoot(), 'flows', 'mesh-llm.json'),
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'off'] as const;

/** Node-RED's console log level from MESH_LLM_LOG_LEVEL (default info). */
function logLevel(text: string | undefined): (typeof LOG_LEVELS)[number] {
  return LOG_LEVELS.find((l) => l === text) ?? 'info';
}

/** The editor as mesh-llm shows it (Node-RED 4.1 knows `tours`; its typings do not yet). */
const editorTheme: NonNullable<LocalSettings['editorTheme']> & { tours: boolean } = {
  page: { title: 'mesh-llm' },
  header: { title: 'mesh-llm' },
  projects: { enabled: false },
  // No "Welcome to Node-RED 4.1" tour over the flow on a first visit.
  tours: false,
};

/** Node-RED 4.1's telemetry settings (its typings do not have them yet). */
interface TelemetrySettings {
  telemetry: { enabled: boolean; updateNotification: boolean };
}

export function nodeRedSettings(o: MeshLlmSettingsOptions): LocalSettings & TelemetrySettings {
  const userDir = path.join(o.dataDir, 'node-red');
  const flowFile = path.join(userDir, path.basename(o.flowTemplate));
  const auth = adminAuth(o.host);
  return {
    ...(auth ? { adminAuth: auth } : {}),
    uiHost: o.host,
    uiPort: o.port,
    userDir,
    // The instance's own copy of the template (lib/app/nodered.ts makes it).
    flowFile,
    flowFilePretty: true,
    // Credentials in the flow (e.g. broker passwords) are encrypted with this key.
    credentialSecret: credentialSecret(userDir, flowFile),
    contextStorage: {
      default: { module: 'memory' },
      file: { module: 'localfilesystem' },
    },
    // The package itself is the node module that provides the mesh-llm nodes.
    nodesDir: packageRoot(),
    httpAdminRoot: '/',
    httpNodeRoot: '/',
    functionGlobalContext: {},
    logging: { console: { level: logLevel(process.env.MESH_LLM_LOG_LEVEL), metrics: false, audit: false } },
    // No telemetry, so the editor does not open on the "Enable Update Notifications" prompt.
    telemetry: { enabled: false, updateNotification: false },
    editorTheme,
  };
}

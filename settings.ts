/**
 * Node-RED settings for mesh-llm, as a typed object passed to RED.init by `npm start`
 * (lib/app/nodered.ts). The editor and the HTTP endpoints share one port.
 */
import * as path from 'node:path';
import type { LocalSettings } from '@node-red/runtime';
import { packageRoot } from './lib/llm/resolve';

export interface MeshLlmSettingsOptions {
  /** Interface to listen on (default 127.0.0.1). */
  host: string;
  /** Editor and HTTP port (default 1880). */
  port: number;
  /** Where Node-RED keeps its state: <dataDir>/node-red (default ./data). */
  dataDir: string;
  /** The flow to run (default flows/mesh-llm.json of the package). */
  flowFile: string;
}

export function defaultSettingsOptions(env: NodeJS.ProcessEnv = process.env): MeshLlmSettingsOptions {
  return {
    host: env.HOST ?? '127.0.0.1',
    port: env.PORT ? Number(env.PORT) : 1880,
    dataDir: path.resolve(env.MESH_LLM_DATA_DIR ?? 'data'),
    flowFile: path.join(packageRoot(), 'flows', 'mesh-llm.json'),
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'off'] as const;

/** Node-RED's console log level from MESH_LLM_LOG_LEVEL (default info). */
function logLevel(text: string | undefined): (typeof LOG_LEVELS)[number] {
  return LOG_LEVELS.find((l) => l === text) ?? 'info';
}

export function nodeRedSettings(o: MeshLlmSettingsOptions): LocalSettings {
  return {
    uiHost: o.host,
    uiPort: o.port,
    userDir: path.join(o.dataDir, 'node-red'),
    flowFile: o.flowFile,
    flowFilePretty: true,
    // Credentials in the flow (e.g. broker passwords) are encrypted with this key.
    credentialSecret: process.env.MESH_LLM_CREDENTIAL_SECRET ?? 'mesh-llm-local-credentials',
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
    editorTheme: {
      page: { title: 'mesh-llm' },
      header: { title: 'mesh-llm' },
      projects: { enabled: false },
    },
  };
}

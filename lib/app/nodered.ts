/**
 * Node-RED embedded in this process: one HTTP server for the editor and the flow's endpoints,
 * running the instance's own copy of the shipped flow.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import express from 'express';
import * as RED from 'node-red';
import { MeshLlmSettingsOptions, nodeRedSettings } from '../../settings';
import { listen } from '../mesh/broker';
import { giveFlowBusLogin } from './bus';

export interface RunningNodeRed {
  url: string;
  /** Answers every request in flight 503 with the reason, refuses new ones, stops the flows and the server. */
  close(reason?: string): Promise<void>;
}

/**
 * The HTTP requests the server is answering, so a shutdown can answer each one (503 and the
 * reason) instead of dropping its connection, and refuse any that arrive while it stops.
 */
class RequestsInFlight {
  private readonly open = new Set<express.Response>();
  private closing: string | null = null;

  readonly track = (_req: express.Request, res: express.Response, next: express.NextFunction): void => {
    if (this.closing) return void this.refuse(res, this.closing);
    this.open.add(res);
    res.once('close', () => this.open.delete(res));
    next();
  };

  refuseAll(reason: string): void {
    this.closing = reason;
    for (const res of this.open) this.refuse(res, reason);
    this.open.clear();
  }

  private refuse(res: express.Response, reason: string): void {
    if (res.headersSent) return void res.end();
    res.set('Connection', 'close');
    res.status(503).json({ error: reason });
  }
}

/** A request body that is not valid JSON answers 400 {"error"} instead of an HTML stack trace. */
function jsonErrors(err: Error & { type?: string; status?: number }, _req: express.Request, res: express.Response, next: express.NextFunction): void {
  if (err.type === 'entity.parse.failed' || err.status === 400) {
    res.status(400).json({ error: `invalid JSON in the request body: ${err.message}` });
    return;
  }
  next(err);
}

/**
 * Node-RED's credentials file for no credentials, encrypted as Node-RED encrypts them
 * (aes-256-ctr, key sha256(secret), {"$": iv hex + base64}); without one it warns
 * "Encrypted credentials not found" on every start.
 */
function emptyCredentials(secret: string): string {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(secret).digest(), iv);
  return JSON.stringify({ $: iv.toString('hex') + cipher.update('{}', 'utf8', 'base64') + cipher.final('base64') });
}

/**
 * The shipped flow is a template: on an instance's first run it is copied to the flow file in
 * the user directory (with an empty credentials file beside it); later runs, and deploys from
 * the editor, use that copy only.
 */
export function installFlow(template: string, flowFile: string, credentialSecret: string): void {
  fs.mkdirSync(path.dirname(flowFile), { recursive: true });
  if (!fs.existsSync(flowFile)) fs.copyFileSync(template, flowFile);
  const { dir, name, ext } = path.parse(flowFile);
  const credentials = path.join(dir, `${name}_cred${ext}`); // where Node-RED looks for it
  if (!fs.existsSync(credentials)) fs.writeFileSync(credentials, emptyCredentials(credentialSecret));
}

/** busLogin: the login the flow's connections to the embedded broker get, as Node-RED credentials (lib/app/bus.ts). */
export async function startNodeRed(o: MeshLlmSettingsOptions, extra: { busLogin?: { username: string; password: string } } = {}): Promise<RunningNodeRed> {
  const settings = nodeRedSettings(o);
  installFlow(o.flowTemplate, settings.flowFile as string, settings.credentialSecret as string);
  if (extra.busLogin) giveFlowBusLogin(settings.flowFile as string, settings.credentialSecret as string, extra.busLogin);
  const app = express();
  const server = http.createServer(app);
  const inFlight = new RequestsInFlight();
  app.use(inFlight.track);
  RED.init(server, settings);
  app.use(settings.httpAdminRoot as string, RED.httpAdmin);
  app.use(settings.httpNodeRoot as string, RED.httpNode);
  app.use(jsonErrors);
  await listen(server, o.port, o.host, 'the Node-RED editor');
  // RED.start() resolves before the flows run: the flow's HTTP endpoints (POST /generate) exist only
  // once they have started, so the system is not ready, nor its URL told, before then.
  const events = (RED as unknown as { events: { once(name: string, cb: () => void): void } }).events;
  const flowsStarted = new Promise<void>((resolve) => events.once('flows:started', () => resolve()));
  await RED.start();
  // a flow waiting for node types that are not installed never starts: go on after a minute (the editor says why)
  await Promise.race([flowsStarted, new Promise((resolve) => setTimeout(resolve, 60000).unref())]);
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`,
    close: async (reason = 'mesh-llm is shutting down') => {
      inFlight.refuseAll(reason);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await RED.stop();
      server.closeAllConnections();
      await closed;
    },
  };
}

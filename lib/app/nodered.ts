/** Node-RED embedded in this process: one HTTP server for the editor and the flow's endpoints. */
import * as fs from 'node:fs';
import * as http from 'node:http';
import express from 'express';
import * as RED from 'node-red';
import { MeshLlmSettingsOptions, nodeRedSettings } from '../../settings';

export interface RunningNodeRed {
  url: string;
  close(): Promise<void>;
}

/** A request body that is not valid JSON answers 400 {"error"} instead of an HTML stack trace. */
function jsonErrors(err: Error & { type?: string; status?: number }, _req: express.Request, res: express.Response, next: express.NextFunction): void {
  if (err.type === 'entity.parse.failed' || err.status === 400) {
    res.status(400).json({ error: `invalid JSON in the request body: ${err.message}` });
    return;
  }
  next(err);
}

export async function startNodeRed(o: MeshLlmSettingsOptions): Promise<RunningNodeRed> {
  const settings = nodeRedSettings(o);
  fs.mkdirSync(settings.userDir as string, { recursive: true });
  const app = express();
  const server = http.createServer(app);
  RED.init(server, settings);
  app.use(settings.httpAdminRoot as string, RED.httpAdmin);
  app.use(settings.httpNodeRoot as string, RED.httpNode);
  app.use(jsonErrors);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  await RED.start();
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`,
    close: async () => {
      await RED.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}

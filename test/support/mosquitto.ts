/**
 * A real Mosquitto for a test: its configuration written to `dir`, a free port on 127.0.0.1,
 * optionally the password and ACL files of `mesh-llm credentials create --mosquitto DIR` and a
 * TLS listener (mqtts) with a certificate and key. Resolves once it accepts TCP connections.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../../lib/mesh/broker';

export interface Mosquitto {
  url: string;
  port: number;
  child: ChildProcess;
  close(): Promise<void>;
}

export const mosquittoBinary = (): string => (fs.existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto');

export async function startMosquitto(o: { dir: string; auth?: { passwd: string; acl: string }; tls?: { cert: string; key: string } }): Promise<Mosquitto> {
  const port = await freePort();
  const conf = path.join(o.dir, `mosquitto-${port}.conf`);
  const lines = [`listener ${port} 127.0.0.1`, 'persistence false', 'log_dest stderr', 'log_type error', `user ${os.userInfo().username}`]; // as root Mosquitto would switch to its own user, who cannot read 0600 files
  if (o.auth) lines.push('allow_anonymous false', `password_file ${o.auth.passwd}`, `acl_file ${o.auth.acl}`);
  else lines.push('allow_anonymous true');
  if (o.tls) lines.push(`certfile ${o.tls.cert}`, `keyfile ${o.tls.key}`);
  fs.writeFileSync(conf, lines.join('\n') + '\n');
  const child = spawn(mosquittoBinary(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited ${child.exitCode}: ${stderr.trim()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}: ${stderr.trim()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `${o.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    child,
    close: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000).unref())]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

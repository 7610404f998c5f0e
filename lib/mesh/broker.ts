/**
 * Brokers the mesh runs on: the embedded aedes broker (what `mesh-llm broker` and
 * `generate --mesh N` start), and a Mosquitto child process for tests and benchmarks.
 * Both listen on TCP with Nagle's algorithm off on every accepted socket.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { Aedes, AedesOptions } from 'aedes';
import { MeshLlmError } from '../llm/errors';
import { MeshCredentials, anonymousMaySubscribe, authenticate, isLoopback, mayPublish, maySubscribe } from './acl';

export interface RunningBroker {
  url: string;
  /** The aedes instance when the broker runs in this process. */
  aedes?: Aedes;
  host: string;
  port: number;
  close(): Promise<void>;
}

export interface BrokerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Optional credentials every client must present. */
  username?: string;
  password?: string;
  /** Per-client credentials and the mesh's topic ACL (lib/mesh/acl.ts); refusals go to onRefused. */
  credentials?: MeshCredentials;
  /**
   * With credentials, on loopback only: let a client without a login in as an observer (it
   * reads what an observer reads and publishes nothing; `mesh-llm start`). Beyond loopback, or
   * without this, an anonymous client is refused at connect.
   */
  anonymousObservers?: boolean;
  /** Told of each refused connection, publish or subscription (default: nothing). */
  onRefused?: (what: string) => void;
  /** Listen with TLS (mqtts://): PEM files of the broker's certificate and key. */
  tls?: { cert: string; key: string };
}

function urlFor(host: string, port: number): string {
  return `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * aedes 1.x is an ES module: it is loaded on first use (Node 20.19+ requires ES modules), so
 * this file also loads where that is not possible, such as inside jest, which then runs the
 * broker as a `mesh-llm broker` process instead.
 */
function loadAedes(): typeof Aedes {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('aedes') as typeof import('aedes')).Aedes;
}

/**
 * Listens on host:port, or rejects with one line naming the port and what to do (a port in
 * use, a port the user may not bind, an address this machine does not have).
 */
export function listen(server: net.Server, port: number, host: string, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      if (e.code === 'EADDRINUSE') reject(new MeshLlmError(`${what} cannot listen on ${where}: the port is already in use (stop what holds it, or choose another port)`));
      else if (e.code === 'EACCES') reject(new MeshLlmError(`${what} cannot listen on ${where}: not allowed to bind that port (use one above 1023)`));
      else if (e.code === 'EADDRNOTAVAIL') reject(new MeshLlmError(`${what} cannot listen on ${where}: this machine has no such address`));
      else reject(new MeshLlmError(`${what} cannot listen on ${where}: ${e.message}`));
    });
    server.listen(port, host, () => resolve());
  });
}

/** Throws listen()'s one line if host:port cannot be listened on now (port 0: any port will do). */
export async function checkPortFree(host: string, port: number, what: string): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  await listen(probe, port, host, what);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/** Starts aedes on a TCP port. */
export async function startAedesBroker(o: BrokerOptions = {}): Promise<RunningBroker> {
  const host = o.host ?? '127.0.0.1';
  // concurrency 0: aedes's mqemitter delivers every message at once instead of queueing those
  // beyond a limit. Its queue is drained by synchronous recursion (released -> _do -> parallel
  // -> released ...), one stack frame set per queued message whose delivery completes at once,
  // so a flood that fills it (2,000 invalid session messages, each answered on the errors
  // topic by every node: 16,000 messages) overflowed the stack and killed the broker
  // (RangeError in mqemitter/qlobber). Without the queue there is no recursion; TCP
  // backpressure still bounds each client (docs/RELIABILITY.md).
  const options: AedesOptions = { heartbeatInterval: 60000, concurrency: 0 };
  if (o.username !== undefined) {
    options.authenticate = (_client, username, password, done) => {
      const ok = username === o.username && (password?.toString() ?? '') === (o.password ?? '');
      done(ok ? null : Object.assign(new Error('bad username or password'), { returnCode: 4 as const }), ok);
    };
  }
  if (!isLoopback(host) && o.username === undefined && !o.credentials) throw new MeshLlmError(`the MQTT broker listens on ${host}, beyond this machine: give it credentials (--credentials FILE, or --username and --password), or listen on 127.0.0.1`);
  if (o.credentials) Object.assign(options, aclOptions(o.credentials, o.onRefused ?? (() => undefined), () => aedes, o.anonymousObservers === true && isLoopback(host)));
  const aedes = await loadAedes().createBroker(options);
  const sockets = new Set<net.Socket>();
  const serve = (socket: net.Socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    aedes.handle(socket);
  };
  let server: net.Server;
  try {
    server = o.tls ? tls.createServer({ cert: readPem(o.tls.cert, 'certificate'), key: readPem(o.tls.key, 'key'), noDelay: true }, serve) : net.createServer({ noDelay: true }, serve);
  } catch (e) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw e instanceof MeshLlmError ? e : new MeshLlmError(`the MQTT broker's TLS certificate or key is not usable: ${(e as Error).message}`);
  }
  try {
    await listen(server, o.port ?? 0, host, 'the MQTT broker');
  } catch (e) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw e;
  }
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: urlFor(host, port).replace(/^mqtt:/, o.tls ? 'mqtts:' : 'mqtt:'),
    aedes,
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => aedes.close(() => resolve()));
      }),
  };
}

function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new MeshLlmError(`cannot read the MQTT broker's TLS ${what} ${file}: ${(e as Error).message}`);
  }
}

type Client = Parameters<NonNullable<AedesOptions['authenticate']>>[0] & { meshUser?: string; anonymous?: boolean };

/**
 * aedes hooks enforcing mesh credentials: a known user with its password (or, with
 * `anonymousObservers`, no login at all: an observer), a client id not already connected (no
 * takeover), and the ACL of lib/mesh/acl.ts on every publish (the will included) and
 * subscription. A refused publish disconnects the client (aedes does, for MQTT 3.1.1); a
 * refused subscription is answered with a failure code.
 */
function aclOptions(c: MeshCredentials, refused: (what: string) => void, broker: () => Aedes, anonymousObservers: boolean): Partial<AedesOptions> {
  const who = (client: Client) => client.meshUser ?? '(anonymous)';
  return {
    authenticate: (client: Client, username, password, done) => {
      const anonymous = anonymousObservers && username === undefined && password === undefined;
      const role = anonymous ? 'observer' : authenticate(c, username, password);
      const holder = (broker() as unknown as { clients: Record<string, Client | undefined> }).clients[client.id];
      const error = !role ? 'bad username or password' : holder && holder !== client && holder.connected ? `client id ${client.id} is already connected` : null;
      if (error) {
        refused(`connection of ${username ?? '(anonymous)'} as ${client.id}: ${error}`);
        return done(Object.assign(new Error(error), { returnCode: (role ? 2 : 4) as 2 | 4 }), false);
      }
      client.meshUser = username;
      client.anonymous = anonymous;
      done(null, true);
    },
    authorizePublish: (client: Client | null, packet, done) => {
      if (!client) return done(null); // the broker's own
      if (!client.anonymous && client.meshUser !== undefined && mayPublish(c, client.meshUser, packet.topic)) return done(null);
      refused(`publish of ${who(client)} on ${packet.topic}`);
      done(new Error(`${who(client)} may not publish on ${packet.topic}`));
    },
    authorizeSubscribe: (client: Client, sub, done) => {
      if (client.anonymous ? anonymousMaySubscribe(c, sub.topic) : client.meshUser !== undefined && maySubscribe(c, client.meshUser, sub.topic)) return done(null, sub);
      refused(`subscription of ${who(client)} to ${sub.topic}`);
      done(null, null);
    },
  };
}

/** A free TCP port on the loopback interface. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function waitForPort(host: string, port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`));
      const s = net.createConnection({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`mosquitto did not listen on ${host}:${port} within ${timeoutMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export interface MosquittoOptions {
  port?: number;
  binary?: string;
  /** Mosquitto's password_file and acl_file (`mesh-llm credentials create --mosquitto DIR`): no anonymous access. */
  auth?: { passwd: string; acl: string };
  /** A TLS listener (mqtts://) with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
}

/**
 * Starts the system's mosquitto on a free loopback port with a generated config (anonymous
 * access unless `auth`, TCP_NODELAY, TLS with `tls`). Throws if mosquitto is not installed
 * (.ci/run installs it).
 */
export async function startMosquitto(o: MosquittoOptions = {}): Promise<RunningBroker> {
  const host = '127.0.0.1';
  const port = o.port ?? (await freePort(host));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-mosquitto-'));
  const conf = path.join(dir, 'mosquitto.conf');
  // as root Mosquitto would switch to its own user, who cannot read the 0600 files
  const access = o.auth ? ['allow_anonymous false', `password_file ${o.auth.passwd}`, `acl_file ${o.auth.acl}`] : ['allow_anonymous true'];
  if (o.auth || o.tls) access.push(`user ${os.userInfo().username}`);
  const tls = o.tls ? [`certfile ${o.tls.cert}`, `keyfile ${o.tls.key}`] : [];
  fs.writeFileSync(conf, [`listener ${port} ${host}`, ...access, ...tls, 'set_tcp_nodelay true', 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', ''].join('\n'));
  const binary = o.binary ?? (fs.existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto');
  const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot start mosquitto (${binary}): ${e.message}; install Debian's mosquitto package`)));
    child.once('spawn', () => resolve());
  });
  try {
    await spawned;
    await waitForPort(host, port, child, 5000);
  } catch (e) {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(e as Error).message}${stderr ? `\n${stderr}` : ''}`);
  }
  return {
    url: urlFor(host, port).replace(/^mqtt:/, o.tls ? 'mqtts:' : 'mqtt:'),
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGTERM');
      }),
  };
}

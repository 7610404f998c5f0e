/**
 * MQTT plumbing shared by the gateway, the head nodes and the tools: one way to connect (TCP
 * with Nagle's algorithm off, or TLS for mqtts://; MQTT 3.1.1 so any broker works, no automatic
 * reconnects: a dropped node is a failed node), and one logger that writes a line per event on
 * stderr.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { IClientOptions, MqttClient } from 'mqtt';
import { MeshLlmError } from '../llm/errors';

export interface BrokerAddress {
  /** mqtt://[user:password@]host:port */
  url: string;
  username?: string;
  password?: string;
  /**
   * For mqtts://: a PEM file of the CA that signed the broker's certificate (default
   * MESH_LLM_CA, which the CLI's --ca sets for itself and the head nodes it starts; without
   * either, the system's CAs).
   */
  ca?: string;
}

export interface ConnectOptions extends BrokerAddress {
  clientId: string;
  will?: { topic: string; payload: string; retain: boolean; qos: 0 | 1 };
  /** How long to wait for the broker's CONNACK. */
  connectTimeoutMs?: number;
}

interface ParsedUrl {
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** mqtts:// (or ssl://): TLS. */
  tls: boolean;
}

/** mqtt://host:port (or tcp://), mqtts://host:port (or ssl://, TLS); credentials in the URL are used unless given separately. */
export function parseBrokerUrl(url: string): ParsedUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MeshLlmError(`broker URL "${url}" is not a URL (expected mqtt://host:port)`);
  }
  const secure = u.protocol === 'mqtts:' || u.protocol === 'ssl:';
  if (!secure && u.protocol !== 'mqtt:' && u.protocol !== 'tcp:') throw new MeshLlmError(`broker URL "${url}": expected mqtt:// (plain TCP) or mqtts:// (TLS)`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host,
    tls: secure,
    port: u.port ? Number(u.port) : secure ? 8883 : 1883,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
  };
}

/** Connects and resolves once the broker has accepted the session. */
export function connectMqtt(o: ConnectOptions): Promise<MqttClient> {
  const target = parseBrokerUrl(o.url);
  const options: IClientOptions = {
    protocolVersion: 4,
    clientId: o.clientId,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 0,
    connectTimeout: o.connectTimeoutMs ?? 15000,
    username: o.username ?? target.username,
    password: o.password ?? target.password,
    will: o.will,
  };
  const caFile = o.ca ?? process.env.MESH_LLM_CA;
  let ca: Buffer | undefined;
  if (target.tls && caFile) {
    try {
      ca = fs.readFileSync(caFile);
    } catch (e) {
      throw new MeshLlmError(`cannot read the CA file ${caFile}: ${(e as Error).message}`);
    }
  }
  const open = target.tls
    ? () => {
        const s = tls.connect({ host: target.host, port: target.port, ca, servername: net.isIP(target.host) ? undefined : target.host });
        s.setNoDelay(true);
        return s;
      }
    : () => net.createConnection({ host: target.host, port: target.port, noDelay: true });
  const client = new MqttClient(open as never, options);
  return new Promise((resolve, reject) => {
    const onError = (err: Error & { code?: string | number }) => {
      client.removeListener('close', onClose);
      client.end(true);
      reject(new MeshLlmError(`cannot connect to MQTT broker ${o.url}: ${target.tls ? tlsReason(err, caFile) : err.message}`));
    };
    const onClose = () => onError(new Error('connection closed before the broker accepted it'));
    client.once('error', onError);
    client.once('close', onClose);
    client.once('connect', () => {
      // only this function's listeners: mqtt.js's own 'close' handler (which stops the keepalive
      // timer and clears `connected`) must stay, or a dropped connection keeps the process alive
      client.removeListener('error', onError);
      client.removeListener('close', onClose);
      client.on('error', () => undefined); // reported through 'close' by the owners
      resolve(client);
    });
  });
}

/**
 * Trusts the CA in this PEM file for mqtts:// in this process and the head nodes it starts
 * (MESH_LLM_CA, inherited by child processes): what the CLI's --ca FILE does.
 */
export function trustCaFile(file: string | undefined): void {
  if (file === undefined) return;
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new MeshLlmError(`--ca ${file}: no such file (a PEM file of the CA that signed the broker's certificate)`);
  process.env.MESH_LLM_CA = abs;
}

/** A TLS failure said with what to do about it. */
function tlsReason(err: Error & { code?: string | number }, caFile: string | undefined): string {
  const untrusted = ['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE'];
  if (typeof err.code === 'string' && untrusted.includes(err.code)) return `TLS: the broker's certificate is not signed by ${caFile ? `the CA in ${caFile}` : "a CA this machine trusts (give the broker's CA with --ca FILE)"} (${err.message})`;
  if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS: the broker's certificate is not for this host name (${err.message})`;
  if (err.code === 'CERT_HAS_EXPIRED') return `TLS: the broker's certificate has expired (${err.message})`;
  return `TLS: ${err.message}`;
}

export function subscribe(client: MqttClient, topics: string[], qos: 0 | 1 = 0): Promise<void> {
  return new Promise((resolve, reject) => {
    client.subscribe(topics, { qos }, (err) => (err ? reject(err) : resolve()));
  });
}

/** How long a goodbye (an offline status, a disconnect) may wait for the broker before a process stops anyway. */
export const GOODBYE_MS = 2000;

/**
 * Waits for the promise, or for ms, whichever comes first; never rejects. The timer holds the
 * process for those ms: a process stopping must finish its stop (and say its exit code), not
 * end early because the goodbye it waits on has nothing else keeping it alive.
 */
export function withinMs(ms: number, p: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    p.then(done, done);
  });
}

/** Disconnects cleanly, or just closes the socket if the connection is already gone. */
export function endClient(client: MqttClient): Promise<void> {
  if (!client.connected || client.stream?.destroyed) {
    client.end(true);
    return Promise.resolve();
  }
  return new Promise((resolve) => client.end(false, {}, () => resolve()));
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger writing "[source] level: message" lines on stderr at or above `min` (MESH_LLM_LOG). */
export function stderrLogger(source: string, min: LogLevel = (process.env.MESH_LLM_LOG as LogLevel) || 'info'): Logger {
  const threshold = LEVELS[min] ?? LEVELS.info;
  return (level, message) => {
    if (LEVELS[level] >= threshold) process.stderr.write(`[${source}] ${level}: ${message}\n`);
  };
}

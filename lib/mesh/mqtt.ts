/**
 * MQTT plumbing shared by the gateway, the head nodes and the tools: one way to connect (TCP
 * with Nagle's algorithm off, MQTT 3.1.1 so any broker works, no automatic reconnects: a
 * dropped node is a failed node), and one logger that writes a line per event on stderr.
 */
import * as net from 'node:net';
import { IClientOptions, MqttClient } from 'mqtt';
import { MeshLlmError } from '../llm/errors';

export interface BrokerAddress {
  /** mqtt://[user:password@]host:port */
  url: string;
  username?: string;
  password?: string;
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
}

/** mqtt://host:port (or tcp://); credentials in the URL are used unless given separately. */
export function parseBrokerUrl(url: string): ParsedUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MeshLlmError(`broker URL "${url}" is not a URL (expected mqtt://host:port)`);
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'tcp:') throw new MeshLlmError(`broker URL "${url}": only mqtt:// (plain TCP) is supported`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host,
    port: u.port ? Number(u.port) : 1883,
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
  const client = new MqttClient(() => net.createConnection({ host: target.host, port: target.port, noDelay: true }) as never, options);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      client.end(true);
      reject(new MeshLlmError(`cannot connect to MQTT broker ${o.url}: ${err.message}`));
    };
    client.once('error', onError);
    client.once('close', () => onError(new Error('connection closed before the broker accepted it')));
    client.once('connect', () => {
      client.removeAllListeners('error');
      client.removeAllListeners('close');
      client.on('error', () => undefined); // reported through 'close' by the owners
      resolve(client);
    });
  });
}

export function subscribe(client: MqttClient, topics: string[], qos: 0 | 1 = 0): Promise<void> {
  return new Promise((resolve, reject) => {
    client.subscribe(topics, { qos }, (err) => (err ? reject(err) : resolve()));
  });
}

/** How long a goodbye (an offline status, a disconnect) may wait for the broker before a process stops anyway. */
export const GOODBYE_MS = 2000;

/** Waits for the promise, or for ms, whichever comes first; never rejects. */
export function withinMs(ms: number, p: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
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

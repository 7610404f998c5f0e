/**
 * Who may do what on a mesh's bus: per-client credentials and the topic ACL the embedded
 * broker enforces (lib/mesh/broker.ts: aedes authenticate / authorizePublish /
 * authorizeSubscribe). Three roles:
 *
 * - the gateway: everything (it broadcasts, assigns, starts sessions, steers, publishes tokens);
 * - head node N: publishes only its own result/N, status/N, telemetry/N, ack/N, sensors/N and
 *   reports on errors; subscribes only to broadcast, session, assign/N and steer/N;
 * - an observer (a dashboard): subscribes to what the mesh tells (tokens, events, errors, status,
 *   telemetry, attribution, alerts, sensors, baselines); publishes nothing.
 *
 * Anything else is refused, and so is a client id already connected (no takeover of a node).
 * Where a broker lets anonymous clients in at all (`mesh-llm start` on loopback), they are
 * observers: they read what an observer reads and publish nothing.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from '../llm/errors';
import { checkId, topicsFor } from './wire';

export type Role = 'gateway' | 'node' | 'observer';

export interface MeshUser {
  password: string;
  role: Role;
}

/** The credentials of one mesh: username -> password and role (a node's username is its node id). */
export interface MeshCredentials {
  mesh: string;
  users: Record<string, MeshUser>;
}

export const GATEWAY_USER = 'gateway';
export const OBSERVER_USER = 'observer';

function secret(): string {
  return randomBytes(18).toString('base64url');
}

/** Fresh random credentials: the gateway, an observer and each node. */
export function createCredentials(mesh: string, nodes: readonly string[]): MeshCredentials {
  const users: Record<string, MeshUser> = { [GATEWAY_USER]: { password: secret(), role: 'gateway' }, [OBSERVER_USER]: { password: secret(), role: 'observer' } };
  for (const n of nodes) users[checkId('node', n)] = { password: secret(), role: 'node' };
  return { mesh: checkId('mesh', mesh), users };
}

/** Writes credentials readable by this user only. */
export function writeCredentials(file: string, c: MeshCredentials): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(c, null, 2), { mode: 0o600 });
}

export function readCredentials(file: string): MeshCredentials {
  let c: MeshCredentials;
  try {
    c = JSON.parse(fs.readFileSync(file, 'utf8')) as MeshCredentials;
  } catch (e) {
    throw new MeshLlmError(`cannot read the credentials file ${file}: ${(e as Error).message}`);
  }
  if (typeof c?.mesh !== 'string' || typeof c.users !== 'object') throw new MeshLlmError(`${file} is not a mesh-llm credentials file (expected {"mesh", "users"})`);
  return c;
}

/** Whether username/password are those of a user; the user's role, or null. */
export function authenticate(c: MeshCredentials, username: string | undefined, password: Buffer | string | undefined): Role | null {
  const user = username === undefined ? undefined : Object.hasOwn(c.users, username) ? c.users[username] : undefined;
  if (!user || password === undefined) return null;
  const given = Buffer.from(password);
  const expected = Buffer.from(user.password);
  return given.length === expected.length && timingSafeEqual(given, expected) ? user.role : null;
}

function roleOf(c: MeshCredentials, username: string): Role | null {
  return Object.hasOwn(c.users, username) ? c.users[username].role : null;
}

/** Whether `username` may publish on `topic`. */
export function mayPublish(c: MeshCredentials, username: string, topic: string): boolean {
  const role = roleOf(c, username);
  if (role === 'gateway') return true;
  if (role !== 'node') return false;
  const t = topicsFor(c.mesh);
  return [t.result(username), t.status(username), t.telemetry(username), t.ack(username), t.sensors(username), t.errors].includes(topic);
}

/** Whether `username` may subscribe to `pattern` (wildcards only where the role may read every match). */
export function maySubscribe(c: MeshCredentials, username: string, pattern: string): boolean {
  return roleMaySubscribe(c, roleOf(c, username), username, pattern);
}

/**
 * Whether an anonymous client (one the broker lets in without a login: `mesh-llm start` on
 * loopback) may subscribe to `pattern`: what an observer may. It may publish nothing.
 */
export function anonymousMaySubscribe(c: MeshCredentials, pattern: string): boolean {
  return roleMaySubscribe(c, 'observer', '', pattern);
}

function roleMaySubscribe(c: MeshCredentials, role: Role | null, username: string, pattern: string): boolean {
  if (role === 'gateway') return true;
  const t = topicsFor(c.mesh);
  if (role === 'node') return [t.broadcast, t.session, t.assign(username), t.steer(username)].includes(pattern);
  if (role === 'observer') {
    const rel = pattern.startsWith(`${t.root}/`) ? pattern.slice(t.root.length + 1) : null;
    return rel !== null && /^(tokens|events|errors|attribution|alerts|(status|telemetry|sensors|baseline|alert-state)\/(\+|[A-Za-z0-9_.-]{1,64}))$/.test(rel);
  }
  return false;
}

/** Whether a broker host is loopback only (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * The same rules for Mosquitto: an ACL file (acl_file) and the users for a password file
 * (mosquitto_passwd -b FILE USER PASSWORD for each; Mosquitto stores only hashes).
 */
export function mosquittoAcl(c: MeshCredentials): string {
  const root = topicsFor(c.mesh).root;
  const lines = ['# mesh-llm ACL for mesh ' + c.mesh + ' (mesh-llm credentials); pattern-free, one block per user', ''];
  for (const [user, u] of Object.entries(c.users)) {
    lines.push(`user ${user}`);
    if (u.role === 'gateway') lines.push('topic readwrite #');
    else if (u.role === 'node') {
      for (const k of ['result', 'status', 'telemetry', 'ack', 'sensors']) lines.push(`topic write ${root}/${k}/${user}`);
      lines.push(`topic write ${root}/errors`, `topic read ${root}/broadcast`, `topic read ${root}/session`, `topic read ${root}/assign/${user}`, `topic read ${root}/steer/${user}`);
    } else {
      for (const k of ['tokens', 'events', 'errors', 'status/+', 'telemetry/+', 'attribution', 'alerts', 'sensors/+', 'baseline/+', 'alert-state/+']) lines.push(`topic read ${root}/${k}`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

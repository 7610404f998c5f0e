/**
 * Logging in to the bus of a `mesh-llm start`: its embedded broker enforces the mesh's ACL
 * (an anonymous client only observes), so a test that publishes on it logs in with the
 * credentials start made in its data folder (lib/app/bus.ts).
 */
import mqtt, { IClientOptions, MqttClient } from 'mqtt';
import { busCredentialsFile } from '../../lib/app/bus';
import { GATEWAY_USER, readCredentials } from '../../lib/mesh/acl';

/** A user's login from a data folder's bus credentials (default: the gateway's, on mesh "default"). */
export function busLogin(dataDir: string, user = GATEWAY_USER, meshId = 'default'): { username: string; password: string } {
  const c = readCredentials(busCredentialsFile(dataDir, meshId));
  const u = c.users[user];
  if (!u) throw new Error(`${busCredentialsFile(dataDir, meshId)} has no user ${user}`);
  return { username: user, password: u.password };
}

/** Connects to the bus of the `mesh-llm start` that runs on `dataDir`, as `user` (default the gateway). */
export function connectAsUser(url: string, dataDir: string, options: IClientOptions = {}, user = GATEWAY_USER): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, ...options, ...busLogin(dataDir, user) });
}

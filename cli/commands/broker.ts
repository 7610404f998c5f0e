/** `mesh-llm broker`: the embedded aedes MQTT broker on its own. */
import { intOption, parseOptions } from '../args';
import { runBroker } from '../../lib/mesh/run';
import { readCredentials } from '../../lib/mesh/acl';

export const usage = `mesh-llm broker [--port P] [--host H] [--username U --password P | --credentials FILE]

  --port P           TCP port (default 1883)
  --host H           address to listen on (default 127.0.0.1; beyond loopback, credentials are required)
  --username U       require this username (and --password) from every client
  --credentials FILE per-client credentials and the mesh's topic ACL (mesh-llm credentials create)`;

const spec = {
  port: { type: 'string' },
  host: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  credentials: { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, spec, 'broker');
  const credentials = v.credentials === undefined ? undefined : readCredentials(v.credentials);
  return runBroker({ port: intOption('port', v.port, 1883, 0, 65535), host: v.host ?? '127.0.0.1', username: v.username, password: v.password, credentials });
}

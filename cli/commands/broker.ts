/** `mesh-llm broker`: the embedded aedes MQTT broker on its own. */
import { UsageError, intOption, parseOptions } from '../args';
import { runBroker } from '../../lib/mesh/run';
import { readCredentials } from '../../lib/mesh/acl';

export const usage = `mesh-llm broker [--port P] [--host H] [--username U --password P | --credentials FILE] [--tls-cert FILE --tls-key FILE]

  --port P           TCP port (default 1883)
  --host H           address to listen on (default 127.0.0.1; beyond loopback, credentials are required)
  --username U       require this username (and --password) from every client
  --credentials FILE per-client credentials and the mesh's topic ACL (mesh-llm credentials create)
  --tls-cert FILE    listen with TLS (mqtts://): the broker's certificate (PEM), with --tls-key FILE its key;
                     clients trust it with --ca FILE (the CA that signed it)`;

const spec = {
  port: { type: 'string' },
  host: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  credentials: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, spec, 'broker');
  const credentials = v.credentials === undefined ? undefined : readCredentials(v.credentials);
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new UsageError('broker: --tls-cert FILE and --tls-key FILE go together');
  const tls = v['tls-cert'] && v['tls-key'] ? { cert: v['tls-cert'], key: v['tls-key'] } : undefined;
  return runBroker({ port: intOption('port', v.port, tls ? 8883 : 1883, 0, 65535), host: v.host ?? '127.0.0.1', username: v.username, password: v.password, credentials, tls });
}

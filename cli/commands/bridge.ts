/**
 * `mesh-llm bridge`: the LoRa-to-MQTT bridge until SIGINT/SIGTERM (exit 0) or until its broker
 * goes away (exit 1). Its radio head nodes appear on the mesh's topics, so
 * `mesh-llm generate --broker URL` (or the Node-RED flow) runs through them.
 */
import { trustCaFile } from '../../lib/mesh/mqtt';
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { resolveModelPaths } from '../../lib/llm/resolve';
import { untilStopped } from '../../lib/mesh/run';
import { startBridge } from '../../gateway-bridge/service';
import { parseRadioSettings } from './radio-options';

export const usage = `mesh-llm bridge --broker URL [--link sim|serial|udp] [--serial PATH] [--baud N] [--udp-port P] [--ca FILE]
                 [--mesh ID] [--nodes N] [--spares K] [--region EU868|US915] [--sf 7] [--bw 125] [--channels 1|8]
                 [--loss P] [--time-scale X] [--key HEX] [--quant f32|int8] [--model PATH] [--state DIR] [--json]

  --broker URL     the mesh's MQTT broker (mqtt://[user:pass@]host:port, or mqtts:// for TLS)
  --ca FILE        with mqtts://: the PEM file of the CA that signed the broker's certificate
  --link           sim: the simulated channel, its radio head nodes computing there (default);
                   serial: a LoRa modem on --serial PATH (COBS + CRC-16 framing, docs/PROTOCOL.md);
                   udp: Semtech packet forwarders (SX1302 gateways) sending to --udp-port (default 1700)
  --nodes N        radio head nodes, one head group each (default 4)
  --spares K       K more radio nodes (addresses N+1..N+K) flashed with the head groups of nodes 1..K:
                   idle until a failover gives one the heads of a lost node of its group (default 0)
  --region, --sf, --bw, --channels   the radio plan (default EU868, SF7, 125 kHz, 1 channel)
  --loss P         sim: probability that a reception is lost (default 0)
  --time-scale X   sim: simulated seconds per wall second (default: as fast as possible; 1 = true airtime)
  --key HEX        the mesh's 16-byte network key (32 hex digits); required for real radios
  --state DIR      where the gateway radio (and the simulated nodes) keep their frame counters and
                   replay windows across restarts (docs/PROTOCOL.md, "Replay"); without it they start afresh
  --json           one JSON line per token position on stdout instead of progress text`;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(
    argv,
    {
      broker: { type: 'string' }, link: { type: 'string' }, serial: { type: 'string' }, baud: { type: 'string' }, 'udp-port': { type: 'string' },
      mesh: { type: 'string' }, nodes: { type: 'string' }, region: { type: 'string' }, sf: { type: 'string' }, bw: { type: 'string' },
      channels: { type: 'string' }, loss: { type: 'string' }, 'time-scale': { type: 'string' }, key: { type: 'string' },
      quant: { type: 'string' }, model: { type: 'string' }, json: { type: 'boolean' }, spares: { type: 'string' }, state: { type: 'string' }, ca: { type: 'string' },
    },
    'bridge',
  );
  if (!v.broker) throw new UsageError('bridge: --broker URL is required (the mesh\'s MQTT broker)');
  trustCaFile(v.ca);
  const link = choiceOption('link', v.link, 'sim', ['sim', 'serial', 'udp'] as const);
  if (v.key !== undefined && !/^[0-9a-fA-F]{32}$/.test(v.key)) throw new UsageError(`bridge: --key must be 32 hex digits (16 bytes), got ${v.key.length} characters`);
  if (link !== 'sim' && v.key === undefined) throw new UsageError(`bridge: --link ${link} talks to real radios, which need the mesh's network key (--key HEX)`);
  const json = v.json ?? false;
  const bridge = await startBridge({
    brokerUrl: v.broker,
    meshId: v.mesh ?? 'default',
    modelPath: resolveModelPaths({ model: v.model }).model,
    quant: choiceOption('quant', v.quant, 'f32', ['f32', 'int8'] as const),
    link,
    serialPath: v.serial,
    baudRate: intOption('baud', v.baud, 115200, 1200, 4000000),
    udpPort: intOption('udp-port', v['udp-port'], 1700, 1, 65535),
    ...parseRadioSettings(v),
    spares: intOption('spares', v.spares, 0, 0, 250),
    key: v.key ? Buffer.from(v.key, 'hex') : undefined,
    stateDir: v.state,
    onToken: (t) => {
      if (json) printJson(t);
      else process.stderr.write(`[bridge] position ${t.pos}: ${t.simulatedSeconds.toFixed(1)} s on air, bound ${t.boundSeconds.toFixed(1)} s (${t.ratio.toFixed(2)}x), ${t.rounds} rounds\n`);
    },
    log: (level, text) => {
      if (level !== 'info' && level !== 'debug') process.stderr.write(`[bridge] ${level}: ${text}\n`);
    },
  });
  const stopped = untilStopped().then((why) => ({ why, lost: false })); // before saying it is ready
  process.stderr.write(`mesh-llm bridge: ${bridge.nodes} radio head node(s) on the ${link} link, announced on ${v.broker} (mesh ${v.mesh ?? 'default'})\n`);
  const end = await Promise.race([stopped, bridge.lost.then((why) => ({ why, lost: true }))]);
  process.stderr.write(end.lost ? `mesh-llm bridge: ${end.why}; stopping\n` : `mesh-llm bridge: stopping (${end.why})\n`);
  await bridge.close();
  return end.lost ? 1 : 0;
}

/** `mesh-llm start` (what `npm start` runs): broker, simulated head nodes and the Node-RED editor with the flow. */
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { startSystem } from '../../lib/app/start';
import { untilStopped } from '../../lib/mesh/run';
import { defaultSettingsOptions } from '../../settings';
import { SCENARIOS, ScenarioName } from '../../lib/steering/sensors';
import { parseRadioSettings, radioOptionSpec } from './radio-options';

export const usage = `mesh-llm start [--host H] [--port P] [--nodes N] [--broker URL] [--mesh ID] [--quant f32|int8]
                [--model PATH] [--tokenizer PATH] [--data DIR] [--scenario NAME|none] [--native]
                [--bus-host H] [--bus-port P]
                [--radio sim [--region R] [--sf S] [--bw B] [--channels C] [--loss P] [--time-scale X] [--spares K]]

  --host, --port   where the Node-RED editor and POST /generate listen (default 127.0.0.1:1880, or HOST / PORT)
  --nodes N        head-node processes to start (default: one per attention head)
  --broker URL     use this MQTT broker and the head nodes already on it instead of starting them
                   (if it goes away, start stops with exit code 1)
  --mesh ID        mesh id (default "default")
  --quant          int8: int8 head weights and transport (default f32)
  --data DIR       Node-RED's state folder (default ./data); the bus credentials are made in DIR/bus/ on
                   the first run (mode 0600) and used by everything start runs
  --bus-host H     where the embedded MQTT broker listens (default 127.0.0.1); beyond loopback every
                   client must log in with the bus credentials, under the topic ACL (docs/RELIABILITY.md)
  --bus-port P     its port (default: any free one)
  --scenario NAME  what the simulated head nodes' sensors feel: calm (default), explosion, bright-flash,
                   earthquake (a calm minute, then the event, repeating), or none
  --native         start native head nodes (the firmware core built for this machine, C++)
                   instead of node.js ones: same protocol and outputs, far less CPU
  --radio sim      the head nodes behind the LoRa bridge on the simulated channel, in real time (the
                   dashboard's time-scale control paces it; --time-scale X starts at X, default 1);
                   --nodes defaults to 4 there, and the gather waits up to 10 minutes per layer; with
                   --native the radio nodes 1..N are the firmware's radio node built for this machine
  --spares K       with --radio sim: K more radio nodes, flashed with the head groups of nodes 1..K, idle
                   until a failover gives one the heads of a lost node of its group (default 0)`;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(
    argv,
    { host: { type: 'string' }, port: { type: 'string' }, nodes: { type: 'string' }, broker: { type: 'string' }, mesh: { type: 'string' }, quant: { type: 'string' }, model: { type: 'string' }, tokenizer: { type: 'string' }, data: { type: 'string' }, scenario: { type: 'string' }, native: { type: 'boolean' }, 'bus-host': { type: 'string' }, 'bus-port': { type: 'string' }, spares: { type: 'string' }, ...radioOptionSpec },
    'start',
  );
  if (v.spares !== undefined && v.radio === undefined) throw new UsageError('start: --spares is for the radio nodes of --radio sim');
  const defaults = defaultSettingsOptions();
  const system = await startSystem(
    {
      ...defaults,
      host: v.host ?? defaults.host,
      port: intOption('port', v.port, defaults.port, 0, 65535),
      dataDir: v.data ?? defaults.dataDir,
      nodes: v.nodes === undefined ? undefined : intOption('nodes', v.nodes, 1, 1, 4096),
      broker: v.broker,
      meshId: v.mesh ?? 'default',
      quant: choiceOption('quant', v.quant, 'f32', ['f32', 'int8'] as const),
      model: v.model,
      tokenizer: v.tokenizer,
      native: v.native,
      busHost: v['bus-host'],
      busPort: v['bus-port'] === undefined ? undefined : intOption('bus-port', v['bus-port'], 0, 0, 65535),
      radio: v.radio === undefined ? undefined : { ...(choiceOption('radio', v.radio, 'sim', ['sim'] as const), parseRadioSettings(v, 1)), spares: intOption('spares', v.spares, 0, 0, 250) },
      scenario: v.scenario === 'none' ? null : choiceOption('scenario', v.scenario, 'calm', Object.keys(SCENARIOS) as ScenarioName[]),
    },
    (line) => process.stderr.write(`mesh-llm: ${line}\n`),
  );
  const stopped = untilStopped().then((why) => ({ why, lost: false })); // before saying it runs: a signal right after is not fatal
  process.stdout.write(
    `\nmesh-llm is running.\n  dashboard:        ${system.editorUrl}/dashboard\n  Node-RED editor:  ${system.editorUrl}/\n  generate:         curl -X POST ${system.editorUrl}/generate -H 'content-type: application/json' -d '{"prompt":"Once upon a time","steps":64,"temperature":0}'\n  MQTT bus:         ${system.brokerUrl} (tokens on mesh-llm/default/tokens, what the mesh does on mesh-llm/default/events)\nPress Ctrl+C to stop.\n`,
  );
  const end = await Promise.race([stopped, system.lost.then((why) => ({ why, lost: true }))]);
  process.stderr.write(`mesh-llm: ${end.lost ? `${end.why}; ` : ''}stopping${end.lost ? '' : ` (${end.why})`}\n`);
  await system.stop(`mesh-llm is shutting down (${end.lost ? end.why : end.why})`);
  return end.lost ? 1 : 0;
}

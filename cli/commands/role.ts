/**
 * `mesh-llm role retrieval|reasoning|filter|sensing --broker URL`: one role of the agentic mesh
 * as its own process on the bus, until SIGINT/SIGTERM (or its parent goes away); exit 1 when
 * the broker connection drops. `mesh-llm role filter --calibrate` measures the filter's
 * thresholds on the model's own samples instead.
 */
import { UsageError, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { MqttAgentBus } from '../../lib/agent/bus';
import { CALIBRATION_SET, EVALUATION_SET, calibrateThresholds, degenerateDrafts, filterRates, normalDrafts } from '../../lib/agent/calibrate';
import { DraftFilter } from '../../lib/agent/filter';
import { MeshModel, Reasoner } from '../../lib/agent/reasoning';
import { startFilter, startReasoning, startRetrieval, startSensing } from '../../lib/agent/roles';
import { ROLES, Role } from '../../lib/agent/topics';
import { Engine } from '../../lib/llm/engine';
import { resolveOrFetchModelPaths } from '../../lib/llm/provide';
import { DEFAULT_BROKER_URL, DEFAULT_MESH_ID, untilStopped } from '../../lib/mesh/run';
import { stderrLogger } from '../../lib/mesh/mqtt';
import { filterOf, filterOptionSpec, filterUsage, indexOf, indexOptionSpec, indexUsage, sensingOf, sensingOptionSpec, sensingUsage } from './agent-options';

export const usage = `mesh-llm role retrieval|reasoning|filter|sensing [--broker URL] [--username U --password P] [--mesh-id ID] ...

  --broker URL       MQTT broker (default ${DEFAULT_BROKER_URL})
  --username U       broker username (or in the URL: mqtt://user:pass@host:port)
  --password P       broker password
  --mesh-id ID       the mesh's topic tree mesh-llm/ID/agent/... (default ${DEFAULT_MESH_ID})
  --model PATH       reasoning, filter: llama2.c checkpoint (default: the model resolution order)
  --tokenizer PATH   reasoning, filter: llama2.c tokenizer (default: beside the model)
retrieval:${indexUsage}
  --no-history       do not add the mesh's sensor readings and alerts to the index as they arrive
reasoning:
  --head-nodes K|all run the model head-sharded over K head nodes of the mesh (mesh-llm node, on the same
                     broker and mesh id; all: whoever is up), one head group per node, each a steering node;
                     default: the model in this process
filter:${filterUsage}
  --calibrate        measure the thresholds on the model's own samples and the filter's rates on
                     labelled drafts (no broker); print them
  --json             with --calibrate: print them as one JSON object
sensing:${sensingUsage}
  --live             steer by the head mesh's live sensors (mesh-llm/ID/sensors/+), calibrated on their first
                     --calibration-ms (default 60000, sensor time)`;

export const roleOptionSpec = {
  broker: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'mesh-id': { type: 'string' },
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  'no-history': { type: 'boolean' },
  calibrate: { type: 'boolean' },
  json: { type: 'boolean' },
  live: { type: 'boolean' },
  'calibration-ms': { type: 'string' },
  'head-nodes': { type: 'string' },
  ...indexOptionSpec,
  ...filterOptionSpec,
  ...sensingOptionSpec,
} as const;

async function calibrate(modelPath: string, tokenizerPath: string, json: boolean): Promise<number> {
  const engine = Engine.load({ modelPath, tokenizerPath });
  process.stderr.write('sampling the model\'s own drafts...\n');
  const cal = await calibrateThresholds(engine, await normalDrafts(engine, CALIBRATION_SET));
  const held = await normalDrafts(engine, EVALUATION_SET);
  const rates = await filterRates(new DraftFilter(engine, cal.thresholds), [...held, ...(await degenerateDrafts(engine, held, EVALUATION_SET))]);
  if (json) {
    printJson({ calibration: cal, rates: rates.byLabel });
    return 0;
  }
  const n = cal.normal;
  process.stdout.write(`thresholds from ${n.drafts} drafts (the ${cal.quantile} quantile x ${cal.margin}):\n`);
  process.stdout.write(`  repeated 4-grams <= ${cal.thresholds.maxRepeated4}  (median ${n.repeated4.median.toFixed(3)}, q ${n.repeated4.q.toFixed(3)}, max ${n.repeated4.max.toFixed(3)})\n`);
  process.stdout.write(`  perplexity       <= ${cal.thresholds.maxPerplexity}  (median ${n.perplexity.median.toFixed(3)}, q ${n.perplexity.q.toFixed(3)}, max ${n.perplexity.max.toFixed(3)})\n`);
  process.stdout.write('held-out labelled drafts:\n');
  for (const [label, r] of Object.entries(rates.byLabel)) process.stdout.write(`  ${label.padEnd(9)} ${String(r.drafts).padStart(4)} drafts  ${(100 * r.rate).toFixed(1)} % ${r.measure}\n`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!(ROLES as readonly string[]).includes(name)) throw new UsageError(`role: expected one of ${ROLES.join(', ')} first (got ${JSON.stringify(name ?? '')})`);
  const role = name as Role;
  const v = parseOptions(rest, roleOptionSpec, `role ${role}`);
  const needsModel = role === 'reasoning' || role === 'filter';
  const paths = needsModel ? await resolveOrFetchModelPaths({ model: v.model, tokenizer: v.tokenizer }) : null;
  if (v.calibrate) {
    if (role !== 'filter') throw new UsageError('role: --calibrate is the filter role\'s');
    return calibrate(paths!.model, paths!.tokenizer, v.json ?? false);
  }
  const log = stderrLogger(`role ${role}`);
  const meshId = v['mesh-id'] ?? DEFAULT_MESH_ID;
  const closing: (() => Promise<void>)[] = [];
  // the role's work is set up before it connects: a bad option or file fails before it announces itself
  const setup = (() => {
    switch (role) {
      case 'retrieval': {
        const index = indexOf(v);
        return (bus: MqttAgentBus) => startRetrieval(bus, index, log, { history: !v['no-history'] });
      }
      case 'reasoning': {
        if (v['head-nodes'] === undefined) {
          const reasoner = Reasoner.local({ modelPath: paths!.model, tokenizerPath: paths!.tokenizer });
          return (bus: MqttAgentBus) => startReasoning(bus, reasoner, log);
        }
        const count = v['head-nodes'] === 'all' ? undefined : intOption('head-nodes', v['head-nodes'], 1, 1, 64);
        return async (bus: MqttAgentBus) => {
          const model = await MeshModel.connect({ url: v.broker ?? DEFAULT_BROKER_URL, username: v.username, password: v.password, meshId, modelPath: paths!.model, tokenizerPath: paths!.tokenizer, nodes: count, log });
          closing.push(() => model.close());
          log('info', `reasoning ${model.describe}`);
          return startReasoning(bus, new Reasoner(model), log);
        };
      }
      case 'filter': {
        const f = filterOf(v);
        const filter = new DraftFilter(Engine.load({ modelPath: paths!.model, tokenizerPath: paths!.tokenizer }), f.thresholds, f.lexicon);
        return (bus: MqttAgentBus) => startFilter(bus, filter, log);
      }
      case 'sensing': {
        const source = v.live ? { live: { calibrationMs: intOption('calibration-ms', v['calibration-ms'], 60000, 0) }, alpha: sensingOf({ alpha: v.alpha })?.alpha } : sensingOf(v);
        if (!source) throw new UsageError('role sensing: give --scenario NAME, --sensors FILE or --live');
        return (bus: MqttAgentBus) => startSensing(bus, source, log);
      }
    }
  })();
  const bus = await MqttAgentBus.connect({ url: v.broker ?? DEFAULT_BROKER_URL, username: v.username, password: v.password, meshId, clientId: `mesh-llm-${role}-${process.pid}`, role, log });
  const lost = new Promise<string>((resolve) => bus.client.once('close', () => resolve('the broker connection closed')));
  await setup(bus);
  const stopped = untilStopped().then((w) => ({ w, lost: false })); // before saying it is ready
  log('info', `ready on ${v.broker ?? DEFAULT_BROKER_URL}, mesh ${meshId}`);
  const why = await Promise.race([stopped, lost.then((w) => ({ w, lost: true }))]);
  if (why.lost) {
    log('error', why.w);
    return 1;
  }
  await bus.publish('status', { protocol: 1, role, state: 'offline', pid: process.pid }, true).catch(() => undefined);
  for (const close of closing) await close();
  await bus.close();
  return 0;
}

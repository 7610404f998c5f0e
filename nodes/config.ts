/**
 * mesh-llm-config: the mesh a flow runs on (model, broker, mesh id, quantisation), shared by
 * the other nodes. It starts the runtime on the first use and tells what happens on the mesh
 * on one emitter for its whole life, so watchers need not care when the runtime (re)starts.
 */
import { EventEmitter } from 'node:events';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { FlowRuntime, MeshEventMap } from '../lib/flow/runtime';
import { resolveModelPaths } from '../lib/llm/resolve';
import { MeshConfigNode, numberOr, registerNode } from './common';
import { Jobs, modelDigest, registerMeshJobs } from '../lib/runs/jobs';
import { runStoreFromEnv } from '../lib/runs/shared';
import { JobBus } from '../lib/runs/bus';

interface ConfigDef extends NodeDef {
  model: string;
  tokenizer: string;
  broker: string;
  meshId: string;
  quant: 'f32' | 'int8';
  nodes: string;
  gatherTimeout: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<ConfigDef>(RED, 'mesh-llm-config', function (this: Node, def: ConfigDef) {
    RED.nodes.createNode(this, def);
    const node = this as MeshConfigNode;
    let started: Promise<FlowRuntime> | null = null;
    const busLogin = (node as unknown as { credentials?: { username?: string; password?: string } }).credentials ?? {};
    // the monitor, sensor input and calibration nodes connect with the config node's login too
    node.bus = { url: def.broker || 'mqtt://127.0.0.1:1883', username: busLogin.username || undefined, password: busLogin.password || undefined, meshId: def.meshId || 'default' };
    node.events = new EventEmitter<MeshEventMap>();
    node.events.setMaxListeners(0); // every node of every flow on this mesh may listen
    // durable jobs and recorded runs, in the run store mesh-llm start opened (none: not recorded)
    node.quant = def.quant === 'int8' ? 'int8' : 'f32';
    const store = runStoreFromEnv();
    const jobs = store ? new Jobs(store) : null;
    node.jobs = jobs;
    if (jobs) {
      node.events.on('gather-done', (e) => jobs.gather(e.pos, e.layer, e.ms ?? 0, e.nodes));
      node.on('close', registerMeshJobs(node.bus.meshId, jobs)); // the alert node records into the run holding this mesh
      // the gateway's presence and each job's progress on the bus, for generate --broker
      const login = (node as unknown as { credentials?: { username?: string; password?: string } }).credentials ?? {};
      const jobBus = new JobBus({ url: node.bus.url, username: login.username || undefined, password: login.password || undefined, meshId: node.bus.meshId, clientId: `mesh-llm-${node.bus.meshId}-jobs-${node.id}`.slice(0, 64), log: (text) => node.warn(text) });
      jobs.onChange = (m) => jobBus.tell(m);
      node.on('close', (_removed: boolean, done: () => void) => {
        jobs.onChange = null;
        jobBus.close().then(done, () => done());
      });
      node.events.on('run-end', (e) => e.error && jobs.ended(new Error(e.error)));
    }
    const start = (): Promise<FlowRuntime> => {
      const paths = resolveModelPaths({ model: def.model || undefined, tokenizer: def.tokenizer || undefined });
      if (jobs) node.model = { path: paths.model, digest: modelDigest(paths.model, paths.tokenizer) };
      const count = def.nodes ? Number(def.nodes) : undefined;
      const login = (node as unknown as { credentials?: { username?: string; password?: string } }).credentials ?? {};
      return FlowRuntime.start({
        modelPath: paths.model,
        tokenizerPath: paths.tokenizer,
        brokerUrl: node.bus.url,
        username: login.username || undefined,
        password: login.password || undefined,
        meshId: node.bus.meshId,
        quant: def.quant === 'int8' ? 'int8' : 'f32',
        nodes: count && Number.isInteger(count) && count > 0 ? count : undefined,
        // an unset ${MESH_LLM_GATHER_TIMEOUT} stays as written: the runner's default then
        gatherTimeoutMs: numberOr(def.gatherTimeout, 0) > 0 ? numberOr(def.gatherTimeout, 0) : undefined,
        events: node.events,
        log: (level, text) => (level === 'error' ? node.error(text) : level === 'warn' ? node.warn(text) : node.debug(text)),
      });
    };
    node.runtime = () => {
      if (!started) {
        started = start();
        started.then(
          (rt) => node.log(`mesh ${def.meshId || 'default'}: ${rt.assignment.length} head node(s) assigned`),
          (e: Error) => {
            node.error(`mesh-llm could not start: ${e.message}`);
            started = null; // the next message tries again
          },
        );
      }
      return started;
    };
    node.on('close', (done: () => void) => {
      if (jobs) jobs.closing = true; // runs cut short by the close stay unfinished, to be resumed
      const rt = started;
      started = null;
      if (!rt) return done();
      rt.then((r) => r.close()).then(done, () => done());
    });
  }, { username: { type: 'text' }, password: { type: 'password' } }); // Node-RED credentials: encrypted in the credentials file, never in the flow
};

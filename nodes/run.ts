/**
 * mesh-llm-run: reads a job and its recorded run from the run store. The id comes from
 * msg.req.params.id (GET /jobs/:id in the shipped flow) or msg.payload; msg.payload becomes the
 * job (state, request, tokens so far, text, error, mesh), or with "whole run" ticked the whole
 * record (every token's row, gathers, readings, alerts). An unknown id gives statusCode 404 and
 * {error}, so an HTTP response answers it as it is. msg.topic "list": msg.payload becomes the
 * newest jobs (msg.payload a number: that many, default 20), as the dashboard's past runs.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { Done, MeshConfigNode, Send, meshOf, registerNode } from './common';

interface RunDef extends NodeDef {
  mesh: string;
  whole: boolean;
}

export = function register(RED: NodeAPI): void {
  registerNode<RunDef>(RED, 'mesh-llm-run', function (this: Node, def: RunDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let mesh: MeshConfigNode | null = null;
    try {
      mesh = meshOf(RED, node, def.mesh);
    } catch (e) {
      node.error((e as Error).message);
    }
    node.on('input', (msg: NodeMessageInFlow & { req?: { params?: { id?: string } }; statusCode?: number }, send: Send, done: Done) => {
      try {
        const jobs = mesh?.jobs;
        if (msg.topic === 'list' && !jobs) {
          // no run store (Node-RED not run by mesh-llm start): no past runs to list
          node.status({ fill: 'yellow', shape: 'ring', text: 'no run store' });
          msg.payload = [];
          send(msg);
          return done();
        }
        if (!jobs) throw new Error('no run store: mesh-llm start keeps one in its --data folder (elsewhere set MESH_LLM_RUNS_DB)');
        if (msg.topic === 'list' && jobs) {
          const limit = typeof msg.payload === 'number' && Number.isInteger(msg.payload) && msg.payload > 0 ? msg.payload : 20;
          msg.payload = jobs.recent(limit);
          send(msg);
          return done();
        }
        const id = String(msg.req?.params?.id ?? msg.payload ?? '');
        const found = def.whole ? jobs.store.run(id) : jobs.view(id);
        if (found) {
          msg.payload = found;
          node.status({ fill: 'green', shape: 'dot', text: `${id.slice(0, 8)}: ${'job' in found ? found.job.state : found.state}` });
        } else {
          msg.statusCode = 404;
          msg.payload = { error: `no job ${JSON.stringify(id)} in the run store` };
          node.status({ fill: 'yellow', shape: 'ring', text: `no job ${id.slice(0, 8)}` });
        }
        send(msg);
        done();
      } catch (e) {
        node.status({ fill: 'red', shape: 'dot', text: (e as Error).message.slice(0, 60) });
        done(e as Error);
      }
    });
  });
};

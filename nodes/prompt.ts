/**
 * mesh-llm-prompt: starts a generation. msg.payload is a prompt string, or a request object
 * {"prompt", "steps", "temperature", "topP", "seed"} validated against schemas/generate-request.json.
 * Requests wait their turn: one generation at a time per mesh; the status says "idle" (or how
 * many are queued) when a run ends.
 */
import type { Node, NodeAPI } from 'node-red';
import { parseGenerateRequest } from '../lib/flow/request';
import { IDLE, LlmMessage, StepNodeDef, onMeshEvent, onStep, registerNode, throttledStatus } from './common';

export = function register(RED: NodeAPI): void {
  registerNode<StepNodeDef>(RED, 'mesh-llm-prompt', function (this: Node, def: StepNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node);
    let waiting = 0;
    const queued = () => status(waiting ? { fill: 'yellow', shape: 'ring', text: `queued (${waiting})` } : IDLE, true);
    const mesh = onStep(RED, node, def.mesh, async (rt, msg, send) => {
      const options = parseGenerateRequest(msg.payload);
      waiting++;
      queued();
      try {
        const step = await rt.begin(options);
        const m = msg as LlmMessage;
        m.llm = step;
        m.request = { prompt: options.prompt, steps: options.steps, temperature: options.temperature };
        status({ fill: 'green', shape: 'dot', text: `running: ${JSON.stringify(options.prompt).slice(0, 30)}` }, true);
        send(m);
      } finally {
        waiting--;
      }
    });
    if (!mesh) return;
    queued();
    onMeshEvent(node, mesh, 'run-end', queued);
  });
};

/** mesh-llm-broadcast: publishes the layer's attention input RMSNorm(x) to the head nodes; the message moves on at once. */
import type { NodeAPI } from 'node-red';
import { registerStepNode, stepOf } from './common';

export = function register(RED: NodeAPI): void {
  registerStepNode(RED, 'mesh-llm-broadcast', function (this, rt, msg, send, status) {
    const { step, x } = stepOf(this, msg);
    rt.broadcast(step, x);
    status({ fill: 'blue', shape: 'dot', text: `pos ${step.pos} layer ${step.layer} → ${rt.assignment.length} nodes` });
    send(msg);
  });
};

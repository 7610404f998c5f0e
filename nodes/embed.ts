/** mesh-llm-embed: the token of the run's current position -> msg.hidden = its embedding row x [dim]. */
import type { NodeAPI } from 'node-red';
import { registerStepNode, stepOf } from './common';

export = function register(RED: NodeAPI): void {
  registerStepNode(RED, 'mesh-llm-embed', function (this, rt, msg, send, status) {
    const { step } = stepOf(this, msg, false);
    msg.hidden = rt.embed(step);
    status({ fill: 'blue', shape: 'dot', text: `position ${step.pos}` });
    send(msg);
  });
};

/** mesh-llm-layer-loop: after a layer, output 1 loops to the next layer's broadcast; after the last, output 2 goes to sampling. */
import type { NodeAPI } from 'node-red';
import { registerStepNode, stepOf } from './common';

export = function register(RED: NodeAPI): void {
  registerStepNode(RED, 'mesh-llm-layer-loop', function (this, rt, msg, send, status) {
    const { step } = stepOf(this, msg);
    const more = rt.nextLayer(step);
    status({ fill: 'blue', shape: 'dot', text: more ? `next: layer ${step.layer}` : 'last layer: sample' });
    send(more ? [msg, null] : [null, msg]);
  });
};

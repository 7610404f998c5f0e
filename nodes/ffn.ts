/** mesh-llm-ffn: the layer's feed-forward network on onnxruntime-node, x += W_2 · (silu(W_1 · n) * (W_3 · n)). */
import type { NodeAPI } from 'node-red';
import { registerStepNode, stepOf } from './common';

export = function register(RED: NodeAPI): void {
  registerStepNode(RED, 'mesh-llm-ffn', async function (this, rt, msg, send, status) {
    const { step, x } = stepOf(this, msg);
    await rt.ffn(step, x);
    status({ fill: 'blue', shape: 'dot', text: `layer ${step.layer}` });
    send(msg);
  });
};

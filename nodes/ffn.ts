/** mesh-llm-ffn: the layer's feed-forward network on onnxruntime-node, x += W_2 · (silu(W_1 · n) * (W_3 · n)). */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { onStep, registerNode, stepOf, throttledStatus } from './common';

interface StepDef extends NodeDef {
  mesh: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<StepDef>(RED, 'mesh-llm-ffn', function (this: Node, def: StepDef) {
    RED.nodes.createNode(this, def);
    const status = throttledStatus(this);
    onStep(RED, this, def.mesh, async (rt, msg, send) => {
      const { step, x } = stepOf(this, msg);
      await rt.ffn(step, x);
      status({ fill: 'blue', shape: 'dot', text: `layer ${step.layer}` });
      send(msg);
    });
  });
};

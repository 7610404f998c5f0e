/** mesh-llm-broadcast: publishes the layer's attention input RMSNorm(x) to the head nodes; the message moves on at once. */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { onStep, registerNode, stepOf, throttledStatus } from './common';

interface StepDef extends NodeDef {
  mesh: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<StepDef>(RED, 'mesh-llm-broadcast', function (this: Node, def: StepDef) {
    RED.nodes.createNode(this, def);
    const status = throttledStatus(this);
    onStep(RED, this, def.mesh, (rt, msg, send) => {
      const { step, x } = stepOf(this, msg);
      rt.broadcast(step, x);
      status({ fill: 'blue', shape: 'dot', text: `pos ${step.pos} layer ${step.layer} → ${rt.assignment.length} nodes` });
      send(msg);
    });
  });
};

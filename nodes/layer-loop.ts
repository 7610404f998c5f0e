/** mesh-llm-layer-loop: after a layer, output 1 loops to the next layer's broadcast; after the last, output 2 goes to sampling. */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { onStep, registerNode, stepOf } from './common';

interface StepDef extends NodeDef {
  mesh: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<StepDef>(RED, 'mesh-llm-layer-loop', function (this: Node, def: StepDef) {
    RED.nodes.createNode(this, def);
    onStep(RED, this, def.mesh, (rt, msg, send) => {
      const { step } = stepOf(this, msg);
      send(rt.nextLayer(step) ? [msg, null] : [null, msg]);
    });
  });
};

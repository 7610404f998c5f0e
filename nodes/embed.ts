/** mesh-llm-embed: the token of the run's current position -> msg.hidden = its embedding row x [dim]. */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { onStep, registerNode, stepOf, throttledStatus } from './common';

interface StepDef extends NodeDef {
  mesh: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<StepDef>(RED, 'mesh-llm-embed', function (this: Node, def: StepDef) {
    RED.nodes.createNode(this, def);
    const status = throttledStatus(this);
    onStep(RED, this, def.mesh, (rt, msg, send) => {
      const { step } = stepOf(this, msg, false);
      msg.hidden = rt.embed(step);
      status({ fill: 'blue', shape: 'dot', text: `position ${step.pos}` });
      send(msg);
    });
  });
};

/** mesh-llm-aggregate: gathers every head node's result for the layer, then x += W_O · heads. */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { onStep, registerNode, stepOf, throttledStatus } from './common';

interface StepDef extends NodeDef {
  mesh: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<StepDef>(RED, 'mesh-llm-aggregate', function (this: Node, def: StepDef) {
    RED.nodes.createNode(this, def);
    const status = throttledStatus(this);
    onStep(RED, this, def.mesh, async (rt, msg, send) => {
      const { step, x } = stepOf(this, msg);
      const t0 = process.hrtime.bigint();
      await rt.aggregate(step, x);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      status({ fill: 'green', shape: 'dot', text: `layer ${step.layer}: gathered in ${ms.toFixed(2)} ms` });
      send(msg);
    });
  });
};

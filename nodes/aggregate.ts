/** mesh-llm-aggregate: gathers every head node's result for the layer, then x += W_O · heads. */
import type { NodeAPI } from 'node-red';
import { registerStepNode, stepOf } from './common';

export = function register(RED: NodeAPI): void {
  registerStepNode(RED, 'mesh-llm-aggregate', async function (this, rt, msg, send, status) {
    const { step, x } = stepOf(this, msg);
    const t0 = process.hrtime.bigint();
    await rt.aggregate(step, x);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    status({ fill: 'green', shape: 'dot', text: `layer ${step.layer}: gather ${ms.toFixed(2)} ms` });
    send(msg);
  });
};

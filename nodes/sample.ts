/**
 * mesh-llm-sample: logits of the last layer's output, then the next token. Output 1: the next
 * position (back to embed). Output 2: each token, as the tokens topic carries it. Output 3:
 * the finished generation {tokens, text, tokensPerSecond}. Outputs 2 and 3 carry no tensors.
 */
import type { NodeAPI, NodeMessage } from 'node-red';
import { registerStepNode, stepOf } from './common';

export = function register(RED: NodeAPI): void {
  registerStepNode(RED, 'mesh-llm-sample', async function (this, rt, msg, send, status, mesh) {
    const { step, x } = stepOf(this, msg);
    const { token, result, detail } = await rt.sample(step, x);
    // recorded and committed before it is published; a resumed run's recorded tokens are not published again
    const jobs = mesh.jobs;
    const fresh = !token || !jobs || jobs.token(step.run, token, detail, rt.steering);
    const tokenMsg: NodeMessage | null = token && fresh ? { topic: 'token', payload: token } : null;
    if (!result) {
      status({ fill: 'blue', shape: 'dot', text: `position ${step.pos + 1}` });
      send([msg, tokenMsg, null]);
      return;
    }
    jobs?.finished(step.run, result);
    delete msg.hidden;
    delete msg.llm;
    msg.payload = { tokens: result.tokens, text: result.text, tokensPerSecond: result.tokensPerSecond };
    status({ fill: 'green', shape: 'dot', text: `done: ${result.tokens.length - 1} tokens, ${result.tokensPerSecond.toFixed(0)} tok/s` }, true);
    send([null, tokenMsg, msg]);
  });
};

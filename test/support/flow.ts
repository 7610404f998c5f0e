import { GenerateOptions, GenerationResult } from '../../lib/llm/engine';
import { FlowRuntime, StepState, TokenDetail } from '../../lib/flow/runtime';

/**
 * Drives a run through the flow runtime as the Node-RED layer loop does (embed, then per layer
 * broadcast, aggregate, ffn, then sample); an error aborts the run, as the nodes' done(err)
 * path does. onPosition is told after each position but the last; onDetail each sampled token's
 * detail (its probability, and in a steered run the KL and the node that moved it most).
 */
export async function flowRun(rt: FlowRuntime, options: GenerateOptions, onPosition?: (step: StepState) => void, onDetail?: (d: TokenDetail) => void): Promise<GenerationResult> {
  const step = await rt.begin(options);
  try {
    for (;;) {
      const x = rt.embed(step);
      do {
        rt.broadcast(step, x);
        await rt.aggregate(step, x);
        await rt.ffn(step, x);
      } while (rt.nextLayer(step));
      const { result, detail } = await rt.sample(step, x);
      onDetail?.(detail);
      if (result) return result;
      onPosition?.(step);
    }
  } catch (e) {
    rt.abort(step.run, e as Error);
    throw e;
  }
}

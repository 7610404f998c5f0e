/**
 * Calibration for GPTQ (lib/llm/gptq.ts): the Hessian H = sum of x x^T of each layer's
 * attention input (what W_Q, W_K and W_V multiply), over sequences teacher forced through the
 * float32 model.
 */
import { Geometry } from './config';
import { HeadRunner, forward } from './engine';
import { Gateway } from './gateway';

/** Per layer: H = sum over calibration positions of xb xb^T, [dim, dim] row-major (the inputs of W_Q, W_K, W_V). */
export type LayerHessians = Float64Array[];

/** A fresh set of per-layer Hessians for a geometry. */
export function emptyHessians(g: Geometry): LayerHessians {
  return Array.from({ length: g.nLayers }, () => new Float64Array(g.dim * g.dim));
}

/** H += x x^T. Shapes: H [n, n], x [n]. */
export function addOuterProduct(h: Float64Array, x: Float32Array): void {
  const n = x.length;
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    for (let j = 0; j < n; j++) h[i * n + j] += xi * x[j];
  }
}

/**
 * The Hessians of every layer's attention input over calibration sequences, teacher forced
 * through a gateway and head runner (float32 weights, float32 transport: the inputs the
 * unquantised model sees).
 */
export async function attentionInputHessians(g: Geometry, gateway: Gateway, heads: HeadRunner, sequences: readonly (readonly number[])[]): Promise<LayerHessians> {
  const hs = emptyHessians(g);
  const recorder: HeadRunner = {
    run: (xb, pos, layer, out) => {
      addOuterProduct(hs[layer], xb);
      return heads.run(xb, pos, layer, out);
    },
    reset: () => heads.reset(),
  };
  const headOut = new Float32Array(g.dim);
  for (const tokens of sequences) {
    await recorder.reset();
    for (let pos = 0; pos < tokens.length; pos++) await forward(gateway, recorder, tokens[pos], pos, headOut, false);
  }
  return hs;
}


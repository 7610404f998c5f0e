/**
 * The gateway's per-token work in int8 on the native kernel (lib/native/kernels.ts): the same
 * steps and the same numbers as the int8 ONNX graphs of lib/onnx/gateway.ts (per-row int8
 * weights, the activation quantised to uint8 per product, the integer sums scaled back), with
 * the matrices packed for one sequential read each, and each layer one call into
 * lib/native/int8_gateway.c. Shapes: x, heads, y [dim]; logits [vocab].
 *
 *   x1 = x + W_O · heads,  n = RMSNorm(x1),  y = x1 + W_2 · (silu(W_1 · n) * (W_3 · n))
 *   logits = W_cls · RMSNorm(x)
 */
import { Geometry } from '../llm/config';
import { TensorReader } from '../onnx/gateway';
import { Int8GatewayAddon, PackedInt8, PackedLayer, nativeKernels, packRows } from './kernels';

function packedBytes(m: PackedInt8): number {
  return m.packed.byteLength + m.scales.byteLength + m.rowSums.byteLength;
}

export class NativeInt8Gateway {
  private constructor(
    readonly g: Geometry,
    private readonly addon: Int8GatewayAddon,
    private readonly layers: PackedLayer[],
    private readonly classifier: { w: PackedInt8; rmsFinal: Float32Array },
    readonly weightBytes: number,
  ) {}

  static create(g: Geometry, read: TensorReader, progress?: (done: number, total: number) => void): NativeInt8Gateway {
    const addon = nativeKernels(); // the addon first: a missing compiler fails before any weight is read
    const { dim, hiddenDim } = g;
    const classifier = { w: packRows(read('wcls', 0), g.vocabSize, dim), rmsFinal: read('rmsFinal', 0) };
    let weightBytes = packedBytes(classifier.w) + classifier.rmsFinal.byteLength;
    progress?.(1, g.nLayers + 1);
    const layers: PackedLayer[] = [];
    for (let l = 0; l < g.nLayers; l++) {
      const w: PackedLayer = { wo: packRows(read('wo', l), dim, dim), w13: packRows([read('w1', l), read('w3', l)], hiddenDim, dim), w2: packRows(read('w2', l), dim, hiddenDim), rmsFfn: read('rmsFfn', l) };
      weightBytes += packedBytes(w.wo) + packedBytes(w.w13) + packedBytes(w.w2) + w.rmsFfn.byteLength;
      layers.push(w);
      progress?.(l + 2, g.nLayers + 1);
    }
    return new NativeInt8Gateway(g, addon, layers, classifier, weightBytes);
  }

  /** x1 = x + W_O · heads, then x1 + FFN(x1): one layer's gateway work, one native call. x, heads [dim] -> y [dim]. */
  async layer(x: Float32Array, heads: Float32Array, layer: number): Promise<Float32Array> {
    const y = new Float32Array(this.g.dim);
    this.addon.layerStep(this.layers[layer], x, heads, y);
    return y;
  }

  /** logits [vocab] of the residual x [dim]. */
  async logits(x: Float32Array): Promise<Float32Array> {
    const out = new Float32Array(this.g.vocabSize);
    this.addon.logitsStep(this.classifier.w, this.classifier.rmsFinal, x, out);
    return out;
  }

  async release(): Promise<void> {
    this.layers.length = 0;
  }
}

/**
 * The gateway's per-token work in int8 on the native kernel (lib/native/kernels.ts): the same
 * steps and the same numbers as the int8 ONNX graphs of lib/onnx/gateway.ts (per-row int8
 * weights, the activation quantised to uint8 per product, the integer sums scaled back), with
 * the matrices packed for one sequential read each. Shapes: x, heads, y [dim]; logits [vocab].
 *
 *   x1 = x + W_O · heads,  n = RMSNorm(x1),  y = x1 + W_2 · (silu(W_1 · n) * (W_3 · n))
 *   logits = W_cls · RMSNorm(x)
 */
import { Geometry } from '../llm/config';
import { rmsnorm, swiglu } from '../llm/math';
import { TensorReader } from '../onnx/gateway';
import { PackedInt8, matvecInt8, nativeKernels, packRows, quantizeActivation } from './kernels';

interface LayerWeights {
  wo: PackedInt8;
  /** W_1 and W_3 stacked: one pass, one activation quantisation, as the ONNX graph's pair. */
  w13: PackedInt8;
  w2: PackedInt8;
  rmsFfn: Float32Array;
}

function packedBytes(m: PackedInt8): number {
  return m.packed.byteLength + m.scales.byteLength + m.rowSums.byteLength;
}

export class NativeInt8Gateway {
  /** Scratch vectors, allocated once: the activation codes per width, and the products. */
  private readonly codes = new Map<number, Uint8Array>();
  private readonly attn: Float32Array;
  private readonly n: Float32Array;
  private readonly h13: Float32Array;
  private readonly down: Float32Array;
  private readonly logitsOut: Float32Array;

  private constructor(
    readonly g: Geometry,
    private readonly layers: LayerWeights[],
    private readonly classifier: { w: PackedInt8; rmsFinal: Float32Array },
    readonly weightBytes: number,
    /** The instructions the kernel uses on this CPU. */
    readonly kernel: string,
  ) {
    this.attn = new Float32Array(g.dim);
    this.n = new Float32Array(g.dim);
    this.h13 = new Float32Array(2 * g.hiddenDim);
    this.down = new Float32Array(g.dim);
    this.logitsOut = new Float32Array(g.vocabSize);
  }

  static create(g: Geometry, read: TensorReader, progress?: (done: number, total: number) => void): NativeInt8Gateway {
    const kernel = nativeKernels().kernel; // the addon first: a missing compiler fails before any weight is read
    const { dim, hiddenDim } = g;
    const classifier = { w: packRows(read('wcls', 0), g.vocabSize, dim), rmsFinal: read('rmsFinal', 0) };
    let weightBytes = packedBytes(classifier.w) + classifier.rmsFinal.byteLength;
    progress?.(1, g.nLayers + 1);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < g.nLayers; l++) {
      const w: LayerWeights = { wo: packRows(read('wo', l), dim, dim), w13: packRows([read('w1', l), read('w3', l)], hiddenDim, dim), w2: packRows(read('w2', l), dim, hiddenDim), rmsFfn: read('rmsFfn', l) };
      weightBytes += packedBytes(w.wo) + packedBytes(w.w13) + packedBytes(w.w2) + w.rmsFfn.byteLength;
      layers.push(w);
      progress?.(l + 2, g.nLayers + 1);
    }
    return new NativeInt8Gateway(g, layers, classifier, weightBytes, kernel);
  }

  /** out = W · x, x quantised to uint8 first. */
  private product(m: PackedInt8, x: Float32Array, out: Float32Array): Float32Array {
    let q = this.codes.get(m.colsPadded);
    if (!q) this.codes.set(m.colsPadded, (q = new Uint8Array(m.colsPadded)));
    matvecInt8(m, quantizeActivation(x, q), out);
    return out;
  }

  /** x1 = x + W_O · heads, then x1 + FFN(x1): one layer's gateway work. x, heads [dim] -> y [dim]. */
  async layer(x: Float32Array, heads: Float32Array, layer: number): Promise<Float32Array> {
    const w = this.layers[layer];
    const { dim, hiddenDim } = this.g;
    const attn = this.product(w.wo, heads, this.attn);
    const x1 = new Float32Array(dim);
    for (let i = 0; i < dim; i++) x1[i] = x[i] + attn[i];
    rmsnorm(this.n, x1, w.rmsFfn);
    const h13 = this.product(w.w13, this.n, this.h13);
    const h1 = h13.subarray(0, hiddenDim);
    swiglu(h1, h13.subarray(hiddenDim));
    const down = this.product(w.w2, h1, this.down);
    for (let i = 0; i < dim; i++) x1[i] += down[i];
    return x1;
  }

  /** logits [vocab] of the residual x [dim]. */
  async logits(x: Float32Array): Promise<Float32Array> {
    rmsnorm(this.n, x, this.classifier.rmsFinal);
    return this.product(this.classifier.w, this.n, this.logitsOut).slice();
  }

  async release(): Promise<void> {
    this.layers.length = 0;
  }
}

/**
 * The gateway's per-token work as ONNX graphs on onnxruntime-node, at any model size: for
 * each layer one graph that takes the residual x and the heads' outputs and applies W_O and
 * the feed-forward step, y = x1 + W_2 · (silu(W_1 · n) * (W_3 · n)) with x1 = x + W_O · heads
 * and n = RMSNorm(x1); and one graph for the classifier, logits = W_cls · RMSNorm(x).
 * Shapes: x, heads, y [1, dim]; logits [1, vocab].
 *
 * Weights are float32, or int8 with one float32 scale per output row (symmetric, max|row| / 127),
 * multiplied by onnxruntime's dynamic-quantisation pattern: the activation is quantised to
 * uint8 per call (DynamicQuantizeLinear), MatMulInteger multiplies in integers, and the
 * product is scaled back (onnxruntime fuses the four nodes into DynamicQuantizeMatMul). The
 * int8 weights are the only copy onnxruntime keeps: they are never widened to float32.
 * An option (blockSize): int8 with one float32 scale per block of blockSize values of a row,
 * multiplied by onnxruntime's contrib MatMulNBits (bits 8, accuracy_level 4: the activation
 * quantised to int8 per block, llama.cpp's Q8_0 x Q8_0 scheme); other numbers than the per-row
 * format, and on this machine's benchmark not faster (docs/PERFORMANCE.md).
 *
 * Weights come from a TensorReader one layer at a time, and each layer's model bytes are
 * dropped once its session exists, so loading needs little more than the resident weights.
 */
import * as ort from 'onnxruntime-node';
import { Geometry, RMS_EPS } from '../llm/config';
import { MeshLlmError } from '../llm/errors';
import { Encoding, quantizeRowInt8 } from '../llm/quant';
import { TensorName } from '../llm/tensors';
import { MS_DOMAIN, OnnxGraph, OnnxNode, OnnxTensor, encodeModel } from './onnx';

/** Where weights come from: one layer of one tensor as float32 [rows, cols]. */
export type TensorReader = (name: TensorName, layer: number) => Float32Array;

/**
 * Matrices W_0..W_k-1, each [rows, cols], stacked on their rows -> the transpose of the stack,
 * [cols, k·rows], as int8 with one scale per row of the stack (a column of the transpose).
 */
export function quantizeTransposed(ws: Float32Array | Float32Array[], rows: number, cols: number): { q: Int8Array; scales: Float32Array } {
  const list = Array.isArray(ws) ? ws : [ws];
  const stride = list.length * rows;
  const q = new Int8Array(stride * cols);
  const scales = new Float32Array(stride);
  list.forEach((w, k) => {
    for (let r = 0; r < rows; r++) scales[k * rows + r] = quantizeRowInt8(w, r * cols, cols, q, k * rows + r, stride);
  });
  return { q, scales };
}

/**
 * Matrices W_0..W_k-1, each [rows, cols], stacked on their rows -> MatMulNBits' 8-bit blocks:
 * values [k·rows, nBlocks, blockSize] as uint8 (int8 + 128, MatMulNBits' implicit zero point;
 * a short last block padded with zeros), and one scale per block (max|block| / 127) [k·rows · nBlocks].
 */
export function quantizeBlocks(ws: Float32Array[], rows: number, cols: number, blockSize: number): { q: Uint8Array; scales: Float32Array; nBlocks: number } {
  const nBlocks = Math.ceil(cols / blockSize);
  const padded = nBlocks * blockSize;
  const q = new Uint8Array(ws.length * rows * padded).fill(128);
  const scales = new Float32Array(ws.length * rows * nBlocks);
  ws.forEach((w, k) => {
    for (let r = 0; r < rows; r++) {
      const row = k * rows + r;
      for (let b = 0; b < nBlocks; b++) {
        const from = r * cols + b * blockSize;
        const to = r * cols + Math.min(cols, (b + 1) * blockSize);
        let amax = 0;
        for (let i = from; i < to; i++) amax = Math.max(amax, Math.abs(w[i]));
        const scale = Math.fround(amax / 127);
        scales[row * nBlocks + b] = scale;
        const inv = scale ? 1 / scale : 0;
        for (let i = from; i < to; i++) {
          const v = w[i] * inv;
          q[row * padded + b * blockSize + (i - from)] = 128 + (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));
        }
      }
    }
  });
  return { q, scales, nBlocks };
}

/** W_0..W_k-1 [rows, cols] stacked on their rows -> the transpose of the stack [cols, k·rows], for MatMul(x [1, cols], W^T). */
function transposeF32(ws: Float32Array[], rows: number, cols: number): Float32Array {
  const stride = ws.length * rows;
  const t = new Float32Array(stride * cols);
  ws.forEach((w, k) => {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * stride + k * rows + r] = w[r * cols + c];
  });
  return t;
}

/** Builds nodes and initializers of one graph, naming intermediates uniquely. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private n = 0;

  /** blockSize: int8 in blocks through MatMulNBits instead of one scale per row. */
  constructor(private readonly encoding: Encoding, private readonly blockSize?: number) {}

  private fresh(base: string): string {
    return `${base}_${this.n++}`;
  }

  node(op: string, inputs: string[], attributes?: OnnxNode['attributes']): string {
    const out = this.fresh(op.toLowerCase());
    this.nodes.push({ op, inputs, outputs: [out], attributes });
    return out;
  }

  constant(name: string, dims: number[], data: Float32Array | Int8Array | Uint8Array): string {
    this.initializers.push({ name, dims, data });
    return name;
  }

  /**
   * n = weight * x / sqrt(mean(x^2) + eps), over the last axis: onnxruntime's
   * SimplifiedLayerNormalization, one node where the spelled-out ops were six.
   */
  rmsnorm(x: string, weight: Float32Array, name: string): string {
    return this.node('SimplifiedLayerNormalization', [x, this.constant(name, [weight.length], weight)], { axis: -1, epsilon: { float: RMS_EPS } });
  }

  /**
   * s = x + skip and n = RMSNorm(s) with `weight`, in one node (onnxruntime's contrib
   * SkipSimplifiedLayerNormalization): the residual add and the norm read the vector once.
   */
  addRmsnorm(x: string, skip: string, weight: Float32Array, name: string): { sum: string; n: string } {
    const n = this.fresh('skipnorm');
    const sum = this.fresh('residual');
    this.nodes.push({ op: 'SkipSimplifiedLayerNormalization', domain: MS_DOMAIN, inputs: [x, skip, this.constant(name, [weight.length], weight)], outputs: [n, '', '', sum], attributes: { epsilon: { float: RMS_EPS } } });
    return { sum, n };
  }

  /** a [1, cols] · W^T for W [rows, cols] (or several stacked on their rows): float32 MatMul, or the dynamic int8 pattern. */
  matmul(a: string, w: Float32Array | Float32Array[], rows: number, cols: number, name: string): string {
    const ws = Array.isArray(w) ? w : [w];
    const n = ws.length * rows;
    if (this.encoding === 'f32') return this.node('MatMul', [a, this.constant(name, [cols, n], transposeF32(ws, rows, cols))]);
    if (this.blockSize !== undefined) {
      const { q, scales, nBlocks } = quantizeBlocks(ws, rows, cols, this.blockSize);
      const out = this.fresh('matmulnbits');
      const inputs = [a, this.constant(`${name}_q`, [n, nBlocks, this.blockSize], q), this.constant(`${name}_scale`, [n * nBlocks], scales)];
      this.nodes.push({ op: 'MatMulNBits', domain: MS_DOMAIN, inputs, outputs: [out], attributes: { K: cols, N: n, bits: 8, block_size: this.blockSize, accuracy_level: 4 } });
      return out;
    }
    const { q, scales } = quantizeTransposed(ws, rows, cols);
    const dq = `${name}_dq`;
    this.nodes.push({ op: 'DynamicQuantizeLinear', inputs: [a], outputs: [`${dq}_q`, `${dq}_scale`, `${dq}_zp`] });
    const product = this.node('MatMulInteger', [`${dq}_q`, this.constant(`${name}_q`, [cols, n], q), `${dq}_zp`]);
    const scale = this.node('Mul', [`${dq}_scale`, this.constant(`${name}_scale`, [n], scales)]);
    return this.node('Mul', [this.node('Cast', [product], { to: 1 }), scale]);
  }

  /**
   * a [1, cols] · [W^T | V^T] for W, V [rows, cols], as one product split in two: one pass over
   * both matrices, one activation quantisation. Each output column is the product it would be
   * alone (int8: the same integer sum and scales), so the halves equal two separate matmuls.
   */
  matmulPair(a: string, w: Float32Array, v: Float32Array, rows: number, cols: number, name: string): [string, string] {
    const product = this.matmul(a, [w, v], rows, cols, name);
    const halves: [string, string] = [this.fresh('split'), this.fresh('split')];
    this.nodes.push({ op: 'Split', inputs: [product], outputs: halves, attributes: { axis: -1 } });
    return halves;
  }

  /** The graph, with the node that computes `output` writing the graph output y. */
  graph(name: string, inputs: OnnxGraph['inputs'], output: string, outputDims: number[]): OnnxGraph {
    for (const n of this.nodes) n.outputs = n.outputs.map((o) => (o === output ? 'y' : o));
    for (const n of this.nodes) n.inputs = n.inputs.map((i) => (i === output ? 'y' : i));
    return { name, nodes: this.nodes, initializers: this.initializers, inputs, outputs: [{ name: 'y', dims: outputDims }] };
  }
}

/** One layer: y = x1 + FFN(x1), x1 = x + W_O · heads; W_1 and W_3 as one product (bit-identical to two). */
export function layerGraph(g: Geometry, read: TensorReader, layer: number, encoding: Encoding, blockSize?: number): OnnxGraph {
  const b = new GraphBuilder(encoding, blockSize);
  const { dim, hiddenDim } = g;
  const attn = b.matmul('heads', read('wo', layer), dim, dim, 'wo');
  const { sum: x1, n } = b.addRmsnorm(attn, 'x', read('rmsFfn', layer), 'rms_ffn');
  const [h1, h3] = b.matmulPair(n, read('w1', layer), read('w3', layer), hiddenDim, dim, 'w13');
  const gated = b.node('Mul', [b.node('Mul', [h1, b.node('Sigmoid', [h1])]), h3]);
  const down = b.matmul(gated, read('w2', layer), dim, hiddenDim, 'w2');
  const y = b.node('Add', [x1, down]);
  return b.graph(`gateway_layer_${layer}`, [{ name: 'x', dims: [1, dim] }, { name: 'heads', dims: [1, dim] }], y, [1, dim]);
}

/** The classifier: logits = W_cls · RMSNorm(x). */
export function classifierGraph(g: Geometry, read: TensorReader, encoding: Encoding, blockSize?: number): OnnxGraph {
  const b = new GraphBuilder(encoding, blockSize);
  const n = b.rmsnorm('x', read('rmsFinal', 0), 'rms_final');
  const logits = b.matmul(n, read('wcls', 0), g.vocabSize, g.dim, 'wcls');
  return b.graph('gateway_classifier', [{ name: 'x', dims: [1, g.dim] }], logits, [1, g.vocabSize]);
}

export interface OnnxGatewayOptions {
  encoding: Encoding;
  /** onnxruntime's intra-op threads (default 1). */
  threads?: number;
  /** int8 only: one scale per block of this many values of a row (MatMulNBits, a power of 2 from 16) instead of one per row. */
  blockSize?: number;
}

/** Bytes of a graph's initializers: what onnxruntime holds for it. */
function initializerBytes(graph: OnnxGraph): number {
  return graph.initializers.reduce((n, t) => n + t.data.byteLength, 0);
}

/**
 * The gateway's matrices as onnxruntime sessions, one per layer and one for the classifier.
 * Runs in whatever thread creates it; lib/onnx/gateway-worker.ts puts it in a worker thread.
 */
export class OnnxGatewaySessions {
  private constructor(
    readonly g: Geometry,
    private readonly layers: ort.InferenceSession[],
    private readonly classifier: ort.InferenceSession,
    /** Bytes of the weights the sessions were given (int8 values and scales, or float32). */
    readonly weightBytes: number,
  ) {}

  static async create(g: Geometry, read: TensorReader, o: OnnxGatewayOptions, progress?: (done: number, total: number) => void): Promise<OnnxGatewaySessions> {
    const options: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: o.threads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      // with more than one thread: the pool's threads sleep between products instead of spinning,
      // which on a small machine takes the CPU the hand-offs and the bus need (docs/PERFORMANCE.md)
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    };
    const layers: ort.InferenceSession[] = [];
    let weightBytes = 0;
    const build = async (graph: OnnxGraph): Promise<ort.InferenceSession> => {
      weightBytes += initializerBytes(graph);
      let model: Uint8Array | null = encodeModel(graph);
      graph.initializers.length = 0; // the encoded model holds them now
      const session = await ort.InferenceSession.create(model, options);
      model = null;
      return session;
    };
    // the classifier first: its build buffers, the largest, come and go before the layers are resident
    if (o.blockSize !== undefined && (o.encoding !== 'int8' || !(o.blockSize >= 16 && (o.blockSize & (o.blockSize - 1)) === 0)))
      throw new MeshLlmError(`blockSize ${o.blockSize}: needs encoding int8 and a power of 2 from 16 (MatMulNBits)`);
    const classifier = await build(classifierGraph(g, read, o.encoding, o.blockSize));
    progress?.(1, g.nLayers + 1);
    for (let l = 0; l < g.nLayers; l++) {
      layers.push(await build(layerGraph(g, read, l, o.encoding, o.blockSize)));
      progress?.(l + 2, g.nLayers + 1);
    }
    return new OnnxGatewaySessions(g, layers, classifier, weightBytes);
  }

  /** x1 = x + W_O · heads, then x1 + FFN(x1): one layer's gateway work. x, heads [dim] -> [dim]. */
  async layer(x: Float32Array, heads: Float32Array, layer: number): Promise<Float32Array> {
    const out = await this.layers[layer].run({ x: new ort.Tensor('float32', x, [1, this.g.dim]), heads: new ort.Tensor('float32', heads, [1, this.g.dim]) });
    return out.y.data as Float32Array;
  }

  /** logits [vocab] of the residual x [dim]. */
  async logits(x: Float32Array): Promise<Float32Array> {
    const out = await this.classifier.run({ x: new ort.Tensor('float32', x, [1, this.g.dim]) });
    return out.y.data as Float32Array;
  }

  async release(): Promise<void> {
    await Promise.all([...this.layers, this.classifier].map((s) => s.release()));
  }
}

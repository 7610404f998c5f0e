/**
 * One layer's feed-forward step as an ONNX graph, built from the layer's weights at load
 * time and run by onnxruntime-node: y = x + W_2 · (silu(W_1 · n) * (W_3 · n)), n = RMSNorm(x).
 * Shapes: x, y [batch, dim]; hidden [batch, hiddenDim].
 */
import * as ort from 'onnxruntime-node';
import { RMS_EPS } from '../llm/config';
import { GatewayWeights } from '../llm/gateway';
import { encodeModel, OnnxGraph, transpose } from './onnx';

export function ffnGraph(w: GatewayWeights, layer: number, dim: number, hiddenDim: number): OnnxGraph {
  return {
    name: `ffn_layer_${layer}`,
    inputs: [{ name: 'x', dims: ['batch', dim] }],
    outputs: [{ name: 'y', dims: ['batch', dim] }],
    initializers: [
      { name: 'rms_weight', dims: [dim], data: w.rmsFfn[layer] },
      { name: 'eps', dims: [], data: Float32Array.of(RMS_EPS) },
      { name: 'w1t', dims: [dim, hiddenDim], data: transpose(w.w1[layer], hiddenDim, dim) },
      { name: 'w3t', dims: [dim, hiddenDim], data: transpose(w.w3[layer], hiddenDim, dim) },
      { name: 'w2t', dims: [hiddenDim, dim], data: transpose(w.w2[layer], dim, hiddenDim) },
    ],
    nodes: [
      // RMSNorm: n = rms_weight * x / sqrt(mean(x^2) + eps)
      { op: 'Mul', inputs: ['x', 'x'], outputs: ['x2'] },
      { op: 'ReduceMean', inputs: ['x2'], outputs: ['ms'], attributes: { axes: [-1], keepdims: 1 } },
      { op: 'Add', inputs: ['ms', 'eps'], outputs: ['ms_eps'] },
      { op: 'Sqrt', inputs: ['ms_eps'], outputs: ['rms'] },
      { op: 'Div', inputs: ['x', 'rms'], outputs: ['xn'] },
      { op: 'Mul', inputs: ['xn', 'rms_weight'], outputs: ['n'] },
      // SwiGLU
      { op: 'MatMul', inputs: ['n', 'w1t'], outputs: ['h1'] },
      { op: 'MatMul', inputs: ['n', 'w3t'], outputs: ['h3'] },
      { op: 'Sigmoid', inputs: ['h1'], outputs: ['sig'] },
      { op: 'Mul', inputs: ['h1', 'sig'], outputs: ['silu'] },
      { op: 'Mul', inputs: ['silu', 'h3'], outputs: ['gated'] },
      { op: 'MatMul', inputs: ['gated', 'w2t'], outputs: ['down'] },
      // Residual
      { op: 'Add', inputs: ['x', 'down'], outputs: ['y'] },
    ],
  };
}

/** The FFN of every layer as onnxruntime sessions. */
export class OnnxFfn {
  private constructor(private readonly sessions: ort.InferenceSession[], private readonly dim: number) {}

  static async create(w: GatewayWeights, dim: number, hiddenDim: number): Promise<OnnxFfn> {
    const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' };
    const sessions = await Promise.all(w.w1.map((_, l) => ort.InferenceSession.create(encodeModel(ffnGraph(w, l, dim, hiddenDim)), options)));
    return new OnnxFfn(sessions, dim);
  }

  /** x += FFN(x) for one layer; x [dim]. */
  async apply(x: Float32Array, layer: number): Promise<void> {
    const input = new ort.Tensor('float32', x, [1, this.dim]);
    const out = await this.sessions[layer].run({ x: input });
    x.set(out.y.data as Float32Array);
  }

  async release(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.release()));
  }
}

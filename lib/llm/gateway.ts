/**
 * The gateway steps: everything of the forward pass that is not attention. The gateway holds
 * the token embeddings, the norms, W_O, the feed-forward network and the classifier. Arrays a
 * step returns are scratch owned by the gateway and are overwritten by its next call.
 */
import { Checkpoint } from './checkpoint';
import { Geometry, geometry } from './config';
import { MeshLlmError } from './errors';
import { addInPlace, matmul, rmsnorm, swiglu } from './math';

export interface GatewayWeights {
  tokenEmbedding: Float32Array; // [vocab, dim]
  rmsAtt: Float32Array[];       // per layer [dim]
  wo: Float32Array[];           // per layer [dim, dim]
  rmsFfn: Float32Array[];       // per layer [dim]
  w1: Float32Array[];           // per layer [hiddenDim, dim]
  w2: Float32Array[];           // per layer [dim, hiddenDim]
  w3: Float32Array[];           // per layer [hiddenDim, dim]
  rmsFinal: Float32Array;       // [dim]
  wcls: Float32Array;           // [vocab, dim]
}

function assertFinite(path: string, name: string, a: Float32Array): Float32Array {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) throw new MeshLlmError(`model file ${path}: tensor ${name} holds a non-finite value (${a[i]}) at element ${i}: the file is corrupt`);
  }
  return a;
}

export function loadGatewayWeights(ckpt: Checkpoint): GatewayWeights {
  const { nLayers } = ckpt.info.config;
  const path = ckpt.info.path;
  const perLayer = (name: 'rmsAtt' | 'wo' | 'rmsFfn' | 'w1' | 'w2' | 'w3'): Float32Array[] =>
    Array.from({ length: nLayers }, (_, l) => assertFinite(path, `${name}[${l}]`, ckpt.read(name, l)));
  const tokenEmbedding = assertFinite(path, 'tokenEmbedding', ckpt.read('tokenEmbedding'));
  return {
    tokenEmbedding,
    rmsAtt: perLayer('rmsAtt'),
    wo: perLayer('wo'),
    rmsFfn: perLayer('rmsFfn'),
    w1: perLayer('w1'),
    w2: perLayer('w2'),
    w3: perLayer('w3'),
    rmsFinal: assertFinite(path, 'rmsFinal', ckpt.read('rmsFinal')),
    wcls: ckpt.info.config.sharedClassifier ? tokenEmbedding : assertFinite(path, 'wcls', ckpt.read('wcls')),
  };
}

export class Gateway {
  readonly g: Geometry;
  private readonly w: GatewayWeights;
  private readonly xb: Float32Array;
  private readonly xb2: Float32Array;
  private readonly hb: Float32Array;
  private readonly hb2: Float32Array;
  private readonly logitsBuf: Float32Array;

  constructor(g: Geometry, w: GatewayWeights) {
    this.g = g;
    this.w = w;
    this.xb = new Float32Array(g.dim);
    this.xb2 = new Float32Array(g.dim);
    this.hb = new Float32Array(g.hiddenDim);
    this.hb2 = new Float32Array(g.hiddenDim);
    this.logitsBuf = new Float32Array(g.vocabSize);
  }

  static load(ckpt: Checkpoint): Gateway {
    return new Gateway(geometry(ckpt.info.config), loadGatewayWeights(ckpt));
  }

  /** The gateway's weights (read-only use: e.g. to build the FFN as an ONNX graph). */
  get weights(): GatewayWeights {
    return this.w;
  }

  /** Bytes of resident gateway weights (a shared classifier counted once). */
  get weightBytes(): number {
    const w = this.w;
    const layers = [w.rmsAtt, w.wo, w.rmsFfn, w.w1, w.w2, w.w3].flat().reduce((n, a) => n + a.byteLength, 0);
    return layers + w.tokenEmbedding.byteLength + w.rmsFinal.byteLength + (w.wcls === w.tokenEmbedding ? 0 : w.wcls.byteLength);
  }

  /** The residual stream for a token: its embedding row. Returns a new x [dim]. */
  embed(token: number): Float32Array {
    const { dim, vocabSize } = this.g;
    if (!Number.isInteger(token) || token < 0 || token >= vocabSize) throw new MeshLlmError(`token id ${token} is outside the vocabulary (0..${vocabSize - 1})`);
    return this.w.tokenEmbedding.slice(token * dim, (token + 1) * dim);
  }

  /** The RMS-normalised attention input of a layer: the vector broadcast to the head nodes. x [dim] -> [dim]. */
  attentionInput(x: Float32Array, layer: number): Float32Array {
    rmsnorm(this.xb, x, this.w.rmsAtt[layer]);
    return this.xb;
  }

  /** x += W_O · headOutputs: headOutputs [dim] holds every head's output, concatenated in head order. */
  aggregate(x: Float32Array, headOutputs: Float32Array, layer: number): void {
    matmul(this.xb2, headOutputs, this.w.wo[layer], this.g.dim, this.g.dim);
    addInPlace(x, this.xb2);
  }

  /** x += W_2 · (silu(W_1 · n) * (W_3 · n)) with n = RMSNorm(x). x [dim]; hidden [hiddenDim]. */
  ffn(x: Float32Array, layer: number): void {
    const { dim, hiddenDim } = this.g;
    rmsnorm(this.xb, x, this.w.rmsFfn[layer]);
    matmul(this.hb, this.xb, this.w.w1[layer], hiddenDim, dim);
    matmul(this.hb2, this.xb, this.w.w3[layer], hiddenDim, dim);
    swiglu(this.hb, this.hb2);
    matmul(this.xb2, this.hb, this.w.w2[layer], dim, hiddenDim);
    addInPlace(x, this.xb2);
  }

  /** Final RMSNorm, then the classifier. x [dim] -> logits [vocab]. */
  logits(x: Float32Array): Float32Array {
    rmsnorm(this.xb, x, this.w.rmsFinal);
    matmul(this.logitsBuf, this.xb, this.w.wcls, this.g.vocabSize, this.g.dim);
    return this.logitsBuf;
  }
}

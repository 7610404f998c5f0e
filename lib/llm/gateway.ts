/**
 * The gateway steps: everything of the forward pass that is not attention. The gateway holds
 * the token embeddings, the norms, W_O, the feed-forward network and the classifier. Arrays a
 * step returns are scratch owned by the gateway and are overwritten by its next call.
 */
import { Checkpoint } from './checkpoint';
import { Geometry, geometry } from './config';
import { MeshLlmError } from './errors';
import { Kernels, Matrix, createKernels } from './kernels';
import { addInPlace, rmsnorm } from './math';

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
  /** The gateway's kernel arena: copies of its matrices and its working vectors live there. */
  private readonly kernels: Kernels;
  /** W_O, W_1, W_2, W_3 per layer and the classifier, as the kernels read them. */
  private readonly m: { wo: Matrix[]; w1: Matrix[]; w2: Matrix[]; w3: Matrix[]; wcls: Matrix };
  private readonly xb: Float32Array;
  private readonly xb2: Float32Array;
  private readonly hb: Float32Array;
  private readonly hb2: Float32Array;
  private readonly logitsBuf: Float32Array;

  constructor(g: Geometry, w: GatewayWeights) {
    this.g = g;
    this.w = w;
    // the arena takes the matrices first, then the vectors (kernels.ts)
    const k = (this.kernels = createKernels());
    const { dim, hiddenDim, vocabSize } = g;
    this.m = {
      wo: w.wo.map((a) => k.matrix(a, dim, dim)),
      w1: w.w1.map((a) => k.matrix(a, hiddenDim, dim)),
      w2: w.w2.map((a) => k.matrix(a, dim, hiddenDim)),
      w3: w.w3.map((a) => k.matrix(a, hiddenDim, dim)),
      wcls: k.matrix(w.wcls, vocabSize, dim),
    };
    this.xb = k.vector(dim);
    this.xb2 = k.vector(dim);
    this.hb = k.vector(hiddenDim);
    this.hb2 = k.vector(hiddenDim);
    this.logitsBuf = k.vector(vocabSize);
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
    this.kernels.matvec(this.xb2, headOutputs, this.m.wo[layer]);
    addInPlace(x, this.xb2);
  }

  /** x += W_2 · (silu(W_1 · n) * (W_3 · n)) with n = RMSNorm(x). x [dim]; hidden [hiddenDim]. */
  ffn(x: Float32Array, layer: number): void {
    rmsnorm(this.xb, x, this.w.rmsFfn[layer]);
    this.kernels.matvec(this.hb, this.xb, this.m.w1[layer]);
    this.kernels.matvec(this.hb2, this.xb, this.m.w3[layer]);
    this.kernels.swiglu(this.hb, this.hb2);
    this.kernels.matvec(this.xb2, this.hb, this.m.w2[layer]);
    addInPlace(x, this.xb2);
  }

  /** Final RMSNorm, then the classifier. x [dim] -> logits [vocab]. */
  logits(x: Float32Array): Float32Array {
    rmsnorm(this.xb, x, this.w.rmsFinal);
    this.kernels.matvec(this.logitsBuf, this.xb, this.m.wcls);
    return this.logitsBuf;
  }
}

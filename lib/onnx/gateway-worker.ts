/**
 * The ONNX gateway in a worker thread, so the event loop that serves the bus stays free while
 * onnxruntime multiplies. The worker owns every gateway weight: the embedding table and the
 * RMSNorm gains in float32, the matrices in onnxruntime sessions (lib/onnx/gateway.ts). The
 * main thread's OnnxGateway sends it vectors and gets vectors back; weights never cross.
 */
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, ModelConfig, geometry } from '../llm/config';
import { MeshLlmError } from '../llm/errors';
import { rmsnorm } from '../llm/math';
import { Encoding } from '../llm/quant';
import { synthTensor } from '../llm/synth';
import { TensorName } from '../llm/tensors';
import { OnnxGatewaySessions, TensorReader } from './gateway';

/** Where the worker reads the weights: a model file, or a synthetic model (lib/llm/synth.ts). */
export type WeightSource = { kind: 'file'; path: string } | { kind: 'synth'; config: ModelConfig; seed: number };

export interface OnnxGatewaySpec {
  source: WeightSource;
  encoding: Encoding;
  threads?: number;
  /** int8 in blocks of this many values (MatMulNBits) instead of one scale per row (lib/onnx/gateway.ts). */
  blockSize?: number;
}

type Request =
  | { id: number; op: 'embed'; token: number }
  | { id: number; op: 'layer'; layer: number; x: Float32Array; heads: Float32Array }
  | { id: number; op: 'logits'; x: Float32Array };

/** runMs: the time the request spent inside onnxruntime's session.run, in the worker. */
type Reply = { id: number; x?: Float32Array; xb?: Float32Array; logits?: Float32Array; runMs?: number; error?: string };

/** The worker's side: loads the weights, then answers requests in order. */
async function serve(spec: OnnxGatewaySpec): Promise<void> {
  const port = parentPort!;
  let ckpt: Checkpoint | undefined;
  let config: ModelConfig;
  let read: TensorReader;
  if (spec.source.kind === 'file') {
    const c = (ckpt = Checkpoint.open(spec.source.path));
    config = c.info.config;
    read = (name: TensorName, layer: number) => c.read(name, layer);
  } else {
    const { config: sc, seed } = spec.source;
    config = sc;
    read = (name: TensorName, layer: number) => synthTensor(sc, seed, name, layer);
  }
  const g = geometry(config);
  const embeddings = read('tokenEmbedding', 0);
  const rmsAtt = Array.from({ length: g.nLayers }, (_, l) => read('rmsAtt', l));
  const sessions = await OnnxGatewaySessions.create(g, read, { encoding: spec.encoding, threads: spec.threads, blockSize: spec.blockSize }, (done, total) => port.postMessage({ progress: [done, total] }));
  ckpt?.close();
  const attentionInput = (x: Float32Array, layer: number): Float32Array => {
    const xb = new Float32Array(g.dim);
    rmsnorm(xb, x, rmsAtt[layer]);
    return xb;
  };
  port.postMessage({ ready: true, config, weightBytes: sessions.weightBytes + embeddings.byteLength + rmsAtt.reduce((n, a) => n + a.byteLength, 0) });
  port.on('message', async (m: Request | { op: 'close' }) => {
    if (m.op === 'close') {
      await sessions.release();
      port.close();
      return;
    }
    const reply: Reply = { id: m.id };
    try {
      if (m.op === 'embed') {
        if (!Number.isInteger(m.token) || m.token < 0 || m.token >= g.vocabSize) throw new MeshLlmError(`token id ${m.token} is outside the vocabulary (0..${g.vocabSize - 1})`);
        reply.x = embeddings.slice(m.token * g.dim, (m.token + 1) * g.dim);
        reply.xb = attentionInput(reply.x, 0);
      } else if (m.op === 'layer') {
        const t0 = process.hrtime.bigint();
        reply.x = (await sessions.layer(m.x, m.heads, m.layer)).slice();
        // after the last layer the classifier at once: one round trip fewer per token
        if (m.layer + 1 < g.nLayers) reply.xb = attentionInput(reply.x, m.layer + 1);
        else reply.logits = (await sessions.logits(reply.x)).slice();
        reply.runMs = Number(process.hrtime.bigint() - t0) / 1e6;
      } else {
        const t0 = process.hrtime.bigint();
        reply.logits = (await sessions.logits(m.x)).slice();
        reply.runMs = Number(process.hrtime.bigint() - t0) / 1e6;
      }
    } catch (e) {
      reply.error = (e as Error).message;
    }
    port.postMessage(reply);
  });
}

if (!isMainThread && (workerData as { onnxGateway?: OnnxGatewaySpec })?.onnxGateway) {
  void serve((workerData as { onnxGateway: OnnxGatewaySpec }).onnxGateway).catch((e) => parentPort!.postMessage({ fatal: (e as Error).message }));
}

/**
 * The main thread's handle on the worker: the gateway steps of one token, as the engine's
 * forward pass uses them (embed, then per layer the attention input and W_O + FFN, then the
 * logits), each one message to the worker and one back.
 */
export class OnnxGateway {
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  /** Milliseconds the worker has spent inside onnxruntime (session.run) so far: the rest of a step is messages and glue. */
  onnxMs = 0;

  private constructor(private readonly worker: Worker, readonly g: Geometry, readonly weightBytes: number) {
    worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      this.onnxMs += r.runMs ?? 0;
      if (r.error) p.reject(new MeshLlmError(r.error));
      else p.resolve(r);
    });
  }

  static start(spec: OnnxGatewaySpec, progress?: (done: number, total: number) => void): Promise<OnnxGateway> {
    const worker = new Worker(path.join(__dirname, 'gateway-worker.js'), { workerData: { onnxGateway: spec } });
    return new Promise((resolve, reject) => {
      const onMessage = (m: { ready?: boolean; config?: ModelConfig; weightBytes?: number; progress?: [number, number]; fatal?: string }): void => {
        if (m.progress) progress?.(...m.progress);
        if (m.fatal) {
          worker.off('message', onMessage);
          void worker.terminate();
          reject(new MeshLlmError(m.fatal));
        }
        if (m.ready) {
          worker.off('message', onMessage);
          resolve(new OnnxGateway(worker, geometry(m.config as ModelConfig), m.weightBytes as number));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
  }

  private call(m: Omit<Request, 'id'> & { op: Request['op'] }): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...m, id });
    });
  }

  /** x [dim] for a token, and the attention input of layer 0. */
  async embed(token: number): Promise<{ x: Float32Array; xb: Float32Array }> {
    const r = await this.call({ op: 'embed', token } as Request);
    return { x: r.x as Float32Array, xb: r.xb as Float32Array };
  }

  /** x + W_O · heads, then its FFN; with the next layer's attention input, or after the last layer the logits. */
  async layer(x: Float32Array, heads: Float32Array, layer: number): Promise<{ x: Float32Array; xb?: Float32Array; logits?: Float32Array }> {
    const r = await this.call({ op: 'layer', layer, x, heads } as Request);
    return { x: r.x as Float32Array, xb: r.xb, logits: r.logits };
  }

  async logits(x: Float32Array): Promise<Float32Array> {
    return (await this.call({ op: 'logits', x } as Request)).logits as Float32Array;
  }

  async close(): Promise<void> {
    this.worker.postMessage({ op: 'close' });
    await new Promise((resolve) => this.worker.once('exit', resolve));
  }
}

/** One token through the ONNX gateway and any head runner: the engine's forward pass. */
export async function onnxForward(gw: OnnxGateway, heads: { run(xb: Float32Array, pos: number, layer: number, out: Float32Array): void | Promise<void> }, token: number, pos: number): Promise<Float32Array> {
  let { x, xb } = await gw.embed(token);
  const headOut = new Float32Array(gw.g.dim);
  for (let layer = 0; ; layer++) {
    await heads.run(xb as Float32Array, pos, layer, headOut);
    const r = await gw.layer(x, headOut, layer);
    if (r.logits) return r.logits;
    x = r.x;
    xb = r.xb as Float32Array;
  }
}

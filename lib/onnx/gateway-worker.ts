/**
 * The ONNX gateway in a worker thread, so the event loop that serves the bus stays free while
 * onnxruntime multiplies. The worker owns every gateway weight: the embedding table and the
 * RMSNorm gains in float32, the matrices in onnxruntime sessions (lib/onnx/gateway.ts), or
 * with kernel 'native' (int8 only) packed for the gateway's own int8 kernel
 * (lib/native/gateway.ts: the same numbers, read at the memory's streaming rate). The main
 * thread's OnnxGateway sends it vectors and gets vectors back; weights never cross.
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
import { NativeInt8Gateway } from '../native/gateway';
import { OnnxGatewaySessions, TensorReader } from './gateway';

/** Where the worker reads the weights: a model file, or a synthetic model (lib/llm/synth.ts). */
export type WeightSource = { kind: 'file'; path: string } | { kind: 'synth'; config: ModelConfig; seed: number };

export interface OnnxGatewaySpec {
  source: WeightSource;
  encoding: Encoding;
  threads?: number;
  /** int8 in blocks of this many values (MatMulNBits) instead of one scale per row (lib/onnx/gateway.ts). */
  blockSize?: number;
  /** What multiplies: onnxruntime's sessions (the default), or for int8 with one scale per row the native kernel (lib/native/). */
  kernel?: GatewayKernel;
}

export type GatewayKernel = 'onnxruntime' | 'native';

/** The worker's matrices: onnxruntime sessions or the native int8 kernel, one interface. */
interface GatewayMatrices {
  readonly weightBytes: number;
  layer(x: Float32Array, heads: Float32Array, layer: number): Promise<Float32Array>;
  logits(x: Float32Array): Promise<Float32Array>;
  release(): Promise<void>;
}

async function createMatrices(g: Geometry, read: TensorReader, spec: OnnxGatewaySpec, progress: (done: number, total: number) => void): Promise<GatewayMatrices> {
  if (spec.kernel === 'native') {
    if (spec.encoding !== 'int8' || spec.blockSize !== undefined || (spec.threads ?? 1) !== 1)
      throw new MeshLlmError(`kernel native: needs encoding int8 with one scale per row and 1 thread (asked: encoding ${spec.encoding}${spec.blockSize === undefined ? '' : `, blockSize ${spec.blockSize}`}, threads ${spec.threads ?? 1})`);
    return NativeInt8Gateway.create(g, read, progress);
  }
  if (spec.kernel !== undefined && spec.kernel !== 'onnxruntime') throw new MeshLlmError(`kernel ${String(spec.kernel)}: expected onnxruntime or native`);
  return OnnxGatewaySessions.create(g, read, { encoding: spec.encoding, threads: spec.threads, blockSize: spec.blockSize }, progress);
}

/** Operations of a request, in the channel's OP word. */
const OP_EMBED = 1;
const OP_LAYER = 2;
const OP_LOGITS = 3;
const OP_CLOSE = 4;
/** Control words: request number, last request answered, operation, its argument (token or layer), 1 if the answer is an error, 1 if it carries logits, error length in bytes. */
const SEQ = 0;
const DONE = 1;
const OP = 2;
const ARG = 3;
const FAILED = 4;
const HAS_LOGITS = 5;
const ERROR_LENGTH = 6;
const CONTROL_WORDS = 8;
const ERROR_BYTES = 1024;

/** Atomics.waitAsync (V8, Node 16 on): in TypeScript's ES2024 library, newer than this project's. */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> } }).waitAsync;

/**
 * The memory main thread and worker share, for one request at a time: control words, the
 * time the request spent in session.run, the request's vectors (x, heads [dim]) and the
 * answer's (x, xb [dim], logits [vocab]), and an error message. A request is announced by
 * SEQ and answered by DONE through Atomics (the worker blocks in Atomics.wait, the main
 * thread awaits Atomics.waitAsync): no message, no structured clone, per layer.
 */
class Channel {
  readonly control: Int32Array;
  readonly runMs: Float64Array;
  readonly x: Float32Array;
  readonly heads: Float32Array;
  readonly outX: Float32Array;
  readonly outXb: Float32Array;
  readonly logits: Float32Array;
  private readonly error: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer, g: Geometry) {
    let at = 0;
    const take = <T>(make: (offset: number) => T, bytes: number): T => {
      const v = make(at);
      at += bytes;
      return v;
    };
    this.control = take((o) => new Int32Array(buffer, o, CONTROL_WORDS), CONTROL_WORDS * 4);
    this.runMs = take((o) => new Float64Array(buffer, o, 1), 8);
    const vector = (n: number): Float32Array => take((o) => new Float32Array(buffer, o, n), n * 4);
    this.x = vector(g.dim);
    this.heads = vector(g.dim);
    this.outX = vector(g.dim);
    this.outXb = vector(g.dim);
    this.logits = vector(g.vocabSize);
    this.error = take((o) => new Uint8Array(buffer, o, ERROR_BYTES), ERROR_BYTES);
  }

  static bytes(g: Geometry): number {
    return CONTROL_WORDS * 4 + 8 + (4 * g.dim + g.vocabSize) * 4 + ERROR_BYTES;
  }

  setError(message: string): void {
    const bytes = Buffer.from(message, 'utf8').subarray(0, ERROR_BYTES);
    this.error.set(bytes);
    this.control[ERROR_LENGTH] = bytes.length;
    this.control[FAILED] = 1;
  }

  errorMessage(): string {
    return Buffer.from(this.error.subarray(0, this.control[ERROR_LENGTH])).toString('utf8');
  }
}

/**
 * How long the worker watches for the next request before it sleeps, when the last one came
 * that soon after its answer. Waking a sleeping thread costs 30-110 us on this machine's
 * vCPUs, about 2 ms of a token's 23 hand-offs when the heads answer at once (a local engine,
 * the benchmark); when they answer over a bus or a radio (milliseconds to minutes) the last
 * gap is longer and the worker sleeps at once, so it burns nothing while it waits.
 */
export const WORKER_WATCH_MS = 0.3;

/** Blocks until the request after `seen` is announced: watching for a moment first if the last gap (ms) was short, then asleep. */
function awaitRequest(c: Int32Array, seen: number, lastGapMs: number): void {
  if (lastGapMs < WORKER_WATCH_MS) {
    const until = performance.now() + WORKER_WATCH_MS;
    while (Atomics.load(c, SEQ) === seen && performance.now() < until);
  }
  Atomics.wait(c, SEQ, seen); // this thread does nothing else: block until the next request
}

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
  const sessions = await createMatrices(g, read, spec, (done, total) => port.postMessage({ progress: [done, total] }));
  ckpt?.close();
  const ch = new Channel(new SharedArrayBuffer(Channel.bytes(g)), g);
  port.postMessage({ ready: true, config, weightBytes: sessions.weightBytes + embeddings.byteLength + rmsAtt.reduce((n, a) => n + a.byteLength, 0), shared: ch.buffer });
  const c = ch.control;
  let answeredAt = performance.now();
  let lastGapMs = Infinity;
  for (let seen = 0; ; ) {
    awaitRequest(c, seen, lastGapMs);
    lastGapMs = performance.now() - answeredAt;
    seen = Atomics.load(c, SEQ);
    const op = c[OP];
    if (op === OP_CLOSE) break;
    c[FAILED] = 0;
    c[HAS_LOGITS] = 0;
    ch.runMs[0] = 0;
    try {
      if (op === OP_EMBED) {
        const token = c[ARG];
        if (token < 0 || token >= g.vocabSize) throw new MeshLlmError(`token id ${token} is outside the vocabulary (0..${g.vocabSize - 1})`);
        ch.outX.set(embeddings.subarray(token * g.dim, (token + 1) * g.dim));
        rmsnorm(ch.outXb, ch.outX, rmsAtt[0]);
      } else if (op === OP_LAYER) {
        const layer = c[ARG];
        const t0 = process.hrtime.bigint();
        const y = await sessions.layer(ch.x.slice(), ch.heads.slice(), layer);
        ch.outX.set(y);
        // after the last layer the classifier at once: one round trip fewer per token
        if (layer + 1 < g.nLayers) rmsnorm(ch.outXb, y, rmsAtt[layer + 1]);
        else {
          ch.logits.set(await sessions.logits(y));
          c[HAS_LOGITS] = 1;
        }
        ch.runMs[0] = Number(process.hrtime.bigint() - t0) / 1e6;
      } else {
        const t0 = process.hrtime.bigint();
        ch.logits.set(await sessions.logits(ch.x.slice()));
        c[HAS_LOGITS] = 1;
        ch.runMs[0] = Number(process.hrtime.bigint() - t0) / 1e6;
      }
    } catch (e) {
      ch.setError((e as Error).message);
    }
    Atomics.store(c, DONE, seen);
    Atomics.notify(c, DONE);
    answeredAt = performance.now();
  }
  await sessions.release();
  port.close();
}

if (!isMainThread && (workerData as { onnxGateway?: OnnxGatewaySpec })?.onnxGateway) {
  void serve((workerData as { onnxGateway: OnnxGatewaySpec }).onnxGateway).catch((e) => parentPort!.postMessage({ fatal: (e as Error).message }));
}

const workerExited = (): MeshLlmError => new MeshLlmError('the ONNX gateway worker exited during a request');

/**
 * The main thread's handle on the worker: the gateway steps of one token, as the engine's
 * forward pass uses them (embed, then per layer the attention input and W_O + FFN, then the
 * logits), one request at a time through the shared Channel (calls made together run in turn).
 */
export class OnnxGateway {
  /** The last request, so that the next waits for it. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Resolves when the worker thread has exited. */
  private readonly exited: Promise<void>;
  /** Set when the worker has exited: a request in flight is woken and fails instead of waiting forever. */
  private dead = false;
  /** Milliseconds the worker has spent multiplying (onnxruntime's session.run, or the native kernel's layer step) so far: the rest of a step is hand-offs and glue. */
  onnxMs = 0;

  private constructor(private readonly worker: Worker, private readonly ch: Channel, readonly g: Geometry, readonly weightBytes: number) {
    this.exited = new Promise((resolve) =>
      worker.once('exit', () => {
        this.dead = true;
        Atomics.notify(ch.control, DONE); // wakes a request in flight, which then finds no answer
        resolve();
      }),
    );
  }

  static start(spec: OnnxGatewaySpec, progress?: (done: number, total: number) => void): Promise<OnnxGateway> {
    const worker = new Worker(path.join(__dirname, 'gateway-worker.js'), { workerData: { onnxGateway: spec } });
    return new Promise((resolve, reject) => {
      const onMessage = (m: { ready?: boolean; config?: ModelConfig; weightBytes?: number; shared?: SharedArrayBuffer; progress?: [number, number]; fatal?: string }): void => {
        if (m.progress) progress?.(...m.progress);
        if (m.fatal) {
          worker.off('message', onMessage);
          void worker.terminate();
          reject(new MeshLlmError(m.fatal));
        }
        if (m.ready) {
          worker.off('message', onMessage);
          const g = geometry(m.config as ModelConfig);
          resolve(new OnnxGateway(worker, new Channel(m.shared as SharedArrayBuffer, g), g, m.weightBytes as number));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
  }

  /** One request: `fill` writes its vectors, `answer` reads the reply's; in turn after any request still in flight. */
  private call<T>(op: number, arg: number, fill: (ch: Channel) => void, answer: (ch: Channel) => T): Promise<T> {
    const run = async (): Promise<T> => {
      const { ch } = this;
      const c = ch.control;
      if (this.dead) throw workerExited();
      fill(ch);
      c[OP] = op;
      c[ARG] = arg;
      const seq = c[SEQ] + 1;
      Atomics.store(c, SEQ, seq);
      Atomics.notify(c, SEQ);
      const wait = waitAsync(c, DONE, seq - 1);
      if (wait.async) await wait.value;
      if (Atomics.load(c, DONE) !== seq) throw workerExited(); // woken by the exit, not by an answer
      this.onnxMs += ch.runMs[0];
      if (c[FAILED]) throw new MeshLlmError(ch.errorMessage());
      return answer(ch);
    };
    const result = this.queue.then(run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** x [dim] for a token, and the attention input of layer 0. */
  embed(token: number): Promise<{ x: Float32Array; xb: Float32Array }> {
    if ((token | 0) !== token) return Promise.reject(new MeshLlmError(`token id ${token} is outside the vocabulary (0..${this.g.vocabSize - 1})`));
    return this.call(OP_EMBED, token, () => undefined, (ch) => ({ x: ch.outX.slice(), xb: ch.outXb.slice() }));
  }

  /** x + W_O · heads, then its FFN; with the next layer's attention input, or after the last layer the logits. */
  layer(x: Float32Array, heads: Float32Array, layer: number): Promise<{ x: Float32Array; xb?: Float32Array; logits?: Float32Array }> {
    return this.call(
      OP_LAYER,
      layer,
      (ch) => {
        ch.x.set(x);
        ch.heads.set(heads);
      },
      (ch) => (ch.control[HAS_LOGITS] ? { x: ch.outX.slice(), logits: ch.logits.slice() } : { x: ch.outX.slice(), xb: ch.outXb.slice() }),
    );
  }

  logits(x: Float32Array): Promise<Float32Array> {
    return this.call(OP_LOGITS, 0, (ch) => ch.x.set(x), (ch) => ch.logits.slice());
  }

  async close(): Promise<void> {
    await this.queue;
    const c = this.ch.control;
    c[OP] = OP_CLOSE;
    Atomics.add(c, SEQ, 1);
    Atomics.notify(c, SEQ);
    await this.exited;
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

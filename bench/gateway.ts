/**
 * `npm run bench:gateway [-- --tokens N] [-- --threads T] [-- --layers L] [-- --only int8-native|int8|f32]
 * [-- --block B] [-- --llama-cpp DIR --gguf FILE]`: the gateway's per-token work (W_O + FFN of every layer, then
 * the classifier) at TinyLlama-1.1B's geometry, in a worker thread (lib/onnx/gateway-worker.ts),
 * with seeded synthetic weights (lib/llm/synth.ts): int8 on the gateway's own kernel
 * (`int8-native`, lib/native/), int8 and float32 on onnxruntime-node, each beside the
 * machine's memory-bandwidth bound for the same bytes (the native kernel's: its packed values,
 * one scale and one code sum per row).
 *
 * The bound is measured fairly: in the same child process, interleaved with the tokens (token,
 * read, token, read, ...), a sequential read (memchr through Buffer.indexOf) of a buffer as
 * large as the matrices a token reads (at most 1 GiB, scaled to the token's bytes), by as many
 * threads as onnxruntime uses, each over its own slice. The ratio is the median of the
 * per-token ratios, so a token and its bound share the machine's load of that moment.
 *
 * Each encoding runs in a child process of its own, so its peak RSS is its own; peak RSS
 * (loading and two warm-up tokens, before the read buffer exists) is compared with the
 * resident gateway weights (matrices as onnxruntime holds them, plus the float32 embedding
 * table and norms). Per-token time is the median over `tokens` tokens after two warm-up
 * tokens; head outputs are random (the heads run elsewhere); beside it, the time the worker
 * spent inside onnxruntime's session.run (the rest is worker messages and glue). The children
 * run with MALLOC_MMAP_THRESHOLD_=131072 (unless set): without it glibc keeps the freed build
 * buffers of every layer in its heap, and RSS counts them.
 *
 * `--llama-cpp DIR` (a folder where `npm install node-llama-cpp@3.21.1` was run; never a
 * dependency of mesh-llm) adds llama.cpp through node-llama-cpp's prebuilt CPU binary on
 * `--gguf FILE` (`mesh-llm synth --preset tinyllama --format gguf --type Q8_0 --out FILE`): its
 * per-token decode time, greedy from BOS, with the same threads, beside the bound for the bytes
 * it reads per token (every Q8_0 matrix: the attention's too, the embedding table excepted);
 * its tokens run back to back and the reads after them (it decodes ahead of its consumer).
 *
 * `--block B`: int8 with one scale per block of B values of a row (onnxruntime's MatMulNBits,
 * bits 8, accuracy_level 4) instead of one per row; the bound counts the block scales.
 *
 * stdout: a table, then as its last line one JSON object.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Checkpoint } from '../lib/llm/checkpoint';
import { ModelConfig, geometry } from '../lib/llm/config';
import { Encoding } from '../lib/llm/quant';
import * as ort from 'onnxruntime-node';
import { quantizeBlocks, quantizeTransposed } from '../lib/onnx/gateway';
import { OnnxGateway } from '../lib/onnx/gateway-worker';
import { MS_DOMAIN, OnnxNode, OnnxTensor, encodeModel } from '../lib/onnx/onnx';
import { MODEL_PRESETS } from '../lib/radio/presets';

/** A case: onnxruntime in f32 or int8, the native int8 kernel (lib/native/), or llama.cpp. */
type CaseName = 'f32' | 'int8' | 'int8-native' | 'llama-cpp';

interface CaseResult {
  encoding: CaseName;
  loadSeconds: number;
  msPerToken: number;
  /** Of msPerToken, the time inside onnxruntime's session.run (in the worker); absent for llama.cpp. */
  onnxMsPerToken?: number;
  /** The bound: the sequential read of tokenBytes beside each token, median ms. */
  boundMs: number;
  /** Median over tokens of (token time / its bound). */
  toBound: number;
  /** The same in CPU time of the process (all its threads, user + system): what the load of a shared machine does not stretch. */
  cpuMsPerToken: number;
  boundCpuMs: number;
  cpuToBound: number;
  /** Fastest token / fastest read in the run: each at its least disturbed, the estimate for a quiet machine. */
  bestToBound: number;
  readGBps: number;
  /** Bytes of the matrices one token reads (W_O, W_1, W_2, W_3 of every layer, the classifier; llama.cpp: every matrix). */
  tokenBytes: number;
  residentWeightBytes: number;
  /** RSS once loading is done (steady state), and the peak over loading and the warm-up tokens. */
  rssAfterLoadBytes: number;
  peakRssBytes: number;
  /** One W_1-sized matrix [hiddenDim, dim] alone in a session, in this thread: ms per product. */
  singleMatmulMs?: number;
  singleMatmulBytes?: number;
}

/**
 * A sequential read of one buffer by `threads` threads at once, each memchr-ing its own slice of
 * a SharedArrayBuffer (this thread the first, workers the rest), as the bandwidth bound.
 */
class SequentialRead {
  private readonly control = new Int32Array(new SharedArrayBuffer(8)); // [generation, slices done]
  private readonly slice: Buffer;
  private readonly workers: Worker[] = [];

  constructor(readonly bytes: number, private readonly threads: number) {
    const shared = new SharedArrayBuffer(bytes);
    new Uint8Array(shared).fill(1);
    const len = Math.floor(bytes / threads);
    this.slice = Buffer.from(shared, 0, len);
    const code = `const { workerData: { shared, control, start, len } } = require('node:worker_threads');
      const c = new Int32Array(control), slice = Buffer.from(shared, start, len);
      for (let gen = 0; ; ) {
        Atomics.wait(c, 0, gen);
        gen = Atomics.load(c, 0);
        if (gen < 0) break;
        if (slice.indexOf(0) !== -1) throw new Error('memchr found a zero');
        Atomics.add(c, 1, 1);
        Atomics.notify(c, 1);
      }`;
    for (let t = 1; t < threads; t++) this.workers.push(new Worker(code, { eval: true, workerData: { shared, control: this.control.buffer, start: t * len, len } }));
  }

  /** Milliseconds for one pass over the whole buffer. */
  pass(): number {
    const c = this.control;
    Atomics.store(c, 1, 0);
    const t0 = process.hrtime.bigint();
    Atomics.add(c, 0, 1);
    Atomics.notify(c, 0);
    if (this.slice.indexOf(0) !== -1) throw new Error('memchr found a zero');
    for (let done = Atomics.load(c, 1); done < this.threads - 1; done = Atomics.load(c, 1)) Atomics.wait(c, 1, done);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  }

  async close(): Promise<void> {
    Atomics.store(this.control, 0, -1);
    Atomics.notify(this.control, 0);
    await Promise.all(this.workers.map((w) => new Promise((resolve) => w.once('exit', resolve))));
  }
}

/** Time `tokens` tokens, each followed by a read of the bound's buffer; medians of time, bound and their ratio. */
async function timeBesideBound(
  tokens: number,
  bytes: number,
  threads: number,
  token: () => Promise<number>,
  /** Read after each token; false: all the tokens, then as many reads (llama.cpp decodes ahead of the consumer, so a read beside its tokens would overlap the next one). */
  interleave = true,
  /** Called between the tokens and the reads when not interleaved. */
  between?: () => Promise<void>,
): Promise<{ msPerToken: number; boundMs: number; toBound: number; bestToBound: number; readGBps: number; cpuMsPerToken: number; boundCpuMs: number; cpuToBound: number }> {
  const reader = new SequentialRead(Math.min(bytes, 1 << 30), threads);
  const scale = bytes / reader.bytes;
  reader.pass(); // page in
  const times: number[] = [];
  const bounds: number[] = [];
  const cpu: number[] = [];
  const boundCpu: number[] = [];
  const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
  const read = (): void => {
    const c0 = process.cpuUsage();
    bounds.push(reader.pass() * scale);
    boundCpu.push(cpuMs(process.cpuUsage(c0)) * scale);
  };
  for (let t = 0; t < tokens; t++) {
    const c0 = process.cpuUsage();
    times.push(await token());
    cpu.push(cpuMs(process.cpuUsage(c0)));
    if (interleave) read();
  }
  if (!interleave) {
    await between?.();
    for (let t = 0; t < tokens; t++) read();
  }
  await reader.close();
  const median = (v: number[]): number => [...v].sort((p, q) => p - q)[v.length >> 1];
  const boundMs = median(bounds);
  return {
    msPerToken: median(times),
    boundMs,
    toBound: median(times.map((m, i) => m / bounds[i])),
    bestToBound: Math.min(...times) / Math.min(...bounds),
    readGBps: bytes / boundMs / 1e6,
    cpuMsPerToken: median(cpu),
    boundCpuMs: median(boundCpu),
    cpuToBound: median(cpu.map((m, i) => m / boundCpu[i])),
  };
}

/** x [1, cols] times one int8 or f32 matrix [rows, cols] alone, as the gateway graphs multiply: median ms over 30 runs. */
async function singleMatmul(encoding: Encoding, rows: number, cols: number, threads: number, blockSize?: number): Promise<{ ms: number; bytes: number }> {
  const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * 0.02);
  const blocks = blockSize === undefined ? undefined : quantizeBlocks([w], rows, cols, blockSize);
  const { q, scales } = quantizeTransposed(w, rows, cols);
  const f32 = new Float32Array(rows * cols);
  if (encoding === 'f32') for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) f32[c * rows + r] = w[r * cols + c];
  const graph: { nodes: OnnxNode[]; initializers: OnnxTensor[] } = blocks !== undefined
    ? {
        nodes: [{ op: 'MatMulNBits', domain: MS_DOMAIN, inputs: ['x', 'wq', 'ws'], outputs: ['y'], attributes: { K: cols, N: rows, bits: 8, block_size: blockSize as number, accuracy_level: 4 } }],
        initializers: [{ name: 'wq', dims: [rows, blocks.nBlocks, blockSize as number], data: blocks.q }, { name: 'ws', dims: [rows * blocks.nBlocks], data: blocks.scales }],
      }
    : encoding === 'f32'
    ? { nodes: [{ op: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }], initializers: [{ name: 'w', dims: [cols, rows], data: f32 }] }
    : {
        nodes: [
          { op: 'DynamicQuantizeLinear', inputs: ['x'], outputs: ['xq', 'xs', 'xz'] },
          { op: 'MatMulInteger', inputs: ['xq', 'wq', 'xz'], outputs: ['p'] },
          { op: 'Mul', inputs: ['xs', 'ws'], outputs: ['s'] },
          { op: 'Cast', inputs: ['p'], outputs: ['pf'], attributes: { to: 1 } },
          { op: 'Mul', inputs: ['pf', 's'], outputs: ['y'] },
        ],
        initializers: [{ name: 'wq', dims: [cols, rows], data: q }, { name: 'ws', dims: [rows], data: scales }],
      };
  const session = await ort.InferenceSession.create(encodeModel({ name: 'single', inputs: [{ name: 'x', dims: [1, cols] }], outputs: [{ name: 'y', dims: [1, rows] }], ...graph }), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const x = new ort.Tensor('float32', Float32Array.from({ length: cols }, (_, i) => Math.cos(i)), [1, cols]);
  const times: number[] = [];
  for (let r = 0; r < 35; r++) {
    const t0 = process.hrtime.bigint();
    await session.run({ x });
    if (r >= 5) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  await session.release();
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1], bytes: matrixBytes(encoding, rows, cols, blockSize) };
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Bytes of one matrix [rows, cols] as a product reads it (int8: values + one float32 scale per row, or per block of blockSize; the native kernel also one int32 code sum per row). */
function matrixBytes(encoding: Encoding | 'int8-native', rows: number, cols: number, blockSize?: number): number {
  if (encoding === 'f32') return rows * cols * 4;
  if (encoding === 'int8-native') return Math.ceil(rows / 4) * 4 * Math.ceil(cols / 64) * 64 + rows * 8;
  if (blockSize === undefined) return rows * cols + rows * 4;
  const nBlocks = Math.ceil(cols / blockSize);
  return rows * nBlocks * (blockSize + 4);
}

/** Bytes per token of the gateway's matrices in an encoding. */
function tokenBytes(c: ModelConfig, encoding: Encoding | 'int8-native', blockSize?: number): number {
  const g = geometry(c);
  const matrices: [number, number][] = [[g.dim, g.dim], [g.hiddenDim, g.dim], [g.dim, g.hiddenDim], [g.hiddenDim, g.dim]];
  return c.nLayers * matrices.reduce((n, [r, k]) => n + matrixBytes(encoding, r, k, blockSize), 0) + matrixBytes(encoding, c.vocabSize, c.dim, blockSize);
}

/** One case (f32, int8, int8-native) in this (child) process. */
async function runCase(name: 'f32' | 'int8' | 'int8-native', config: ModelConfig, tokens: number, threads: number, blockSize?: number): Promise<CaseResult> {
  const t0 = process.hrtime.bigint();
  const encoding: Encoding = name === 'f32' ? 'f32' : 'int8';
  const kernel = name === 'int8-native' ? 'native' : 'onnxruntime';
  if (kernel === 'native') threads = 1; // the native kernel runs in the worker's one thread; its bound reads with one
  const gw = await OnnxGateway.start({ source: { kind: 'synth', config, seed: 1 }, encoding, threads, blockSize, kernel }, (done, total) => process.stderr.write(`bench:gateway: ${name} layer ${done}/${total} loaded\n`));
  const loadSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  (globalThis as { gc?: () => void }).gc?.();
  const rssAfterLoadBytes = process.memoryUsage().rss;
  const heads = Float32Array.from({ length: config.dim }, (_, i) => Math.sin(i * 0.37) * 0.5);
  let t = 0;
  const onnx: number[] = [];
  const token = async (): Promise<number> => {
    const onnx0 = gw.onnxMs;
    const start = process.hrtime.bigint();
    let { x } = await gw.embed((t++ * 7919) % config.vocabSize);
    for (let l = 0; l < config.nLayers; l++) x = (await gw.layer(x, heads, l)).x; // the last layer's reply carries the logits
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    onnx.push(gw.onnxMs - onnx0);
    return ms;
  };
  await token();
  await token();
  onnx.length = 0;
  const peakRssBytes = process.resourceUsage().maxRSS * 1024; // before the bound's buffer exists
  const bytes = tokenBytes(config, name === 'int8-native' ? name : encoding, blockSize);
  const timed = await timeBesideBound(tokens, bytes, threads, token);
  const residentWeightBytes = gw.weightBytes;
  await gw.close();
  const single = name === 'int8-native' ? undefined : await singleMatmul(encoding, config.hiddenDim, config.dim, threads, blockSize);
  onnx.sort((a, b) => a - b);
  return { encoding: name, loadSeconds, ...timed, onnxMsPerToken: onnx[onnx.length >> 1], tokenBytes: bytes, residentWeightBytes, rssAfterLoadBytes, peakRssBytes, singleMatmulMs: single?.ms, singleMatmulBytes: single?.bytes } as CaseResult;
}

/** Bytes of the Q8_0 matrices llama.cpp reads per token (34 bytes per 32 values): every layer's seven, and the output matrix. */
function llamaCppTokenBytes(c: ModelConfig): number {
  const g = geometry(c);
  const kvDim = (g.dim / c.nHeads) * c.nKvHeads;
  const perLayer = 2 * g.dim * g.dim + 2 * kvDim * g.dim + 3 * g.hiddenDim * g.dim;
  return ((c.nLayers * perLayer + g.vocabSize * g.dim) / 32) * 34;
}

/** llama.cpp through node-llama-cpp installed in `dir` (never a dependency), greedy from BOS on `gguf`, in this (child) process. */
async function runLlamaCpp(dir: string, gguf: string, tokens: number, threads: number): Promise<CaseResult> {
  const entry = path.join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
  if (!fs.existsSync(entry)) throw new Error(`--llama-cpp ${dir}: no node_modules/node-llama-cpp there (run npm install node-llama-cpp@3.21.1 in it)`);
  if (!fs.existsSync(gguf)) throw new Error(`--gguf ${gguf}: no such file (mesh-llm synth --preset tinyllama --format gguf --type Q8_0 --out FILE)`);
  // node-llama-cpp is an ES module: import() it (tsc would turn a literal import() into require())
  const importEsm = new Function('url', 'return import(url)') as (url: string) => Promise<Record<string, unknown>>;
  const lib = (await importEsm(pathToFileURL(entry).href)) as { getLlama: (o: object) => Promise<LlamaLike> };
  const ckpt = Checkpoint.open(gguf); // the file's own geometry (its layers, not --layers)
  const ggufConfig = ckpt.info.config;
  ckpt.close();
  const t0 = process.hrtime.bigint();
  const llama = await lib.getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: threads });
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 256, batchSize: 8, threads: { ideal: threads, min: threads } });
  const loadSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const rssAfterLoadBytes = process.memoryUsage().rss;
  const sequence = context.getSequence();
  const generated = sequence.evaluate([1], { temperature: 0 })[Symbol.asyncIterator]();
  const token = async (): Promise<number> => {
    const start = process.hrtime.bigint();
    const r = await generated.next();
    if (r.done) throw new Error('llama.cpp stopped generating');
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  await token();
  await token();
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  const bytes = llamaCppTokenBytes(ggufConfig);
  // node-llama-cpp starts decoding the next token as soon as it hands one over, so its tokens run back to back, then the reads (generation stopped)
  const timed = await timeBesideBound(tokens, bytes, threads, token, false, async () => {
    await generated.return?.(undefined);
  });
  return { encoding: 'llama-cpp', loadSeconds, ...timed, tokenBytes: bytes, residentWeightBytes: fs.statSync(gguf).size, rssAfterLoadBytes, peakRssBytes } as CaseResult;
}

/** What the bench uses of node-llama-cpp's API (3.x). */
interface LlamaLike {
  loadModel(o: { modelPath: string; gpuLayers: number }): Promise<{
    createContext(o: object): Promise<{ getSequence(): { evaluate(tokens: number[], o: object): AsyncIterable<number> } }>;
  }>;
}

function stringArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const layers = arg('layers', MODEL_PRESETS.tinyllama.nLayers);
  const only = process.argv.includes('--only') ? [process.argv[process.argv.indexOf('--only') + 1] as CaseName] : (['int8-native', 'int8', 'f32'] as CaseName[]);
  for (const c of only) if (!['f32', 'int8', 'int8-native'].includes(c)) throw new Error(`--only ${c}: expected int8-native, int8 or f32`);
  const config: ModelConfig = { ...MODEL_PRESETS.tinyllama, nLayers: layers };
  const tokens = arg('tokens', 10);
  const threads = arg('threads', 1);
  const llamaDir = stringArg('llama-cpp');
  const gguf = stringArg('gguf');
  if (llamaDir !== undefined && gguf === undefined) throw new Error('--llama-cpp needs --gguf FILE (mesh-llm synth --preset tinyllama --format gguf --type Q8_0 --out FILE)');
  const block = stringArg('block') === undefined ? undefined : arg('block', 0);
  const caseName = stringArg('case');
  if (caseName !== undefined) {
    const result = caseName === 'llama-cpp' ? await runLlamaCpp(llamaDir as string, gguf as string, tokens, threads) : await runCase(caseName as 'f32' | 'int8' | 'int8-native', config, tokens, threads, block);
    process.stdout.write(JSON.stringify(result) + '\n');
    if (caseName === 'llama-cpp') process.exit(0); // node-llama-cpp's native handles would keep the process alive
    return;
  }
  if (block !== undefined && only.includes('int8-native')) throw new Error('--block: onnxruntime only (MatMulNBits); run it with --only int8');
  const cases: CaseName[] = [...only, ...(llamaDir !== undefined ? (['llama-cpp'] as const) : [])];
  const results: CaseResult[] = [];
  for (const name of cases) {
    const extra = name === 'llama-cpp' ? ['--llama-cpp', llamaDir as string, '--gguf', gguf as string] : [];
    const child = spawnSync(process.execPath, ['--expose-gc', __filename, '--case', name, '--tokens', String(tokens), '--threads', String(threads), '--layers', String(layers), ...(block === undefined ? [] : ['--block', String(block)]), ...extra], {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      maxBuffer: 1 << 20,
      // glibc's dynamic mmap threshold would keep the freed build buffers of each layer in the heap (RSS); a fixed one returns them
      env: name === 'llama-cpp' ? process.env : { MALLOC_MMAP_THRESHOLD_: '131072', ...process.env },
    });
    if (child.status !== 0) throw new Error(`the ${name} case failed (exit ${child.status})`);
    results.push(JSON.parse(child.stdout.trim().split('\n').pop() as string));
  }
  const mb = (b: number): number => Math.round(b / 1e6);
  const g = geometry(config);
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(`gateway per token at TinyLlama geometry (${config.nLayers} layers, dim ${g.dim}, hidden ${g.hiddenDim}, vocab ${g.vocabSize}), int8-native: the gateway's int8 kernel (lib/native/), int8 and f32: onnxruntime-node with ${threads} thread(s); in a worker thread${block === undefined ? '' : `, int8 in blocks of ${block} (MatMulNBits)`}; load average ${load} on ${os.cpus().length} CPUs`);
  console.log('case | ms/token | multiplying (ms: session.run, or the native layer step) | MB read/token | bound (ms) | read GB/s | time / bound | best / best | CPU ms/token | bound CPU ms | CPU / bound CPU | resident weights (MB) | RSS after load (MB) | peak RSS (MB) | peak RSS / weights | load (s)');
  for (const r of results) {
    const onnx = r.onnxMsPerToken === undefined ? '-' : r.onnxMsPerToken.toFixed(1);
    console.log(`${r.encoding} | ${r.msPerToken.toFixed(1)} | ${onnx} | ${mb(r.tokenBytes)} | ${r.boundMs.toFixed(1)} | ${r.readGBps.toFixed(2)} | ${r.toBound.toFixed(2)} | ${r.bestToBound.toFixed(2)} | ${r.cpuMsPerToken.toFixed(1)} | ${r.boundCpuMs.toFixed(1)} | ${r.cpuToBound.toFixed(2)} | ${mb(r.residentWeightBytes)} | ${mb(r.rssAfterLoadBytes)} | ${mb(r.peakRssBytes)} | ${(r.peakRssBytes / r.residentWeightBytes).toFixed(2)} | ${r.loadSeconds.toFixed(0)}`);
  }
  for (const r of results) {
    if (r.singleMatmulMs === undefined) continue;
    const singleBoundMs = ((r.singleMatmulBytes as number) / r.tokenBytes) * r.boundMs;
    console.log(`${r.encoding}: one ${config.hiddenDim} x ${config.dim} matrix alone (cached): ${r.singleMatmulMs.toFixed(2)} ms per product, its bound ${singleBoundMs.toFixed(2)} ms`);
  }
  console.log(`bound: a sequential read (memchr, ${threads} thread(s)) of the token's bytes after each token, in the token's process; time / bound is the median of the per-token ratios, best / best the fastest token over the fastest read. Targets: int8 time / bound <= 1.5, peak RSS / weights <= 1.3 (llama.cpp's weights: its file, memory-mapped)`);
  const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d;
  const summary: Record<string, number | string> = { layers: config.nLayers, threads, tokens, ...(block === undefined ? {} : { int8BlockSize: block }), loadAverage1m: round(os.loadavg()[0], 1) };
  for (const r of results) {
    const e = r.encoding === 'llama-cpp' ? 'llamaCpp' : r.encoding === 'int8-native' ? 'int8Native' : r.encoding;
    Object.assign(summary, {
      [`${e}MsPerToken`]: round(r.msPerToken, 1),
      ...(r.onnxMsPerToken === undefined ? {} : { [`${e}OnnxMsPerToken`]: round(r.onnxMsPerToken, 1) }),
      [`${e}BoundMs`]: round(r.boundMs, 1),
      [`${e}ToBound`]: round(r.toBound),
      [`${e}BestToBound`]: round(r.bestToBound),
      [`${e}ReadGBps`]: round(r.readGBps),
      [`${e}CpuMsPerToken`]: round(r.cpuMsPerToken, 1),
      [`${e}CpuToBound`]: round(r.cpuToBound),
      [`${e}RssAfterLoadMB`]: mb(r.rssAfterLoadBytes),
      [`${e}PeakRssMB`]: mb(r.peakRssBytes),
      [`${e}WeightsMB`]: mb(r.residentWeightBytes),
      [`${e}RssToWeights`]: round(r.peakRssBytes / r.residentWeightBytes),
    });
  }
  console.log(JSON.stringify({ ...summary, nproc: os.cpus().length }));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:gateway: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

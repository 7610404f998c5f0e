/**
 * `npm run bench:gateway [-- --tokens N] [-- --threads T] [-- --layers L] [-- --only int8|f32]`: the gateway's
 * per-token work (W_O + FFN of every layer, then the classifier) at TinyLlama-1.1B's geometry
 * on onnxruntime-node, in a worker thread (lib/onnx/gateway-worker.ts), with seeded synthetic
 * weights (lib/llm/synth.ts), in float32 and in int8. Beside it, in the same run: the
 * machine's memory-bandwidth bound for the same bytes, a sequential read (memchr through
 * Buffer.indexOf) of a buffer as large as the matrices a token reads, best of several passes.
 *
 * Each encoding runs in a child process of its own, so its peak RSS is its own; peak RSS is
 * compared with the resident gateway weights (matrices as onnxruntime holds them, plus the
 * float32 embedding table and norms). Per-token time is the median over `tokens` tokens
 * after two warm-up tokens; head outputs are random (the heads run elsewhere). The children
 * run with MALLOC_MMAP_THRESHOLD_=131072 (unless set): without it glibc keeps the freed
 * build buffers of every layer in its heap, and RSS counts them.
 *
 * stdout: a table, then as its last line one JSON object.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { ModelConfig, geometry } from '../lib/llm/config';
import { Encoding } from '../lib/llm/quant';
import * as ort from 'onnxruntime-node';
import { quantizeTransposed } from '../lib/onnx/gateway';
import { OnnxGateway } from '../lib/onnx/gateway-worker';
import { encodeModel } from '../lib/onnx/onnx';
import { MODEL_PRESETS } from '../lib/radio/presets';

interface CaseResult {
  encoding: Encoding;
  loadSeconds: number;
  msPerToken: number;
  /** Bytes of the matrices one token reads (W_O, W_1, W_2, W_3 of every layer, the classifier). */
  tokenBytes: number;
  residentWeightBytes: number;
  /** RSS once loading is done (steady state), and the peak over the whole run. */
  rssAfterLoadBytes: number;
  peakRssBytes: number;
  /** One W_1-sized matrix [hiddenDim, dim] alone in a session, in this thread: ms per product. */
  singleMatmulMs: number;
  singleMatmulBytes: number;
}

/** x [1, cols] times one int8 or f32 matrix [rows, cols] alone, as the gateway graphs multiply: median ms over 30 runs. */
async function singleMatmul(encoding: Encoding, rows: number, cols: number, threads: number): Promise<{ ms: number; bytes: number }> {
  const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * 0.02);
  const { q, scales } = quantizeTransposed(w, rows, cols);
  const f32 = new Float32Array(rows * cols);
  if (encoding === 'f32') for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) f32[c * rows + r] = w[r * cols + c];
  const graph = encoding === 'f32'
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
  return { ms: times[times.length >> 1], bytes: encoding === 'f32' ? rows * cols * 4 : rows * cols + rows * 4 };
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Bytes per token of the gateway's matrices in an encoding (int8: values + one float32 scale per row). */
function tokenBytes(c: ModelConfig, encoding: Encoding): number {
  const g = geometry(c);
  const matrices: [number, number][] = [[g.dim, g.dim], [g.hiddenDim, g.dim], [g.dim, g.hiddenDim], [g.hiddenDim, g.dim]];
  const bytes = (rows: number, cols: number): number => (encoding === 'f32' ? rows * cols * 4 : rows * cols + rows * 4);
  return c.nLayers * matrices.reduce((n, [r, k]) => n + bytes(r, k), 0) + bytes(c.vocabSize, c.dim);
}

/** One encoding in this (child) process. */
async function runCase(encoding: Encoding, config: ModelConfig, tokens: number, threads: number): Promise<CaseResult> {
  const t0 = process.hrtime.bigint();
  const gw = await OnnxGateway.start({ source: { kind: 'synth', config, seed: 1 }, encoding, threads }, (done, total) => process.stderr.write(`bench:gateway: ${encoding} layer ${done}/${total} loaded\n`));
  const loadSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  (globalThis as { gc?: () => void }).gc?.();
  const rssAfterLoadBytes = process.memoryUsage().rss;
  const heads = Float32Array.from({ length: config.dim }, (_, i) => Math.sin(i * 0.37) * 0.5);
  const times: number[] = [];
  for (let t = 0; t < tokens + 2; t++) {
    const start = process.hrtime.bigint();
    let { x } = await gw.embed((t * 7919) % config.vocabSize);
    for (let l = 0; l < config.nLayers; l++) x = (await gw.layer(x, heads, l)).x;
    await gw.logits(x);
    if (t >= 2) times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const residentWeightBytes = gw.weightBytes;
  await gw.close();
  const single = await singleMatmul(encoding, config.hiddenDim, config.dim, threads);
  times.sort((a, b) => a - b);
  return { encoding, loadSeconds, msPerToken: times[Math.floor(times.length / 2)], tokenBytes: tokenBytes(config, encoding), residentWeightBytes, rssAfterLoadBytes, peakRssBytes: process.resourceUsage().maxRSS * 1024, singleMatmulMs: single.ms, singleMatmulBytes: single.bytes };
}

/** Sequential read rate of this machine: memchr over a buffer that no cache holds, best of `passes`. */
function readBandwidth(bytes: number, passes = 5): number {
  const buf = Buffer.alloc(bytes, 1);
  let best = Infinity;
  for (let p = 0; p < passes; p++) {
    const t0 = process.hrtime.bigint();
    if (buf.indexOf(0) !== -1) throw new Error('memchr found a zero');
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return bytes / best;
}

async function main(): Promise<void> {
  const layers = arg('layers', MODEL_PRESETS.tinyllama.nLayers);
  const only = process.argv.includes('--only') ? [process.argv[process.argv.indexOf('--only') + 1] as Encoding] : (['int8', 'f32'] as Encoding[]);
  const config: ModelConfig = { ...MODEL_PRESETS.tinyllama, nLayers: layers };
  const tokens = arg('tokens', 10);
  const threads = arg('threads', 1);
  const caseIndex = process.argv.indexOf('--case');
  if (caseIndex >= 0) {
    const result = await runCase(process.argv[caseIndex + 1] as Encoding, config, tokens, threads);
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const results: Record<string, CaseResult> = {};
  for (const encoding of only) {
    const child = spawnSync(process.execPath, ['--expose-gc', __filename, '--case', encoding, '--tokens', String(tokens), '--threads', String(threads), '--layers', String(layers)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      maxBuffer: 1 << 20,
      // glibc's dynamic mmap threshold would keep the freed build buffers of each layer in the heap (RSS); a fixed one returns them
      env: { MALLOC_MMAP_THRESHOLD_: '131072', ...process.env },
    });
    if (child.status !== 0) throw new Error(`the ${encoding} case failed (exit ${child.status})`);
    results[encoding] = JSON.parse(child.stdout.trim().split('\n').pop() as string);
  }
  process.stderr.write('bench:gateway: measuring the sequential read rate\n');
  const bandwidth = readBandwidth(Math.min(results.int8.tokenBytes, 1 << 30));
  const mb = (b: number): number => Math.round(b / 1e6);
  const rows = only.map((e) => {
    const r = results[e];
    const boundMs = (r.tokenBytes / bandwidth) * 1000;
    const singleBoundMs = (r.singleMatmulBytes / bandwidth) * 1000;
    return { ...r, boundMs, toBound: r.msPerToken / boundMs, rssToWeights: r.peakRssBytes / r.residentWeightBytes, singleBoundMs, singleToBound: r.singleMatmulMs / singleBoundMs };
  });
  const g = geometry(config);
  console.log(`gateway per token at TinyLlama geometry (${config.nLayers} layers, dim ${g.dim}, hidden ${g.hiddenDim}, vocab ${g.vocabSize}), onnxruntime-node, ${threads} thread(s), worker thread`);
  console.log('encoding | ms/token | bytes read/token (MB) | bandwidth bound (ms) | time / bound | resident weights (MB) | RSS after load (MB) | peak RSS (MB) | peak RSS / weights | load (s)');
  for (const r of rows) {
    console.log(`${r.encoding} | ${r.msPerToken.toFixed(1)} | ${mb(r.tokenBytes)} | ${r.boundMs.toFixed(1)} | ${r.toBound.toFixed(2)} | ${mb(r.residentWeightBytes)} | ${mb(r.rssAfterLoadBytes)} | ${mb(r.peakRssBytes)} | ${r.rssToWeights.toFixed(2)} | ${r.loadSeconds.toFixed(0)}`);
  }
  for (const r of rows) console.log(`${r.encoding}: one ${config.hiddenDim} x ${config.dim} matrix alone: ${r.singleMatmulMs.toFixed(2)} ms per product, bound ${r.singleBoundMs.toFixed(2)} ms (${r.singleToBound.toFixed(2)} x)`);
  console.log(`sequential read rate: ${(bandwidth / 1e9).toFixed(2)} GB/s (memchr, 1 thread, ${mb(Math.min(results.int8.tokenBytes, 1 << 30))} MB buffer); targets: int8 time / bound <= 1.5, peak RSS / weights <= 1.3`);
  const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d;
  const summary: Record<string, number> = { layers: config.nLayers, threads, tokens, readGBps: round(bandwidth / 1e9) };
  for (const r of rows) {
    const e = r.encoding;
    Object.assign(summary, {
      [`${e}MsPerToken`]: round(r.msPerToken, 1),
      [`${e}BoundMs`]: round(r.boundMs, 1),
      [`${e}ToBound`]: round(r.toBound),
      [`${e}RssAfterLoadMB`]: mb(r.rssAfterLoadBytes),
      [`${e}PeakRssMB`]: mb(r.peakRssBytes),
      [`${e}WeightsMB`]: mb(r.residentWeightBytes),
      [`${e}RssToWeights`]: round(r.rssToWeights),
      [`${e}SingleMatmulToBound`]: round(r.singleToBound),
    });
  }
  console.log(JSON.stringify({ ...summary, nproc: os.cpus().length }));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:gateway: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

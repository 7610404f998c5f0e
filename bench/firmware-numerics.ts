/**
 * `npm run bench:firmware-numerics [-- --json]`: what the ESP32-S3's single-precision FPU costs
 * in fidelity, and what a node's heads cost in time there.
 *
 * 1. Fidelity on the real model: the 256-token golden story teacher-forced through the
 *    firmware core's head step with float32 accumulation (dist/firmware/head-serve-f32acc,
 *    -D ML_ACCUM_FLOAT32) against the bit-exact double-accumulation build (head-serve, which
 *    equals the TypeScript step bit for bit), f32 and int8 weights: top-1 agreement and mean KL,
 *    as bench:fidelity measures them.
 * 2. An estimate of one TinyLlama token's head compute on an S3 node of 2 heads, from the
 *    multiply-accumulates the node's heads need and Espressif's published cycle counts for a
 *    256-element float32 dot product on the ESP32-S3 (ESP-DSP benchmarks,
 *    https://docs.espressif.com/projects/esp-dsp/en/latest/esp-dsp-benchmarks.html:
 *    dsps_dotprod_f32, N = 256: 432 cycles in its assembly version, 1311 cycles as ANSI C at
 *    -O2), at 240 MHz, and the time to stream the node's int8 weights from quad-SPI flash at
 *    80 MHz (4 bits a clock: 40 MB/s at best). Not measured on hardware (none here).
 */
import { geometry } from '../lib/llm/config';
import { compareLogits } from '../lib/llm/fidelity';
import { goldenIds } from '../lib/llm/golden';
import { kvHeadsFor } from '../lib/llm/head';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { weightStorageBytes } from '../lib/radio/planner';
import { teacherForceNative } from '../lib/firmware/numerics';

/** ESP-DSP's dsps_dotprod_f32 on the ESP32-S3, N = 256 (cycles). */
const DOTPROD_256_CYCLES = { assembly: 432, ansiC: 1311 };
const S3_HZ = 240e6;
/** Quad-SPI flash at 80 MHz: 4 bits a clock. */
const FLASH_BYTES_PER_SECOND = 40e6;

function s3Estimate(context: number) {
  const g = geometry(MODEL_PRESETS.tinyllama);
  const heads = [0, 1];
  const kv = kvHeadsFor(heads, g.kvMul).length;
  const projectionMacs = g.nLayers * (heads.length + 2 * kv) * g.headSize * g.dim;
  // at the last position of the context: scores and the weighted sum over `context` positions
  const attentionMacs = g.nLayers * heads.length * context * g.headSize * 2;
  const macs = projectionMacs + attentionMacs;
  const seconds = (cycles: number) => (macs * cycles) / 256 / S3_HZ;
  const weightBytes = g.nLayers * (heads.length + 2 * kv) * g.headSize * weightStorageBytes(g.dim, 'int8');
  return {
    model: 'tinyllama',
    heads: heads.length,
    kvHeads: kv,
    context,
    projectionMacs,
    attentionMacs,
    computeSecondsAssembly: seconds(DOTPROD_256_CYCLES.assembly),
    computeSecondsAnsiC: seconds(DOTPROD_256_CYCLES.ansiC),
    weightBytes,
    flashStreamSeconds: weightBytes / FLASH_BYTES_PER_SECOND,
  };
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const paths = await resolveOrFetchModelPaths({});
  const ids = goldenIds('bos-greedy-256');
  const rows = [];
  for (const weights of ['f32', 'int8'] as const) {
    process.stderr.write(`teacher forcing ${ids.length} tokens, ${weights} weights: bit-exact and float32 accumulation...\n`);
    const exact = await teacherForceNative(paths.model, 'exact', weights, ids);
    const f32acc = await teacherForceNative(paths.model, 'f32', weights, ids);
    const differ = exact.filter((l, i) => l.some((v, j) => v !== f32acc[i][j])).length;
    rows.push({ case: `${weights} weights, float32 accumulation vs bit-exact`, ...compareLogits(exact, f32acc), positionsDiffering: differ });
  }
  const estimate = s3Estimate(512);
  if (!json) {
    console.log('| case | positions | top-1 agreement | mean KL (nats) | max KL (nats) |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.case} | ${r.positions} | ${(100 * r.top1Agreement).toFixed(1)}% | ${r.meanKl.toExponential(2)} | ${r.maxKl.toExponential(2)} |`);
    console.log('');
    console.log('| TinyLlama, 2 heads/node, position 511 | multiply-accumulates | S3 time per token |');
    console.log('|---|---|---|');
    console.log(`| W_Q/W_K/W_V rows (22 layers) | ${estimate.projectionMacs.toLocaleString('en')} | |`);
    console.log(`| attention over 512 positions | ${estimate.attentionMacs.toLocaleString('en')} | |`);
    console.log(`| float32, ESP-DSP assembly (432 cycles / 256) | | ${(1000 * estimate.computeSecondsAssembly).toFixed(0)} ms |`);
    console.log(`| float32, ANSI C -O2 (1311 cycles / 256) | | ${(1000 * estimate.computeSecondsAnsiC).toFixed(0)} ms |`);
    console.log(`| int8 weights streamed from QSPI flash (${(estimate.weightBytes / 2 ** 20).toFixed(2)} MiB at 40 MB/s) | | ${(1000 * estimate.flashStreamSeconds).toFixed(0)} ms |`);
  }
  console.log(JSON.stringify({ fidelity: rows, s3Estimate: estimate }));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
});

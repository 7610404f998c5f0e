/**
 * `npm run bench:engine [-- --json] [-- --rounds N]`: the monolithic engine on stories260K,
 * greedy from BOS with no prompt, up to 512 positions (generation stops early when BOS is
 * produced, as llama2.c's run.c does), in float32 and int8, side by side with a compiled C
 * reference (bench/reference/llama_ref.c) doing the same forward pass on the same machine.
 *
 * Each round runs the C reference once, then each engine case once in a fresh child
 * process (one untimed warm-up generation for the JIT, then one timed generation), so peak
 * RSS is per case and the three share the machine's conditions of that round. Figures are
 * medians over rounds; JS/C ratios are medians of the per-round ratios. Tokens per
 * CPU-second (user + system time of the process) are reported beside wall-clock tokens per
 * second: on a shared machine they are the steadier of the two.
 *
 * Progress goes to stderr. stdout holds a table (omitted with --json), and its last line is
 * one JSON object: {"f32TokensPerSecond", "int8TokensPerSecond", "peakRssMB", ...}.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../lib/llm/engine';
import { goldenFile, goldenIds } from '../lib/llm/golden';
import { kernelsKind } from '../lib/llm/kernels';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { packageRoot } from '../lib/llm/resolve';
import { Encoding } from '../lib/llm/quant';

const POSITIONS = 512;
const DEFAULT_ROUNDS = 5;
const SANITY_GOLDEN = 'bos-greedy-256';

/** One timed generation of one case. */
interface Sample {
  tokensPerSecond: number;
  cpuTokensPerSecond: number;
  /** Forward passes that produced a token (tokens after BOS). */
  positions: number;
  peakRssMB: number;
  ids: number[];
  /** Which kernels the engine ran (lib/llm/kernels.ts); absent for the C reference. */
  kernels?: string;
}

const log = (text: string): void => {
  process.stderr.write(`${text}\n`);
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---- child process: one engine case ------------------------------------------------------

async function runCase(quant: 'f32' | 'int8'): Promise<void> {
  const paths = await resolveOrFetchModelPaths({});
  const engine = Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer, quant });
  const options = { prompt: '', steps: POSITIONS, temperature: 0, topP: 0.9, seed: 1n };
  await engine.generate(options); // warm-up: lets V8 compile the kernels, as C needs no warm-up
  const cpu = process.cpuUsage();
  const result = await engine.generate(options);
  const used = process.cpuUsage(cpu);
  const positions = result.tokens.length - 1;
  const sample: Sample = {
    tokensPerSecond: result.tokensPerSecond,
    cpuTokensPerSecond: positions / ((used.user + used.system) / 1e6),
    positions,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    ids: result.tokens,
    kernels: kernelsKind(),
  };
  process.stdout.write(`${JSON.stringify(sample)}\n`);
}

function sampleCase(quant: Encoding): Sample {
  const child = spawnSync(process.execPath, [__filename, '--case', quant], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (child.status !== 0) throw new Error(`engine case ${quant} failed (exit ${child.status}):\n${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop() as string) as Sample;
}

// ---- the C reference ---------------------------------------------------------------------

/** Compiles bench/reference/llama_ref.c into dist/bench/reference; null when no C compiler works. */
function compileReference(): { binary: string; command: string } | null {
  const source = path.join(packageRoot(), 'bench', 'reference', 'llama_ref.c');
  const outDir = path.join(packageRoot(), 'dist', 'bench', 'reference');
  fs.mkdirSync(outDir, { recursive: true });
  const binary = path.join(outDir, 'llama_ref');
  for (const cc of ['gcc', 'cc']) {
    for (const flags of [['-O3', '-march=native'], ['-O3']]) {
      const args = [...flags, '-o', binary, source, '-lm'];
      const r = spawnSync(cc, args, { encoding: 'utf8' });
      if (r.status === 0) return { binary, command: `${cc} ${args.map((a) => path.relative(packageRoot(), a) || a).join(' ')}` };
    }
  }
  return null;
}

function runReference(binary: string, model: string, positions: number): Sample {
  const text = execFileSync(binary, [model, String(positions), '1'], { encoding: 'utf8' });
  const rate = /tokens_per_second (\S+) cpu_tokens_per_second (\S+) positions (\d+)/.exec(text);
  const rss = /peak_rss_kb (\d+)/.exec(text);
  const ids = /^ids (.*)$/m.exec(text);
  if (!rate || !ids || !rss) throw new Error(`unexpected output from the C reference:\n${text}`);
  return {
    tokensPerSecond: Number(rate[1]),
    cpuTokensPerSecond: Number(rate[2]),
    positions: Number(rate[3]),
    peakRssMB: Number(rss[1]) / 1024,
    ids: ids[1].trim().split(/\s+/).map(Number),
  };
}

/** The C reference must reproduce the golden greedy run before its speed means anything. */
function checkReference(binary: string, model: string): string {
  const file = goldenFile(SANITY_GOLDEN, 'ids');
  if (!fs.existsSync(file)) return `not checked (${file} not found)`;
  const golden = goldenIds(SANITY_GOLDEN);
  const got = runReference(binary, model, golden.length - 1).ids;
  if (got.length !== golden.length || got.some((id, i) => id !== golden[i])) {
    throw new Error(`the C reference does not reproduce ${SANITY_GOLDEN}.ids: its timings would not be comparable`);
  }
  return `reproduces ${SANITY_GOLDEN}.ids (${golden.length} ids)`;
}

// ---- the bench ---------------------------------------------------------------------------

function machine(): { nproc: number; cpu: string } {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1];
  } catch {
    // not Linux: os.cpus() is all there is
  }
  return { nproc: os.availableParallelism(), cpu };
}

function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} expects a whole number >= 1`);
  return v;
}

async function main(): Promise<void> {
  const caseArg = process.argv.indexOf('--case');
  if (caseArg >= 0) return runCase(process.argv[caseArg + 1] as 'f32' | 'int8');

  const json = process.argv.includes('--json');
  const rounds = numberArg('--rounds', DEFAULT_ROUNDS);
  const paths = await resolveOrFetchModelPaths({});
  const host = machine();
  log(`bench:engine: ${path.basename(paths.model)}, greedy from BOS, up to ${POSITIONS} positions, ${rounds} rounds; ${host.nproc} CPUs (${host.cpu}), node ${process.version}`);

  const reference = compileReference();
  let referenceCheck = 'no C compiler found: the C reference is skipped';
  if (reference) {
    log(`compiled the C reference: ${reference.command}`);
    referenceCheck = checkReference(reference.binary, paths.model);
  }
  log(`C reference: ${referenceCheck}`);

  const samples: Record<'c' | 'f32' | 'int8', Sample[]> = { c: [], f32: [], int8: [] };
  for (let r = 0; r < rounds; r++) {
    if (reference) samples.c.push(runReference(reference.binary, paths.model, POSITIONS));
    samples.f32.push(sampleCase('f32'));
    samples.int8.push(sampleCase('int8'));
    const last = (k: 'c' | 'f32' | 'int8'): string => (samples[k].length ? samples[k][r].tokensPerSecond.toFixed(0) : '-');
    log(`  round ${r + 1}/${rounds}: C ${last('c')}, f32 ${last('f32')}, int8 ${last('int8')} tokens/s`);
  }

  const summary = (k: 'c' | 'f32' | 'int8') => {
    const s = samples[k];
    if (s.length === 0) return null;
    const c = samples.c;
    const paired = (pick: (x: Sample) => number) => (c.length ? median(s.map((x, i) => pick(x) / pick(c[i]))) : null);
    return {
      tokensPerSecond: median(s.map((x) => x.tokensPerSecond)),
      cpuTokensPerSecond: median(s.map((x) => x.cpuTokensPerSecond)),
      toC: paired((x) => x.tokensPerSecond),
      cpuToC: paired((x) => x.cpuTokensPerSecond),
      peakRssMB: Math.max(...s.map((x) => x.peakRssMB)),
      positions: s[0].positions,
    };
  };
  const c = summary('c');
  const f32 = summary('f32') as NonNullable<ReturnType<typeof summary>>;
  const int8 = summary('int8') as NonNullable<ReturnType<typeof summary>>;
  const f32MatchesC = samples.c.length > 0 && samples.f32[0].ids.join(' ') === samples.c[0].ids.join(' ');

  if (!json) {
    const fmt = (v: number | null | undefined, digits = 0): string => (v == null ? '-' : v.toFixed(digits));
    console.log(`Engine benchmark: ${path.basename(paths.model)}, greedy from BOS, up to ${POSITIONS} positions (fewer when BOS ends the story), median of ${rounds} rounds`);
    console.log(`Machine: ${host.nproc} CPUs, ${host.cpu}; node ${process.version}; engine kernels: ${samples.f32[0].kernels}`);
    console.log('');
    console.log('| engine | positions | tokens/s | tokens per CPU-second | peak RSS | tokens/s vs C | per CPU-second vs C |');
    console.log('|---|---|---|---|---|---|---|');
    const row = (name: string, s: ReturnType<typeof summary>): void => {
      if (s) console.log(`| ${name} | ${s.positions} | ${fmt(s.tokensPerSecond)} | ${fmt(s.cpuTokensPerSecond)} | ${fmt(s.peakRssMB, 1)} MB | ${fmt(s.toC, 2)} | ${fmt(s.cpuToC, 2)} |`);
    };
    row('C reference (float32)', c);
    row('mesh-llm float32', f32);
    row('mesh-llm int8', int8);
    console.log('');
    console.log(`C reference: ${reference ? reference.command : 'none'}; ${referenceCheck}.`);
    if (samples.c.length) console.log(`float32 engine tokens ${f32MatchesC ? 'identical to' : 'DIFFER from'} the C reference's over the whole run.`);
  }
  console.log(
    JSON.stringify({
      f32TokensPerSecond: round(f32.tokensPerSecond),
      int8TokensPerSecond: round(int8.tokensPerSecond),
      peakRssMB: round(Math.max(f32.peakRssMB, int8.peakRssMB), 1),
      cTokensPerSecond: c ? round(c.tokensPerSecond) : null,
      f32ToC: f32.toC == null ? null : round(f32.toC, 2),
      int8ToC: int8.toC == null ? null : round(int8.toC, 2),
      f32CpuTokensPerSecond: round(f32.cpuTokensPerSecond),
      int8CpuTokensPerSecond: round(int8.cpuTokensPerSecond),
      cCpuTokensPerSecond: c ? round(c.cpuTokensPerSecond) : null,
      f32CpuToC: f32.cpuToC == null ? null : round(f32.cpuToC, 2),
      int8CpuToC: int8.cpuToC == null ? null : round(int8.cpuToC, 2),
      f32PeakRssMB: round(f32.peakRssMB, 1),
      int8PeakRssMB: round(int8.peakRssMB, 1),
      cPeakRssMB: c ? round(c.peakRssMB, 1) : null,
      f32Positions: f32.positions,
      int8Positions: int8.positions,
      cPositions: c ? c.positions : null,
      rounds,
      f32MatchesC,
      kernels: samples.f32[0].kernels,
      nproc: host.nproc,
      cpu: host.cpu,
    }),
  );
}

function round(v: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:engine: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

/**
 * `npm run bench:mesh [-- --rounds R] [-- --nodes 1,8] [-- --runtime native,node]`: the MQTT
 * mesh on loopback. For each head-node runtime (native: the firmware core built for the host;
 * node: `mesh-llm node` on node.js) and each broker (the embedded aedes broker in the gateway's
 * process, as `generate --mesh N` runs it, and the system's Mosquitto reached over TCP) it
 * starts N head-node processes, then for each
 * transport (f32, int8) generates 128 positions greedily from BOS: three untimed warm-up runs,
 * then R timed runs with the mesh events published on the bus and R without, interleaved (the
 * cost of the event stream, measured side by side). Reported per case: tokens/s (median over runs) and the per-layer gather
 * round trip (broadcast sent -> last head result placed) p50 and p99 over every layer of every
 * timed run. Each run's tokens are checked against the monolithic engine first.
 *
 * Progress goes to stderr; stdout holds a table, and its last line is one JSON object:
 * {"tokensPerSecond", "layerRoundTripP50Ms", "layerRoundTripP99Ms", "runtime", "cases": [...]},
 * the top-level figures being those of 8 nodes, f32, aedes, on the first runtime listed.
 * `--record`: each timed run is followed by one recorded in a run store (lib/runs: every token
 * and gather committed as it happens) with `synchronous` NORMAL (the default: job changes
 * fsynced, tokens not) and one with FULL (every commit fsynced), each reported as a case of its
 * own with the store's bytes per 1000 tokens: the overhead of recording, side by side.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { modelDigest } from '../lib/runs/jobs';
import { RunRecorder } from '../lib/runs/record';
import { RunStore } from '../lib/runs/store';
import * as os from 'node:os';
import { firmwareBinary } from '../lib/firmware/build';
import { Engine, GenerateOptions } from '../lib/llm/engine';
import { resolveOrFetchModelPaths } from '../lib/llm/provide';
import { RunningBroker, startAedesBroker, startMosquitto } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { spawnHeadNodes } from '../lib/mesh/processes';
import { Encoding } from '../lib/llm/quant';

const POSITIONS = 128;
const WARMUP_RUNS = 3;
const BROKERS = ['aedes', 'mosquitto'] as const;
const RUNTIMES = ['native', 'node'] as const;
type Runtime = (typeof RUNTIMES)[number];
const TRANSPORTS: readonly ('f32' | 'int8')[] = ['f32', 'int8'];
type BrokerKind = (typeof BROKERS)[number];

interface Case {
  runtime: Runtime;
  nodes: number;
  broker: BrokerKind;
  transport: Encoding;
  /** Whether the mesh events went out on the bus. */
  events: boolean;
  tokensPerSecond: number;
  layerRoundTripP50Ms: number;
  layerRoundTripP99Ms: number;
  layers: number;
  record?: boolean;
  /** The run store's synchronous setting, for a recorded case. */
  synchronous?: 'NORMAL' | 'FULL';
  dbBytesPer1000Tokens?: number;
}

const log = (text: string): void => {
  process.stderr.write(`${text}\n`);
};

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function parseArgs(argv: string[]): { rounds: number; nodeCounts: number[]; runtimes: Runtime[]; record: boolean } {
  let record = false;
  let rounds = 3;
  let nodeCounts = [8];
  let runtimes: string[] = [...RUNTIMES];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') rounds = Number(argv[++i]);
    else if (argv[i] === '--nodes') nodeCounts = argv[++i].split(',').map(Number);
    else if (argv[i] === '--runtime') runtimes = argv[++i].split(',');
    else if (argv[i] === '--record') record = true;
    else throw new Error(`bench:mesh: unknown argument ${argv[i]} (expected --rounds R, --nodes 1,8, --runtime native,node)`);
  }
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a whole number >= 1');
  if (nodeCounts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--nodes must list whole numbers >= 1');
  if (runtimes.length === 0 || runtimes.some((r) => !(RUNTIMES as readonly string[]).includes(r))) throw new Error(`--runtime must list some of ${RUNTIMES.join(', ')}`);
  return { rounds, nodeCounts, runtimes: runtimes as Runtime[], record };
}

async function startBroker(kind: BrokerKind): Promise<RunningBroker> {
  return kind === 'aedes' ? startAedesBroker() : startMosquitto();
}

/** Runs every transport on one broker with `nodes` head-node processes. */
async function benchBroker(runtime: Runtime, kind: BrokerKind, nodes: number, rounds: number, expected: Record<Encoding, number[]>, record = false): Promise<Case[]> {
  const paths = await resolveOrFetchModelPaths({});
  const broker = await startBroker(kind);
  const meshId = `bench-${runtime}-${kind}-${nodes}`;
  const children = spawnHeadNodes({ count: nodes, brokerUrl: broker.url, meshId, modelPath: paths.model, native: runtime === 'native', onLog: () => undefined });
  let gw: MeshGateway | undefined;
  try {
    gw = await MeshGateway.connect({
      url: broker.url,
      meshId,
      modelPath: paths.model,
      tokenizerPath: paths.tokenizer,
      embeddedBroker: broker.aedes,
      log: () => undefined,
    });
    const ids = await Promise.race([gw.discover({ count: nodes, timeoutMs: 60000 }), children.firstExit]);
    const cases: Case[] = [];
    for (const transport of TRANSPORTS) {
      await gw.assign(ids, { quant: transport });
      const options: GenerateOptions = { prompt: '', steps: POSITIONS, temperature: 0, topP: 0.9, seed: 1n };
      // Warm-up: the head-node processes JIT-compile their hot path over the first few hundred
      // frames; with a single warm-up run the first case measured ~40 % slower than the second.
      for (let w = 0; w < WARMUP_RUNS; w++) await gw.generate(options);
      const modes = record ? (['on', 'off', 'recorded', 'recorded-full'] as const) : (['on', 'off'] as const);
      const rates: Record<string, number[]> = { on: [], off: [], recorded: [], 'recorded-full': [] };
      const trips: Record<string, number[]> = { on: [], off: [], recorded: [], 'recorded-full': [] };
      const recordedTokens: Record<string, number> = { recorded: 0, 'recorded-full': 0 };
      const dir = record ? fs.mkdtempSync(path.join(os.tmpdir(), 'bench-runs-')) : '';
      const stores = record ? { recorded: RunStore.open(path.join(dir, 'normal.sqlite'), { synchronous: 'NORMAL' }), 'recorded-full': RunStore.open(path.join(dir, 'full.sqlite'), { synchronous: 'FULL' }) } : null;
      const model = stores ? { path: paths.model, digest: modelDigest(paths.model, paths.tokenizer) } : null;
      for (let r = 0; r < rounds; r++) {
        for (const mode of modes) {
          // on: the mesh events on the bus; off: without; recorded: on, and every token and gather committed to a run store
          gw.publishEvents(mode !== 'off');
          let result;
          const store = stores && (mode === 'recorded' || mode === 'recorded-full') ? stores[mode] : null;
          if (store && model) {
            const recorder = new RunRecorder(store, { options, source: 'bench', model, mesh: { kind: 'mqtt', nodes: ids.map((node) => ({ node, heads: [] })), quant: transport }, promptTokens: 1 });
            const stop = gw.events.on((e) => {
              if (e.kind === 'gather') recorder.gather(e.pos, e.layer, e.ms);
            });
            result = await gw.generate(options, recorder.onToken);
            stop();
            recorder.finish(result);
            recordedTokens[mode] += result.tokens.length - 1;
          } else {
            result = await gw.generate(options);
          }
          if (result.tokens.join() !== expected[transport].join()) throw new Error(`${runtime} ${kind} ${transport} ${nodes} nodes, ${mode}: tokens differ from the monolithic engine`);
          rates[mode].push(result.tokensPerSecond);
          trips[mode].push(...(gw.runner?.roundTripsMs ?? []));
          log(`  ${runtime} ${kind} ${transport} ${nodes} nodes, ${mode.startsWith('recorded') ? mode : `events ${mode}`}, run ${r + 1}/${rounds}: ${result.tokensPerSecond.toFixed(1)} tok/s`);
        }
      }
      const dbBytes: Record<string, number> = {};
      if (stores) {
        for (const [mode, store] of Object.entries(stores)) {
          store.close(); // checkpoints the write-ahead log into the database file
          dbBytes[mode] = fs.statSync(store.file).size;
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }
      for (const mode of modes) {
        const t = trips[mode].sort((a, b) => a - b);
        cases.push({
          runtime,
          nodes,
          broker: kind,
          transport,
          events: mode !== 'off',
          record: mode.startsWith('recorded'),
          ...(mode === 'recorded' || mode === 'recorded-full' ? { synchronous: mode === 'recorded' ? ('NORMAL' as const) : ('FULL' as const), dbBytesPer1000Tokens: Math.round((dbBytes[mode] / recordedTokens[mode]) * 1000) } : {}),
          tokensPerSecond: Number(median(rates[mode]).toFixed(1)),
          layerRoundTripP50Ms: Number(percentile(t, 0.5).toFixed(3)),
          layerRoundTripP99Ms: Number(percentile(t, 0.99).toFixed(3)),
          layers: t.length,
        });
      }
      gw.publishEvents(true);
    }
    return cases;
  } finally {
    await gw?.close();
    await children.stop();
    await broker.close();
  }
}

function table(cases: Case[]): string {
  const head = ['runtime', 'nodes', 'broker', 'transport', 'events', 'record', 'tokens/s', 'gather p50 ms', 'gather p99 ms', 'layers', 'DB bytes/1000 tok'];
  const rows = cases.map((c) => [c.runtime, String(c.nodes), c.broker, c.transport, c.events ? 'on' : 'off', c.record ? (c.synchronous ?? 'yes') : 'no', c.tokensPerSecond.toFixed(1), c.layerRoundTripP50Ms.toFixed(3), c.layerRoundTripP99Ms.toFixed(3), String(c.layers), c.dbBytesPer1000Tokens === undefined ? '-' : String(c.dbBytesPer1000Tokens)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 6 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { rounds, nodeCounts, runtimes: asked, record } = parseArgs(process.argv.slice(2));
  let runtimes = asked;
  if (runtimes.includes('native')) {
    try {
      firmwareBinary();
    } catch (e) {
      log(`bench:mesh: skipping the native runtime: ${(e as Error).message}`);
      runtimes = runtimes.filter((r) => r !== 'native');
      if (runtimes.length === 0) throw e;
    }
  }
  const paths = await resolveOrFetchModelPaths({});
  log(`bench:mesh: stories260K, ${POSITIONS} positions from BOS, greedy; ${rounds} timed run(s) per case; ${os.cpus().length} CPUs`);
  const expected = {} as Record<Encoding, number[]>;
  for (const transport of TRANSPORTS) {
    const engine = Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer, quant: transport });
    expected[transport] = (await engine.generate({ prompt: '', steps: POSITIONS, temperature: 0, topP: 0.9, seed: 1n })).tokens;
  }
  const cases: Case[] = [];
  for (const runtime of runtimes) {
    for (const nodes of nodeCounts) {
      for (const kind of BROKERS) {
        log(`${runtime} head nodes, ${kind}, ${nodes} processes:`);
        cases.push(...(await benchBroker(runtime, kind, nodes, rounds, expected, record)));
      }
    }
  }
  const top = cases.find((c) => c.events && !c.record && c.runtime === runtimes[0] && c.nodes === 8 && c.broker === 'aedes' && c.transport === 'f32') ?? cases[0];
  process.stdout.write(`${table(cases)}\n`);
  process.stdout.write(`${JSON.stringify({ tokensPerSecond: top.tokensPerSecond, layerRoundTripP50Ms: top.layerRoundTripP50Ms, layerRoundTripP99Ms: top.layerRoundTripP99Ms, runtime: top.runtime, cases })}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:mesh: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});

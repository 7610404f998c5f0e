/**
 * Weight shards (lib/firmware/shard.ts, `mesh-llm shard`, firmware/core/shard.cpp): one file
 * per node whose weights are the bytes `mesh-llm plan` gives the node, and which the native
 * radio node refuses, with the reason, when its checksum, geometry or assignment is wrong.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { Checkpoint } from '../lib/llm/checkpoint';
import { geometry } from '../lib/llm/config';
import { loadHeadSlices } from '../lib/llm/head';
import { buildShard, readShardHeader } from '../lib/firmware/shard';
import { NativeRadioNodes } from '../gateway-bridge/native-radio';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { modelPaths } from './support/fixtures';
import { runCli } from './support/cli';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-shard-test-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

type ShardJson = { shards: { node: number; file: string; heads: number[]; kvHeads: number[]; bytes: number; payloadBytes: number }[] };
type PlanJson = { perNode: { node: number; heads: number[]; weightBytes: number }[] };

test.each([
  [4, 'int8'],
  [3, 'int8'],
  [8, 'f32'],
  [4, 'int4'],
  [3, 'int2'],
])('mesh-llm shard --nodes %i --quant %s: one file per node, its weights the bytes mesh-llm plan counts for that format', async (nodes, quant) => {
  const out = path.join(dir, `cli-${nodes}-${quant}`);
  const r = await runCli(['shard', '--nodes', String(nodes), '--quant', quant, '--out', out, '--model', modelPaths.model, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const shards = (JSON.parse(r.stdout) as ShardJson).shards;
  expect(fs.readdirSync(out).sort()).toEqual(shards.map((s) => `node-${s.node}.shard`).sort());
  const plan = await runCli(['plan', '--model', modelPaths.model, '--nodes', String(nodes), '--quant', quant, '--json']);
  const perNode = (JSON.parse(plan.stdout) as PlanJson).perNode;
  const c = Checkpoint.open(modelPaths.model);
  const g = geometry(c.info.config);
  c.close();
  shards.forEach((s, i) => {
    expect(s.heads).toEqual(perNode[i].heads);
    expect(fs.statSync(s.file).size).toBe(s.bytes);
    const h = readShardHeader(fs.readFileSync(s.file));
    expect(h).toMatchObject({ version: 2, node: i + 1, nodes, format: quant, heads: s.heads, payloadBytes: s.payloadBytes });
    expect(s.bytes - s.payloadBytes).toBe(h.headerBytes);
    expect(s.payloadBytes).toBe(perNode[i].weightBytes);
    // and that figure by hand: per weight 4 bytes (f32), 1 (int8), 1/2 (int4), 1/4 (int2), plus 4 bytes a group (int2: 8) of 32 (int2: the 64-value row)
    const weights = g.nLayers * (s.heads.length + 2 * s.kvHeads.length) * g.headSize * g.dim;
    const byHand = { f32: 4 * weights, int8: weights + (weights / 32) * 4, int4: weights / 2 + (weights / 32) * 4, int2: weights / 4 + (weights / 64) * 8 }[quant as 'f32' | 'int8' | 'int4' | 'int2'];
    expect(s.payloadBytes).toBe(byHand);
  });
});

test('a shard holds exactly the node\'s rows as the head group loads them, after a header that names them', () => {
  const ckpt = Checkpoint.open(modelPaths.model);
  try {
    const g = geometry(ckpt.info.config);
    const file = buildShard(ckpt, 2, 4, 'int8');
    const h = readShardHeader(file);
    const slices = loadHeadSlices(ckpt, g, [2, 3], 'int8');
    let at = h.headerBytes;
    for (let l = 0; l < g.nLayers; l++) {
      for (const p of [slices.wq[l], slices.wk[l], slices.wv[l]]) {
        if (p.kind !== 'int8') throw new Error('expected int8 rows');
        expect(file.subarray(at, at + p.m.q.length)).toEqual(Buffer.from(p.m.q.buffer, p.m.q.byteOffset, p.m.q.byteLength));
        at += p.m.q.length;
        expect(new Float32Array(file.buffer.slice(file.byteOffset + at, file.byteOffset + at + p.m.scales.byteLength))).toEqual(p.m.scales);
        at += p.m.scales.byteLength;
      }
    }
    expect(at).toBe(file.length);
    expect(h).toMatchObject({ version: 2, format: 'int8', heads: [2, 3], kvHeads: [1], groupSize: 32, model: { dim: g.dim, nLayers: g.nLayers, seqLen: g.seqLen } });
  } finally {
    ckpt.close();
  }
});

test('int4 and int2 shards hold the packed codes of the engine\'s rows, then scales (int2 then offsets)', () => {
  const { packCodes, unpackCodes } = require('../lib/llm/quant') as typeof import('../lib/llm/quant');
  const ckpt = Checkpoint.open(modelPaths.model);
  try {
    const g = geometry(ckpt.info.config);
    for (const format of ['int4', 'int2'] as const) {
      const file = buildShard(ckpt, 1, 4, format);
      const h = readShardHeader(file);
      expect(h).toMatchObject({ version: 2, format, groupSize: format === 'int4' ? 32 : 64 });
      const slices = loadHeadSlices(ckpt, g, [0, 1], format);
      let at = h.headerBytes;
      const floats = (n: number) => new Float32Array(file.buffer.slice(file.byteOffset + at, file.byteOffset + (at += 4 * n)));
      for (let l = 0; l < g.nLayers; l++) {
        for (const p of [slices.wq[l], slices.wk[l], slices.wv[l]]) {
          if (p.kind !== format) throw new Error(`expected ${format} rows`);
          const bits = format === 'int4' ? 4 : 2;
          const packed = packCodes(p.m.q, bits);
          expect(file.subarray(at, at + packed.length)).toEqual(Buffer.from(packed));
          // int4 codes are signed nibbles; int2 codes 0..3 are the low 2 bits as they are
          const back = unpackCodes(file.subarray(at, at + packed.length), p.m.q.length, bits);
          expect(Array.from(back, (c) => (format === 'int2' ? c & 3 : c))).toEqual(Array.from(p.m.q));
          at += packed.length;
          expect(floats(p.m.scales.length)).toEqual(p.m.scales);
          if (format === 'int2') expect(floats(p.m.offsets!.length)).toEqual(p.m.offsets);
        }
      }
      expect(at).toBe(file.length);
    }
  } finally {
    ckpt.close();
  }
});

describe('the native radio node refuses a shard that is not its own, saying why', () => {
  let natives: NativeRadioNodes;
  let mesh: SimulatedRadioMesh;
  const ckpt = () => Checkpoint.open(modelPaths.model);
  const write = (name: string, bytes: Buffer) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, bytes);
    return p;
  };
  /** A shard with one header field changed and its CRC made right again. */
  const withField = (file: Buffer, offset: number, value: number) => {
    const b = Buffer.from(file);
    b.writeUInt32LE(value, offset);
    b.writeUInt32LE(0, 52);
    b.writeUInt32LE(crc32(b), 52);
    return b;
  };

  beforeAll(async () => {
    mesh = new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes: 4, quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0, nativeAddresses: new Set([1, 2, 3, 4]) });
    natives = await NativeRadioNodes.start({ mesh, modelPath: modelPaths.model, addresses: [], onLine: () => undefined });
    cleanups.push(() => natives.close());
  });

  test('the shard it was cut for joins', async () => {
    await expect(natives.startNode(3)).resolves.toBeUndefined();
  });

  test('a flipped bit in its weights: checksum mismatch', async () => {
    const good = fs.readFileSync(natives.shardPath(2));
    const bad = Buffer.from(good);
    bad[bad.length - 100] ^= 0x04;
    await expect(natives.startNode(2, write('flipped.shard', bad))).rejects.toThrow(/exited with code 1 before joining: .*refused: checksum mismatch \(CRC-32 [0-9a-f]+, the header says [0-9a-f]+\): the shard is damaged/);
  });

  test('a shard cut short: its size against its header', async () => {
    const good = fs.readFileSync(natives.shardPath(2));
    await expect(natives.startNode(2, write('short.shard', good.subarray(0, good.length - 64)))).rejects.toThrow(/refused: 11520 bytes; its header says 64 \+ 11520/);
  });

  test('another model\'s geometry: the mismatch named', async () => {
    const c = ckpt();
    const other = withField(buildShard(c, 1, 4, 'int8'), 36, 256); // seqLen 256
    c.close();
    await expect(natives.startNode(1, write('geometry.shard', other))).rejects.toThrow(/refused: the shard is for another model: seqLen 256 in the shard, 512 in the mesh/);
  });

  test('a shard of another split of the heads: the assignment named', async () => {
    const c = ckpt();
    const ofTwo = buildShard(c, 1, 2, 'int8'); // node 1 of 2 holds heads 0..3
    c.close();
    await expect(natives.startNode(1, write('split.shard', ofTwo))).rejects.toThrow(/refused: the shard holds heads \[0, 1, 2, 3\]; the mesh assigns this node \[0, 1\]/);
  });

  test('not a shard at all', async () => {
    await expect(natives.startNode(4, write('noise.shard', Buffer.alloc(4096, 7)))).rejects.toThrow(/refused: not a weight shard \(no MLSH magic\)/);
  });
});

describe('the MQTT native head node on shards (mesh-llm-node --shard)', () => {
  test('four nodes, each on its shard instead of the checkpoint (two reading its rows into RAM, two using them in place), give the int8 engine\'s tokens; asked for f32 weights they refuse, saying why', async () => {
    const { spawn } = require('node:child_process') as typeof import('node:child_process');
    const { firmwareBinary } = require('../lib/firmware/build') as typeof import('../lib/firmware/build');
    const { brokerProcess } = require('./support/radio') as typeof import('./support/radio');
    const { Engine } = require('../lib/llm/engine') as typeof import('../lib/llm/engine');
    const out = path.join(dir, 'mqtt-shards');
    const r = await runCli(['shard', '--nodes', '4', '--quant', 'int8', '--out', out, '--model', modelPaths.model]);
    expect(r.code).toBe(0);
    const url = await brokerProcess(cleanups);
    const stderr: string[] = [];
    for (let k = 1; k <= 4; k++) {
      const child = spawn(firmwareBinary('mesh-llm-node'), ['--id', `shard-${k}`, '--shard', path.join(out, `node-${k}.shard`), '--shard-load', k <= 2 ? 'copy' : 'map', '--broker', url], { stdio: ['pipe', 'ignore', 'pipe'] });
      child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
      cleanups.push(() => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGTERM')))));
    }
    const prompt = 'A small robot found a shell';
    const g = await runCli(['generate', '--broker', url, '--nodes', '4', '--quant', 'int8', '--prompt', prompt, '--steps', '24', '--temperature', '0', '--json'], { timeoutMs: 90000 });
    expect(g.stderr).not.toMatch(/error/);
    expect(g.code).toBe(0);
    const engine = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate({ prompt, steps: 24, temperature: 0, topP: 0.9, seed: 1n });
    expect((JSON.parse(g.stdout) as { tokens: number[] }).tokens).toEqual(engine.tokens);
    // f32 weights are not in an int8 shard: the assignment is refused, in words
    const f = await runCli(['generate', '--broker', url, '--nodes', '4', '--quant', 'f32', '--prompt', prompt, '--steps', '4', '--temperature', '0'], { timeoutMs: 60000 });
    expect(f.code).not.toBe(0);
    expect(f.stderr + stderr.join('')).toMatch(/this node's shard holds int8 weights, not f32/);
  });

  test('a damaged shard stops the node before it connects, with the reason', async () => {
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    const { firmwareBinary } = require('../lib/firmware/build') as typeof import('../lib/firmware/build');
    const c = Checkpoint.open(modelPaths.model);
    const bad = buildShard(c, 1, 4, 'int8');
    c.close();
    bad[200] ^= 1;
    const file = path.join(dir, 'mqtt-bad.shard');
    fs.writeFileSync(file, bad);
    const r = spawnSync(firmwareBinary('mesh-llm-node'), ['--id', 'n1', '--shard', file, '--broker', 'mqtt://127.0.0.1:1'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/shard .*mqtt-bad\.shard refused: checksum mismatch/);
  });
});

describe('generate --mesh N --native --shards DIR and node --native --shard PATH: native nodes on their shards alone', () => {
  const ONCE = ['--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--model', modelPaths.model];
  let shards: string;
  beforeAll(async () => {
    shards = path.join(dir, 'generate-shards');
    const r = await runCli(['shard', '--nodes', '4', '--quant', 'int8', '--out', shards, '--model', modelPaths.model]);
    expect(r.code).toBe(0);
  });

  test('four native nodes on int8 shards print what llama2.c\'s int8 runner printed (golden once-greedy-64.q8.txt)', async () => {
    const { goldenFile } = require('../lib/llm/golden') as typeof import('../lib/llm/golden');
    const { Engine } = require('../lib/llm/engine') as typeof import('../lib/llm/engine');
    const r = await runCli(['generate', '--mesh', '4', '--native', '--shards', shards, '--quant', 'int8', ...ONCE, '--json'], { timeoutMs: 90000 });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: number[]; text: string };
    expect(out.text).toBe(fs.readFileSync(goldenFile('once-greedy-64', 'q8.txt'), 'utf8').replace(/\n$/, ''));
    const engine = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n });
    expect(out.tokens).toEqual(engine.tokens);
    // each node said it loaded its shard's heads, not the checkpoint's
    expect(r.stderr).toMatch(/\[node-3\] info: assignment \S+: heads \[4,5\] kv \[2\], int8 weights 11520 bytes/);
  });

  test.each(['int4', 'int2'] as const)('four native nodes on %s shards (packed codes used in place) give the %s engine\'s tokens', async (format) => {
    const { Engine } = require('../lib/llm/engine') as typeof import('../lib/llm/engine');
    const out = path.join(dir, `generate-${format}`);
    expect((await runCli(['shard', '--nodes', '4', '--quant', format, '--out', out, '--model', modelPaths.model])).code).toBe(0);
    const r = await runCli(['generate', '--mesh', '4', '--native', '--shards', out, '--quant', format, ...ONCE, '--json'], { timeoutMs: 90000 });
    expect(r.code).toBe(0);
    const engine = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: format }).generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n });
    expect((JSON.parse(r.stdout) as { tokens: number[] }).tokens).toEqual(engine.tokens);
    const int8 = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate({ prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n });
    expect(engine.tokens).not.toEqual(int8.tokens); // the format changes the story, so the comparison can tell formats apart
    expect(r.stderr).toMatch(new RegExp(`\\[node-1\\] info: assignment \\S+: heads \\[0,1\\] kv \\[0\\], ${format} weights ${readShardHeader(fs.readFileSync(path.join(out, 'node-1.shard'))).payloadBytes} bytes`));
  });

  test('version 1 shards (before int4 and int2) still load and give the same tokens; a version 3 shard is refused, naming the versions read', async () => {
    const { goldenFile } = require('../lib/llm/golden') as typeof import('../lib/llm/golden');
    const v1 = path.join(dir, 'version-1-shards');
    fs.mkdirSync(v1, { recursive: true });
    const asVersion = (file: Buffer, version: number) => {
      const b = Buffer.from(file);
      b.writeUInt16LE(version, 4);
      b.writeUInt32LE(0, 52);
      b.writeUInt32LE(crc32(b), 52);
      return b;
    };
    for (let k = 1; k <= 4; k++) fs.writeFileSync(path.join(v1, `node-${k}.shard`), asVersion(fs.readFileSync(path.join(shards, `node-${k}.shard`)), 1));
    expect(readShardHeader(fs.readFileSync(path.join(v1, 'node-1.shard')))).toMatchObject({ version: 1, format: 'int8' });
    const r = await runCli(['generate', '--mesh', '4', '--native', '--shards', v1, '--quant', 'int8', ...ONCE, '--json'], { timeoutMs: 90000 });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { text: string }).text).toBe(fs.readFileSync(goldenFile('once-greedy-64', 'q8.txt'), 'utf8').replace(/\n$/, ''));
    const v3 = path.join(dir, 'version-3.shard');
    fs.writeFileSync(v3, asVersion(fs.readFileSync(path.join(shards, 'node-1.shard')), 3));
    const bad = await runCli(['node', '--native', '--id', 'node-1', '--shard', v3, '--broker', 'mqtt://127.0.0.1:1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/shard .*version-3\.shard refused: shard version 3 \(this build reads versions 1 to 2; cut it again with mesh-llm shard\)/);
    expect(() => readShardHeader(fs.readFileSync(v3))).toThrow(/shard version 3 \(this build reads versions 1 to 2/);
    // a version 1 shard with int4's code: version 1 had no int4
    const c = Checkpoint.open(modelPaths.model);
    const int4v1 = asVersion(buildShard(c, 1, 4, 'int4'), 1);
    c.close();
    const f = path.join(dir, 'int4-version-1.shard');
    fs.writeFileSync(f, int4v1);
    const old = await runCli(['node', '--native', '--id', 'node-1', '--shard', f, '--broker', 'mqtt://127.0.0.1:1']);
    expect(old.code).toBe(2);
    expect(old.stderr).toMatch(/refused: unknown weight format code 2 in a version 1 shard/);
  });

  test('two nodes\' shards swapped: the run stops with the node and the heads it holds named', async () => {
    const swapped = path.join(dir, 'swapped-shards');
    fs.mkdirSync(swapped, { recursive: true });
    for (let k = 1; k <= 4; k++) fs.copyFileSync(path.join(shards, `node-${k}.shard`), path.join(swapped, `node-${k === 1 ? 2 : k === 2 ? 1 : k}.shard`));
    const r = await runCli(['generate', '--mesh', '4', '--native', '--shards', swapped, '--quant', 'int8', ...ONCE], { timeoutMs: 60000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mesh-llm: error: head node node-[12] refused assignment \S+: this node's shard holds heads \[(2,3|0,1)\], not \[(0,1|2,3)\]/);
  });

  test('int8 shards asked for int4 weights: refused, naming both formats', async () => {
    const r = await runCli(['generate', '--mesh', '4', '--native', '--shards', shards, '--quant', 'int4', ...ONCE], { timeoutMs: 60000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mesh-llm: error: head node node-\d refused assignment \S+: this node's shard holds int8 weights, not int4/);
  });

  test('a folder without a shard for every node, or --shards without --native: a usage error before anything starts', async () => {
    const few = await runCli(['generate', '--mesh', '5', '--native', '--shards', shards, ...ONCE]);
    expect(few.code).toBe(2);
    expect(few.stderr).toMatch(/--shards .*: no node-5\.shard there \(cut them with mesh-llm shard --nodes 5/);
    const js = await runCli(['generate', '--mesh', '4', '--shards', shards, ...ONCE]);
    expect(js.code).toBe(2);
    expect(js.stderr).toMatch(/--shards DIR is for the native head nodes --mesh N --native starts/);
  });

  test('mesh-llm node --native --shard takes a folder (its ID.shard) or a file, and the gateway on the broker gets the int8 tokens', async () => {
    const { spawn } = require('node:child_process') as typeof import('node:child_process');
    const { brokerProcess } = require('./support/radio') as typeof import('./support/radio');
    const url = await brokerProcess(cleanups);
    const lines: string[] = [];
    for (let k = 1; k <= 4; k++) {
      const shard = k % 2 ? shards : path.join(shards, `node-${k}.shard`); // odd nodes: the folder; even: the file
      const child = spawn(process.execPath, [require('./support/cli').binPath, 'node', '--native', '--id', `node-${k}`, '--shard', shard, '--broker', url], { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr?.on('data', (d: Buffer) => lines.push(d.toString()));
      cleanups.push(() => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGTERM')))));
    }
    const g = await runCli(['generate', '--broker', url, '--nodes', '4', '--quant', 'int8', ...ONCE, '--json'], { timeoutMs: 90000 });
    expect(g.code).toBe(0);
    const { goldenFile } = require('../lib/llm/golden') as typeof import('../lib/llm/golden');
    expect((JSON.parse(g.stdout) as { text: string }).text).toBe(fs.readFileSync(goldenFile('once-greedy-64', 'q8.txt'), 'utf8').replace(/\n$/, ''));
    const bad = await runCli(['node', '--native', '--id', 'node-9', '--shard', shards, '--broker', url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no node-9\.shard in that folder/);
  });
});

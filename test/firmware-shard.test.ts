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
])('mesh-llm shard --nodes %i --quant %s: one file per node, its weights the bytes mesh-llm plan counts', async (nodes, quant) => {
  const out = path.join(dir, `cli-${nodes}-${quant}`);
  const r = await runCli(['shard', '--nodes', String(nodes), '--quant', quant, '--out', out, '--model', modelPaths.model, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const shards = (JSON.parse(r.stdout) as ShardJson).shards;
  expect(fs.readdirSync(out).sort()).toEqual(shards.map((s) => `node-${s.node}.shard`).sort());
  const plan = await runCli(['plan', '--model', modelPaths.model, '--nodes', String(nodes), '--quant', 'int8', '--json']);
  const perNode = (JSON.parse(plan.stdout) as PlanJson).perNode;
  const c = Checkpoint.open(modelPaths.model);
  const g = geometry(c.info.config);
  c.close();
  shards.forEach((s, i) => {
    expect(s.heads).toEqual(perNode[i].heads);
    expect(fs.statSync(s.file).size).toBe(s.bytes);
    const h = readShardHeader(fs.readFileSync(s.file));
    expect(h).toMatchObject({ node: i + 1, nodes, encoding: quant, heads: s.heads, payloadBytes: s.payloadBytes });
    expect(s.bytes - s.payloadBytes).toBe(h.headerBytes);
    // plan counts int8 storage (a byte per weight and a float32 scale per 32); float32 is 4 bytes a weight
    const weights = g.nLayers * (s.heads.length + 2 * s.kvHeads.length) * g.headSize * g.dim;
    expect(s.payloadBytes).toBe(quant === 'int8' ? perNode[i].weightBytes : 4 * weights);
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
    expect(h).toMatchObject({ version: 1, heads: [2, 3], kvHeads: [1], groupSize: 32, model: { dim: g.dim, nLayers: g.nLayers, seqLen: g.seqLen } });
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
  test('four nodes, each on its shard instead of the checkpoint, give the int8 engine\'s tokens; asked for f32 weights they refuse, saying why', async () => {
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
      const child = spawn(firmwareBinary('mesh-llm-node'), ['--id', `shard-${k}`, '--shard', path.join(out, `node-${k}.shard`), '--broker', url], { stdio: ['pipe', 'ignore', 'pipe'] });
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

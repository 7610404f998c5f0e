/**
 * The join record (lib/firmware/join-record.ts, `mesh-llm provision`, firmware/core/join_record.cpp):
 * what an ESP32 head node reads from its join partition to join its radio mesh. The host's
 * radio node loads it from a file (--join FILE) in place of the key, mesh id and the plan the
 * simulated channel would tell it, joins, and computes its heads; a damaged, newer or other
 * node's record is refused with the reason.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { Engine } from '../lib/llm/engine';
import { decodeJoinRecord } from '../lib/firmware/join-record';
import { nodeJoinPlan } from '../lib/radio/sim-socket';
import { generateOverRadio } from '../gateway-bridge/run';
import { NativeRadioNodes } from '../gateway-bridge/native-radio';
import { SimulatedRadioMesh } from '../gateway-bridge/radio-mesh';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { modelPaths } from './support/fixtures';
import { ONCE_OPTIONS, bridgePaths, brokerProcess, quiet } from './support/radio';
import { runCli } from './support/cli';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-join-test-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const RADIO = ['--region', 'EU868', '--sf', '7', '--bw', '125', '--channels', '1'];
const mesh = () => new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes: 4, quant: 'int8', region: 'EU868', sf: 7, bandwidthKHz: 125, channels: 1, loss: 0, key: KEY, radioMeshId: 1, nativeAddresses: new Set([1, 2, 3, 4]) });

async function provision(node: number, extra: string[] = []): Promise<string> {
  const out = path.join(dir, `join-${node}${extra.length ? '-x' : ''}.bin`);
  const r = await runCli(['provision', '--node', String(node), '--nodes', '4', '--key', KEY.toString('hex'), '--mesh-id', '1', '--quant', 'int8', ...RADIO, '--model', modelPaths.model, '--out', out, ...extra]);
  expect(r.code).toBe(0);
  return out;
}

/** A record with one change and its CRC made right again. */
function withChange(file: string, change: (b: Buffer) => void, name: string): string {
  const b = Buffer.from(fs.readFileSync(file));
  change(b);
  b.writeUInt32LE(0, 28);
  b.writeUInt32LE(crc32(b), 28);
  const p = path.join(dir, name);
  fs.writeFileSync(p, b);
  return p;
}

test('mesh-llm provision writes the mesh id, address, network key and the very plan the simulated channel welcomes that node with', async () => {
  const out = path.join(dir, 'cli.bin');
  const r = await runCli(['provision', '--node', '3', '--nodes', '4', '--key', KEY.toString('hex'), '--mesh-id', '9', ...RADIO, '--model', modelPaths.model, '--out', out, '--json']);
  expect(r.code).toBe(0);
  const printed = JSON.parse(r.stdout) as { bytes: number; address: number; heads: number[] };
  const rec = decodeJoinRecord(fs.readFileSync(out));
  expect(rec).toMatchObject({ version: 1, meshId: 9, address: 3 });
  expect(rec.key).toEqual(KEY);
  const m = mesh();
  expect(rec.plan).toEqual(nodeJoinPlan(m.layout, m.g, 3, m.infos[2].heads));
  expect(printed).toMatchObject({ bytes: fs.statSync(out).size, address: 3, heads: [4, 5] });
  const bad = await runCli(['provision', '--node', '5', '--nodes', '4', '--key', KEY.toString('hex'), '--out', out]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--node 5 is not one of the mesh's 4 nodes/);
  const badKey = await runCli(['provision', '--node', '1', '--key', 'abc', '--out', out]);
  expect(badKey.code).toBe(2);
  expect(badKey.stderr).toMatch(/--key: expected 32 hexadecimal digits/);
});

describe('the native radio node on a join record (--join FILE)', () => {
  let natives: NativeRadioNodes;
  let m: SimulatedRadioMesh;
  beforeAll(async () => {
    m = mesh();
    natives = await NativeRadioNodes.start({ mesh: m, modelPath: modelPaths.model, addresses: [1, 3, 4] });
    cleanups.push(() => natives.close());
  });

  test('a damaged record, a newer version, another node\'s record: each refused before joining, with the reason', async () => {
    const good = await provision(2);
    const flipped = path.join(dir, 'flipped.bin');
    const b = fs.readFileSync(good);
    b[40] ^= 1;
    fs.writeFileSync(flipped, b);
    await expect(natives.startNode(2, natives.shardPath(2), flipped)).rejects.toThrow(/exited with code 1 before joining: .*join record .*flipped\.bin refused: checksum mismatch \(CRC-32 [0-9a-f]+, the record says [0-9a-f]+\): the record is damaged/);
    await expect(natives.startNode(2, natives.shardPath(2), withChange(good, (x) => x.writeUInt16LE(2, 4), 'v2.bin'))).rejects.toThrow(/refused: join record version 2 \(this build reads 1\)/);
    await expect(natives.startNode(2, natives.shardPath(2), await provision(3, ['--mesh-id', '1']))).rejects.toThrow(/refused: it is node 3's; the shard is node 2's/);
  });

  test('node 2 joined from its provisioned record and the TypeScript plan and key work together: the int8 engine\'s tokens', async () => {
    await natives.startNode(2, natives.shardPath(2), await provision(2));
    const generate = { ...ONCE_OPTIONS, steps: 24 };
    const cleanupsBroker: (() => Promise<unknown>)[] = [];
    cleanups.push(async () => { for (const c of cleanupsBroker) await c(); });
    const result = await generateOverRadio({ mesh: m, link: new SimulatedChannelLink(m.attachGatewayRadio()), brokerUrl: await brokerProcess(cleanupsBroker), meshId: 'join-radio', ...bridgePaths, generate, log: quiet });
    const engine = await Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant: 'int8' }).generate(generate);
    expect(result.tokens).toEqual(engine.tokens);
    expect(natives.server.counters.refused).toBe(0);
  });
});

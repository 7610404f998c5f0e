/**
 * The native head node (firmware/core built for the host with firmware/host): its wire
 * constants and its schema checks are cross-checked with the TypeScript definitions, and its
 * command line refuses bad input clearly. The mesh tests (mesh.test.ts, steering-mesh.test.ts)
 * run it end to end next to the node.js head node.
 */
import { execFile, spawnSync } from 'node:child_process';
import { firmwareBinary } from '../lib/firmware/build';
import { INT8_GROUP_SIZE } from '../lib/llm/head';
import { BODY_FIELDS, BODY_HEADER_BYTES, BODY_MAGIC, BODY_VERSION, BodyType, ENCODING_CODES } from '../lib/link/body';
import { ControlKind, PROTOCOL_VERSION, parseControl, topicsFor } from '../lib/mesh/wire';
import * as radio from '../lib/radio/frame';
import { modelPaths } from './support/fixtures';

const binary = (): string => firmwareBinary('mesh-llm-node');

function run(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(binary(), args, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    if (input !== undefined) child.stdin?.end(input);
  });
}

test('the native node is built (npm run build compiles it with g++)', () => {
  expect(() => binary()).not.toThrow();
});

test('its wire constants, topic tree, head-link body table and radio header table are those of lib/mesh/wire.ts, lib/link/body.ts and lib/radio/frame.ts', async () => {
  const r = await run(['--wire']);
  expect(r.code).toBe(0);
  const t = topicsFor('M');
  const template = (topic: string) => topic.replace('mesh-llm/M/', 'mesh-llm/{mesh}/').replace(/\/N$/, '/{node}');
  expect(JSON.parse(r.stdout)).toEqual({
    protocol: PROTOCOL_VERSION,
    body: {
      magic: BODY_MAGIC,
      version: BODY_VERSION,
      headerBytes: BODY_HEADER_BYTES,
      types: { broadcast: BodyType.Broadcast, result: BodyType.Result, steering: BodyType.Steering },
      encodings: ENCODING_CODES,
      fields: BODY_FIELDS,
    },
    radio: {
      version: radio.FRAME_VERSION,
      headerBytes: radio.RADIO_HEADER_BYTES,
      micBytes: radio.MIC_BYTES,
      defaultMaxFrameBytes: radio.DEFAULT_MAX_FRAME_BYTES,
      maxFragments: radio.MAX_FRAGMENTS,
      gatewayAddress: radio.GATEWAY_ADDRESS,
      broadcastAddress: radio.BROADCAST_ADDRESS,
      networkKeyBytes: radio.NETWORK_KEY_BYTES,
      kinds: radio.FRAME_KINDS,
      fields: radio.RADIO_HEADER_FIELDS,
    },
    int8GroupSize: INT8_GROUP_SIZE,
    topics: {
      broadcast: template(t.broadcast),
      result: template(t.result('N')),
      status: template(t.status('N')),
      assign: template(t.assign('N')),
      session: template(t.session),
      ack: template(t.ack('N')),
      telemetry: template(t.telemetry('N')),
      errors: template(t.errors),
      steer: template(t.steer('N')),
    },
  });
});

/** Valid messages of the kinds a node receives, and variations of each: wrong types, missing and extra keys, bounds. */
function corpus(kind: 'assignment' | 'session' | 'steering'): string[] {
  const valid: Record<typeof kind, Record<string, unknown>> = {
    assignment: { protocol: 1, assignment: 'a-1', slot: 3, heads: [0, 5], weights: 'int8', transport: 'f32', model: { dim: 64, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512 } },
    session: { protocol: 1, op: 'end', session: 7, assignment: 'a-1' },
    steering: { protocol: 1, id: 's1', heads: [2], layer: 3, alpha: 0.4, channels: [{ name: 'soundDb', reading: -0.5, share: [0.1, -2, 3e-3, 0, 1, 2, 3, 4] }] },
  };
  const wrong: unknown[] = [null, true, 'x', '', 'x'.repeat(65), 0, -1, 1.5, 65535, 65536, 4294967296, 1e300, [], [1, 1], [-1], [0.5], ['a'], {}, { a: 1 }];
  const base = valid[kind];
  const out: string[] = [JSON.stringify(base), '', '{', '[]', 'null', '"x"', '{"protocol":1,}', '{"protocol":01}', ' {"a":1} x', '\u0000', JSON.stringify({ ...base, extra: 1 })];
  const vary = (obj: Record<string, unknown>, wrap: (o: Record<string, unknown>) => Record<string, unknown>) => {
    for (const key of Object.keys(obj)) {
      const { [key]: _removed, ...rest } = obj;
      out.push(JSON.stringify(wrap(rest)));
      for (const w of wrong) out.push(JSON.stringify(wrap({ ...obj, [key]: w })));
    }
  };
  vary(base, (o) => o);
  if (kind === 'assignment') vary(base.model as Record<string, unknown>, (m) => ({ ...base, model: m }));
  if (kind === 'steering') {
    const channel = (base.channels as Record<string, unknown>[])[0];
    vary(channel, (c) => ({ ...base, channels: [c] }));
    out.push(JSON.stringify({ ...base, channels: [] }), JSON.stringify({ ...base, channels: [{ ...channel, name: 'bad name' }] }), JSON.stringify({ ...base, alpha: -1001 }));
  }
  return out;
}

for (const kind of ['assignment', 'session', 'steering'] as const) {
  test(`it accepts and refuses exactly the ${kind} messages ajv does (schemas/${kind}.json compiled into the firmware)`, async () => {
    const lines = corpus(kind);
    const r = await run(['--validate', kind], lines.map((l) => l.replace(/\n/g, ' ')).join('\n') + '\n');
    expect(r.code).toBe(0);
    const verdicts = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; error?: string });
    expect(verdicts).toHaveLength(lines.length);
    let refused = 0;
    lines.forEach((line, i) => {
      let ajvError: string | null = null;
      try {
        parseControl(kind as ControlKind, line);
      } catch (e) {
        ajvError = (e as Error).message;
      }
      const native = verdicts[i];
      expect({ line, ok: native.ok }).toEqual({ line, ok: ajvError === null });
      if (ajvError !== null) {
        refused++;
        // the same kind of refusal: not JSON, or the schema file named
        expect(native.error?.split(':')[0]).toBe((ajvError as string).split(':')[0]);
      }
    });
    expect(refused).toBeGreaterThan(lines.length / 2);
  });
}

describe('command line', () => {
  test('bad options are refused with exit code 2 and a sentence', async () => {
    const cases: [string[], RegExp][] = [
      [['--model', modelPaths.model], /--id ID is required/],
      [['--id', 'n1'], /--model PATH is required/],
      [['--id', 'bad id', '--model', modelPaths.model], /node id "bad id" must be 1-64 characters/],
      [['--id', 'n1', '--model', modelPaths.model, '--broker', 'ws://x:1'], /must start with mqtt:\/\/ or tcp:\/\//],
      [['--id', 'n1', '--model', modelPaths.model, '--heartbeat', '5'], /--heartbeat must be/],
      [['--id', 'n1', '--model', '/nonexistent/model.bin'], /nonexistent/],
      [['--id', 'n1', '--model', modelPaths.model, '--frobnicate', '1'], /unknown option --frobnicate/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
    }
  });

  test('a broker that is not there: exit code 1 naming the broker', async () => {
    const r = await run(['--id', 'n1', '--model', modelPaths.model, '--broker', 'mqtt://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot connect to MQTT broker mqtt:\/\/127\.0\.0\.1:1/);
  });

  test('it compiles without warnings under -Wall -Wextra', () => {
    const { firmwareTargets, CXXFLAGS, compiler, writeSchemaHeader } = require('../lib/firmware/build') as typeof import('../lib/firmware/build');
    const path = require('node:path') as typeof import('node:path');
    const header = writeSchemaHeader();
    // every target's sources, checked once per set of extra flags (targets share the core)
    const groups = new Map<string, { targets: string[]; flags: string[]; sources: Set<string> }>();
    for (const t of firmwareTargets()) {
      const flags = [...(t.defines ?? []).map((d) => `-D${d}`), ...(t.includes ?? []).flatMap((d) => ['-I', d])];
      const g = groups.get(flags.join(' ')) ?? { targets: [], flags, sources: new Set<string>() };
      g.targets.push(t.name);
      t.sources.forEach((f) => g.sources.add(f));
      groups.set(flags.join(' '), g);
    }
    for (const g of groups.values()) {
      const sources = [...g.sources];
      const r = spawnSync(compiler(), [...CXXFLAGS, ...g.flags, '-fsyntax-only', '-I', path.dirname(sources[0]), '-I', path.dirname(header), ...sources], { encoding: 'utf8' });
      expect({ targets: g.targets, status: r.status, stderr: r.stderr }).toEqual({ targets: g.targets, status: 0, stderr: '' });
    }
  });
});

/** The mesh wire format: tensor frames and JSON control messages, with no broker involved. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { transportCodec } from '../lib/llm/engine';
import { geometry } from '../lib/llm/config';
import { INT8_GROUP_SIZE } from '../lib/llm/head';
import { headOutputGroupSize } from '../lib/llm/engine';
import { BODY_HEADER_BYTES, BodyError, BodyHeader, BodyType, decodeBody, encodeBody } from '../lib/link/body';
import { CONTROL_KINDS, ControlMessageError, encodeControl, parseControl, schemaDir, topicsFor } from '../lib/mesh/wire';

const header: BodyHeader = { type: BodyType.Broadcast, encoding: 'f32', sender: 0, session: 0xdeadbeef, seq: 77, pos: 511, layer: 4 };

function vector(n: number, seed = 1): Float32Array {
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    v[i] = (s / 2147483648 - 0.5) * 6;
  }
  return v;
}

describe('tensor frames', () => {
  test('a float32 frame round-trips its header and values exactly', () => {
    const x = vector(64);
    const buf = encodeBody(header, x);
    expect(buf.length).toBe(BODY_HEADER_BYTES + 64 * 4);
    const f = decodeBody(buf);
    expect({ ...f, values: undefined }).toEqual({ ...header, values: undefined });
    expect(f.values).toEqual(x);
  });

  test('int8 frames decode to exactly what transportCodec gives (broadcast and head-output group sizes)', () => {
    const g = geometry({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
    const x = vector(64, 3);
    const expectedBroadcast = x.slice();
    transportCodec.broadcast(expectedBroadcast);
    const b = decodeBody(encodeBody({ ...header, encoding: 'int8' }, x, INT8_GROUP_SIZE));
    expect(b.encoding).toBe('int8');
    expect(b.values).toEqual(expectedBroadcast);

    const y = vector(24, 5); // three heads of 8
    const expectedHeads = y.slice();
    transportCodec.headOutputs(g, expectedHeads);
    const r = decodeBody(encodeBody({ ...header, type: BodyType.Result, encoding: 'int8', sender: 3 }, y, headOutputGroupSize(g)));
    expect(r.values).toEqual(expectedHeads);
    expect(r.sender).toBe(3);
    expect(encodeBody({ ...header, encoding: 'int8' }, x, INT8_GROUP_SIZE).length).toBe(BODY_HEADER_BYTES + 2 * 4 + 64);
  });

  test('malformed bodies are rejected with a reason naming what is wrong', () => {
    const good = encodeBody(header, vector(64));
    const mutate = (f: (b: Buffer) => Buffer | void): Buffer => {
      const b = Buffer.from(good);
      return f(b) ?? b;
    };
    const cases: [string, Buffer, RegExp][] = [
      ['empty', Buffer.alloc(0), /shorter than the 24-byte header/],
      ['text', Buffer.from('hello, mesh'), /shorter than the 24-byte header/],
      ['magic', mutate((b) => void b.writeUInt16LE(0x1234, 0)), /bad magic/],
      ['version', mutate((b) => void b.writeUInt8(9, 2)), /unsupported body version 9/],
      ['type', mutate((b) => void b.writeUInt8(7, 3)), /unknown body type 7/],
      ['encoding', mutate((b) => void b.writeUInt8(5, 4)), /unknown encoding 5/],
      ['reserved', mutate((b) => void b.writeUInt8(1, 5)), /reserved byte/],
      ['truncated', good.subarray(0, good.length - 1), /implies/],
      ['extra bytes', Buffer.concat([good, Buffer.alloc(4)]), /implies/],
      ['count 0', mutate((b) => void b.writeUInt16LE(0, 20)), /no values/],
      ['f32 with group size', mutate((b) => void b.writeUInt16LE(32, 22)), /group size 32/],
      ['NaN', mutate((b) => void b.writeFloatLE(NaN, BODY_HEADER_BYTES + 8)), /value 2 is not finite/],
      ['Infinity', mutate((b) => void b.writeFloatLE(-Infinity, BODY_HEADER_BYTES)), /value 0 is not finite/],
      ['int8 group size 0', mutate((b) => void (b.writeUInt8(1, 4), b.writeUInt16LE(0, 22))), /int8 body with group size 0/],
    ];
    for (const [name, buf, reason] of cases) {
      let error: unknown;
      try {
        decodeBody(buf);
      } catch (e) {
        error = e;
      }
      expect({ name, error: error instanceof BodyError ? error.message : String(error) }).toEqual({ name, error: expect.stringMatching(reason) });
    }
  });
});

describe('control messages', () => {
  const valid = {
    status: { protocol: 1, node: 'node-1', state: 'ready', pid: 42, assignment: 'a1', heads: [0, 1], kvHeads: [0], weights: 'f32', weightBytes: 1024 },
    assignment: { protocol: 1, assignment: 'a1', slot: 1, heads: [0, 1], weights: 'int8', transport: 'int8', model: { dim: 64, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512 } },
    session: { protocol: 1, op: 'start', session: 7, assignment: 'a1' },
    ack: { protocol: 1, node: 'node-1', kind: 'session', id: 'start:7', ok: true },
    telemetry: { protocol: 1, node: 'node-1', uptimeMs: 10, rssBytes: 1, weightBytes: 2, cacheBytes: 3, sessions: 1, framesIn: 4, framesOut: 4, dropped: 0 },
    token: { protocol: 1, session: 7, pos: 1, token: 403, piece: ' Once' },
    error: { protocol: 1, source: 'gateway', topic: 'mesh-llm/x/result/n', reason: 'bad magic' },
    steering: { protocol: 1, id: 's1', heads: [2], layer: 3, alpha: 0.3, channels: [{ name: 'soundDb', reading: 1, share: [0.5, -0.25, 0, 0, 0, 0, 0, 1] }] },
    baseline: { protocol: 1, node: 'node-1', at: 1764140000000, channels: { soundDb: { median: 38.5, mad: 1.2, samples: 60 } } },
    'sim-control': { protocol: 1, node: 'node-2', channel: 'vibrationG', value: 1.5 },
    job: { protocol: 1, job: '5f0c1a2e-0d4b-4c39-9a57-2f1e8b7c6d5a', state: 'running', position: 6, token: { pos: 6, token: 403, piece: ' Once' } },
    gateway: { protocol: 1, state: 'online', jobs: true, pid: 4242 },
    event: { protocol: 1, kind: 'token', at: 1764140000000, run: 'r1', session: 7, pos: 6, token: 403, piece: ' Once', sampled: true, probability: 0.5, kl: 0.01, node: 'node-1' },
  } as const;

  test('every control kind has a schema in schemas/ and accepts a well-formed message', () => {
    for (const kind of CONTROL_KINDS) {
      expect(fs.existsSync(path.join(schemaDir(), `${kind}.json`))).toBe(true);
      expect(parseControl(kind, JSON.stringify(valid[kind]))).toEqual(valid[kind]);
      expect(JSON.parse(encodeControl(kind, valid[kind] as never))).toEqual(valid[kind]);
    }
  });

  test('non-JSON and schema-invalid messages are rejected with the schema and the failing place', () => {
    const bad: [keyof typeof valid, string, RegExp][] = [
      ['status', '{"protocol":1,"node":"node-1","state":"dancing"}', /status.json: \/state must be equal to one of the allowed values/],
      ['status', '{"protocol":1,"node":"../../etc","state":"online"}', /\/node must match pattern/],
      ['assignment', '{"protocol":1,"assignment":"a","slot":0,"heads":[],"weights":"f32","transport":"f32","model":{}}', /assignment.json: \/slot must be >= 1/],
      ['assignment', JSON.stringify({ ...valid.assignment, heads: [1, 1] }), /\/heads must NOT have duplicate items/],
      ['session', '{"protocol":1,"op":"explode","session":1,"assignment":"a"}', /session.json: \/op/],
      ['ack', '[]', /ack.json: \(root\) must be object/],
      ['telemetry', '{}', /telemetry.json: \(root\) must have required property/],
      ['token', JSON.stringify({ ...valid.token, extra: 1 }), /must NOT have additional properties/],
      ['error', 'not json at all', /error message is not JSON/],
      ['status', JSON.stringify({ ...valid.status, protocol: 2 }), /\/protocol must be equal to constant/],
      ['baseline', JSON.stringify({ ...valid.baseline, channels: { soundDb: { median: 1, mad: 0, samples: 3 } } }), /baseline.json: \/channels\/soundDb\/mad must be > 0/],
      ['event', JSON.stringify({ ...valid.event, kind: 'dance' }), /event.json: \/kind/],
      ['event', JSON.stringify({ ...valid.event, probability: 1.5 }), /event.json: \/probability must be <= 1/],
      ['event', JSON.stringify({ protocol: 1, kind: 'gather', at: 1, session: 1, pos: 0, layer: 0, ms: 1 }), /event.json: \(root\) must have required property 'nodes'/],
      ['baseline', JSON.stringify({ ...valid.baseline, channels: { smell: { median: 1, mad: 1, samples: 3 } } }), /baseline.json: \/channels must be equal to one of the allowed values|property name must be valid/],
    ];
    for (const [kind, text, reason] of bad) {
      let error: unknown;
      try {
        parseControl(kind, text);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ControlMessageError);
      expect((error as Error).message).toMatch(reason);
    }
  });

  test('a sender cannot emit a message its own schema rejects', () => {
    expect(() => encodeControl('session', { protocol: 1, op: 'start', session: 0, assignment: 'a' })).toThrow(/session must be >= 1/);
  });
});

describe('topic tree', () => {
  test('one mesh id, one subtree', () => {
    const t = topicsFor('lab');
    expect([t.broadcast, t.result('node-1'), t.status('node-1'), t.assign('node-1'), t.session, t.ack('node-1'), t.telemetry('node-1'), t.tokens, t.errors]).toEqual([
      'mesh-llm/lab/broadcast',
      'mesh-llm/lab/result/node-1',
      'mesh-llm/lab/status/node-1',
      'mesh-llm/lab/assign/node-1',
      'mesh-llm/lab/session',
      'mesh-llm/lab/ack/node-1',
      'mesh-llm/lab/telemetry/node-1',
      'mesh-llm/lab/tokens',
      'mesh-llm/lab/errors',
    ]);
    expect(() => topicsFor('a/b')).toThrow(/mesh id/);
    expect(() => topicsFor('#')).toThrow(/mesh id/);
  });
});

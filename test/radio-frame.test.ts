import { geometry } from '../lib/llm/config';
import { int8RoundTrip } from '../lib/llm/quant';
import { BodyType, GATEWAY_SENDER, decodeBody, encodeBody } from '../lib/link/body';
import { aesCmac, cmacSubkeys } from '../lib/radio/cmac';
import {
  BROADCAST_ADDRESS, DEFAULT_MAX_FRAME_BYTES, Frame, FrameReceiver, FrameSender, GATEWAY_ADDRESS, MIC_BYTES, RADIO_HEADER_BYTES, RADIO_HEADER_FIELDS, ReceiveEvent,
  MAX_COUNTER_GAP, REPLAY_SAVE_BLOCK, decodeNack, downlinkKey, encodeNack, fragmentCapacity, keyringOf, messageFrameBytes, nackFrameBytes, nodeKeyring, openFrame, sealFrame, uplinkKey,
} from '../lib/radio/frame';
import { RadioStateFile } from '../lib/radio/state';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BodyEncoding, meshEncodings } from '../lib/radio/mac';
import { MODEL_PRESETS } from '../lib/radio/presets';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KEY = hex('000102030405060708090a0b0c0d0e0f');
const MESH = 7;
const F32: BodyEncoding = { encoding: 'f32', groupSize: 0 };

/** A deterministic vector with a spread of magnitudes and signs. */
function vector(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = ((s / 2 ** 32) * 2 - 1) * (1 + (i % 7));
  }
  return v;
}

/** A head-link body of the given kind: a broadcast from the gateway, or a result signed by `sender`. */
function body(values: Float32Array, o: { seq: number; sender?: number; e?: BodyEncoding; session?: number; pos?: number; layer?: number }): Buffer {
  const e = o.e ?? F32;
  const type = o.sender ? BodyType.Result : BodyType.Broadcast;
  return encodeBody({ type, encoding: e.encoding, sender: o.sender ?? GATEWAY_SENDER, session: o.session ?? 1, seq: o.seq, pos: o.pos ?? 0, layer: o.layer ?? 0 }, values, e.groupSize);
}

/** Equal values, bit for bit except the sign of zero (an int8 0 decodes to +0 whatever the input's sign). */
function expectSameValues(got: Float32Array, expected: Float32Array): void {
  const plain = (v: Float32Array) => Array.from(v, (x) => x + 0);
  expect(plain(got)).toEqual(plain(expected));
}

function expectBody(e: ReceiveEvent): Extract<ReceiveEvent, { kind: 'body' }> {
  if (e.kind !== 'body') throw new Error(`expected a whole body, got ${JSON.stringify(e)}`);
  return e;
}

/** A deterministic permutation of 0..n-1. */
function shuffled(n: number, seed: number): number[] {
  const order = [...Array(n).keys()];
  const r = vector(n, seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(((r[i] / (1 + (i % 7)) + 1) / 2) * (i + 1)) % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

describe('AES-128-CMAC (RFC 4493 test vectors)', () => {
  const K = hex('2b7e1516 28aed2a6 abf71588 09cf4f3c');
  const M = hex('6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51 30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710');

  test('subkeys', () => {
    const { k1, k2 } = cmacSubkeys(K);
    expect(k1.toString('hex')).toBe('fbeed618357133667c85e08f7236a8de');
    expect(k2.toString('hex')).toBe('f7ddac306ae266ccf90bc11ee46d513b');
  });

  test.each([
    [0, 'bb1d6929e95937287fa37d129b756746'],
    [16, '070a16b46b4d4144f79bdd9dd04a287c'],
    [40, 'dfa66747de9ae63030ca32611497c827'],
    [64, '51f0bebf7e3b9d92fc49741779363cfe'],
  ])('example with a %i-byte message', (len, tag) => {
    expect(aesCmac(K, M.subarray(0, len)).toString('hex')).toBe(tag);
  });
});

describe('radio header', () => {
  test('the field table is the 12 bytes docs/PROTOCOL.md lists, in order, every byte covered once', () => {
    expect(RADIO_HEADER_FIELDS.map((f) => [f.name, f.offset, f.bytes])).toEqual([
      ['version', 0, 1], ['kind', 0, 1], ['meshId', 1, 1], ['source', 2, 1], ['destination', 3, 1],
      ['counter', 4, 4], ['messageNumber', 8, 2], ['fragmentIndex', 10, 1], ['fragmentCount', 11, 1],
    ]);
    const nibbles = RADIO_HEADER_FIELDS.filter((f) => 'nibble' in f).map((f) => [f.name, 'nibble' in f && f.nibble]);
    expect(nibbles).toEqual([['version', 'high'], ['kind', 'low']]);
    const covered = new Set(RADIO_HEADER_FIELDS.flatMap((f) => Array.from({ length: f.bytes }, (_, i) => f.offset + i)));
    expect([...covered].sort((a, b) => a - b)).toEqual([...Array(RADIO_HEADER_BYTES).keys()]);
  });

  test('fields sit where docs/PROTOCOL.md says, and the MIC is the first 4 bytes of the CMAC over header and fragment', () => {
    const frame = sealFrame(
      { kind: 'fragment', meshId: 0x2a, source: 3, destination: GATEWAY_ADDRESS, counter: 0x0a0b0c0d, messageNumber: 0x0102, fragmentIndex: 1, fragmentCount: 2 },
      Buffer.from([0xee, 0xff]),
      KEY,
    );
    expect(frame.subarray(0, RADIO_HEADER_BYTES + 2).toString('hex')).toBe('21' + '2a' + '03' + '00' + '0d0c0b0a' + '0201' + '01' + '02' + 'eeff');
    expect(frame.length).toBe(RADIO_HEADER_BYTES + 2 + MIC_BYTES);
    expect(frame.subarray(-4)).toEqual(aesCmac(KEY, frame.subarray(0, -4)).subarray(0, 4));
    const opened = openFrame(frame, KEY, 0x2a);
    expect(opened.ok && opened.frame).toEqual({ kind: 'fragment', meshId: 0x2a, source: 3, destination: 0, counter: 0x0a0b0c0d, messageNumber: 258, fragmentIndex: 1, fragmentCount: 2, fragment: Buffer.from([0xee, 0xff]) });
    const nack = sealFrame({ kind: 'nack', meshId: 1, source: 0, destination: 9, counter: 0, messageNumber: 0xffff, fragmentIndex: 0, fragmentCount: 1 }, Buffer.from([3, 5]), KEY);
    expect(nack.subarray(0, 1).toString('hex')).toBe('22');
  });

  test('a header field out of its range is refused when sealing, naming the field', () => {
    const h = { kind: 'fragment' as const, meshId: 1, source: 0, destination: 255, counter: 0, messageNumber: 0, fragmentIndex: 0, fragmentCount: 1 };
    expect(() => sealFrame({ ...h, messageNumber: 0x10000 }, Buffer.from([1]), KEY)).toThrow(/messageNumber 65536: expected a whole number from 0 to 65535/);
    expect(() => sealFrame({ ...h, source: 256 }, Buffer.from([1]), KEY)).toThrow(/source 256/);
    expect(() => sealFrame({ ...h, fragmentIndex: 1 }, Buffer.from([1]), KEY)).toThrow(/fragmentIndex 1/);
    expect(() => sealFrame({ ...h, fragmentCount: 256 }, Buffer.from([1]), KEY)).toThrow(/fragmentCount/);
  });
});

describe('NACK body', () => {
  test('the fragment count, then a bitmap with bit i set when fragment i is missing', () => {
    const b = encodeNack({ fragmentCount: 11, missing: [0, 4, 5, 10] });
    expect([...b]).toEqual([11, 0b00110001, 0b00000100]);
    expect(decodeNack(b)).toEqual({ fragmentCount: 11, missing: [0, 4, 5, 10] });
    expect(nackFrameBytes(11)).toBe(RADIO_HEADER_BYTES + 3 + MIC_BYTES);
    expect(nackFrameBytes(255)).toBe(RADIO_HEADER_BYTES + 33 + MIC_BYTES);
    expect(() => decodeNack(Buffer.from([11, 0]))).toThrow(/malformed NACK body of 2 bytes/);
    expect(() => decodeNack(Buffer.from([0]))).toThrow(/malformed NACK/);
  });
});

/** Every body the two models put on the radio: broadcasts [dim] and the results of each group size, in both transports. */
function modelBodies(): { name: string; n: number; encodings: BodyEncoding[] }[] {
  const out: { name: string; n: number; encodings: BodyEncoding[] }[] = [];
  const cases = [
    { model: 'stories260k', groups: [1, 2, 3, 4, 5, 6, 7, 8] },
    { model: 'tinyllama', groups: [1, 2, 4] },
  ] as const;
  for (const { model, groups } of cases) {
    const g = geometry(MODEL_PRESETS[model]);
    const [f32, int8] = [meshEncodings(g, 'f32'), meshEncodings(g, 'int8')];
    out.push({ name: `${model} broadcast`, n: g.dim, encodings: [f32.broadcast, int8.broadcast] });
    for (const heads of groups) out.push({ name: `${model} result of ${heads} head(s)`, n: heads * g.headSize, encodings: [f32.result, int8.result] });
  }
  return out;
}

test('the mesh encodes broadcasts in int8 groups of 32 and results in groups aligned to heads', () => {
  expect(meshEncodings(geometry(MODEL_PRESETS.tinyllama), 'int8')).toEqual({ broadcast: { encoding: 'int8', groupSize: 32 }, result: { encoding: 'int8', groupSize: 32 } });
  expect(meshEncodings(geometry(MODEL_PRESETS.stories260k), 'int8')).toEqual({ broadcast: { encoding: 'int8', groupSize: 32 }, result: { encoding: 'int8', groupSize: 8 } });
  expect(meshEncodings(geometry(MODEL_PRESETS.stories260k), 'f32')).toEqual({ broadcast: F32, result: F32 });
});

test('frames of a TinyLlama int8 broadcast (2328 bytes): the eleven that 214 body bytes a frame need, as even as can be: ten of 228 bytes and one of 224', () => {
  expect(fragmentCapacity(DEFAULT_MAX_FRAME_BYTES)).toBe(214);
  expect(messageFrameBytes(2328, DEFAULT_MAX_FRAME_BYTES)).toEqual([...Array(10).fill(228), 224]);
  // the int4 broadcast (1304 bytes): six of 187 body bytes and one of 182, not six full frames and a 20-byte tail
  expect(messageFrameBytes(1304, DEFAULT_MAX_FRAME_BYTES)).toEqual([...Array(6).fill(203), 198]);
  expect(messageFrameBytes(168, DEFAULT_MAX_FRAME_BYTES)).toEqual([184]);
});

describe('head-link bodies come out of fragmentation and reassembly byte for byte', () => {
  // The seed's 230 bytes, and the smallest frames a region allows (EU868 SF10-12: 64 bytes).
  const sizes = [DEFAULT_MAX_FRAME_BYTES, 64];
  const cases = modelBodies().flatMap((t) => t.encodings.flatMap((e) => sizes.map((max) => ({ ...t, e, max }))));

  test.each(cases.map((c) => [`${c.name}, ${c.e.encoding === 'f32' ? 'f32' : `int8/${c.e.groupSize}`}, ${c.max}-byte frames`, c] as const))('%s', (_label, c) => {
    const values = vector(c.n, c.n * 31 + c.max);
    const sent = body(values, { seq: 0x12345 + c.n, sender: 5, e: c.e, session: 0xdeadbeef, pos: 300, layer: 3 });
    const node = new FrameSender({ key: KEY, meshId: MESH, source: 5, maxFrameBytes: c.max });
    const gateway = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    const msg = node.body(GATEWAY_ADDRESS, sent);
    expect(msg.messageNumber).toBe((0x12345 + c.n) & 0xffff);
    expect(msg.fragmentCount).toBe(Math.ceil(sent.length / fragmentCapacity(c.max)));
    // Fragments in a shuffled order (each frame still under the sender's next counter).
    const order = shuffled(msg.fragmentCount, c.n);
    const frames = node.frames(msg, order);
    expect(frames.map((f) => f.length).sort((a, b) => a - b)).toEqual(messageFrameBytes(sent.length, c.max).sort((a, b) => a - b));
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(c.max);
    const events = frames.map((f) => gateway.receive(f));
    for (const e of events.slice(0, -1)) expect(e.kind).toBe('fragment');
    const got = expectBody(events.at(-1)!);
    expect(got.body.equals(sent)).toBe(true);
    expect(got.frame).toMatchObject({ source: 5, destination: GATEWAY_ADDRESS, messageNumber: msg.messageNumber });
    expect(got.header).toMatchObject({ type: BodyType.Result, encoding: c.e.encoding, sender: 5, session: 0xdeadbeef, seq: 0x12345 + c.n, pos: 300, layer: 3, count: c.n });
    const expected = Float32Array.from(values);
    if (c.e.encoding === 'int8') int8RoundTrip(expected, c.e.groupSize);
    expectSameValues(decodeBody(got.body).values, expected);
  });
});

describe('authentication and replay', () => {
  const xb = vector(64, 3);
  function broadcastFrames(sender: FrameSender, seq = 2): Buffer[] {
    return sender.frames(sender.body(BROADCAST_ADDRESS, body(xb, { seq })));
  }

  test('every node takes a broadcast', () => {
    const frames = broadcastFrames(new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS }));
    for (const address of [1, 2, 254]) {
      const node = new FrameReceiver({ key: KEY, meshId: MESH, address });
      const got = expectBody(frames.map((f) => node.receive(f)).at(-1)!);
      expect(decodeBody(got.body).values).toEqual(xb);
    }
  });

  test('a forged or altered frame fails its MIC: a flipped bit in the header, the fragment or the MIC', () => {
    const [frame] = broadcastFrames(new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS }));
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    for (const at of [4, 8, 11, RADIO_HEADER_BYTES + 10, frame.length - 1]) {
      const altered = Buffer.from(frame);
      altered[at] ^= 0x01;
      expect(node.receive(altered)).toMatchObject({ kind: 'rejected', reason: 'mic' });
    }
    // A frame made under another key (an outsider's radio) is rejected too.
    const outsider = new FrameSender({ key: hex('ffeeddccbbaa99887766554433221100'), meshId: MESH, source: GATEWAY_ADDRESS, counter: 1000 });
    expect(node.receive(broadcastFrames(outsider)[0])).toMatchObject({ kind: 'rejected', reason: 'mic' });
    // None of the rejected frames moved the replay window.
    expect(node.replay.lastAccepted(GATEWAY_ADDRESS)).toBeUndefined();
    expect(node.receive(frame).kind).toBe('fragment');
  });

  test('a replayed counter is rejected, as LoRaWAN rejects an old FCnt', () => {
    const gateway = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS, counter: 40 });
    const frames = broadcastFrames(gateway);
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    expect(node.receive(frames[0]).kind).toBe('fragment');
    expect(node.receive(frames[0])).toMatchObject({ kind: 'rejected', reason: 'replay' });
    expect(node.receive(frames[1]).kind).toBe('body');
    // Replaying an earlier frame after later ones, or the whole message, is rejected.
    expect(node.receive(frames[0])).toMatchObject({ kind: 'rejected', reason: 'replay' });
    expect(node.receive(frames[1])).toMatchObject({ kind: 'rejected', reason: 'replay' });
    // Counters are per sender: at the gateway, node 3's counter 0 is fresh after node 2's.
    const gw = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    for (const source of [2, 3]) {
      const peer = new FrameSender({ key: KEY, meshId: MESH, source });
      expect(gw.receive(peer.frames(peer.body(GATEWAY_ADDRESS, body(xb.subarray(0, 8), { seq: 2, sender: source })))[0]).kind).toBe('body');
    }
  });

  test('frames of another mesh, another destination, a bad length, version or kind are rejected', () => {
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const other = new FrameSender({ key: KEY, meshId: MESH + 1, source: GATEWAY_ADDRESS });
    expect(node.receive(broadcastFrames(other)[0])).toMatchObject({ kind: 'rejected', reason: 'mesh' });
    const peer = new FrameSender({ key: KEY, meshId: MESH, source: 3 });
    const toGateway = peer.frames(peer.body(GATEWAY_ADDRESS, body(xb.subarray(0, 8), { seq: 0, sender: 3 })));
    // a node takes frames from the gateway only; of those, only frames to it or to every node
    expect(node.receive(toGateway[0])).toMatchObject({ kind: 'rejected', reason: 'source' });
    const gateway = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    expect(node.receive(gateway.frames(gateway.body(2, body(xb.subarray(0, 8), { seq: 0 })))[0])).toMatchObject({ kind: 'rejected', reason: 'address' });
    expect(node.receive(Buffer.alloc(16))).toMatchObject({ kind: 'rejected', reason: 'length' });
    expect(node.receive(Buffer.alloc(256))).toMatchObject({ kind: 'rejected', reason: 'length' });
    const wrongVersion = Buffer.from(toGateway[0]);
    wrongVersion[0] = 0x11;
    expect(node.receive(wrongVersion)).toMatchObject({ kind: 'rejected', reason: 'version' });
    const wrongKind = Buffer.from(toGateway[0]);
    wrongKind[0] = 0x24;
    expect(node.receive(wrongKind)).toMatchObject({ kind: 'rejected', reason: 'type' });
    // An authentic frame whose index is not below its count, or a NACK in several fragments.
    const header = { meshId: MESH, source: GATEWAY_ADDRESS, destination: 1, messageNumber: 0 };
    const down = downlinkKey(KEY);
    const badIndex = sealFrame({ ...header, kind: 'fragment', counter: 1, fragmentIndex: 0, fragmentCount: 1 }, Buffer.from([1]), down);
    badIndex[10] = 1; // index 1 of 1, MIC made again over it
    aesCmac(down, badIndex.subarray(0, -4)).copy(badIndex, badIndex.length - 4, 0, 4);
    expect(node.receive(badIndex)).toMatchObject({ kind: 'rejected', reason: 'fragment' });
    const longNack = sealFrame({ ...header, kind: 'nack', counter: 2, fragmentIndex: 0, fragmentCount: 2 }, encodeNack({ fragmentCount: 3, missing: [1] }), down);
    expect(node.receive(longNack)).toMatchObject({ kind: 'rejected', reason: 'fragment' });
  });

  test('an authentic message whose fragments do not tile a well-formed body is rejected, not passed on', () => {
    const gw = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    const KEY4 = uplinkKey(KEY, 4);
    const result = body(vector(8, 1), { seq: 7, sender: 4 }); // 56 bytes
    const header = { kind: 'fragment' as const, meshId: MESH, source: 4, destination: GATEWAY_ADDRESS, messageNumber: 7, fragmentCount: 2 };
    // Fragment 0 shorter than fragment 1: they do not tile.
    expect(gw.receive(sealFrame({ ...header, fragmentIndex: 0, counter: 0 }, result.subarray(0, 20), KEY4)).kind).toBe('fragment');
    expect(gw.receive(sealFrame({ ...header, fragmentIndex: 1, counter: 1 }, result.subarray(20), KEY4))).toMatchObject({ kind: 'rejected', reason: 'body', detail: expect.stringMatching(/do not tile/) });
    // A whole message whose bytes are not a head-link body: checkBody's reason.
    const truncated = sealFrame({ ...header, messageNumber: 8, fragmentCount: 1, fragmentIndex: 0, counter: 2 }, result.subarray(0, 30), KEY4);
    expect(gw.receive(truncated)).toMatchObject({ kind: 'rejected', reason: 'body', detail: expect.stringMatching(/body is 30 bytes; its header \(8 f32 values\) implies 56/) });
    // A body filed under a message number other than its sequence number's low 16 bits.
    const misnamed = sealFrame({ ...header, messageNumber: 9, fragmentCount: 1, fragmentIndex: 0, counter: 3 }, result, KEY4);
    expect(gw.receive(misnamed)).toMatchObject({ kind: 'rejected', reason: 'body', detail: expect.stringMatching(/sequence number 7/) });
  });
});

describe('per-node keys, the counter gap and a replay window that survives a restart', () => {
  const xb = vector(64, 3);
  function broadcastFrames(sender: FrameSender, seq = 2): Buffer[] {
    return sender.frames(sender.body(BROADCAST_ADDRESS, body(xb, { seq })));
  }
  const result = (source: number, seq = 1) => body(xb.subarray(0, 8), { seq, sender: source });

  test('the keys are AES-CMAC of the network key over "downlink" and "uplink" || address; each radio holds only its own', () => {
    expect(downlinkKey(KEY)).toEqual(aesCmac(KEY, Buffer.from('downlink')));
    expect(uplinkKey(KEY, 3)).toEqual(aesCmac(KEY, Buffer.from([...Buffer.from('uplink'), 3])));
    const node3 = keyringOf(KEY, 3);
    const gw = keyringOf(KEY, GATEWAY_ADDRESS);
    expect(node3.seal).toEqual(uplinkKey(KEY, 3));
    expect(node3.openKey(GATEWAY_ADDRESS)).toEqual(downlinkKey(KEY));
    expect(node3.openKey(4)).toBeUndefined();
    expect(gw.seal).toEqual(downlinkKey(KEY));
    expect(gw.openKey(3)).toEqual(uplinkKey(KEY, 3));
    expect(gw.openKey(GATEWAY_ADDRESS)).toBeUndefined();
  });

  test('a node cannot pose as another node, nor as the gateway on the uplink', () => {
    const gw = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    // node 4, provisioned with its own two keys only, seals a frame that claims to come from node 3
    const node4 = nodeKeyring({ downlink: downlinkKey(KEY), uplink: uplinkKey(KEY, 4) });
    const h = { kind: 'fragment' as const, meshId: MESH, source: 3, destination: GATEWAY_ADDRESS, counter: 0, messageNumber: 1, fragmentIndex: 0, fragmentCount: 1 };
    expect(gw.receive(sealFrame(h, result(3), node4.seal))).toMatchObject({ kind: 'rejected', reason: 'mic', detail: 'integrity code does not match the key of source 3' });
    // or as the gateway: the gateway takes no frame from its own address, whatever the key
    expect(gw.receive(sealFrame({ ...h, source: GATEWAY_ADDRESS }, result(3), downlinkKey(KEY)))).toMatchObject({ kind: 'rejected', reason: 'source' });
    // the network key itself seals nothing a radio takes
    expect(gw.receive(sealFrame(h, result(3), KEY))).toMatchObject({ kind: 'rejected', reason: 'mic' });
    expect(gw.receive(sealFrame(h, result(3), uplinkKey(KEY, 3))).kind).toBe('body');
  });

  test('one forged counter 0xFFFFFFFF does not shut the real sender out: a counter moves at most MAX_COUNTER_GAP ahead', () => {
    const gateway = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS, counter: 500 });
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    expect(node.receive(broadcastFrames(gateway, 2)[0]).kind).toBe('fragment');
    const forger = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS, counter: 0xffffffff });
    expect(node.receive(forger.frames(forger.body(255, body(xb, { seq: 3 })), [0])[0])).toMatchObject({ kind: 'rejected', reason: 'replay', detail: `counter 4294967295 from 0 is ${0xffffffff - 500} past 500; a counter moves at most 16384 ahead` });
    expect(node.receive(broadcastFrames(gateway, 4)[0]).kind).toBe('fragment');
    const far = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS, counter: 501 + MAX_COUNTER_GAP });
    expect(node.receive(broadcastFrames(far, 5)[0]).kind).toBe('fragment');
  });

  test('a restarted receiver keeps its replay window (one write per block of frames) and refuses every frame it took before', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'radio-state-'));
    const file = path.join(dir, 'node-1.json');
    const gateway = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS, counter: 7 });
    const captured = Array.from({ length: 20 }, (_, i) => broadcastFrames(gateway, 10 + i)).flat();
    const first = new FrameReceiver({ key: KEY, meshId: MESH, address: 1, replayStore: new RadioStateFile(file) });
    for (const f of captured) expect(first.receive(f).kind).not.toBe('rejected');
    const restarted = new FrameReceiver({ key: KEY, meshId: MESH, address: 1, replayStore: new RadioStateFile(file) });
    for (const f of captured) expect(restarted.receive(f)).toMatchObject({ kind: 'rejected', reason: 'replay' });
    // the sender goes on: at most a block of its next frames falls below the saved floor
    const next = Array.from({ length: REPLAY_SAVE_BLOCK + 1 }, (_, i) => broadcastFrames(gateway, 40 + i)[0]);
    expect(next.map((f) => restarted.receive(f).kind)).toContain('fragment');
    fs.rmSync(dir, { recursive: true });
  });

  test('a sender with a state file starts, after a restart, above every counter it used', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'radio-state-'));
    const file = path.join(dir, 'gateway.json');
    const state = new RadioStateFile(file);
    const before = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS, counter: state.counterStart, reserve: (c) => state.reserve(c) });
    for (let i = 0; i < 100; i++) broadcastFrames(before, i);
    const again = new RadioStateFile(file);
    expect(again.counterStart).toBeGreaterThanOrEqual(before.counter);
    fs.writeFileSync(file, '{"counter": -1}');
    expect(() => new RadioStateFile(file)).toThrow(/is not a radio state file/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('missing fragments and selective retransmission', () => {
  test('the receiver reports what is missing; a NACK names the message by its header and brings exactly those fragments again', () => {
    const g = geometry(MODEL_PRESETS.tinyllama);
    const seq = 0x7fff0003; // message number 3
    const broadcast = body(vector(g.dim, 11), { seq, e: meshEncodings(g, 'int8').broadcast, session: 4, pos: 17, layer: 12 });
    expect(broadcast.length).toBe(2328);
    const gwSender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const gwReceiver = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    const nodeSender = new FrameSender({ key: KEY, meshId: MESH, source: 9 });
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 9 });

    const msg = gwSender.body(BROADCAST_ADDRESS, broadcast);
    expect(msg.fragmentCount).toBe(11);
    const lost = new Set([0, 4, 5, 10]);
    const firstPass = gwSender.frames(msg);
    firstPass.forEach((f, i) => {
      if (!lost.has(i)) expect(node.receive(f).kind).toBe('fragment');
    });
    const [pending] = node.reassembler.pending();
    expect(pending).toEqual({ name: { source: GATEWAY_ADDRESS, messageNumber: 3 }, fragmentCount: 11, missing: [0, 4, 5, 10] });

    // The node asks; its NACK goes to the message's source under the message's number.
    const nackFrames = nodeSender.frames(nodeSender.nack(pending.name, { fragmentCount: 11, missing: pending.missing }));
    expect(nackFrames).toHaveLength(1);
    expect(nackFrames[0].length).toBe(nackFrameBytes(11));
    const asked = gwReceiver.receive(nackFrames[0]);
    if (asked.kind !== 'nack') throw new Error(`expected a NACK, got ${asked.kind}`);
    expect(asked.frame).toMatchObject({ kind: 'nack', source: 9, destination: GATEWAY_ADDRESS, messageNumber: 3, fragmentIndex: 0, fragmentCount: 1 });
    expect(asked.nack).toEqual({ fragmentCount: 11, missing: [0, 4, 5, 10] });

    // A second loss: fragment 5 is lost again, the rest arrive out of index order, under new counters.
    const again = gwSender.frames(msg, [10, 5, 4, 0]);
    const opened = again.map((f) => openFrame(f, downlinkKey(KEY), MESH)).map((o) => (o.ok ? o.frame : null)) as Frame[];
    expect(opened.map((f) => f.counter)).toEqual([11, 12, 13, 14]);
    expect(node.receive(again[0]).kind).toBe('fragment');
    expect(node.receive(again[2]).kind).toBe('fragment');
    expect(node.receive(again[3])).toMatchObject({ kind: 'fragment', missing: [5] });
    const done = expectBody(node.receive(gwSender.frames(msg, [5])[0]));
    expect(done.body.equals(broadcast)).toBe(true);
    expect(node.reassembler.pending()).toEqual([]);

    // A retransmission that arrives after the message is complete is a duplicate, not a new message.
    expect(node.receive(gwSender.frames(msg, [3])[0]).kind).toBe('duplicate');
  });

  test('a fragment received twice (two copies under different counters) counts once', () => {
    const sender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const rx = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const msg = sender.body(BROADCAST_ADDRESS, body(vector(256, 2), { seq: 0 })); // 1048 bytes: 5 fragments
    const [a] = sender.frames(msg, [0]);
    const [b] = sender.frames(msg, [0]);
    expect(rx.receive(a)).toMatchObject({ kind: 'fragment', missing: [1, 2, 3, 4] });
    expect(rx.receive(b).kind).toBe('duplicate');
    expect(rx.reassembler.pending()[0].missing).toEqual([1, 2, 3, 4]);
  });

  test('a receiver remembers its last 256 finished messages: a late copy is a duplicate until 256 more have finished', () => {
    const sender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const rx = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const messages = Array.from({ length: 257 }, (_, seq) => sender.body(BROADCAST_ADDRESS, body(vector(8, seq), { seq: 1000 + seq })));
    for (const m of messages.slice(0, 256)) expect(rx.receive(sender.frames(m)[0]).kind).toBe('body');
    expect(rx.receive(sender.frames(messages[0])[0]).kind).toBe('duplicate');
    expect(rx.receive(sender.frames(messages[256])[0]).kind).toBe('body');
    // The 257th finished message pushed the first out of memory: a copy of it is a message again.
    expect(rx.receive(sender.frames(messages[0])[0]).kind).toBe('body');
    expect(rx.receive(sender.frames(messages[1])[0]).kind).toBe('body');
  });

  test('sequence numbers 65536 apart share a message number; forgetting the old message lets the new one through', () => {
    const sender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const rx = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const old = sender.body(BROADCAST_ADDRESS, body(vector(8, 1), { seq: 5 }));
    const later = sender.body(BROADCAST_ADDRESS, body(vector(8, 2), { seq: 5 + 0x10000 }));
    expect(later.messageNumber).toBe(old.messageNumber);
    expect(rx.receive(sender.frames(old)[0]).kind).toBe('body');
    expect(rx.receive(sender.frames(later)[0]).kind).toBe('duplicate');
    rx.reassembler.forget({ source: GATEWAY_ADDRESS, messageNumber: 5 });
    const got = expectBody(rx.receive(sender.frames(later)[0]));
    expect(got.header.seq).toBe(5 + 0x10000);
  });
});

describe('sender limits', () => {
  test('frame size bounds, the fragment limit, single-frame NACKs, and bodies only', () => {
    expect(() => new FrameSender({ key: KEY, meshId: 0, source: 0, maxFrameBytes: RADIO_HEADER_BYTES + MIC_BYTES })).toThrow(RangeError);
    expect(() => new FrameSender({ key: KEY, meshId: 0, source: 0, maxFrameBytes: 256 })).toThrow(RangeError);
    expect(() => new FrameSender({ key: KEY.subarray(0, 8), meshId: 0, source: 0 })).toThrow(/16 bytes/);
    const tiny = new FrameSender({ key: KEY, meshId: 0, source: 0, maxFrameBytes: 30 });
    expect(() => tiny.body(BROADCAST_ADDRESS, body(new Float32Array(2048), { seq: 0 }))).toThrow(/a 8216-byte body needs 587 fragments of 14 bytes; a message has at most 255/);
    expect(() => tiny.nack({ source: 1, messageNumber: 0 }, { fragmentCount: 255, missing: [0, 254] })).toThrow(/a NACK has one/);
    expect(() => tiny.body(BROADCAST_ADDRESS, Buffer.from('not a body'))).toThrow(/shorter than the 24-byte header/);
  });
});

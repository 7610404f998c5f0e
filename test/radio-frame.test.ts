import { geometry } from '../lib/llm/config';
import { headOutputGroupSize } from '../lib/llm/engine';
import { INT8_GROUP_SIZE } from '../lib/llm/head';
import { int8RoundTrip } from '../lib/llm/quant';
import { aesCmac, cmacSubkeys } from '../lib/radio/cmac';
import {
  BROADCAST_ADDRESS, DEFAULT_MAX_FRAME_BYTES, Frame, FrameReceiver, FrameSender, GATEWAY_ADDRESS, HEADER_BYTES, MIC_BYTES, ReceiveEvent, TensorEncoding,
  decodeTensor, encodeTensor, fragmentCapacity, meshEncodings, nackFor, openFrame, sealFrame, tensorBodyBytes,
} from '../lib/radio/frame';
import { MODEL_PRESETS } from '../lib/radio/presets';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KEY = hex('000102030405060708090a0b0c0d0e0f');
const MESH = 7;

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

/** Equal values, bit for bit except the sign of zero (an int8 0 decodes to +0 whatever the input's sign). */
function expectSameValues(got: Float32Array, expected: Float32Array): void {
  const plain = (v: Float32Array) => Array.from(v, (x) => x + 0);
  expect(plain(got)).toEqual(plain(expected));
}

function expectMessage(e: ReceiveEvent): Extract<ReceiveEvent, { kind: 'message' }> {
  if (e.kind !== 'message') throw new Error(`expected a message, got ${JSON.stringify(e)}`);
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

describe('frame header', () => {
  test('fields sit where docs/PROTOCOL.md says, and the MIC is the first 4 bytes of the CMAC', () => {
    const frame = sealFrame(
      { type: 'result', meshId: 0x2a, source: 3, destination: GATEWAY_ADDRESS, session: 9, position: 0x0102, layer: 21, fragmentIndex: 1, fragmentCount: 2, counter: 0x0a0b0c0d, byteOffset: 0x00d2 },
      Buffer.from([0xee, 0xff]),
      KEY,
    );
    expect(frame.subarray(0, HEADER_BYTES + 2).toString('hex')).toBe('122a0300' + '09' + '0201' + '15' + '01' + '02' + '0d0c0b0a' + 'd200' + 'eeff');
    expect(frame.length).toBe(HEADER_BYTES + 2 + MIC_BYTES);
    expect(frame.subarray(-4)).toEqual(aesCmac(KEY, frame.subarray(0, -4)).subarray(0, 4));
    const opened = openFrame(frame, KEY, 0x2a);
    expect(opened.ok && opened.frame).toMatchObject({ type: 'result', source: 3, session: 9, position: 258, layer: 21, fragmentIndex: 1, fragmentCount: 2, counter: 0x0a0b0c0d, byteOffset: 210 });
  });
});

/** Every tensor the two models put on the radio: broadcasts [dim] and the head results of each group size. */
function modelTensors(): { name: string; n: number; encodings: TensorEncoding[] }[] {
  const out: { name: string; n: number; encodings: TensorEncoding[] }[] = [];
  const cases = [
    { model: 'stories260k', groups: [1, 2, 3, 4, 5, 6, 7, 8] },
    { model: 'tinyllama', groups: [1, 2, 4] },
  ] as const;
  for (const { model, groups } of cases) {
    const g = geometry(MODEL_PRESETS[model]);
    out.push({ name: `${model} broadcast`, n: g.dim, encodings: [{ kind: 'f32' }, { kind: 'int8', groupSize: INT8_GROUP_SIZE }] });
    for (const heads of groups) {
      out.push({ name: `${model} result of ${heads} head(s)`, n: heads * g.headSize, encodings: [{ kind: 'f32' }, { kind: 'int8', groupSize: headOutputGroupSize(g) }] });
    }
  }
  return out;
}

test('the mesh encodes broadcasts in int8 groups of 32 and results in groups aligned to heads', () => {
  expect(meshEncodings(geometry(MODEL_PRESETS.tinyllama), 'int8')).toEqual({ broadcast: { kind: 'int8', groupSize: 32 }, result: { kind: 'int8', groupSize: 32 } });
  expect(meshEncodings(geometry(MODEL_PRESETS.stories260k), 'int8')).toEqual({ broadcast: { kind: 'int8', groupSize: 32 }, result: { kind: 'int8', groupSize: 8 } });
  expect(meshEncodings(geometry(MODEL_PRESETS.stories260k), 'f32')).toEqual({ broadcast: { kind: 'f32' }, result: { kind: 'f32' } });
});

describe('tensor messages round-trip through fragmentation and reassembly', () => {
  // The seed's 230 bytes, and the smallest frames a region allows (EU868 SF10-12: 64 bytes).
  const sizes = [DEFAULT_MAX_FRAME_BYTES, 64];
  const cases = modelTensors().flatMap((t) => t.encodings.flatMap((e) => sizes.map((max) => ({ ...t, e, max }))));

  test.each(cases.map((c) => [`${c.name}, ${c.e.kind === 'f32' ? 'f32' : `int8/${c.e.groupSize}`}, ${c.max}-byte frames`, c] as const))('%s', (_label, c) => {
    const values = vector(c.n, c.n * 31 + c.max);
    const body = encodeTensor(values, c.e);
    expect(body.length).toBe(tensorBodyBytes(c.n, c.e));
    const node = new FrameSender({ key: KEY, meshId: MESH, source: 5, maxFrameBytes: c.max });
    const gateway = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    const msg = node.message({ type: 'result', destination: GATEWAY_ADDRESS, session: 1, position: 300, layer: 3 }, body);
    expect(msg.fragmentCount).toBe(Math.ceil(body.length / fragmentCapacity(c.max)));
    // Fragments in a shuffled order (each frame still under the sender's next counter).
    const order = shuffled(msg.fragmentCount, c.n);
    const frames = node.frames(msg, order);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(c.max);
    const events = frames.map((f) => gateway.receive(f));
    for (const e of events.slice(0, -1)) expect(e.kind).toBe('fragment');
    const last = events.at(-1)!;
    const got = expectMessage(last);
    expect(got.address).toMatchObject({ type: 'result', source: 5, destination: GATEWAY_ADDRESS, session: 1, position: 300, layer: 3 });
    if (got.payload.kind !== 'tensor') throw new Error('expected a tensor');
    const expected = Float32Array.from(values);
    if (c.e.kind === 'int8') int8RoundTrip(expected, c.e.groupSize);
    expect(got.payload.tensor.encoding).toEqual(c.e);
    expectSameValues(got.payload.tensor.values, expected);
  });
});

describe('authentication and replay', () => {
  const xb = vector(64, 3);
  function broadcastFrames(sender: FrameSender): Buffer[] {
    return sender.frames(sender.message({ type: 'broadcast', destination: BROADCAST_ADDRESS, session: 2, position: 0, layer: 0 }, encodeTensor(xb, { kind: 'f32' })));
  }

  test('every node takes a broadcast', () => {
    const frames = broadcastFrames(new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS }));
    for (const address of [1, 2, 254]) {
      const node = new FrameReceiver({ key: KEY, meshId: MESH, address });
      const got = expectMessage(frames.map((f) => node.receive(f)).at(-1)!);
      expect(got.payload.kind === 'tensor' && got.payload.tensor.values).toEqual(xb);
    }
  });

  test('a forged or altered frame fails its MIC', () => {
    const [frame] = broadcastFrames(new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS }));
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    for (const at of [0 + 4, HEADER_BYTES + 10, frame.length - 1]) {
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
    expect(node.receive(frames[1]).kind).toBe('message');
    // Replaying an earlier frame after later ones, or the whole message, is rejected.
    expect(node.receive(frames[0])).toMatchObject({ kind: 'rejected', reason: 'replay' });
    expect(node.receive(frames[1])).toMatchObject({ kind: 'rejected', reason: 'replay' });
    // Counters are per sender: node 2's counter 0 is fresh.
    const peer = new FrameSender({ key: KEY, meshId: MESH, source: 2 });
    const result = peer.frames(peer.message({ type: 'result', destination: 1, session: 2, position: 0, layer: 0 }, encodeTensor(xb.subarray(0, 8), { kind: 'f32' })));
    expect(node.receive(result[0]).kind).toBe('message');
  });

  test('frames of another mesh, another destination or a malformed shape are rejected', () => {
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const other = new FrameSender({ key: KEY, meshId: MESH + 1, source: GATEWAY_ADDRESS });
    expect(node.receive(broadcastFrames(other)[0])).toMatchObject({ kind: 'rejected', reason: 'mesh' });
    const peer = new FrameSender({ key: KEY, meshId: MESH, source: 3 });
    const toGateway = peer.frames(peer.message({ type: 'result', destination: GATEWAY_ADDRESS, session: 0, position: 0, layer: 0 }, encodeTensor(xb.subarray(0, 8), { kind: 'f32' })));
    expect(node.receive(toGateway[0])).toMatchObject({ kind: 'rejected', reason: 'address' });
    expect(node.receive(Buffer.alloc(10))).toMatchObject({ kind: 'rejected', reason: 'length' });
    const wrongVersion = Buffer.from(toGateway[0]);
    wrongVersion[0] = 0x21;
    expect(node.receive(wrongVersion)).toMatchObject({ kind: 'rejected', reason: 'version' });
  });

  test('an authentic message whose fragments do not tile its body is rejected, not decoded', () => {
    const gw = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    const header = { type: 'result' as const, meshId: MESH, source: 4, destination: GATEWAY_ADDRESS, session: 0, position: 0, layer: 0, fragmentCount: 2 };
    const body = encodeTensor(vector(8, 1), { kind: 'f32' });
    expect(gw.receive(sealFrame({ ...header, fragmentIndex: 0, counter: 0, byteOffset: 0 }, body.subarray(0, 20), KEY)).kind).toBe('fragment');
    expect(gw.receive(sealFrame({ ...header, fragmentIndex: 1, counter: 1, byteOffset: 16 }, body.subarray(20), KEY))).toMatchObject({ kind: 'rejected', reason: 'body' });
    const truncated = sealFrame({ ...header, fragmentCount: 1, fragmentIndex: 0, counter: 2, byteOffset: 0, position: 1 }, body.subarray(0, 30), KEY);
    expect(gw.receive(truncated)).toMatchObject({ kind: 'rejected', reason: 'body' });
    expect(() => decodeTensor(body.subarray(0, 30))).toThrow(/expected 36/);
  });
});

describe('missing fragments and selective retransmission', () => {
  test('the receiver reports what is missing; a NACK brings exactly those fragments again', () => {
    const g = geometry(MODEL_PRESETS.tinyllama);
    const xb = vector(g.dim, 11);
    const gwSender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const gwReceiver = new FrameReceiver({ key: KEY, meshId: MESH, address: GATEWAY_ADDRESS });
    const nodeSender = new FrameSender({ key: KEY, meshId: MESH, source: 9 });
    const node = new FrameReceiver({ key: KEY, meshId: MESH, address: 9 });

    const msg = gwSender.message({ type: 'broadcast', destination: BROADCAST_ADDRESS, session: 4, position: 17, layer: 12 }, encodeTensor(xb, { kind: 'int8', groupSize: INT8_GROUP_SIZE }));
    expect(msg.fragmentCount).toBe(11);
    const lost = new Set([0, 4, 5, 10]);
    const firstPass = gwSender.frames(msg);
    firstPass.forEach((f, i) => {
      if (!lost.has(i)) expect(node.receive(f).kind).toBe('fragment');
    });
    const [pending] = node.reassembler.pending();
    expect(pending.missing).toEqual([0, 4, 5, 10]);
    expect(pending.address).toMatchObject({ type: 'broadcast', source: GATEWAY_ADDRESS, session: 4, position: 17, layer: 12 });

    // The node asks; the gateway decodes the NACK and resends only what is missing, under new counters.
    const nack = nackFor(pending);
    const nackFrames = nodeSender.frames(nodeSender.message(nack.address, nack.body));
    expect(nackFrames).toHaveLength(1);
    const asked = expectMessage(gwReceiver.receive(nackFrames[0]));
    expect(asked.address).toMatchObject({ type: 'nack', source: 9, destination: GATEWAY_ADDRESS, session: 4, position: 17, layer: 12 });
    if (asked.payload.kind !== 'nack') throw new Error('expected a NACK');
    expect(asked.payload.nack).toEqual({ type: 'broadcast', fragmentCount: 11, missing: [0, 4, 5, 10] });

    // A second loss: fragment 5 is lost again, the rest arrive out of index order.
    const again = gwSender.frames(msg, [10, 5, 4, 0]);
    const opened = again.map((f) => openFrame(f, KEY, MESH)).map((o) => (o.ok ? o.frame : null)) as Frame[];
    expect(opened.map((f) => f.counter)).toEqual([11, 12, 13, 14]);
    expect(node.receive(again[0]).kind).toBe('fragment');
    expect(node.receive(again[2]).kind).toBe('fragment');
    expect(node.receive(again[3])).toMatchObject({ kind: 'fragment', missing: [5] });
    const last = gwSender.frames(msg, [5]);
    const done = expectMessage(node.receive(last[0]));
    const expected = Float32Array.from(xb);
    int8RoundTrip(expected, INT8_GROUP_SIZE);
    if (done.payload.kind !== 'tensor') throw new Error('expected a tensor');
    expectSameValues(done.payload.tensor.values, expected);
    expect(node.reassembler.pending()).toEqual([]);

    // A retransmission that arrives after the message is complete is a duplicate, not a new message.
    expect(node.receive(gwSender.frames(msg, [3])[0]).kind).toBe('duplicate');
  });

  test('a fragment received twice (two copies under different counters) counts once', () => {
    const sender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const rx = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const msg = sender.message({ type: 'broadcast', destination: BROADCAST_ADDRESS, session: 0, position: 0, layer: 0 }, encodeTensor(vector(256, 2), { kind: 'f32' }));
    const [a] = sender.frames(msg, [0]);
    const [b] = sender.frames(msg, [0]);
    expect(rx.receive(a)).toMatchObject({ kind: 'fragment', missing: [1, 2, 3, 4] });
    expect(rx.receive(b).kind).toBe('duplicate');
    expect(rx.reassembler.pending()[0].missing).toEqual([1, 2, 3, 4]);
  });

  test('a session that ended is forgotten, so its number can be used again', () => {
    const sender = new FrameSender({ key: KEY, meshId: MESH, source: GATEWAY_ADDRESS });
    const rx = new FrameReceiver({ key: KEY, meshId: MESH, address: 1 });
    const send = () => sender.frames(sender.message({ type: 'broadcast', destination: BROADCAST_ADDRESS, session: 6, position: 0, layer: 0 }, encodeTensor(vector(8, 5), { kind: 'f32' })))[0];
    expect(rx.receive(send()).kind).toBe('message');
    expect(rx.receive(send()).kind).toBe('duplicate');
    rx.reassembler.endSession(6);
    expect(rx.receive(send()).kind).toBe('message');
  });
});

describe('sender limits', () => {
  test('frame size bounds, the fragment limit, and single-frame NACKs', () => {
    expect(() => new FrameSender({ key: KEY, meshId: 0, source: 0, maxFrameBytes: HEADER_BYTES + MIC_BYTES })).toThrow(RangeError);
    expect(() => new FrameSender({ key: KEY, meshId: 0, source: 0, maxFrameBytes: 256 })).toThrow(RangeError);
    expect(() => new FrameSender({ key: KEY.subarray(0, 8), meshId: 0, source: 0 })).toThrow(/16 bytes/);
    const tiny = new FrameSender({ key: KEY, meshId: 0, source: 0, maxFrameBytes: 30 });
    expect(() => tiny.message({ type: 'broadcast', destination: BROADCAST_ADDRESS, session: 0, position: 0, layer: 0 }, encodeTensor(new Float32Array(2048), { kind: 'f32' }))).toThrow(/at most 255/);
    const nack = nackFor({ address: { type: 'broadcast', source: 0, destination: BROADCAST_ADDRESS, session: 0, position: 0, layer: 0 }, fragmentCount: 255, missing: [0, 254] });
    expect(() => tiny.message(nack.address, nack.body)).toThrow(/a NACK has one/);
  });
});

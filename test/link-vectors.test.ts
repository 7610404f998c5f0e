/**
 * The firmware's head-link body and radio frame against the TypeScript ones: lib/link/vectors.ts
 * writes bodies and frames with the TypeScript codecs, the firmware's host tool
 * dist/firmware/link-check (firmware/test/link_check.cpp on firmware/core/link.cpp and
 * radio_frame.cpp) parses and re-encodes them, and every byte must agree. Altered copies must be
 * refused for the same reason by both, or accepted by both with the same values.
 */
import { spawnSync } from 'node:child_process';
import { firmwareBinary } from '../lib/firmware/build';
import { BodyType, checkBody, decodeBody } from '../lib/link/body';
import { BodyVector, FRAGMENT_COUNTS, FramesVector, LinkVector, bodyVectors, frameVectors, toHex, vectorLines } from '../lib/link/vectors';
import { Frame, FrameReceiver, FrameSender, MAX_FRAGMENTS, RejectReason, everyKeyring, openFrame, sealFrame, sealingKey } from '../lib/radio/frame';

interface BodyVerdict {
  ok: boolean;
  error?: string;
  input?: string;
  header?: Record<string, unknown>;
  written?: string;
  decoded?: string;
  encoded?: string;
}

/** Runs link-check on the vectors; one verdict per vector. */
function linkCheck<T>(vectors: LinkVector[]): T[] {
  const r = spawnSync(firmwareBinary('link-check'), [], { input: vectorLines(vectors), encoding: 'utf8', maxBuffer: 1 << 28 });
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(vectors.length);
  return lines.map((l) => JSON.parse(l) as T);
}

/** What the TypeScript codec says of a body, in link-check's terms. */
function expectedOf(v: BodyVector): BodyVerdict {
  const body = Buffer.from(v.body, 'hex');
  let header;
  try {
    header = checkBody(body);
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
  const parsed = { header: { ...header }, written: v.body };
  try {
    const decoded = decodeBody(body);
    const encoded = v.values !== undefined || header.encoding === 'f32' ? { encoded: v.body } : {};
    return { ok: true, ...parsed, decoded: toHex(decoded.values), ...encoded };
  } catch (e) {
    return { ok: false, error: (e as Error).message, ...parsed };
  }
}

describe('head-link bodies', () => {
  const vectors = bodyVectors();
  let verdicts: BodyVerdict[] = [];
  beforeAll(() => {
    verdicts = linkCheck<BodyVerdict>(vectors);
  });

  test('the vectors cover every type and encoding at the stories260K and TinyLlama sizes', () => {
    const sizes = new Set<string>();
    for (const v of vectors.filter((x) => x.values !== undefined)) {
      const h = checkBody(Buffer.from(v.body, 'hex'));
      sizes.add(`${h.type === BodyType.Broadcast ? 'broadcast' : 'result'} ${h.encoding} ${h.count}`);
    }
    for (const encoding of ['f32', 'int8']) {
      for (const n of [64, 2048]) expect(sizes).toContain(`broadcast ${encoding} ${n}`);
      for (const heads of [1, 2, 3, 4, 5, 6, 7, 8]) expect(sizes).toContain(`result ${encoding} ${heads * 8}`);
      for (const heads of [1, 2, 4]) expect(sizes).toContain(`result ${encoding} ${heads * 64}`);
    }
  });

  test('the firmware parses, rewrites, decodes and encodes every body TypeScript wrote, byte for byte', () => {
    const written = vectors.filter((v) => v.values !== undefined);
    expect(written.length).toBeGreaterThan(30);
    for (const [i, v] of vectors.entries()) {
      if (v.values === undefined) continue;
      expect({ name: v.name, ...verdicts[i] }).toEqual({ name: v.name, ...expectedOf(v) });
    }
  });

  test('a body with a flipped bit, a byte missing or one too many gets the verdict and sentence decodeBody gives', () => {
    const altered = vectors.filter((v) => v.values === undefined);
    expect(altered.length).toBeGreaterThan(800);
    let refused = 0;
    for (const [i, v] of vectors.entries()) {
      if (v.values !== undefined) continue;
      const expected = expectedOf(v);
      if (!expected.ok) refused++;
      expect({ name: v.name, ...verdicts[i] }).toEqual({ name: v.name, ...expected });
    }
    // most header bits are checked (magic, version, type, encoding, reserved, count, group size)
    expect(refused).toBeGreaterThan(altered.length / 3);
  });
});

interface FrameEvent {
  event: 'rejected' | 'duplicate' | 'fragment' | 'body' | 'sensors' | 'nack';
  reason?: RejectReason;
  detail?: string;
  header?: Record<string, unknown>;
  resealed?: string;
  missing?: number[];
  body?: string;
  bodyHeader?: Record<string, unknown>;
  nack?: { fragmentCount: number; missing: number[] };
  sent?: string[];
}

/** The frame sealed again from its parsed header and fragment under its source's key ('' when that header cannot be sealed). */
function resealed(f: Frame, key: Buffer): string {
  try {
    return toHex(sealFrame(f, f.fragment, sealingKey(key, f.source)));
  } catch {
    return '';
  }
}

/** What lib/radio/frame.ts does with the vector's frames, in link-check's terms. */
function expectedEvents(v: FramesVector): FrameEvent[] {
  const key = Buffer.from(v.key, 'hex');
  const receiver = new FrameReceiver({ key, meshId: v.meshId, address: v.address });
  const sender = () => v.sender && new FrameSender({ key, meshId: v.meshId, source: v.sender.source, maxFrameBytes: v.sender.maxFrameBytes, counter: v.sender.counter });
  return v.frames.map((hex) => {
    const bytes = Buffer.from(hex, 'hex');
    const opened = openFrame(bytes, everyKeyring(key), v.meshId);
    let seen = {};
    if (opened.ok) {
      const { fragment: _fragment, ...header } = opened.frame;
      seen = { header, resealed: resealed(opened.frame, key) };
    }
    const e = receiver.receive(bytes);
    switch (e.kind) {
      case 'rejected':
        return { event: 'rejected', reason: e.reason, detail: e.detail, ...seen };
      case 'duplicate':
        return { event: 'duplicate', ...seen };
      case 'fragment':
        return { event: 'fragment', missing: e.missing, ...seen };
      case 'body': {
        const s = sender();
        const sent = s && v.sender ? { sent: s.frames(s.body(v.sender.destination, e.body)).map(toHex) } : {};
        return { event: 'body', body: toHex(e.body), bodyHeader: { ...e.header }, ...seen, ...sent };
      }
      case 'sensors':
        return { event: 'sensors', body: toHex(e.body), ...seen };
      case 'nack': {
        const s = sender();
        const sent = s ? { sent: s.frames(s.nack({ source: e.frame.destination, messageNumber: e.frame.messageNumber }, e.nack)).map(toHex) } : {};
        return { event: 'nack', nack: e.nack, ...seen, ...sent };
      }
    }
  });
}

describe('radio frames', () => {
  const vectors = frameVectors();
  let verdicts: { events: FrameEvent[] }[] = [];
  beforeAll(() => {
    verdicts = linkCheck<{ events: FrameEvent[] }>(vectors);
  });

  /** Every vector whose name matches, compared event by event with the TypeScript receiver. */
  function compare(match: (v: FramesVector) => boolean): FrameEvent[][] {
    const seen: FrameEvent[][] = [];
    for (const [i, v] of vectors.entries()) {
      if (!match(v)) continue;
      const expected = expectedEvents(v);
      expect({ name: v.name, events: verdicts[i].events }).toEqual({ name: v.name, events: expected });
      seen.push(expected);
    }
    expect(seen.length).toBeGreaterThan(0);
    return seen;
  }

  test('bodies cut into 1..255 fragments (frames of 230, 64, 24 bytes and others) are opened, sealed again, reassembled and cut again byte for byte', () => {
    const runs = compare((v) => v.sender !== undefined && !v.name.startsWith('NACK'));
    const counts = new Set<number>();
    for (const [i, v] of vectors.entries()) {
      if (v.sender === undefined || v.name.startsWith('NACK')) continue;
      counts.add(v.frames.length);
      const events = verdicts[i].events;
      // every frame opens and re-seals to itself; the last completes the body, which is sent again as the same frames
      expect(events.map((e) => e.resealed)).toEqual(v.frames);
      const last = events[events.length - 1];
      expect({ name: v.name, event: last.event, sent: last.sent }).toEqual({ name: v.name, event: 'body', sent: v.frames });
    }
    for (const n of FRAGMENT_COUNTS) expect(counts).toContain(n);
    expect(counts).toContain(MAX_FRAGMENTS);
    const sizes = new Set(vectors.map((v) => v.sender?.maxFrameBytes));
    for (const size of [230, 64, 24]) expect(sizes).toContain(size);
    expect(runs.length).toBeGreaterThan(FRAGMENT_COUNTS.length);
  });

  test('fragments out of order, retransmitted, or late after the message completed, and a receiver that forgets its 257th-newest message', () => {
    const runs = compare((v) => /order|messages and a late copy/.test(v.name));
    const kinds = runs.flat().map((e) => e.event);
    expect(kinds).toContain('duplicate');
    expect(kinds.filter((k) => k === 'body').length).toBeGreaterThan(258);
  });

  test('NACKs of 1..255 fragments are decoded and sent again byte for byte', () => {
    compare((v) => v.name.startsWith('NACK'));
    for (const [i, v] of vectors.entries()) {
      if (!v.name.startsWith('NACK')) continue;
      expect({ name: v.name, sent: verdicts[i].events[0].sent }).toEqual({ name: v.name, sent: v.frames });
    }
  });

  test('per-node keys and the counter gap: the firmware refuses a node posing as another, a frame from the gateway\'s address at the gateway, and a counter too far ahead, as TypeScript does', () => {
    compare((v) => /key|address 255|node 2 to node 5|own address|MAX_COUNTER_GAP|0xFFFFFFFF/.test(v.name));
    const reasons = (name: string) => verdicts[vectors.findIndex((v) => v.name === name)].events.map((e) => e.reason ?? e.event);
    expect(reasons("a result from node 1 sealed under node 2's key")).toEqual(['mic']);
    expect(reasons('a result sealed under the network key itself')).toEqual(['mic']);
    expect(reasons("a frame to the gateway from the gateway's own address")).toEqual(['source']);
    expect(reasons('a frame from node 2 to node 5')).toEqual(['source']);
    expect(reasons('a frame from address 255')).toEqual(['source']);
    // accepted frames under another message number end as 'body' rejections; the one too far ahead as 'replay'
    expect(reasons('a counter MAX_COUNTER_GAP ahead, then one more than that')).toEqual(['body', 'body', 'replay']);
    expect(reasons('a forged counter 0xFFFFFFFF, then the sender goes on')).toEqual(['body', 'replay', 'body']);
  });

  test('sensor reports from a node are reassembled apart from its result of the same message number, byte for byte as TypeScript does, and refused at a node', () => {
    compare((v) => v.name.includes('sensor report'));
    const events = (name: string) => verdicts[vectors.findIndex((v) => v.name === name)].events.map((e) => e.reason ?? e.event);
    expect(events('a sensor report from node 3')).toEqual(['sensors']);
    expect(events('a sensor report from node 3 in 3 fragments')).toEqual(['fragment', 'fragment', 'sensors']);
    const both = events('a sensor report and a result of one message number, their fragments interleaved');
    expect(both.filter((e) => e === 'sensors')).toHaveLength(1);
    expect(both.filter((e) => e === 'body')).toHaveLength(1);
    expect(events('a sensor report at a node')).toEqual(['source']);
  });

  test('frames with a flipped bit, or dropped for any other reason, are rejected for the reason and in the words lib/radio/frame.ts gives', () => {
    const runs = compare((v) => v.sender === undefined && !/order|messages and a late copy/.test(v.name));
    const reasons = new Set(runs.flat().map((e) => e.reason));
    for (const reason of ['length', 'version', 'type', 'mesh', 'source', 'mic', 'replay', 'address', 'fragment', 'body'] as const) expect(reasons).toContain(reason);
  });
});

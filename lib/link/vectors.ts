/**
 * Test vectors of the head-link body and of the radio frames that carry it, written with the
 * TypeScript codecs (lib/link/body.ts, lib/radio/frame.ts), for the firmware's host tool
 * `dist/firmware/link-check` (firmware/test/link_check.cpp) to decode and re-encode byte for
 * byte (test/link-vectors.test.ts). One vector is one JSON line of link-check's input.
 *
 * Bodies: every type and encoding at the sizes of stories260K (dim 64, head size 8; results of
 * 1..8 heads) and TinyLlama (dim 2048, head size 64; results of 1, 2 and 4 heads), a few edge
 * cases, and copies with one bit flipped or a byte missing or added, which the firmware must
 * refuse in the same sentence as decodeBody (or accept, with the same values).
 *
 * Radio frames, under a fixed test key (RFC 4493's): those bodies cut into 1..255 fragments
 * (maxFrameBytes 230, 64, 24, and what each of FRAGMENT_COUNTS needs), sent in other orders,
 * with retransmissions and late copies; NACKs of every shape; frames the receiver must drop for
 * each reason lib/radio/frame.ts gives (length, version, type, mesh, mic, replay, address,
 * fragment, body); and every bit of a frame flipped.
 */
import { Geometry, geometry } from '../llm/config';
import { broadcastGroupSize, resultGroupSize } from '../llm/engine';
import { Encoding } from '../llm/quant';
import { MODEL_PRESETS } from '../radio/presets';
import { seededRandom } from '../radio/channel';
import { aesCmac } from '../radio/cmac';
import {
  BROADCAST_ADDRESS,
  FrameHeader,
  FrameSender,
  GATEWAY_ADDRESS,
  MAX_COUNTER_GAP,
  MAX_FRAGMENTS,
  MIC_BYTES,
  Nack,
  RADIO_HEADER_BYTES,
  messageFrameBytes,
  messageNumberOf,
  sealFrame,
  sealingKey,
  uplinkKey,
} from '../radio/frame';
import { encodeSensorReport } from '../radio/sensor-report';
import { BodyHeader, BodyType, ENCODING_CODES, GATEWAY_SENDER, checkBody, encodeBody } from './body';

/** A body for link-check: it parses `body`, rewrites it from header and payload, decodes it, and encodes `values` (else the decoded values) again. */
export interface BodyVector {
  name: string;
  /** The body's bytes, hex. */
  body: string;
  /** The float32 values the body was encoded from (little-endian, hex); absent for altered bodies. */
  values?: string;
}

/** How link-check cuts a message it received into frames again: a FrameSender of these settings. */
export interface SenderSpec {
  source: number;
  destination: number;
  /** The counter of the message's first frame. */
  counter: number;
  maxFrameBytes: number;
}

/** Frames for link-check: a receiver of `address` takes them in order; each is also opened alone and sealed again. */
export interface FramesVector {
  name: string;
  /** The network key, hex. */
  key: string;
  meshId: number;
  address: number;
  /** The frames' bytes, hex, in the order they arrive. */
  frames: string[];
  /** Present when the frames are one sender's message sent once, in order: link-check sends it again. */
  sender?: SenderSpec;
}

export type LinkVector = BodyVector | FramesVector;

/** The network key of the vectors: RFC 4493's example key. */
export const TEST_KEY = Buffer.from('2b7e151628aed2a6abf7158809cf4f3c', 'hex');
export const TEST_MESH_ID = 0x2a;
/** The receiving head node's address for broadcasts. */
const NODE_ADDRESS = 5;
/** Counters start just below a carry into the third byte. */
const FIRST_COUNTER = 0x00fffff0;

export function toHex(bytes: ArrayBufferView): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Values like a layer's activations: normal, scaled, with a few outliers, zeros and exact halves of a step. */
function sampleValues(count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    out[i] = normal * (random() < 0.05 ? 40 : 1.5);
  }
  if (count > 4) {
    out[1] = 0;
    out[2] = -0;
    out[3] = out[0] / 2; // when out[0] is its group's largest magnitude, q = 63.5: rounds half away
  }
  return out;
}

interface BodyCase {
  name: string;
  header: BodyHeader;
  values: Float32Array;
  groupSize: number;
}

/** A broadcast and results of `headCounts` heads of one model, in each encoding. */
function modelCases(model: string, g: Geometry, headCounts: number[], seed: number): BodyCase[] {
  const cases: BodyCase[] = [];
  for (const encoding of ['f32', 'int8', 'int4', 'int7', 'int7h'] as Encoding[]) {
    cases.push({
      name: `${model} broadcast ${encoding}`,
      header: { type: BodyType.Broadcast, encoding, sender: GATEWAY_SENDER, session: 0x7a3c1f05, seq: 0xfffffffe, pos: 17, layer: g.nLayers - 1 },
      values: sampleValues(g.dim, seed++),
      groupSize: broadcastGroupSize(encoding),
    });
    for (const heads of headCounts) {
      cases.push({
        name: `${model} result of ${heads} head${heads === 1 ? '' : 's'} ${encoding}`,
        header: { type: BodyType.Result, encoding, sender: heads, session: 0x7a3c1f05, seq: 0xfffffffe, pos: 17, layer: g.nLayers - 1 },
        values: sampleValues(heads * g.headSize, seed++),
        groupSize: resultGroupSize(g, encoding),
      });
    }
  }
  for (const heads of headCounts) {
    cases.push({
      name: `${model} steering of ${heads} head${heads === 1 ? '' : 's'}`,
      header: { type: BodyType.Steering, encoding: 'f32', sender: GATEWAY_SENDER, session: 0, seq: 0x80000011, pos: 0, layer: 0 },
      values: sampleValues(heads * g.headSize, seed++),
      groupSize: 0,
    });
  }
  return cases;
}

/** Bodies the sizes above do not reach: one value, a short last group, a group of zeros, the largest header fields. */
function edgeCases(): BodyCase[] {
  const top: BodyHeader = { type: BodyType.Result, encoding: 'int8', sender: 65534, session: 0xffffffff, seq: 0xffffffff, pos: 65535, layer: 65535 };
  const zeros = sampleValues(70, 99);
  zeros.fill(0, 32, 64);
  return [
    { name: 'one f32 value', header: { ...top, encoding: 'f32' }, values: Float32Array.of(-1.25), groupSize: 0 },
    { name: 'one int8 value', header: top, values: Float32Array.of(3), groupSize: 1 },
    { name: 'int8, a short last group and a group of zeros', header: { ...top, type: BodyType.Broadcast, sender: GATEWAY_SENDER }, values: zeros, groupSize: 32 },
    { name: 'int8, group size 65535', header: top, values: sampleValues(300, 7), groupSize: 65535 },
    { name: 'one int4 value', header: { ...top, encoding: 'int4' }, values: Float32Array.of(-3), groupSize: 1 },
    { name: 'int4, an odd count, a short last group and a group of zeros', header: { ...top, encoding: 'int4', type: BodyType.Broadcast, sender: GATEWAY_SENDER }, values: zeros.subarray(0, 69), groupSize: 32 },
    { name: 'one int7 value', header: { ...top, encoding: 'int7' }, values: Float32Array.of(-3), groupSize: 1 },
    { name: 'int7, 69 values, a short last group and a group of zeros', header: { ...top, encoding: 'int7', type: BodyType.Broadcast, sender: GATEWAY_SENDER }, values: zeros.subarray(0, 69), groupSize: 32 },
    { name: 'one int7h value', header: { ...top, encoding: 'int7h' }, values: Float32Array.of(-3), groupSize: 1 },
    { name: 'int7h, 72 values: groups of 32, one of zeros, and a short last group of 8', header: { ...top, encoding: 'int7h', type: BodyType.Broadcast, sender: GATEWAY_SENDER }, values: Float32Array.from([...zeros.subarray(0, 64), ...sampleValues(8, 98)]), groupSize: 32 },
    { name: 'f32, extreme finite values', header: { ...top, encoding: 'f32' }, values: Float32Array.of(3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45, -0), groupSize: 0 },
  ];
}

function bodyCases(): BodyCase[] {
  const stories = geometry(MODEL_PRESETS.stories260k);
  const tiny = geometry(MODEL_PRESETS.tinyllama);
  return [...modelCases('stories260K', stories, [1, 2, 3, 4, 5, 6, 7, 8], 1), ...modelCases('TinyLlama', tiny, [1, 2, 4], 100), ...edgeCases()];
}

/** Every bit of the header flipped, a few payload bits, a float32 not finite, one byte missing and one too many. */
function alterations(name: string, body: Buffer, seed: number): BodyVector[] {
  const out: BodyVector[] = [];
  const flip = (bit: number) => {
    const b = Buffer.from(body);
    b[bit >> 3] ^= 1 << (bit & 7);
    out.push({ name: `${name}, bit ${bit} flipped`, body: toHex(b) });
  };
  for (let bit = 0; bit < 24 * 8; bit++) flip(bit);
  const random = seededRandom(seed);
  for (let i = 0; i < 16; i++) flip(24 * 8 + Math.floor(random() * (body.length - 24) * 8));
  for (const [what, bits] of [['NaN', 0x7fc00000], ['Infinity', 0x7f800000], ['-Infinity', 0xff800000]] as const) {
    const b = Buffer.from(body);
    b.writeUInt32LE(bits, 24 + 4); // the second float32 value, or the second int8 scale
    out.push({ name: `${name}, a float32 made ${what}`, body: toHex(b) });
  }
  out.push({ name: `${name}, last byte missing`, body: toHex(body.subarray(0, body.length - 1)) });
  out.push({ name: `${name}, one byte too many`, body: toHex(Buffer.concat([body, Buffer.of(0)])) });
  out.push({ name: `${name}, header only`, body: toHex(body.subarray(0, 24)) });
  out.push({ name: `${name}, header cut short`, body: toHex(body.subarray(0, 23)) });
  return out;
}

/** A packed body (int4, int7) whose first code is the one below -L (-8, -64), and one with its last byte's padding bits set. */
function packedAlterations(name: string, body: Buffer, encoding: 'int4' | 'int7' | 'int7h'): BodyVector[] {
  const bits = encoding === 'int4' ? 4 : 7;
  const codes = body.length - Math.ceil((checkBody(body).count * bits) / 8);
  const low = Buffer.from(body);
  low[codes] = (low[codes] & ~((1 << bits) - 1) & 0xff) | (1 << (bits - 1));
  const padded = Buffer.from(body);
  padded[body.length - 1] |= 0x80;
  return [
    { name: `${name}, code ${-(1 << (bits - 1))}`, body: toHex(low) },
    { name: `${name}, padding bits set`, body: toHex(padded) },
  ];
}

/** The body vectors: every case as encoded, then altered copies of the stories260K ones. */
export function bodyVectors(): BodyVector[] {
  const vectors: BodyVector[] = [];
  const altered: BodyVector[] = [];
  bodyCases().forEach((c, i) => {
    const body = encodeBody(c.header, c.values, c.groupSize);
    vectors.push({ name: c.name, body: toHex(body), values: toHex(c.values) });
    if (c.name.startsWith('stories260K') && (c.header.type === BodyType.Broadcast || c.values.length === 8)) altered.push(...alterations(c.name, body, 1000 + i));
    if ((c.header.encoding === 'int4' || c.header.encoding === 'int7' || c.header.encoding === 'int7h') && (c.values.length * (c.header.encoding === 'int4' ? 4 : 7)) % 8 !== 0) altered.push(...packedAlterations(c.name, body, c.header.encoding));
    // int7 groups that are no powers of two, relabelled int7h: refused (no Walsh-Hadamard transform of 5 values)
    if (c.header.encoding === 'int7' && c.name.startsWith('int7, 69 values')) {
      const relabelled = Buffer.from(body);
      relabelled[4] = ENCODING_CODES.int7h;
      altered.push({ name: `${c.name}, relabelled int7h`, body: toHex(relabelled) });
    }
  });
  return [...vectors, ...altered];
}

// ---------------------------------------------------------------------------------------------
// Radio frames

interface Message {
  name: string;
  body: Buffer;
  /** The radio address of its sender: the gateway for broadcasts, the node's slot for results. */
  source: number;
}

/** The clean bodies a radio carries (results from the nodes of slots 1..8, broadcasts from the gateway). */
function radioMessages(): Message[] {
  return bodyCases()
    .filter((c) => c.header.sender <= 254)
    .map((c) => ({ name: c.name, body: encodeBody(c.header, c.values, c.groupSize), source: c.header.type === BodyType.Result ? c.header.sender : GATEWAY_ADDRESS }));
}

function destinationOf(m: Message): number {
  return m.source === GATEWAY_ADDRESS ? BROADCAST_ADDRESS : GATEWAY_ADDRESS;
}

function receiverOf(m: Message): number {
  return m.source === GATEWAY_ADDRESS ? NODE_ADDRESS : GATEWAY_ADDRESS;
}

function senderFor(source: number, maxFrameBytes: number, counter = FIRST_COUNTER): FrameSender {
  return new FrameSender({ key: TEST_KEY, meshId: TEST_MESH_ID, source, maxFrameBytes, counter });
}

function fragmentCountOf(bodyBytes: number, maxFrameBytes: number): number {
  return messageFrameBytes(bodyBytes, maxFrameBytes).length;
}

function framesVector(name: string, address: number, frames: Buffer[], sender?: SenderSpec): FramesVector {
  return { name, key: toHex(TEST_KEY), meshId: TEST_MESH_ID, address, frames: frames.map(toHex), ...(sender ? { sender } : {}) };
}

function firstFrame(v: FramesVector): Buffer {
  return Buffer.from(v.frames[0], 'hex');
}

/** A message sent once, in order, by a sender of that frame size. */
function sentOnce(m: Message, maxFrameBytes: number): FramesVector {
  const sender = senderFor(m.source, maxFrameBytes);
  const frames = sender.frames(sender.body(destinationOf(m), m.body));
  const spec = { source: m.source, destination: destinationOf(m), counter: FIRST_COUNTER, maxFrameBytes };
  return framesVector(`${m.name} in ${frames.length} frames of at most ${maxFrameBytes} bytes`, receiverOf(m), frames, spec);
}

/** The smallest frame size that cuts a body into exactly `count` fragments, if one does. */
function frameBytesFor(bodyBytes: number, count: number): number | undefined {
  const chunk = Math.ceil(bodyBytes / count);
  const maxFrameBytes = chunk + RADIO_HEADER_BYTES + MIC_BYTES;
  return maxFrameBytes <= 255 && fragmentCountOf(bodyBytes, maxFrameBytes) === count ? maxFrameBytes : undefined;
}

/**
 * A broadcast of `count` fragments of 20 bytes, the last 13: an int8 body in one group, whose
 * size can be any number of bytes, for fragment counts no model body reaches.
 */
function fillerMessage(count: number): { message: Message; maxFrameBytes: number } {
  const values = sampleValues(20 * count - 7 - 28, 5000 + count);
  const header: BodyHeader = { type: BodyType.Broadcast, encoding: 'int8', sender: GATEWAY_SENDER, session: 3, seq: 70000 + count, pos: 0, layer: 0 };
  return { message: { name: `a ${values.length}-value int8 body in one group`, body: encodeBody(header, values, 65535), source: GATEWAY_ADDRESS }, maxFrameBytes: 20 + RADIO_HEADER_BYTES + MIC_BYTES };
}

/** The fragment counts the vectors reach at least once: all the small ones, then samples up to the most a message has. */
export const FRAGMENT_COUNTS = [...Array.from({ length: 48 }, (_, i) => i + 1), 64, 96, 128, 160, 192, 224, 254, MAX_FRAGMENTS];

/** Every message at 230, 64 and 24 bytes a frame (where it fits 255 fragments), and each of FRAGMENT_COUNTS once. */
function messageVectors(messages: Message[]): FramesVector[] {
  const out: FramesVector[] = [];
  for (const m of messages) {
    for (const maxFrameBytes of [230, 64, 24]) if (fragmentCountOf(m.body.length, maxFrameBytes) <= MAX_FRAGMENTS) out.push(sentOnce(m, maxFrameBytes));
  }
  const bySize = [...messages].sort((a, b) => a.body.length - b.body.length);
  for (const count of FRAGMENT_COUNTS) {
    const m = bySize.find((x) => frameBytesFor(x.body.length, count) !== undefined);
    if (m) out.push(sentOnce(m, frameBytesFor(m.body.length, count) as number));
    else {
      const filler = fillerMessage(count);
      out.push(sentOnce(filler.message, filler.maxFrameBytes));
    }
  }
  return out;
}

/** Fragments out of order, a retransmission of one already held, a late copy after the message completed. */
function orderVectors(m: Message): FramesVector[] {
  const maxFrameBytes = 24;
  const sender = senderFor(m.source, maxFrameBytes);
  const msg = sender.body(destinationOf(m), m.body);
  const n = msg.fragmentCount;
  const reversed = sender.frames(msg, Array.from({ length: n }, (_, i) => n - 1 - i));
  const shuffled = [...sender.frames(msg, [1, 0]), ...sender.frames(msg, [0]), ...sender.frames(msg, Array.from({ length: n - 2 }, (_, i) => i + 2)), ...sender.frames(msg, [1])];
  return [framesVector(`${m.name}, fragments in reverse order`, receiverOf(m), reversed), framesVector(`${m.name}, out of order with a retransmission and a late copy`, receiverOf(m), shuffled)];
}

/** NACKs of 1..255 fragments with nothing, everything, or some fragments missing, both ways. */
function nackVectors(): FramesVector[] {
  const out: FramesVector[] = [];
  const shapes: [string, (count: number) => number[]][] = [
    ['none', () => []],
    ['all', (count) => Array.from({ length: count }, (_, i) => i)],
    ['every third', (count) => Array.from({ length: count }, (_, i) => i).filter((i) => i % 3 === 0)],
    ['the last', (count) => [count - 1]],
  ];
  for (const count of [1, 7, 8, 9, 11, 16, 17, 200, 255]) {
    for (const [shape, missing] of shapes) {
      const nack: Nack = { fragmentCount: count, missing: missing(count) };
      // a node asks the gateway for broadcast fragments; the gateway asks node 3 for result fragments
      for (const [asker, about] of [[3, GATEWAY_ADDRESS], [GATEWAY_ADDRESS, 3]]) {
        const sender = senderFor(asker, 64);
        const frames = sender.frames(sender.nack({ source: about, messageNumber: 0xfffe }, nack));
        const spec = { source: asker, destination: about, counter: FIRST_COUNTER, maxFrameBytes: 64 };
        out.push(framesVector(`NACK from ${asker} about ${count} fragments, ${shape} missing`, about, frames, spec));
      }
    }
  }
  return out;
}

/** A frame's MIC computed again after its bytes were edited: what a sender that means it would seal. */
function resigned(frame: Buffer, edit: (b: Buffer) => void): Buffer {
  const b = Buffer.from(frame);
  edit(b);
  aesCmac(sealingKey(TEST_KEY, b[2]), b.subarray(0, b.length - MIC_BYTES)).copy(b, b.length - MIC_BYTES, 0, MIC_BYTES);
  return b;
}

/** A frame sealed as its source seals it: under the source's key derived from the test key. */
function sealed(h: FrameHeader, fragment: Uint8Array): Buffer {
  return sealFrame(h, fragment, sealingKey(TEST_KEY, h.source));
}

/** Frames a receiver must drop, one reason after another. */
function rejectionVectors(small: Message, large: Message): FramesVector[] {
  const one = firstFrame(sentOnce(small, 230));
  const header = (over: Partial<FrameHeader>): FrameHeader => ({
    kind: 'fragment',
    meshId: TEST_MESH_ID,
    source: large.source,
    destination: destinationOf(large),
    counter: FIRST_COUNTER,
    messageNumber: messageNumberOf(checkBody(large.body).seq),
    fragmentIndex: 0,
    fragmentCount: 3,
    ...over,
  });
  const at = receiverOf(small);
  const third = Math.ceil(large.body.length / 3);
  const part = (i: number, body = large.body) => body.subarray(i * third, Math.min((i + 1) * third, body.length));
  const badBody = Buffer.from(large.body);
  badBody[0] ^= 1;
  const wrongKey = Buffer.alloc(16, 7);
  const v = (name: string, address: number, frames: Buffer[]) => framesVector(name, address, frames);
  return [
    v('a frame of 16 bytes', at, [one.subarray(0, 16)]),
    v('a frame of 256 bytes', at, [sealed(header({ fragmentCount: 1 }), Buffer.alloc(256 - 16, 1))]),
    v('a frame sealed under another key', at, [sealFrame({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small) }, small.body, wrongKey)]),
    v('the same frame twice', at, [one, one]),
    v('a frame for another node', NODE_ADDRESS + 1, [sealed(header({ fragmentCount: 1, source: GATEWAY_ADDRESS, destination: NODE_ADDRESS }), small.body)]),
    v('fragment 3 of 3', receiverOf(large), [resigned(sealed(header({}), part(0)), (b) => (b[10] = 3))]),
    v('fragment 0 of 0', receiverOf(large), [resigned(sealed(header({}), part(0)), (b) => (b[11] = 0))]),
    v('a NACK in 2 fragments', receiverOf(large), [sealed(header({ kind: 'nack', fragmentCount: 2 }), Buffer.of(1, 0))]),
    v('a NACK body of the wrong length', receiverOf(large), [sealed(header({ kind: 'nack', fragmentCount: 1 }), Buffer.of(9, 0))]),
    v('a NACK about 0 fragments', receiverOf(large), [sealed(header({ kind: 'nack', fragmentCount: 1 }), Buffer.of(0))]),
    v('a fragment count that changes', receiverOf(large), [sealed(header({}), part(0)), sealed(header({ counter: FIRST_COUNTER + 1, fragmentIndex: 1, fragmentCount: 4 }), part(1))]),
    v('fragments that do not tile the body', receiverOf(large), [0, 1, 2].map((i) => sealed(header({ counter: FIRST_COUNTER + i, fragmentIndex: i }), i === 1 ? part(1).subarray(1) : part(i)))),
    v('a last fragment longer than the others', receiverOf(large), [0, 1, 2].map((i) => sealed(header({ counter: FIRST_COUNTER + i, fragmentIndex: i }), large.body.subarray(i * (third - 1), i === 2 ? undefined : (i + 1) * (third - 1))))),
    v('a reassembled body with a bad magic', receiverOf(large), [0, 1, 2].map((i) => sealed(header({ counter: FIRST_COUNTER + i, fragmentIndex: i }), part(i, badBody)))),
    v('a body under another message number', receiverOf(large), [0, 1, 2].map((i) => sealed(header({ counter: FIRST_COUNTER + i, fragmentIndex: i, messageNumber: 7 }), part(i)))),
    // keys: each sender seals under its own key, and a receiver takes frames only from those it holds a key for
    v('a result sealed under the network key itself', at, [sealFrame({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small) }, small.body, TEST_KEY)]),
    v("a result from node 1 sealed under node 2's key", GATEWAY_ADDRESS, [sealFrame({ ...header({ fragmentCount: 1 }), source: 1, destination: GATEWAY_ADDRESS }, small.body, uplinkKey(TEST_KEY, 2))]),
    v('a frame to the gateway from the gateway\'s own address', GATEWAY_ADDRESS, [sealed({ ...header({ fragmentCount: 1 }), source: GATEWAY_ADDRESS, destination: GATEWAY_ADDRESS }, small.body)]),
    v('a frame from node 2 to node 5', NODE_ADDRESS, [sealed({ ...header({ fragmentCount: 1 }), source: 2, destination: NODE_ADDRESS }, small.body)]),
    v('a frame from address 255', GATEWAY_ADDRESS, [sealed({ ...header({ fragmentCount: 1 }), source: BROADCAST_ADDRESS, destination: GATEWAY_ADDRESS }, small.body)]),
    // counters: at most MAX_COUNTER_GAP ahead of the last one taken; a forged 0xFFFFFFFF does not shut the sender out
    v('a counter MAX_COUNTER_GAP ahead, then one more than that', at, [
      sealed({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small), messageNumber: 1 }, small.body),
      sealed({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small), messageNumber: 2, counter: FIRST_COUNTER + MAX_COUNTER_GAP }, small.body),
      sealed({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small), messageNumber: 3, counter: FIRST_COUNTER + 2 * MAX_COUNTER_GAP + 1 }, small.body),
    ]),
    v('a forged counter 0xFFFFFFFF, then the sender goes on', at, [
      sealed({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small), messageNumber: 1 }, small.body),
      sealed({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small), messageNumber: 2, counter: 0xffffffff }, small.body),
      sealed({ ...header({ fragmentCount: 1 }), source: small.source, destination: destinationOf(small), messageNumber: 3, counter: FIRST_COUNTER + 1 }, small.body),
    ]),
  ];
}

/** Node 3's result to the broadcast of message number 5 and its sensor report number 5, fragment by fragment in turn: two messages. */
function interleaved(report: Buffer): Buffer[] {
  const sender = senderFor(3, 24);
  const result = encodeBody({ type: BodyType.Result, encoding: 'f32', sender: 3, session: 9, seq: 5, pos: 0, layer: 0 }, sampleValues(8, 77), 0);
  const a = sender.body(GATEWAY_ADDRESS, result);
  const b = sender.sensors(5, report);
  const out: Buffer[] = [];
  for (let i = 0; i < Math.max(a.fragmentCount, b.fragmentCount); i++) {
    if (i < a.fragmentCount) out.push(...sender.frames(a, [i]));
    if (i < b.fragmentCount) out.push(...sender.frames(b, [i]));
  }
  return out;
}

/** Sensor reports (lib/radio/sensor-report.ts) from node 3: whole, in fragments of 24-byte frames, and at a node (refused). */
function sensorVectors(): FramesVector[] {
  const report = encodeSensorReport({ soundDb: 41.5, vibrationG: null, lightLux: 320, temperatureC: -3.25, humidityPct: 55 });
  const node3 = () => senderFor(3, 230);
  const small = senderFor(3, 24);
  const one = node3();
  return [
    framesVector('a sensor report from node 3', GATEWAY_ADDRESS, one.frames(one.sensors(0xfffe, report))),
    framesVector('a sensor report from node 3 in 3 fragments', GATEWAY_ADDRESS, small.frames(small.sensors(7, report))),
    framesVector('a sensor report and a result of one message number, their fragments interleaved', GATEWAY_ADDRESS, interleaved(report)),
    framesVector('a sensor report at a node', NODE_ADDRESS, node3().frames(node3().sensors(1, report))),
  ];
}

/** 257 one-fragment messages, then a late copy of the first: the receiver has forgotten it (it keeps 256), so it completes again. */
function memoryVector(m: Message): FramesVector {
  const sender = senderFor(m.source, 230);
  const base = checkBody(m.body);
  const messages = Array.from({ length: 257 }, (_, i) => sender.body(destinationOf(m), encodeBody({ ...base, seq: (base.seq + i) >>> 0 }, new Float32Array(base.count).fill(i), base.groupSize)));
  const frames = [...messages, messages[0]].flatMap((msg) => sender.frames(msg));
  return framesVector('257 messages and a late copy of the first', receiverOf(m), frames);
}

/** Every bit of a frame flipped, each in a frame alone. */
function flipVectors(name: string, address: number, frame: Buffer): FramesVector[] {
  const out: FramesVector[] = [];
  for (let bit = 0; bit < frame.length * 8; bit++) {
    const b = Buffer.from(frame);
    b[bit >> 3] ^= 1 << (bit & 7);
    out.push(framesVector(`${name}, bit ${bit} flipped`, address, [b]));
  }
  return out;
}

/** The frame vectors. */
export function frameVectors(): FramesVector[] {
  const messages = radioMessages();
  const byName = (name: string) => messages.find((m) => m.name === name) as Message;
  const small = byName('stories260K result of 1 head int8');
  const large = byName('stories260K broadcast f32');
  const nack = senderFor(3, 230);
  const nackFrame = nack.frames(nack.nack({ source: GATEWAY_ADDRESS, messageNumber: 0xfffe }, { fragmentCount: 11, missing: [0, 5, 10] }))[0];
  return [
    ...messageVectors(messages),
    ...orderVectors(large),
    ...nackVectors(),
    ...rejectionVectors(small, large),
    ...sensorVectors(),
    memoryVector(small),
    ...flipVectors(small.name, receiverOf(small), firstFrame(sentOnce(small, 230))),
    ...flipVectors(`${large.name}, fragment 0 of 2`, receiverOf(large), firstFrame(sentOnce(large, 230))),
    ...flipVectors('a NACK', GATEWAY_ADDRESS, nackFrame),
  ];
}

/** Every vector, in link-check's input order. */
export function linkVectors(): LinkVector[] {
  return [...bodyVectors(), ...frameVectors()];
}

/** The vectors as link-check reads them: one JSON object per line. */
export function vectorLines(vectors: LinkVector[] = linkVectors()): string {
  return vectors.map((v) => JSON.stringify(v)).join('\n') + '\n';
}

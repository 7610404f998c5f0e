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
 */
import { Geometry, geometry } from '../llm/config';
import { headOutputGroupSize } from '../llm/engine';
import { INT8_GROUP_SIZE } from '../llm/head';
import { Encoding } from '../llm/quant';
import { MODEL_PRESETS } from '../radio/presets';
import { seededRandom } from '../radio/channel';
import { BodyHeader, BodyType, GATEWAY_SENDER, encodeBody } from './body';

/** A body for link-check: it parses `body`, rewrites it from header and payload, decodes it, and encodes `values` (else the decoded values) again. */
export interface BodyVector {
  name: string;
  /** The body's bytes, hex. */
  body: string;
  /** The float32 values the body was encoded from (little-endian, hex); absent for altered bodies. */
  values?: string;
}

export type LinkVector = BodyVector;

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
  for (const encoding of ['f32', 'int8'] as Encoding[]) {
    const int8 = encoding === 'int8';
    cases.push({
      name: `${model} broadcast ${encoding}`,
      header: { type: BodyType.Broadcast, encoding, sender: GATEWAY_SENDER, session: 0x7a3c1f05, seq: 0xfffffffe, pos: 17, layer: g.nLayers - 1 },
      values: sampleValues(g.dim, seed++),
      groupSize: int8 ? INT8_GROUP_SIZE : 0,
    });
    for (const heads of headCounts) {
      cases.push({
        name: `${model} result of ${heads} head${heads === 1 ? '' : 's'} ${encoding}`,
        header: { type: BodyType.Result, encoding, sender: heads, session: 0x7a3c1f05, seq: 0xfffffffe, pos: 17, layer: g.nLayers - 1 },
        values: sampleValues(heads * g.headSize, seed++),
        groupSize: int8 ? headOutputGroupSize(g) : 0,
      });
    }
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

/** The body vectors: every case as encoded, then altered copies of the stories260K ones. */
export function bodyVectors(): BodyVector[] {
  const vectors: BodyVector[] = [];
  const altered: BodyVector[] = [];
  bodyCases().forEach((c, i) => {
    const body = encodeBody(c.header, c.values, c.groupSize);
    vectors.push({ name: c.name, body: toHex(body), values: toHex(c.values) });
    if (c.name.startsWith('stories260K') && (c.header.type === BodyType.Broadcast || c.values.length === 8)) altered.push(...alterations(c.name, body, 1000 + i));
  });
  return [...vectors, ...altered];
}

/** Every vector, in link-check's input order. */
export function linkVectors(): LinkVector[] {
  return bodyVectors();
}

/** The vectors as link-check reads them: one JSON object per line. */
export function vectorLines(vectors: LinkVector[] = linkVectors()): string {
  return vectors.map((v) => JSON.stringify(v)).join('\n') + '\n';
}

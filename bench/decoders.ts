/**
 * Every decoder that takes bytes from outside, as fast-check properties: the head-link body
 * (lib/link/body.ts), the radio frame and its NACK body (lib/radio/frame.ts), the serial
 * modem framing (gateway-bridge/serial.ts), the Semtech UDP packet with its JSON
 * (gateway-bridge/semtech.ts) and each JSON control schema (lib/mesh/wire.ts). Each property
 * says: on any input, random or a valid encoding with bytes changed, the decoder returns a
 * value or refuses with its own error, never anything else; and a valid encoding decodes to
 * what was encoded. `npm test` runs a few hundred cases each (test/decoders.test.ts),
 * `npm run bench:reliability` 100,000.
 */
import fc from 'fast-check';
import { BodyError, BodyType, decodeBody, encodeBody } from '../lib/link/body';
import { CONTROL_KINDS, ControlMessageError, parseControl } from '../lib/mesh/wire';
import { FrameReceiver, decodeNack, encodeNack, openFrame, sealFrame, sealingKey } from '../lib/radio/frame';
import { decodeSensorReport, encodeSensorReport } from '../lib/radio/sensor-report';
import { cobsDecode, cobsEncode, decodeModemMessage } from '../gateway-bridge/serial';
import { decodePacket, encodePacket } from '../gateway-bridge/semtech';

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

/** Bytes: random, or a valid encoding with a few bytes changed, cut or extended. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: -8, max: 8 })).map(([v, flips, cut]) => {
    const b = Buffer.from(v);
    for (const [i, x] of flips) if (b.length) b[i % b.length] = x;
    return cut < 0 ? b.subarray(0, Math.max(0, b.length + cut)) : Buffer.concat([b, Buffer.alloc(cut, 0xa5)]);
  });
  return fc.oneof(fc.uint8Array({ maxLength: 300 }), edit);
}

const floats = (min: number, max: number) => fc.float32Array({ minLength: min, maxLength: max, noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });

const bodyHeader = fc.record({
  type: fc.constantFrom(BodyType.Broadcast, BodyType.Result),
  encoding: fc.constantFrom('f32' as const, 'int8' as const),
  sender: fc.integer({ min: 0, max: 0xffff }),
  session: fc.nat({ max: 0xffffffff }),
  seq: fc.nat({ max: 0xffffffff }),
  pos: fc.integer({ min: 0, max: 0xffff }),
  layer: fc.integer({ min: 0, max: 0xffff }),
});
const validBody = fc.tuple(bodyHeader, floats(1, 80)).map(([h, v]) => new Uint8Array(encodeBody(h, v, 32)));

const frameHeader = fc.record({
  kind: fc.constantFrom('fragment' as const, 'nack' as const),
  meshId: fc.integer({ min: 0, max: 255 }),
  source: fc.integer({ min: 0, max: 255 }),
  destination: fc.integer({ min: 0, max: 255 }),
  counter: fc.nat({ max: 0xffffffff }),
  messageNumber: fc.integer({ min: 0, max: 0xffff }),
  fragmentIndex: fc.integer({ min: 0, max: 9 }),
  fragmentCount: fc.integer({ min: 10, max: 255 }),
});

/** One decoder's property, by name. */
export interface DecoderProperty {
  name: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  property: fc.IProperty<any>;
}

/** Runs fn, which may refuse only with one of `allowed`; anything else is the bug the property finds. */
function refusesOnlyWith(fn: () => unknown, ...allowed: (new (...a: never[]) => Error)[]): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (allowed.some((A) => e instanceof A)) return true;
    throw e;
  }
}

export const DECODER_PROPERTIES: DecoderProperty[] = [
  { name: 'head-link body: decodeBody', property: fc.property(mutated(validBody), (b) => refusesOnlyWith(() => decodeBody(Buffer.from(b)), BodyError)) },
  {
    name: 'head-link body: round trip',
    property: fc.property(bodyHeader, floats(1, 80), (h, v) => {
      const d = decodeBody(encodeBody({ ...h, encoding: 'f32' }, v));
      return d.seq === h.seq && d.session === h.session && d.pos === h.pos && d.values.every((x, i) => Object.is(x, v[i]) || x === v[i]);
    }),
  },
  { name: 'radio frame: openFrame', property: fc.property(mutated(fc.tuple(frameHeader, fc.uint8Array({ minLength: 1, maxLength: 200 })).map(([h, f]) => new Uint8Array(sealFrame(h, f, KEY)))), (b) => typeof openFrame(b, KEY, 7).ok === 'boolean') },
  {
    name: 'radio frame: round trip',
    property: fc.property(frameHeader, fc.uint8Array({ minLength: 1, maxLength: 200 }), (h, f) => {
      const r = openFrame(sealFrame(h, f, KEY), KEY, h.meshId);
      return r.ok && Buffer.compare(r.frame.fragment, Buffer.from(f)) === 0 && r.frame.counter === h.counter;
    }),
  },
  {
    name: 'radio frame: a node\'s and the gateway\'s receive path (per-node keys, counter gap)',
    property: fc.property(mutated(fc.tuple(frameHeader, fc.uint8Array({ minLength: 1, maxLength: 200 })).map(([h, f]) => new Uint8Array(sealFrame(h, f, sealingKey(KEY, h.source))))), (b) =>
      [new FrameReceiver({ key: KEY, meshId: 7, address: 0 }), new FrameReceiver({ key: KEY, meshId: 7, address: 1 })].every((r) => typeof r.receive(b).kind === 'string'),
    ),
  },
  { name: 'radio sensor report: decodeSensorReport', property: fc.property(mutated(fc.constant(new Uint8Array(encodeSensorReport({ soundDb: 40, lightLux: 300, humidityPct: null })))), (b) => refusesOnlyWith(() => decodeSensorReport(Buffer.from(b)), BodyError)) },
  { name: 'radio NACK body: decodeNack', property: fc.property(mutated(fc.integer({ min: 1, max: 255 }).map((n) => new Uint8Array(encodeNack({ fragmentCount: n, missing: [0, n - 1] })))), (b) => refusesOnlyWith(() => decodeNack(Buffer.from(b)), BodyError)) },
  { name: 'serial framing: cobsDecode', property: fc.property(mutated(fc.uint8Array({ maxLength: 250 }).map((d) => new Uint8Array(cobsEncode(d)))), (b) => { const r = cobsDecode(b); return r === null || Buffer.isBuffer(r); }) },
  { name: 'serial framing: COBS round trip', property: fc.property(fc.uint8Array({ maxLength: 250 }), (d) => Buffer.compare(cobsDecode(cobsEncode(d)) ?? Buffer.alloc(1, 1), Buffer.from(d)) === 0 || (d.length === 0 && cobsDecode(cobsEncode(d))?.length === 0)) },
  { name: 'serial framing: decodeModemMessage', property: fc.property(mutated(fc.uint8Array({ maxLength: 250 }).map((d) => new Uint8Array(cobsEncode(d)))), (b) => { const r = decodeModemMessage(b); return typeof r === 'string' || typeof r.kind === 'string'; }) },
  {
    name: 'Semtech UDP packet and JSON: decodePacket',
    property: fc.property(
      mutated(fc.tuple(fc.constantFrom('pushData' as const, 'pullResp' as const, 'txAck' as const), fc.integer({ min: 0, max: 0xffff }), fc.jsonValue()).map(([kind, token, j]) => new Uint8Array(encodePacket({ kind, token, eui: '0011223344556677', json: { rxpk: [j] } })))),
      (b) => { const r = decodePacket(Buffer.from(b)); return typeof r === 'string' || typeof r.kind === 'string'; },
    ),
  },
  ...CONTROL_KINDS.map((kind) => ({
    name: `JSON schema: ${kind}`,
    property: fc.property(fc.oneof(fc.jsonValue(), fc.string(), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1'))), (v) => refusesOnlyWith(() => parseControl(kind, typeof v === 'string' ? v : JSON.stringify(v) ?? ''), ControlMessageError)),
  })),
];

/** Runs every property `numRuns` times; the failures (with fast-check's counterexample) and the cases run. */
export function fuzzDecoders(numRuns: number, seed?: number): { name: string; cases: number; failure: string | null; ms: number }[] {
  return DECODER_PROPERTIES.map(({ name, property }) => {
    const t = process.hrtime.bigint();
    const r = fc.check(property, { numRuns, seed });
    return { name, cases: r.numRuns, failure: r.failed ? `${r.counterexample ? JSON.stringify(r.counterexample).slice(0, 300) : ''} ${String(r.errorInstance ?? '')}` : null, ms: Number(process.hrtime.bigint() - t) / 1e6 };
  });
}

/**
 * Link (a): the serial LoRa modem. The framing (COBS, CRC-16, the four messages), then a whole
 * generation through the bridge over a real pseudo-terminal pair made by socat, with a
 * simulated modem at the far end putting frames on the simulated channel.
 */
import { randomBytes } from 'node:crypto';
import { modulation } from '../lib/radio/airtime';
import { ModemFrameReader, ModemMessage, SerialModemLink, SimulatedSerialModem, cobsDecode, cobsEncode, crc16, decodeModemMessage, encodeModemMessage } from '../gateway-bridge/serial';
import { generateOverRadio } from '../gateway-bridge/run';
import { goldenIds } from './support/fixtures';
import { ONCE, ONCE_OPTIONS, bridgePaths, brokerProcess, quiet, radioMesh } from './support/radio';
import { ptyPair } from './support/socat';
import { startNativeModem } from '../gateway-bridge/native-radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('CRC-16/CCITT-FALSE check value', () => {
  expect(crc16(Buffer.from('123456789'))).toBe(0x29b1);
});

test('COBS round-trips any bytes, zeros and 254-byte runs included, and never emits a zero', () => {
  const cases = [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 0]), Buffer.alloc(254, 1), Buffer.alloc(255, 1), Buffer.alloc(600, 0), Buffer.from([1, 0, 2, 0])];
  for (let i = 0; i < 50; i++) cases.push(randomBytes(i * 7));
  for (const c of cases) {
    const e = cobsEncode(c);
    expect(e.includes(0)).toBe(false);
    expect(cobsDecode(e)).toEqual(c);
  }
  expect(cobsDecode(Buffer.from([5, 1, 2]))).toBeNull(); // runs past the end
});

test('modem messages round-trip; a flipped bit or truncated frame is dropped and counted, not thrown', () => {
  const messages: ModemMessage[] = [
    { kind: 'tx', token: 7, tmst: 0xfffffff0, frequencyHz: 869525000, sf: 7, bandwidthKHz: 125, codingRate: 5, powerDbm: 14, payload: randomBytes(230) },
    { kind: 'txAck', token: 7, status: 'dutyCycle' },
    { kind: 'rx', token: 65535, tmst: 12345, frequencyHz: 868100000, sf: 7, bandwidthKHz: 125, codingRate: 5, rssi: -97, snr: -2.25, payload: Buffer.from([0, 0, 1]) },
    { kind: 'rxAck', token: 65535 },
  ];
  const got: ModemMessage[] = [];
  const reader = new ModemFrameReader((m) => got.push(m));
  const stream = Buffer.concat(messages.map(encodeModemMessage));
  for (let i = 0; i < stream.length; i += 13) reader.push(stream.subarray(i, i + 13)); // arbitrary chunking
  expect(got).toEqual(messages);
  const bad = encodeModemMessage(messages[0]);
  bad[40] ^= 0x10;
  reader.push(bad);
  reader.push(Buffer.from([3, 1, 2, 0]));
  expect(got).toHaveLength(4);
  expect(reader.malformed).toBe(2);
  expect(decodeModemMessage(bad.subarray(0, bad.length - 1))).toBe('CRC mismatch');
});

test('a whole generation through the bridge, a serial modem on a socat pty pair, and the simulated channel', async () => {
  const pty = await ptyPair();
  cleanups.push(() => pty.close());
  const brokerUrl = await brokerProcess(cleanups);
  const mesh = radioMesh(4, { loss: 0.05, seed: 9 });
  const m = modulation(mesh.config.modulation);
  const modem = await SimulatedSerialModem.open({ path: pty.a, radio: mesh.attachGatewayRadio(), clock: mesh.clock, modulation: m });
  cleanups.push(() => modem.close());
  const link = await SerialModemLink.open({ path: pty.b, clock: mesh.clock, modulation: m });
  cleanups.push(() => link.close());
  const result = await generateOverRadio({ mesh, link, brokerUrl, meshId: 'serial', ...bridgePaths, generate: ONCE_OPTIONS, log: quiet });
  expect(result.tokens).toEqual(goldenIds(ONCE.name));
  expect(modem.counters.tx).toBeGreaterThan(ONCE.steps * 5); // at least a frame per layer went out through the modem
  expect(modem.counters.rx).toBeGreaterThan(ONCE.steps * 5 * 4 * 0.9);
  expect(modem.counters.refused).toBe(0);
  expect(link.malformed).toBe(0);
  expect(mesh.errors).toEqual([]);
});

test('a whole generation through the bridge and the firmware\'s radio modem (host build) at the far end of the socat pty', async () => {
  const pty = await ptyPair();
  cleanups.push(() => pty.close());
  const brokerUrl = await brokerProcess(cleanups);
  const mesh = radioMesh(4, { loss: 0.05, seed: 13 });
  const lines: string[] = [];
  const modem = await startNativeModem({ mesh, serialPath: pty.a, onLine: (l) => lines.push(l) });
  cleanups.push(() => modem.close());
  const link = await SerialModemLink.open({ path: pty.b, clock: mesh.clock, modulation: modulation(mesh.config.modulation) });
  cleanups.push(() => link.close());
  const result = await generateOverRadio({ mesh, link, brokerUrl, meshId: 'serial-native', ...bridgePaths, generate: ONCE_OPTIONS, log: quiet });
  expect(result.tokens).toEqual(goldenIds(ONCE.name));
  expect(link.malformed).toBe(0);
  expect(mesh.errors).toEqual([]);
  expect(modem.server.counters.tx).toBeGreaterThan(ONCE.steps * 5); // the gateway's frames went out through the modem
  expect(modem.server.counters.rx).toBeGreaterThan(ONCE.steps * 5 * 4 * 0.9);
  expect(modem.server.counters.refused).toBe(0);
  await modem.close();
  expect(lines.find((l) => l.includes('stopping:'))).toMatch(/0 refused, 0 malformed serial frames/);
});

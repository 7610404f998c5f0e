/**
 * Link (b): the Semtech UDP packet-forwarder protocol. The datagrams, the bridge's answers to
 * a real UDP client on loopback, a malformed datagram, and a whole generation with a
 * simulated packet forwarder whose concentrator is the simulated channel.
 */
import * as dgram from 'node:dgram';
import { modulation } from '../lib/radio/airtime';
import { SemtechUdpLink, SimulatedPacketForwarder, decodePacket, encodePacket, parseDataRate } from '../gateway-bridge/semtech';
import { generateOverRadio } from '../gateway-bridge/run';
import { goldenIds } from './support/fixtures';
import { ONCE, ONCE_OPTIONS, bridgePaths, brokerProcess, quiet, radioMesh } from './support/radio';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('packets: header, token, gateway EUI and JSON as lora_pkt_fwd lays them out', () => {
  const push = encodePacket({ kind: 'pushData', token: 0xabcd, eui: 'aa555a0000000001', json: { rxpk: [] } });
  expect([...push.subarray(0, 4)]).toEqual([2, 0xab, 0xcd, 0]);
  expect(push.subarray(4, 12).toString('hex')).toBe('aa555a0000000001');
  expect(JSON.parse(push.subarray(12).toString())).toEqual({ rxpk: [] });
  expect([...encodePacket({ kind: 'pullAck', token: 1 })]).toEqual([2, 0, 1, 4]);
  expect(decodePacket(encodePacket({ kind: 'txAck', token: 9, eui: '0102030405060708', json: { txpk_ack: { error: 'NONE' } } }))).toEqual({ kind: 'txAck', token: 9, eui: '0102030405060708', json: { txpk_ack: { error: 'NONE' } } });
  expect(decodePacket(Buffer.from([1, 0, 0, 0]))).toMatch(/protocol version 1/);
  expect(decodePacket(Buffer.from([2, 0, 0, 9]))).toMatch(/unknown identifier/);
  expect(decodePacket(Buffer.concat([encodePacket({ kind: 'pullResp', token: 1 }), Buffer.from('{nope')]))).toMatch(/does not parse/);
  expect(parseDataRate('SF7BW125')).toEqual({ sf: 7, bandwidthKHz: 125 });
  expect(parseDataRate('SF7 BW125')).toBeNull();
});

test('the bridge answers PUSH_DATA with PUSH_ACK and PULL_DATA with PULL_ACK, and counts a malformed datagram without failing', async () => {
  const mesh = radioMesh(1);
  const link = await SemtechUdpLink.listen({ clock: mesh.clock, modulation: modulation(mesh.config.modulation) });
  cleanups.push(() => link.close());
  const client = dgram.createSocket('udp4');
  cleanups.push(() => new Promise<void>((r) => client.close(() => r())));
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  const replies: Buffer[] = [];
  client.on('message', (m) => replies.push(m));
  const heard: Buffer[] = [];
  link.onReceive((frame) => heard.push(frame));
  const send = (b: Buffer) => new Promise<void>((r) => client.send(b, link.port, '127.0.0.1', () => r()));
  await send(Buffer.from([2, 0x12]));
  const rxpk = { tmst: 1000, freq: 903.9, stat: 1, modu: 'LORA', datr: 'SF7BW125', codr: '4/5', rssi: -80, lsnr: 9, size: 3, data: Buffer.from([1, 2, 3]).toString('base64') };
  await send(encodePacket({ kind: 'pushData', token: 0x0102, eui: '0000000000000001', json: { rxpk: [rxpk, { ...rxpk, stat: -1 }] } }));
  await send(encodePacket({ kind: 'pullData', token: 0x0304, eui: '0000000000000001' }));
  await link.waitForForwarder(2000);
  while (replies.length < 2) await new Promise((r) => setTimeout(r, 5));
  expect(replies.map((r) => [...r])).toEqual([
    [2, 0x01, 0x02, 1],
    [2, 0x03, 0x04, 4],
  ]);
  expect(heard).toEqual([Buffer.from([1, 2, 3])]); // the frame with a bad CRC (stat -1) is not a frame
  expect(link.counters).toMatchObject({ pushData: 1, pullData: 1, rxpk: 1, malformed: 1 });
});

test('a whole generation through the bridge, a packet forwarder on UDP loopback, and the simulated channel', async () => {
  const brokerUrl = await brokerProcess(cleanups);
  const mesh = radioMesh(4, { loss: 0.05, seed: 13, channels: 1 });
  const m = modulation(mesh.config.modulation);
  const link = await SemtechUdpLink.listen({ clock: mesh.clock, modulation: m });
  cleanups.push(() => link.close());
  const forwarder = await SimulatedPacketForwarder.start({ host: '127.0.0.1', port: link.port, radio: mesh.attachGatewayRadio(), clock: mesh.clock, modulation: m });
  cleanups.push(() => forwarder.close());
  await link.waitForForwarder();
  const result = await generateOverRadio({ mesh, link, brokerUrl, meshId: 'semtech', ...bridgePaths, generate: ONCE_OPTIONS, log: quiet });
  expect(result.tokens).toEqual(goldenIds(ONCE.name));
  expect(forwarder.counters.pullResp).toBeGreaterThan(ONCE.steps * 5);
  expect(forwarder.counters.refused).toBe(0);
  expect(forwarder.counters.pushAck).toBe(forwarder.counters.pushData);
  expect(link.counters.rxpk).toBe(forwarder.counters.pushData);
  expect(link.counters.malformed).toBe(0);
  expect(mesh.errors).toEqual([]);
});

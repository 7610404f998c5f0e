// Host unit tests of the firmware core and its HAL seams, written for Unity (PlatformIO's
// `pio test -e native` runs them; here lib/firmware/build.ts builds them as firmware-unit
// against firmware/test/unity/unity.h and test/firmware-unit.test.ts runs them). The HALs are
// small in-memory implementations: a radio that records what it was asked to send, a clock
// the test moves, storage in a map.
#include <unity.h>

#include <map>
#include <string>
#include <vector>

#include "airtime.h"
#include "counter_store.h"
#include "join_record.h"
#include "node_state.h"
#include "radio_node.h"
#include "modem.h"
#include "shard.h"

void setUp(void) {}
void tearDown(void) {}

namespace {

struct MemStorage : MlStorageHal {
  std::map<std::string, std::vector<uint8_t>> kv;
  int saves = 0;
  bool fail = false;
  bool load(const char* key, uint8_t* out, size_t len) override {
    auto it = kv.find(key);
    if (it == kv.end() || it->second.size() != len) return false;
    memcpy(out, it->second.data(), len);
    return true;
  }
  bool save(const char* key, const uint8_t* v, size_t len) override {
    if (fail) return false;
    saves++;
    kv[key] = std::vector<uint8_t>(v, v + len);
    return true;
  }
};

struct MemShard : MlShardSource {
  std::vector<uint8_t> bytes;
  size_t size() override { return bytes.size(); }
  bool read(size_t offset, uint8_t* out, size_t len) override {
    if (offset + len > bytes.size()) return false;
    memcpy(out, bytes.data() + offset, len);
    return true;
  }
};

struct Sent {
  std::vector<uint8_t> frame;
  uint32_t hz;
  double atMs;
  MlTxPurpose purpose;
};

struct RecordingRadio : MlRadioHal, MlClockHal {
  std::vector<Sent> sent;
  std::vector<double> wakes;
  double now = 0;
  bool begin(const MlRadioSettings&, std::string*) override { return true; }
  bool startReceive(uint32_t) override { return true; }
  bool transmit(const uint8_t* f, size_t n, uint32_t hz, double at, MlTxPurpose p, std::string*) override {
    sent.push_back(Sent{std::vector<uint8_t>(f, f + n), hz, at, p});
    return true;
  }
  double nowMs() override { return now; }
  void wakeAt(double at) override { wakes.push_back(at); }
};

void quietLog(void*, const char*, const std::string&) {}

const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

// A tiny model: dim 32, 2 heads of 16 sharing one kv head, 1 layer, context 8; weights a ramp.
MlConfig tinyConfig() {
  MlConfig g{};
  g.dim = 32;
  g.hiddenDim = 64;
  g.nLayers = 1;
  g.nHeads = 2;
  g.nKvHeads = 1;
  g.vocabSize = 16;
  g.seqLen = 8;
  g.headSize = 16;
  g.kvDim = 16;
  g.kvMul = 2;
  return g;
}

MlSlices* tinySlices(const MlConfig& g) {
  MlProjectionRows rows[3];
  const int counts[3] = {2 * g.headSize, g.headSize, g.headSize};
  for (int t = 0; t < 3; t++) {
    rows[t] = MlProjectionRows{counts[t], (float*)malloc(sizeof(float) * (size_t)counts[t] * g.dim), nullptr, nullptr};
    for (int i = 0; i < counts[t] * g.dim; i++) rows[t].w[i] = (float)((i * 7 + t) % 13 - 6) / 32;
  }
  const int heads[2] = {0, 1}, kv[1] = {0};
  char err[128];
  return ml_slices_adopt(g, heads, 2, kv, 1, false, rows, err, sizeof err);
}

}  // namespace

void test_time_on_air_matches_the_published_values(void) {
  TEST_ASSERT_DOUBLE_WITHIN(0.05, 348.4, ml_time_on_air_ms(222, MlModulation{7, 125, 5, 8}));
  TEST_ASSERT_DOUBLE_WITHIN(0.05, 1106.9, ml_time_on_air_ms(222, MlModulation{9, 125, 5, 8}));
  TEST_ASSERT_DOUBLE_WITHIN(0.05, 8036.4, ml_time_on_air_ms(222, MlModulation{12, 125, 5, 8}));
  TEST_ASSERT_DOUBLE_WITHIN(0.05, 2793.5, ml_time_on_air_ms(64, MlModulation{12, 125, 5, 8}));
}

void test_crc32_gives_the_check_value(void) {
  TEST_ASSERT_EQUAL_HEX32(0xCBF43926, ml_crc32(0, (const uint8_t*)"123456789", 9));
  TEST_ASSERT_EQUAL_HEX32(0xCBF43926, ml_crc32(ml_crc32(0, (const uint8_t*)"1234", 4), (const uint8_t*)"56789", 5));
}

void test_frame_counter_resumes_above_every_counter_used_before_a_reboot(void) {
  MemStorage flash;
  std::string err;
  uint32_t last = 0;
  {
    MlCounterStore c;
    TEST_ASSERT_TRUE(c.begin(&flash, "counter-1", &err));
    TEST_ASSERT_EQUAL_UINT32(0, c.start());
    for (uint32_t n = 0; n < 150; n++) TEST_ASSERT_TRUE(c.use(last = n, &err));
  }
  TEST_ASSERT_TRUE(flash.saves <= 4);  // a save per 64 counters, not per frame
  MlCounterStore again;
  TEST_ASSERT_TRUE(again.begin(&flash, "counter-1", &err));
  TEST_ASSERT_GREATER_THAN(last, again.start());
  TEST_ASSERT_TRUE(again.start() <= last + MlCounterStore::BLOCK + 1);
}

void test_frame_counter_that_cannot_be_saved_stops_the_frame(void) {
  MemStorage flash;
  flash.fail = true;
  MlCounterStore c;
  std::string err;
  TEST_ASSERT_FALSE(c.begin(&flash, "counter-1", &err));
  TEST_ASSERT_EQUAL_STRING("could not save the frame counter reservation 64", err.c_str());
}

void test_every_node_state_has_its_own_name_and_colour(void) {
  for (int a = 0; a < ML_STATE_COUNT; a++)
    for (int b = a + 1; b < ML_STATE_COUNT; b++) {
      const MlRgb x = ml_state_colour((MlNodeState)a), y = ml_state_colour((MlNodeState)b);
      TEST_ASSERT_TRUE(x.r != y.r || x.g != y.g || x.b != y.b);
      TEST_ASSERT_TRUE(strcmp(ml_state_name((MlNodeState)a), ml_state_name((MlNodeState)b)) != 0);
    }
  TEST_ASSERT_EQUAL_STRING("computing", ml_state_name(ML_STATE_COMPUTING));
}

void test_a_shard_source_that_is_no_shard_is_refused(void) {
  MemShard s;
  s.bytes.assign(200, 0);
  MlShardInfo info;
  std::string err;
  TEST_ASSERT_FALSE(ml_shard_open(&s, &info, &err));
  TEST_ASSERT_EQUAL_STRING("not a weight shard (no MLSH magic)", err.c_str());
  s.bytes.assign(10, 0);
  TEST_ASSERT_FALSE(ml_shard_open(&s, &info, &err));
  TEST_ASSERT_EQUAL_STRING("10 bytes is shorter than a shard header (56)", err.c_str());
}

// A join record as mesh-llm provision lays it out (lib/firmware/join-record.ts), CRC-32 last.
std::vector<uint8_t> joinRecord(uint16_t version, uint8_t meshId, uint8_t address, const std::string& plan) {
  std::vector<uint8_t> b(ML_JOIN_FIXED_BYTES + plan.size(), 0);
  memcpy(b.data(), "MLJR", 4);
  b[4] = (uint8_t)version;
  b[5] = (uint8_t)(version >> 8);
  b[6] = (uint8_t)b.size();
  b[7] = (uint8_t)(b.size() >> 8);
  b[8] = meshId;
  b[9] = address;
  b[10] = (uint8_t)plan.size();
  b[11] = (uint8_t)(plan.size() >> 8);
  for (int i = 0; i < 16; i++) b[12 + i] = (uint8_t)(0xa0 + i);
  memcpy(b.data() + ML_JOIN_FIXED_BYTES, plan.data(), plan.size());
  const uint32_t crc = ml_crc32(0, b.data(), b.size());
  for (int i = 0; i < 4; i++) b[28 + i] = (uint8_t)(crc >> (8 * i));
  return b;
}

void test_a_join_record_gives_the_node_its_address_mesh_key_and_plan_and_a_damaged_or_newer_one_is_refused(void) {
  const std::string plan =
      "{\"address\":3,\"maxFrameBytes\":230,\"sf\":7,\"bandwidthKHz\":125,\"codingRate\":5,\"preambleSymbols\":8,\"broadcastHz\":869525000,"
      "\"slot\":{\"frequencyHz\":868100000,\"offsetMs\":266.0,\"lengthMs\":123.0},\"guardMs\":5,\"dutyCycle\":0.01,\"maxDwellMs\":0,"
      "\"result\":{\"encoding\":\"int8\",\"groupSize\":8},\"model\":{\"dim\":64,\"nLayers\":5,\"nHeads\":8,\"nKvHeads\":4,\"seqLen\":512},\"heads\":[4,5]}";
  std::vector<uint8_t> b = joinRecord(1, 7, 3, plan);
  b.resize(b.size() + 100, 0xff);  // a partition image: erased flash after the record
  MlJoinRecord r;
  std::string err;
  TEST_ASSERT_TRUE(ml_join_record_read(b.data(), b.size(), &r, &err));
  MlRadioNodeConfig c;
  MlConfig model;
  std::vector<int> heads;
  TEST_ASSERT_TRUE(ml_join_record_apply(r, &c, &model, &heads, &err));
  TEST_ASSERT_EQUAL_INT(3, c.address);
  TEST_ASSERT_EQUAL_INT(7, c.meshId);
  TEST_ASSERT_EQUAL_INT(0xa0, c.key[0]);
  TEST_ASSERT_EQUAL_INT(0xaf, c.key[15]);
  TEST_ASSERT_EQUAL_UINT32(868100000, c.slotHz);
  TEST_ASSERT_EQUAL_INT(2, (int)heads.size());
  TEST_ASSERT_EQUAL_INT(64, model.dim);
  // one bit flipped in the plan
  std::vector<uint8_t> bad = b;
  bad[40] ^= 0x01;
  TEST_ASSERT_FALSE(ml_join_record_read(bad.data(), bad.size(), &r, &err));
  TEST_ASSERT_TRUE(err.rfind("checksum mismatch (CRC-32 ", 0) == 0);
  TEST_ASSERT_TRUE(err.find("the record is damaged") != std::string::npos);
  // a version this build does not read (its CRC right)
  std::vector<uint8_t> v2 = joinRecord(2, 7, 3, plan);
  TEST_ASSERT_FALSE(ml_join_record_read(v2.data(), v2.size(), &r, &err));
  TEST_ASSERT_EQUAL_STRING("join record version 2 (this build reads 1)", err.c_str());
  // cut short, not a record, a plan that is not one
  TEST_ASSERT_FALSE(ml_join_record_read(b.data(), 100, &r, &err));
  TEST_ASSERT_EQUAL_STRING("record of 386 bytes with a 354-byte plan in 100 bytes", err.c_str());
  std::vector<uint8_t> erased(64, 0xff);
  TEST_ASSERT_FALSE(ml_join_record_read(erased.data(), erased.size(), &r, &err));
  TEST_ASSERT_EQUAL_STRING("not a join record (no MLJR magic): provision the node with mesh-llm provision", err.c_str());
  std::vector<uint8_t> noPlan = joinRecord(1, 7, 3, "{\"heads\":[]}");
  TEST_ASSERT_TRUE(ml_join_record_read(noPlan.data(), noPlan.size(), &r, &err));
  TEST_ASSERT_FALSE(ml_join_record_apply(r, &c, &model, &heads, &err));
  TEST_ASSERT_EQUAL_STRING("its plan: a join record without slot, model, result or heads", err.c_str());
}

// The node NACKs the broadcast fragment it lacks in its slot, then sends its whole result in
// the next round's slot, frame after frame, all on its slot channel.
// The replay window: a counter more than ML_MAX_COUNTER_GAP ahead is refused (so a forged
// 0xFFFFFFFF does not shut the sender out), and a window kept in storage refuses after a reboot
// every counter it took before.
void test_replay_window_bounds_the_counter_gap_and_survives_a_reboot(void) {
  MemStorage flash;
  std::string err, detail;
  MlReplayWindow w;
  TEST_ASSERT_TRUE(w.restore(&flash, "window-", 0, &err));
  TEST_ASSERT_TRUE(w.check(0, 100, &detail));
  TEST_ASSERT_FALSE(w.check(0, 0xffffffffu, &detail));
  TEST_ASSERT_EQUAL_STRING("counter 4294967295 from 0 is 4294967195 past 100; a counter moves at most 16384 ahead", detail.c_str());
  TEST_ASSERT_TRUE(w.check(0, 101, &detail));
  TEST_ASSERT_TRUE(w.check(0, 101 + ML_MAX_COUNTER_GAP, &detail));
  for (uint32_t c = 101 + ML_MAX_COUNTER_GAP + 1; c < 101 + ML_MAX_COUNTER_GAP + 40; c++) TEST_ASSERT_TRUE(w.check(0, c, &detail));
  const uint32_t last = w.lastAccepted(0);
  TEST_ASSERT_TRUE(w.saves() < 10);  // one write per block of counters, not per frame
  MlReplayWindow rebooted;
  TEST_ASSERT_TRUE(rebooted.restore(&flash, "window-", 0, &err));
  for (uint32_t c = 90; c <= last; c++) TEST_ASSERT_FALSE(rebooted.check(0, c, &detail));
  TEST_ASSERT_TRUE(rebooted.lastAccepted(0) <= last + ML_REPLAY_SAVE_BLOCK);
  TEST_ASSERT_TRUE(rebooted.check(0, last + ML_REPLAY_SAVE_BLOCK + 1, &detail));
}

// Keys: a node opens the gateway's frames only and seals under its own key; the gateway opens
// node 3's frame under node 3's key only.
void test_keys_are_per_node_and_no_node_opens_another_nodes_frames(void) {
  MlRadioKeyring node3, node4, gw;
  node3.derive(KEY, 3);
  node4.derive(KEY, 4);
  gw.derive(KEY, ML_RADIO_GATEWAY);
  TEST_ASSERT_TRUE(node3.open(4) == nullptr);
  TEST_ASSERT_TRUE(gw.open(ML_RADIO_GATEWAY) == nullptr);
  TEST_ASSERT_TRUE(memcmp(node3.seal(), gw.open(3), 16) == 0);
  TEST_ASSERT_TRUE(memcmp(node3.seal(), node4.seal(), 16) != 0);
  TEST_ASSERT_TRUE(memcmp(gw.seal(), node3.open(ML_RADIO_GATEWAY), 16) == 0);
  const MlRadioHeader h{ML_FRAME_FRAGMENT, 1, 3, ML_RADIO_GATEWAY, 9, 1, 0, 1};
  const uint8_t fragment[4] = {1, 2, 3, 4};
  uint8_t f[64];
  const size_t n = ml_radio_seal(node4.seal(), h, fragment, 4, f);  // node 4 posing as node 3
  MlRadioFrame out;
  std::string detail;
  TEST_ASSERT_EQUAL_INT(ML_REJECT_MIC, ml_radio_open(gw, 1, f, n, &out, &detail));
  TEST_ASSERT_EQUAL_INT(ML_REJECT_SOURCE, ml_radio_open(node4, 1, f, n, &out, &detail));
  const size_t m = ml_radio_seal(node3.seal(), h, fragment, 4, f);
  TEST_ASSERT_EQUAL_INT(ML_RADIO_ACCEPTED, ml_radio_open(gw, 1, f, m, &out, &detail));
}

void test_radio_node_asks_for_what_it_lacks_then_answers_in_its_slot(void) {
  const MlConfig g = tinyConfig();
  MlRadioNodeConfig c;
  c.address = 3;
  memcpy(c.key, KEY, 16);
  c.maxFrameBytes = 64;  // 48 body bytes a frame
  c.broadcastHz = 869525000;
  c.slotHz = 868100000;
  c.slotOffsetMs = 45;
  c.slotLengthMs = 500;
  c.resultEncoding = ML_ENCODING_F32;
  RecordingRadio radio;
  MemStorage flash;
  MlCounterStore counter;
  std::string err;
  TEST_ASSERT_TRUE(counter.begin(&flash, "counter-3", &err));
  MlRadioNode node;
  MlRadioNodeIo io{nullptr, quietLog, nullptr};
  TEST_ASSERT_TRUE(node.init(c, g, tinySlices(g), &radio, &radio, &counter, io, &err));

  // the gateway's broadcast of layer 0 at position 0: 32 float32 values, 152 bytes, 4 fragments
  MlFrameSender gateway;
  uint8_t downlink[16];
  TEST_ASSERT_TRUE(ml_downlink_key(KEY, downlink));
  TEST_ASSERT_TRUE(gateway.init(downlink, 1, ML_RADIO_GATEWAY, 64, 0, &err));
  MlBodyHeader h{ML_BODY_BROADCAST, ML_ENCODING_F32, 0, 77, 5, 0, 0, 32, 0};
  float xb[32];
  for (int i = 0; i < 32; i++) xb[i] = (float)(i - 16) / 8;
  std::vector<uint8_t> body(ml_body_bytes(ML_ENCODING_F32, 32, 0));
  ml_body_encode(h, xb, body.data());
  MlOutgoing m;
  TEST_ASSERT_TRUE(gateway.body(ML_RADIO_EVERY_NODE, body.data(), body.size(), &m, &err));
  TEST_ASSERT_EQUAL_INT(4, m.fragmentCount);
  uint8_t f[255];
  auto hear = [&](int index, double endMs) {
    const size_t n = gateway.frame(m, index, f);
    radio.now = endMs;
    node.onReception(MlReception{f, n, endMs, c.broadcastHz, -90, 7.5f});
  };
  hear(0, 100);
  hear(1, 200);
  hear(3, 300);  // the marker; fragment 2 was lost
  TEST_ASSERT_EQUAL_INT(1, (int)radio.wakes.size());
  TEST_ASSERT_EQUAL_DOUBLE(345, radio.wakes[0]);
  radio.now = 345;
  node.onTimer();
  TEST_ASSERT_EQUAL_INT(1, (int)radio.sent.size());
  TEST_ASSERT_EQUAL_INT(ML_TX_NACK, radio.sent[0].purpose);
  TEST_ASSERT_EQUAL_DOUBLE(345, radio.sent[0].atMs);
  TEST_ASSERT_EQUAL_UINT32(c.slotHz, radio.sent[0].hz);
  MlFrameReceiver atGateway;
  MlRadioKeyring gatewayKeys;
  gatewayKeys.derive(KEY, ML_RADIO_GATEWAY);
  atGateway.init(gatewayKeys, 1, ML_RADIO_GATEWAY);
  MlReceiveEvent nack = atGateway.receive(radio.sent[0].frame.data(), radio.sent[0].frame.size());
  TEST_ASSERT_EQUAL_INT(MlReceiveEvent::NACK, nack.kind);
  TEST_ASSERT_EQUAL_INT(1, (int)nack.nack.missing.size());
  TEST_ASSERT_EQUAL_INT(2, nack.nack.missing[0]);

  // the next round: fragment 2 again, then the marker
  hear(2, 1000);
  hear(3, 1100);
  radio.now = 1145;
  node.onTimer();
  TEST_ASSERT_EQUAL_INT(1 + 4, (int)radio.sent.size());  // 2 heads x 16 float32 = 152 bytes, 4 fragments
  double t = 1145;
  MlReceiveEvent last;
  for (size_t i = 1; i < radio.sent.size(); i++) {
    TEST_ASSERT_EQUAL_INT(ML_TX_RESULT, radio.sent[i].purpose);
    TEST_ASSERT_EQUAL_DOUBLE(t, radio.sent[i].atMs);  // one after another from the slot's start
    t += ml_time_on_air_ms(radio.sent[i].frame.size(), c.modulation);
    last = atGateway.receive(radio.sent[i].frame.data(), radio.sent[i].frame.size());
  }
  TEST_ASSERT_EQUAL_INT(MlReceiveEvent::BODY, last.kind);
  TEST_ASSERT_EQUAL_INT(ML_BODY_RESULT, last.header.type);
  TEST_ASSERT_EQUAL_INT(3, last.header.sender);
  TEST_ASSERT_EQUAL_UINT32(77, last.header.session);
  TEST_ASSERT_EQUAL_UINT32(5, last.header.seq);
  TEST_ASSERT_EQUAL_INT(32, last.header.count);
  TEST_ASSERT_EQUAL_INT(1, (int)node.counters().results);
  TEST_ASSERT_EQUAL_INT(1, (int)node.counters().nacks);
}

void test_modem_framing_round_trips_and_drops_a_damaged_frame(void) {
  TEST_ASSERT_EQUAL_HEX32(0x29B1, ml_crc16((const uint8_t*)"123456789", 9));
  MlModemMessage m;
  m.type = ML_MODEM_RX;
  m.token = 65535;
  m.tmst = 12345;
  m.frequencyHz = 868100000;
  m.sf = 7;
  m.bandwidthKHz = 125;
  m.codingRate = 5;
  m.rssi = -97;
  m.snrQuarterDb = -9;
  m.payload = {0, 0, 1, 0};
  std::vector<uint8_t> wire = ml_modem_encode(m);
  for (size_t i = 0; i + 1 < wire.size(); i++) TEST_ASSERT_TRUE(wire[i] != 0);
  std::vector<MlModemMessage> got;
  MlModemReader reader;
  reader.push(wire.data(), wire.size(), [&](const MlModemMessage& x) { got.push_back(x); });
  TEST_ASSERT_EQUAL_INT(1, (int)got.size());
  TEST_ASSERT_EQUAL_INT(-97, got[0].rssi);
  TEST_ASSERT_EQUAL_INT(-9, got[0].snrQuarterDb);
  TEST_ASSERT_TRUE(got[0].payload == m.payload);
  wire[5] ^= 0x10;
  reader.push(wire.data(), wire.size(), [&](const MlModemMessage& x) { got.push_back(x); });
  TEST_ASSERT_EQUAL_INT(1, (int)got.size());
  TEST_ASSERT_EQUAL_INT(1, (int)reader.malformed);
  TEST_ASSERT_EQUAL_DOUBLE(4294967.296 + 1, ml_from_timestamp_us(1000, 4294967.296 - 5));  // across the 32-bit wrap
}

int main(void) {
  UNITY_BEGIN();
  RUN_TEST(test_time_on_air_matches_the_published_values);
  RUN_TEST(test_crc32_gives_the_check_value);
  RUN_TEST(test_frame_counter_resumes_above_every_counter_used_before_a_reboot);
  RUN_TEST(test_frame_counter_that_cannot_be_saved_stops_the_frame);
  RUN_TEST(test_every_node_state_has_its_own_name_and_colour);
  RUN_TEST(test_a_shard_source_that_is_no_shard_is_refused);
  RUN_TEST(test_replay_window_bounds_the_counter_gap_and_survives_a_reboot);
  RUN_TEST(test_keys_are_per_node_and_no_node_opens_another_nodes_frames);
  RUN_TEST(test_radio_node_asks_for_what_it_lacks_then_answers_in_its_slot);
  RUN_TEST(test_modem_framing_round_trips_and_drops_a_damaged_frame);
  RUN_TEST(test_a_join_record_gives_the_node_its_address_mesh_key_and_plan_and_a_damaged_or_newer_one_is_refused);
  return UNITY_END();
}

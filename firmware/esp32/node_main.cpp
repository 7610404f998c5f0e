// The head node on an ESP32-S3 with a LoRa transceiver: the same MlRadioNode the host build
// runs against the simulated channel (firmware/host/radio/radio_main.cpp), on the ESP32 HALs.
// Its shard comes from the "shard" partition (mapped: the rows used in place), its join record
// (mesh id, address, network key, plan) from the "join" partition, its frame counter from NVS, its
// state goes to the WS2812, its sensor readings to the gateway as radio sensor reports and to the
// serial console as schemas/sensors.json lines. NOT compiled in CI (docs/FIRMWARE.md).
#include "esp32_hal.h"
#include "node_state.h"
#include "join_record.h"
#include "radio_node.h"
#include "sensor_report.h"
#include "shard.h"

namespace {
MlRadioLibRadio radio;
MlEsp32Clock clock_;
MlNvsStorage storage;
MlPartitionShard shard;
MlWs2812Led led;
MlEsp32Sensors sensors;
MlCounterStore counter;
MlRadioNode node;
bool running = false;
uint32_t nextSensorsMs = 0;
std::string nodeName = "radio";

void logIo(void*, const char* level, const std::string& m) { Serial.printf("[%s] %s: %s\n", nodeName.c_str(), level, m.c_str()); }

void stateIo(void*, MlNodeState s, int) {
  const MlRgb c = ml_state_colour(s);
  led.show(c.r, c.g, c.b);
}

void fail(const std::string& why) {
  logIo(nullptr, "error", why);
  stateIo(nullptr, ML_STATE_ERROR, -1);
}

}  // namespace

void setup() {
  Serial.begin(115200);
  led.begin();
  stateIo(nullptr, ML_STATE_OFFLINE, -1);
#ifdef ML_PIN_VEXT
  pinMode(ML_PIN_VEXT, OUTPUT);
  digitalWrite(ML_PIN_VEXT, LOW);
#endif
  std::string err;
  MlShardInfo info;
  if (!shard.open(&err) || !ml_shard_open(&shard, &info, &err)) return fail("shard refused: " + err);
  nodeName = "radio-" + std::to_string(info.node);
  std::vector<uint8_t> image;
  MlJoinRecord join;
  if (!ml_read_join_partition(&image, &err) || !ml_join_record_read(image.data(), image.size(), &join, &err)) return fail("join record refused: " + err);
  MlRadioNodeConfig c;
  MlConfig model;
  std::vector<int> heads;
  if (!ml_join_record_apply(join, &c, &model, &heads, &err)) return fail("join record refused: " + err);
  if (c.address != info.node) return fail("join record refused: it is node " + std::to_string(c.address) + "'s; the shard is node " + std::to_string(info.node) + "'s");
  MlShardExpect expect{&model, c.address, heads};
  if (!ml_shard_check(info, expect, &err)) return fail("shard refused: " + err);
  MlSlices* slices = ml_shard_load(&shard, info, &err);  // in place in the mapped partition (else copied into PSRAM)
  if (!slices) return fail("shard refused: " + err);
  if (!counter.begin(&storage, "counter", &err)) return fail(err);
  MlRadioSettings s{c.broadcastHz, (uint8_t)c.modulation.sf, (uint16_t)c.modulation.bandwidthKHz, (uint8_t)c.modulation.codingRate, 14, (uint16_t)c.modulation.preambleSymbols, 0x12};
  MlRadioNodeIo io{nullptr, logIo, stateIo};
  if (!radio.begin(s, &err) || !node.init(c, info.config, slices, &radio, &clock_, &counter, io, &err, &storage)) return fail(err);
  if (!radio.startReceive(c.broadcastHz)) return fail("the transceiver does not receive");
  sensors.begin();
  running = true;
  logIo(nullptr, "info", "joined as node " + std::to_string(c.address) + ", frame counter from " + std::to_string(counter.start()));
}

void loop() {
  if (!running) return delay(1000);
  MlReception rx;
  if (radio.poll(clock_.nowMs(), &rx)) node.onReception(rx);
  while (clock_.due()) node.onTimer();
  if (millis() >= nextSensorsMs) {
    nextSensorsMs = millis() + 10000;
    MlSensorReadings r;
    sensors.read(&r);
    node.report(r);  // to the gateway over the radio, after the node's reply in its next slot
    Serial.println(ml_sensor_json(nodeName, (double)millis(), r).c_str());
  }
}

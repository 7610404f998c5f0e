// The head node on an ESP32-S3 with a LoRa transceiver: the same MlRadioNode the host build
// runs against the simulated channel (firmware/host/radio/radio_main.cpp), on the ESP32 HALs.
// Its shard comes from the "shard" partition, its join record and frame counter from NVS, its
// state goes to the WS2812, its sensor readings to the gateway as radio sensor reports and to
// the serial console as schemas/sensors.json lines. NOT compiled in CI (docs/FIRMWARE.md).
#include "esp32_hal.h"
#include "node_state.h"
#include "radio_join.h"
#include "radio_node.h"
#include "sensor_report.h"
#include "shard.h"

#ifndef ML_MESH_KEY_HEX
#error "build with -D ML_MESH_KEY_HEX=\"...\" (the mesh's 16-byte network key; platformio.ini reads it from the environment)"
#endif

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

bool parseKey(const char* hex, uint8_t* key) {
  if (strlen(hex) != 32) return false;
  for (int i = 0; i < 16; i++) {
    char b[3] = {hex[2 * i], hex[2 * i + 1], 0};
    key[i] = (uint8_t)strtoul(b, nullptr, 16);
  }
  return true;
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
  char join[1024];
  size_t joinLen = 0;
  {
    uint8_t len[2];
    if (storage.load("join-len", len, 2)) joinLen = len[0] | len[1] << 8;
  }
  if (joinLen == 0 || joinLen > sizeof join || !storage.load("join", (uint8_t*)join, joinLen)) return fail("no join record in NVS: provision the node (docs/FIRMWARE.md)");
  MlRadioNodeConfig c;
  MlConfig model;
  std::vector<int> heads;
  if (!ml_radio_join_parse(join, joinLen, &c, &model, &heads, &err)) return fail("join record: " + err);
  c.address = (uint8_t)info.node;
  c.meshId = 1;
  if (!parseKey(ML_MESH_KEY_HEX, c.key)) return fail("ML_MESH_KEY_HEX is not 32 hexadecimal digits");
  MlShardExpect expect{&model, c.address, heads};
  if (!ml_shard_check(info, expect, &err)) return fail("shard refused: " + err);
  MlSlices* slices = ml_shard_load(&shard, info, &err);  // into PSRAM: malloc goes there above 4 KiB with CONFIG_SPIRAM_USE_MALLOC
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

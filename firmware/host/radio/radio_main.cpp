// The native radio head node for the host: the firmware's radio path (core/radio_node.cpp,
// radio_frame.cpp, shard.cpp, counter_store.cpp) on the host HALs: a simulated SX1262 on the
// project's simulated LoRa channel (sim_radio.cpp) and a folder for what survives a reboot
// (file_storage.cpp). `mesh-llm generate --radio sim --native` starts one per node.
//
//   mesh-llm-radio-node --socket PATH --shard FILE --key HEX --storage DIR [--mesh-id N] [--log debug|info|warn]
//                       [--sensors soundDb=41.5,lightLux=300,... --sensors-every MS]
//
// --sensors: the host's sensor HAL, fixed readings of the named channels (what a bench board
// reads), reported to the gateway every MS of the channel's simulated time through the same
// core call the ESP32 build makes (MlRadioNode::report).
//
// It loads its shard (refusing one whose checksum, geometry or assignment does not fit, with
// the reason, exit 1), joins the channel as the node the shard names, takes its slot from the
// simulator's WELCOME (the gateway MAC's plan) and runs until the channel closes (exit 0),
// SIGTERM/SIGINT (exit 0), or its standard input, when a pipe, closes.
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <string>

#include "../mapped_shard.h"
#include "file_storage.h"
#include "join_record.h"
#include "radio_join.h"
#include "radio_node.h"
#include "shard.h"
#include "sensor_report.h"
#include "sim_radio.h"

namespace {

volatile sig_atomic_t stopSignal = 0;
void onSignal(int sig) { stopSignal = sig; }

int logThreshold = 1;
std::string logSource = "radio";

int levelOf(const char* level) {
  if (!strcmp(level, "debug")) return 0;
  if (!strcmp(level, "info")) return 1;
  if (!strcmp(level, "warn")) return 2;
  return 3;
}

void logLine(const char* level, const std::string& message) {
  if (levelOf(level) >= logThreshold) fprintf(stderr, "[%s] %s: %s\n", logSource.c_str(), level, message.c_str());
}

void logIo(void*, const char* level, const std::string& message) { logLine(level, message); }
void stateIo(void*, MlNodeState s, int layer) {
  // The event the ESP32 build shows on its LED (node_state.h), printed here.
  logLine("debug", std::string("state: ") + ml_state_name(s) + (layer >= 0 ? " layer " + std::to_string(layer) : ""));
}

int usage(const std::string& why) {
  fprintf(stderr, "mesh-llm-radio-node: %s\nusage: mesh-llm-radio-node --socket PATH --shard FILE (--key HEX [--mesh-id N] | --join FILE) --storage DIR [--log debug|info|warn] [--sensors CH=V,... --sensors-every MS]\n"
          "  --join FILE  the node's join record (mesh-llm provision): its mesh id, address, network key and plan, as an ESP32 reads its join partition\n", why.c_str());
  return 2;
}

bool parseKey(const std::string& hex, uint8_t key[ML_NETWORK_KEY_BYTES]) {
  if (hex.size() != 2 * ML_NETWORK_KEY_BYTES) return false;
  for (size_t i = 0; i < ML_NETWORK_KEY_BYTES; i++) {
    char b[3] = {hex[2 * i], hex[2 * i + 1], 0};
    char* end = nullptr;
    key[i] = (uint8_t)strtoul(b, &end, 16);
    if (*end) return false;
  }
  return true;
}

// The host's sensor HAL: fixed readings given on the command line.
class MlFixedSensors : public MlSensorHal {
 public:
  // "soundDb=41.5,lightLux=300": false when a name or number is not one.
  bool parse(const std::string& spec) {
    for (int c = 0; c < ML_SENSOR_CHANNELS; c++) r_.present[c] = false;
    size_t at = 0;
    while (at < spec.size()) {
      const size_t end = std::min(spec.find(',', at), spec.size());
      const std::string item = spec.substr(at, end - at);
      const size_t eq = item.find('=');
      if (eq == std::string::npos) return false;
      int c = 0;
      while (c < ML_SENSOR_CHANNELS && item.substr(0, eq) != ml_sensor_channel_name((MlSensorChannel)c)) c++;
      char* stop = nullptr;
      const float v = strtof(item.c_str() + eq + 1, &stop);
      if (c == ML_SENSOR_CHANNELS || *stop) return false;
      r_.present[c] = true;
      r_.value[c] = v;
      at = end + 1;
    }
    return true;
  }
  void begin() override {}
  void read(MlSensorReadings* out) override { *out = r_; }

 private:
  MlSensorReadings r_{};
};

}  // namespace

int main(int argc, char** argv) {
  std::string socketPath, shardPath, keyHex, storageDir, joinPath, sensorSpec;
  int meshId = 1;
  double sensorsEveryMs = 0;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!v) return usage("option " + a + " needs a value");
    if (a == "--socket") socketPath = v;
    else if (a == "--shard") shardPath = v;
    else if (a == "--key") keyHex = v;
    else if (a == "--join") joinPath = v;
    else if (a == "--storage") storageDir = v;
    else if (a == "--mesh-id") meshId = atoi(v);
    else if (a == "--log") logThreshold = levelOf(v);
    else if (a == "--sensors") sensorSpec = v;
    else if (a == "--sensors-every") sensorsEveryMs = atof(v);
    else return usage("unknown option " + a);
    i++;
  }
  if (socketPath.empty() || shardPath.empty() || (keyHex.empty() && joinPath.empty()) || storageDir.empty()) return usage("--socket, --shard, --key (or --join) and --storage are required");
  MlFixedSensors sensors;
  if (!sensorSpec.empty() && (!sensors.parse(sensorSpec) || !(sensorsEveryMs > 0)))
    return usage("--sensors: expected CHANNEL=NUMBER,... of soundDb, vibrationG, lightLux, temperatureC, humidityPct, with --sensors-every MS above 0");
  MlRadioNodeConfig c;
  if (joinPath.empty() && !parseKey(keyHex, c.key)) return usage("--key: expected 32 hexadecimal digits (the 16-byte network key)");
  if (meshId < 0 || meshId > 255) return usage("--mesh-id: expected 0..255");
  c.meshId = (uint8_t)meshId;
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  signal(SIGTERM, onSignal);
  signal(SIGINT, onSignal);
  signal(SIGPIPE, SIG_IGN);

  // The shard: what the node holds in flash.
  MlMappedFileShard file;  // mapped: the head group computes from the rows in place
  MlShardInfo info;
  std::string err;
  if (!file.open(shardPath.c_str(), &err) || !ml_shard_open(&file, &info, &err)) {
    logLine("error", "shard " + shardPath + " refused: " + err);
    return 1;
  }
  logSource = "radio-" + std::to_string(info.node);
  c.address = (uint8_t)info.node;
  // The join record, as the ESP32 reads it from its join partition: it replaces --key,
  // --mesh-id and the plan the channel's WELCOME carries.
  MlJoinRecord join;
  const bool provisioned = !joinPath.empty();
  if (provisioned) {
    std::vector<uint8_t> bytes;
    if (FILE* f = fopen(joinPath.c_str(), "rb")) {
      uint8_t buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
      fclose(f);
    } else {
      logLine("error", "join record " + joinPath + " cannot be opened: " + strerror(errno));
      return 1;
    }
    if (!ml_join_record_read(bytes.data(), bytes.size(), &join, &err)) {
      logLine("error", "join record " + joinPath + " refused: " + err);
      return 1;
    }
    if (join.address != c.address) {
      logLine("error", ml_format("join record %s refused: it is node %u's; the shard is node %d's", joinPath.c_str(), (unsigned)join.address, info.node));
      return 1;
    }
  }

  MlSimRadio radio;
  if (!radio.connect(socketPath, &err) || !radio.hello(c.address)) {
    logLine("error", err);
    return 1;
  }
  uint8_t type = 0;
  std::vector<uint8_t> body;
  if (!radio.next(&type, &body)) {
    logLine("error", "the simulated channel closed before the node joined");
    return 1;
  }
  if (type == ML_SIM_REFUSED) {
    logLine("error", "the channel refused the node: " + std::string(body.begin(), body.end()));
    return 1;
  }
  MlConfig model;
  std::vector<int> heads;
  if (type != ML_SIM_WELCOME) {
    logLine("error", "no WELCOME from the simulated channel");
    return 1;
  }
  if (provisioned ? !ml_join_record_apply(join, &c, &model, &heads, &err) : !ml_radio_join_parse((const char*)body.data(), body.size(), &c, &model, &heads, &err)) {
    logLine("error", provisioned ? "join record " + joinPath + " refused: " + err : "no usable WELCOME from the simulated channel: " + err);
    return 1;
  }
  MlShardExpect expect{&model, c.address, heads};
  if (!ml_shard_check(info, expect, &err)) {
    logLine("error", "shard " + shardPath + " refused: " + err);
    return 1;
  }
  MlSlices* slices = ml_shard_load(&file, info, &err);
  if (!slices) {
    logLine("error", "shard " + shardPath + " refused: " + err);
    return 1;
  }
  MlFileStorage storage(storageDir);
  MlCounterStore counter;
  const std::string counterKey = "counter-" + std::to_string(c.address);
  if (!counter.begin(&storage, counterKey.c_str(), &err)) {
    logLine("error", err);
    return 1;
  }
  MlRadioNode node;
  MlRadioNodeIo io{nullptr, logIo, stateIo};
  MlRadioSettings settings{c.broadcastHz, (uint8_t)c.modulation.sf, (uint16_t)c.modulation.bandwidthKHz, (uint8_t)c.modulation.codingRate, 14, (uint16_t)c.modulation.preambleSymbols, 0x12};
  if (!radio.begin(settings, &err) || !node.init(c, info.config, slices, &radio, &radio, &counter, io, &err, &storage) || !radio.startReceive(c.broadcastHz)) {
    logLine("error", err);
    return 1;
  }
  logLine("info", ml_format("joined as node %d: heads %zu, %s weights, frame counter from %u", (int)c.address, info.heads.size(), ml_weight_format_name(info.format), (unsigned)counter.start()));
  radio.done();

  sensors.begin();
  double nextSensorsMs = -1;
  // On the node's schedule (the channel's simulated time), through the same core call as the ESP32 build.
  const auto readSensors = [&](double nowMs) {
    if (sensorSpec.empty() || nowMs < nextSensorsMs) return;
    MlSensorReadings r;
    sensors.read(&r);
    node.report(r);
    nextSensorsMs = nowMs + sensorsEveryMs;
  };
  struct stat st;
  const bool watchStdin = fstat(0, &st) == 0 && S_ISFIFO(st.st_mode);
  while (!stopSignal) {
    if (!radio.buffered()) {
      pollfd p[2] = {{radio.fd(), POLLIN, 0}, {0, POLLIN, 0}};
      const int n = poll(p, watchStdin ? 2 : 1, -1);
      if (n < 0) continue;
      if (watchStdin && (p[1].revents & (POLLHUP | POLLIN))) {
        char b[64];
        if (read(0, b, sizeof b) <= 0) break;
      }
      if (!(p[0].revents & (POLLIN | POLLHUP))) continue;
    }
    if (!radio.next(&type, &body)) break;
    if (type == ML_SIM_RX && body.size() >= 15) {
      const uint32_t hz = ml_read_le(&body[0], 4);
      const double endMs = ml_read_f64(&body[4]);
      radio.setNow(endMs);
      readSensors(endMs);
      MlReception rx{body.data() + 15, body.size() - 15, endMs, hz, (int16_t)ml_read_le(&body[12], 2), (float)(int8_t)body[14] / 4};
      node.onReception(rx);
      radio.done();
    } else if (type == ML_SIM_WAKE && body.size() >= 8) {
      radio.setNow(ml_read_f64(&body[0]));
      node.onTimer();
      radio.done();
    } else if (type == ML_SIM_TX_RESULT && !body.empty() && body[0] != 0) {
      logLine("warn", "the channel refused a transmission: " + std::string(body.begin() + 1, body.end()));
    }
  }
  const MlRadioNodeCounters& k = node.counters();
  logLine("info", ml_format("stopping: %llu frames in, %llu rejected (source %llu, mic %llu, replay %llu, fragment %llu, body %llu), %llu refused broadcasts, %llu results, %llu resent, %llu NACKs, %llu sensor reports, frame counter %u",
                            (unsigned long long)k.framesIn, (unsigned long long)k.rejected, (unsigned long long)k.byReason[ML_REJECT_SOURCE], (unsigned long long)k.byReason[ML_REJECT_MIC], (unsigned long long)k.byReason[ML_REJECT_REPLAY],
                            (unsigned long long)k.byReason[ML_REJECT_FRAGMENT], (unsigned long long)k.byReason[ML_REJECT_BODY], (unsigned long long)k.refusedBodies, (unsigned long long)k.results, (unsigned long long)k.resent,
                            (unsigned long long)k.nacks, (unsigned long long)k.sensorReports, (unsigned)node.nextCounter()));
  return 0;
}

// The native head node for the host: the firmware core's runtime (core/node.cpp) on a POSIX
// MQTT client. `mesh-llm node --native` and `generate --mesh N --native` start it; it takes
// the same options as `mesh-llm node`.
//
//   mesh-llm-node --id ID (--model PATH | --shard FILE [--shard-load map|copy]) [--broker mqtt://[user:pass@]host:port] [--username U]
//                 [--password P] [--mesh ID] [--heartbeat MS] [--max-sessions N]
//   mesh-llm-node --wire      prints the wire constants as JSON (cross-checked with wire.ts,
//                             lib/link/body.ts and lib/radio/frame.ts)
//   mesh-llm-node --validate assignment|session|steering
//                             checks each line of standard input against the built-in schema
//                             and prints {"ok":true} or {"ok":false,"error":...} per line
//
// It exits 0 on SIGTERM/SIGINT (after a retained "offline, stopped" status), 1 when the broker
// connection is lost, 2 on bad options. When its standard input is a pipe it also exits when
// the pipe closes, so it does not outlive the process that started it.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <poll.h>

#include <string>

#include "ml_schemas.h"
#include "mapped_shard.h"
#include "mqtt.h"
#include "node.h"
#include "radio_frame.h"  // its constants and table only: the native node speaks MQTT

namespace {

volatile sig_atomic_t stopSignal = 0;
void onSignal(int sig) { stopSignal = sig; }

int logThreshold = 1;  // debug 0, info 1, warn 2, error 3
std::string logSource = "node";

int levelOf(const char* level) {
  if (!strcmp(level, "debug")) return 0;
  if (!strcmp(level, "info")) return 1;
  if (!strcmp(level, "warn")) return 2;
  return 3;
}

void logLine(const char* level, const std::string& message) {
  if (levelOf(level) >= logThreshold) fprintf(stderr, "[%s] %s: %s\n", logSource.c_str(), level, message.c_str());
}

struct Args {
  std::string id, broker = "mqtt://127.0.0.1:1883", username, password, mesh = "default", model, shard;
  int heartbeatMs = 1000, maxSessions = 4;
  bool mapShard = true;  // --shard-load map (default: the rows used in place) or copy (read into RAM)
};

int usage(const std::string& why) {
  fprintf(stderr, "mesh-llm-node: %s\nusage: mesh-llm-node --id ID --model PATH [--broker URL] [--username U] [--password P] [--mesh ID] [--heartbeat MS] [--max-sessions N]\n", why.c_str());
  return 2;
}

bool parseInt(const char* s, int lo, int hi, int* out) {
  char* end = nullptr;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return false;
  *out = (int)v;
  return true;
}

// mqtt://[user[:pass]@]host[:port] (also tcp://)
bool parseBroker(const std::string& url, MqttOptions* o, std::string* err) {
  std::string rest;
  if (url.rfind("mqtt://", 0) == 0) rest = url.substr(7);
  else if (url.rfind("tcp://", 0) == 0) rest = url.substr(6);
  else {
    *err = "broker URL " + url + " must start with mqtt:// or tcp:// (the native node speaks plain TCP)";
    return false;
  }
  size_t slash = rest.find('/');
  if (slash != std::string::npos) rest = rest.substr(0, slash);
  size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = cred.find(':');
    o->username = cred.substr(0, colon);
    if (colon != std::string::npos) o->password = cred.substr(colon + 1);
  }
  size_t colon = rest.rfind(':');
  if (!rest.empty() && rest[0] == '[') {  // [ipv6]:port
    size_t close = rest.find(']');
    o->host = rest.substr(1, close - 1);
    colon = rest.find(':', close);
  } else {
    o->host = rest.substr(0, colon);
  }
  o->port = 1883;
  if (colon != std::string::npos && !parseInt(rest.c_str() + colon + 1, 1, 65535, &o->port)) {
    *err = "broker URL " + url + " has a bad port";
    return false;
  }
  if (o->host.empty()) {
    *err = "broker URL " + url + " has no host";
    return false;
  }
  return true;
}

// A header's field table as a JSON array of {name, offset, bytes[, nibble]}.
std::string fieldsJson(const MlField* fields, int count) {
  std::string s = "[";
  for (int i = 0; i < count; i++) {
    const MlField& f = fields[i];
    const std::string nibble = f.nibble == ML_WHOLE_BYTES ? "" : std::string(",\"nibble\":") + (f.nibble == ML_HIGH_NIBBLE ? "\"high\"" : "\"low\"");
    s += std::string(i ? "," : "") + "{\"name\":" + json_quote(f.name) + ",\"offset\":" + std::to_string(f.offset) + ",\"bytes\":" + std::to_string(f.bytes) + nibble + "}";
  }
  return s + "]";
}

// The head-link body's constants, encoding codes and field table (link.h).
std::string bodyJson() {
  std::string encodings;
  for (uint8_t code : {ML_ENCODING_F32, ML_ENCODING_INT8, ML_ENCODING_INT4, ML_ENCODING_INT7, ML_ENCODING_INT7H}) encodings += std::string(encodings.empty() ? "" : ",") + json_quote(ml_encoding_name(code)) + ":" + std::to_string(code);
  return "{\"magic\":" + std::to_string(ML_BODY_MAGIC) + ",\"version\":" + std::to_string(ML_BODY_VERSION) + ",\"headerBytes\":" + std::to_string(ML_BODY_HEADER_BYTES) +
         ",\"types\":{\"broadcast\":" + std::to_string(ML_BODY_BROADCAST) + ",\"result\":" + std::to_string(ML_BODY_RESULT) + ",\"steering\":" + std::to_string(ML_BODY_STEERING) + "},\"encodings\":{" + encodings +
         "},\"fields\":" + fieldsJson(ML_BODY_FIELDS, ML_BODY_FIELD_COUNT) + "}";
}

// The radio frame's constants, frame kinds and header table (radio_frame.h).
std::string radioJson() {
  const auto n = [](size_t v) { return std::to_string(v); };
  return "{\"version\":" + n(ML_RADIO_VERSION) + ",\"headerBytes\":" + n(ML_RADIO_HEADER_BYTES) + ",\"micBytes\":" + n(ML_RADIO_MIC_BYTES) +
         ",\"defaultMaxFrameBytes\":" + n(ML_RADIO_DEFAULT_FRAME_BYTES) + ",\"maxFragments\":" + n(ML_RADIO_MAX_FRAGMENTS) + ",\"gatewayAddress\":" + n(ML_RADIO_GATEWAY) +
         ",\"broadcastAddress\":" + n(ML_RADIO_EVERY_NODE) + ",\"networkKeyBytes\":" + n(ML_NETWORK_KEY_BYTES) + ",\"kinds\":{\"fragment\":" + n(ML_FRAME_FRAGMENT) +
         ",\"nack\":" + n(ML_FRAME_NACK) + ",\"sensors\":" + n(ML_FRAME_SENSORS) + "},\"fields\":" + fieldsJson(ML_RADIO_FIELDS, ML_RADIO_FIELD_COUNT) + "}";
}

void printWire() {
  printf("{\"protocol\":%d,\"body\":%s,\"radio\":%s,\"int8GroupSize\":%d,\"topics\":{", ML_PROTOCOL_VERSION, bodyJson().c_str(), radioJson().c_str(), ML_INT8_GROUP_SIZE);
  const std::string m = "{mesh}", n = "{node}";
  printf("\"broadcast\":%s,\"result\":%s,\"status\":%s,\"assign\":%s,\"session\":%s,\"ack\":%s,\"telemetry\":%s,\"errors\":%s,\"steer\":%s}}\n",
         json_quote(ml_topic_broadcast(m)).c_str(), json_quote(ml_topic_result(m, n)).c_str(), json_quote(ml_topic_status(m, n)).c_str(),
         json_quote(ml_topic_assign(m, n)).c_str(), json_quote(ml_topic_session(m)).c_str(), json_quote(ml_topic_ack(m, n)).c_str(),
         json_quote(ml_topic_telemetry(m, n)).c_str(), json_quote(ml_topic_errors(m)).c_str(), json_quote(ml_topic_steer(m, n)).c_str());
}

// The node's control-message check (parse, then schema), line by line, for cross-checks with ajv.
int validateLines(const std::string& kind) {
  const char* text = kind == "assignment" ? ML_SCHEMA_ASSIGNMENT : kind == "session" ? ML_SCHEMA_SESSION : kind == "steering" ? ML_SCHEMA_STEERING : nullptr;
  if (!text) return usage("--validate takes assignment, session or steering");
  JsonSchema schema;
  std::string err;
  if (!schema.load(text, &err)) {
    fprintf(stderr, "mesh-llm-node: built-in schema %s: %s\n", kind.c_str(), err.c_str());
    return 1;
  }
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') n--;
    JsonValue v;
    std::string why;
    bool ok = json_parse(line, (size_t)n, &v, &why);
    if (!ok) why = kind + " message is not JSON: " + why;
    else if (!(ok = schema.validate(v, &why))) why = kind + " message fails schemas/" + kind + ".json: " + why;
    printf(ok ? "{\"ok\":true}\n" : "{\"ok\":false,\"error\":%s}\n", json_quote(why).c_str());
  }
  free(line);
  return 0;
}

uint64_t rssBytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int got = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  return got == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    if (k == "--wire") {
      printWire();
      return 0;
    }
    if (i + 1 >= argc) return usage(k + " needs a value");
    const char* v = argv[++i];
    if (k == "--validate") return validateLines(v);
    if (k == "--id") a.id = v;
    else if (k == "--broker") a.broker = v;
    else if (k == "--username") a.username = v;
    else if (k == "--password") a.password = v;
    else if (k == "--mesh") a.mesh = v;
    else if (k == "--model") a.model = v;
    else if (k == "--shard") a.shard = v;
    else if (k == "--shard-load") {
      if (strcmp(v, "map") && strcmp(v, "copy")) return usage("--shard-load takes map (the shard's rows used in place) or copy (read into RAM)");
      a.mapShard = !strcmp(v, "map");
    }
    else if (k == "--heartbeat") {
      if (!parseInt(v, 10, 3600000, &a.heartbeatMs)) return usage("--heartbeat must be a whole number of ms in 10..3600000");
    } else if (k == "--max-sessions") {
      if (!parseInt(v, 1, 1024, &a.maxSessions)) return usage("--max-sessions must be a whole number in 1..1024");
    } else return usage("unknown option " + k);
  }
  if (a.id.empty()) return usage("--id ID is required");
  if (a.model.empty() && a.shard.empty()) return usage("--model PATH is required (or --shard FILE: a weight shard of mesh-llm shard)");
  logSource = a.id;
  if (const char* level = getenv("MESH_LLM_LOG")) logThreshold = levelOf(level);

  MqttOptions mo;
  std::string err;
  if (!parseBroker(a.broker, &mo, &err)) return usage(err);
  if (!a.username.empty()) mo.username = a.username;
  if (!a.password.empty()) mo.password = a.password;
  else if (const char* pw = getenv("MESH_LLM_PASSWORD"); pw && mo.password.empty()) mo.password = pw;  // not on the command line, which other users can read

  MqttClient client;
  MlNode node;
  MlNodeIo io;
  io.ctx = &client;
  io.publish = [](void* ctx, const std::string& topic, const uint8_t* payload, size_t len, int qos, bool retain) {
    static_cast<MqttClient*>(ctx)->publish(topic, payload, len, qos, retain);
  };
  io.log = [](void*, const char* level, const std::string& message) { logLine(level, message); };
  io.nowMs = [](void*) { return mqtt_now_ms(); };
  MlNodeOptions no;
  no.id = a.id;
  no.mesh = a.mesh;
  no.modelPath = a.model;
  no.shardPath = a.shard;
  MlMappedFileShard mappedShard;
  MlFileShard copiedShard;
  if (!a.shard.empty()) {
    const bool opened = a.mapShard ? mappedShard.open(a.shard.c_str(), &err) : copiedShard.open(a.shard.c_str(), &err);
    if (!opened) {
      logLine("error", "shard " + a.shard + " refused: " + err);
      return 2;
    }
    no.shard = a.mapShard ? (MlShardSource*)&mappedShard : (MlShardSource*)&copiedShard;
  }
  no.maxSessions = a.maxSessions;
  no.pid = (long)getpid();
  if (!node.init(no, io, &err)) {
    logLine("error", err);
    return 2;
  }

#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  signal(SIGTERM, onSignal);
  signal(SIGINT, onSignal);
  signal(SIGPIPE, SIG_IGN);
  struct stat st;
  const bool watchStdin = fstat(0, &st) == 0 && S_ISFIFO(st.st_mode);

  mo.clientId = ("mesh-llm-" + a.mesh + "-" + a.id).substr(0, 64);
  mo.willTopic = node.willTopic();
  mo.willPayload = node.willPayload();
  std::string where = "mqtt://" + mo.host + ":" + std::to_string(mo.port);
  if (!client.connect(mo, 10000, &err)) {
    logLine("error", "cannot connect to MQTT broker " + where + ": " + err);
    return 1;
  }
  client.onMessage([&](const std::string& topic, const uint8_t* payload, size_t len) { node.onMessage(topic, payload, len); });
  if (!client.subscribe(node.subscriptionsQos0(), 0, 10000, &err) || !client.subscribe(node.subscriptionsQos1(), 1, 10000, &err)) {
    logLine("error", "cannot subscribe on " + where + ": " + err);
    return 1;
  }
  node.announce();
  logLine("info", "online on " + where + ", mesh " + a.mesh + " (native)");

  const uint64_t started = mqtt_now_ms();
  uint64_t nextBeat = started + a.heartbeatMs;
  while (!stopSignal) {
    uint64_t now = mqtt_now_ms();
    if (now >= nextBeat) {
      node.heartbeat(now - started, rssBytes());
      nextBeat = now + a.heartbeatMs;
    }
    client.keepAlive(now);
    struct pollfd pf[2] = {{client.fd(), POLLIN, 0}, {0, POLLIN, 0}};
    int r = poll(pf, watchStdin ? 2 : 1, (int)(nextBeat - now));
    if (r < 0) {
      if (errno == EINTR) continue;
      logLine("error", std::string("poll: ") + strerror(errno));
      return 1;
    }
    if (pf[0].revents) {
      if (!client.readAvailable(&err)) {
        logLine("error", "lost the connection to the MQTT broker " + where + ": " + err);
        return 1;
      }
    }
    if (watchStdin && pf[1].revents) {
      char buf[256];
      if (read(0, buf, sizeof buf) <= 0) break;  // the parent is gone
    }
  }
  node.goodbye();
  client.flush(1000);
  client.disconnect();
  logLine("info", "stopped");
  return 0;
}

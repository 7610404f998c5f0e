// The head-node runtime without its transport: what lib/mesh/node.ts does, for a node whose
// MQTT client (firmware/host/mqtt.cpp on the host, a LoRa link on the ESP32) calls
// on_message() for every message it receives and lends publish() and log() to the node.
// It announces itself, takes assignments (loading only its own W_Q/W_K/W_V rows), keeps one KV
// cache per session, answers each broadcast frame with a result frame, applies steering and
// sends heartbeats. Bad input is dropped, logged and reported on the errors topic.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

#include "head_group.h"
#include "link.h"
#include "report_limit.h"
#include "schema.h"
#include "shard.h"
#include "wire.h"

struct MlNodeIo {
  void* ctx;
  void (*publish)(void* ctx, const std::string& topic, const uint8_t* payload, size_t len, int qos, bool retain);
  // level: "debug", "info", "warn", "error"
  void (*log)(void* ctx, const char* level, const std::string& message);
  // A monotonic clock in ms, for the rate limit of error reports (null: the reports are not limited).
  uint64_t (*nowMs)(void* ctx) = nullptr;
};

struct MlNodeOptions {
  std::string id;
  std::string mesh;
  std::string modelPath;
  // A weight shard (shard.h) instead of the checkpoint: the node then takes only an
  // assignment of the shard's heads and weight format. shard is the caller's source (it must
  // outlive the node: a mapped one holds the rows the head group computes from); shardPath
  // names it in messages.
  MlShardSource* shard = nullptr;
  std::string shardPath;
  int maxSessions = 4;  // KV caches kept at once; the oldest session is dropped beyond it
  long pid = 0;         // reported in status messages (0: not reported)
};

struct MlNodeCounters {
  uint64_t framesIn = 0, framesOut = 0, malformed = 0, invalidJson = 0, stale = 0;
};

class MlNode {
 public:
  ~MlNode();
  // Reads the checkpoint's header and the schemas; false and a sentence in err on failure.
  bool init(const MlNodeOptions& o, const MlNodeIo& io, std::string* err);

  // Topics to subscribe to with QoS 0 (the broadcast) and QoS 1 (control).
  std::vector<std::string> subscriptionsQos0() const;
  std::vector<std::string> subscriptionsQos1() const;
  // The last will: retained offline status on the status topic.
  std::string willTopic() const;
  std::string willPayload() const;

  void announce();  // retained online status
  void onMessage(const std::string& topic, const uint8_t* payload, size_t len);
  void heartbeat(uint64_t uptimeMs, uint64_t rssBytes);
  void goodbye();   // retained offline status, "stopped"

  const MlNodeCounters& counters() const { return counters_; }
  // Error reports held back by the rate limit, in all.
  uint64_t reportsSuppressed() const { return reports_.suppressed(); }
  size_t weightBytes() const;
  size_t cacheBytes() const;

 private:
  struct Assignment {
    std::string id;
    int slot = 0;
    std::vector<int> heads;
    uint8_t transport = ML_ENCODING_F32;
    bool int8Weights = false;
    MlSlices* slices = nullptr;
  };
  MlNodeOptions o_;
  MlNodeIo io_{};
  MlConfig g_{};
  MlShardInfo shard_{};
  bool fromShard_ = false;
  JsonSchema assignmentSchema_, sessionSchema_, steeringSchema_;
  Assignment* assignment_ = nullptr;
  std::vector<std::pair<uint32_t, MlSession*>> sessions_;  // oldest first
  std::vector<float> steeringVector_;
  int steeringLayer_ = -1;
  MlNodeCounters counters_;
  MlReportLimiter reports_;
  std::vector<float> values_;
  std::vector<uint8_t> out_;
  std::string tBroadcast_, tAssign_, tSession_, tSteer_, tStatus_, tAck_, tResult_, tErrors_, tTelemetry_;

  void publishText(const std::string& topic, const std::string& text, int qos, bool retain);
  void reject(const std::string& topic, const std::string& reason);
  bool parseControl(const char* kind, const JsonSchema& schema, const std::string& topic, const uint8_t* payload, size_t len, JsonValue* out);
  void status(const char* state, const std::string& extra);
  void ack(const char* kind, const std::string& id, bool ok, const std::string& error);
  void clearSessions();
  void releaseAssignment();
  void onAssignment(const JsonValue& m);
  void onSession(const JsonValue& m);
  void onSteering(const JsonValue& m);
  void onBroadcast(const uint8_t* payload, size_t len);
};

#include "node.h"

#include <stdio.h>
#include <string.h>

#include <algorithm>

#include "ml_schemas.h"  // generated from schemas/*.json at build time (lib/firmware/build.ts)

namespace {

std::string intList(const std::vector<int>& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); i++) s += (i ? "," : "") + std::to_string(xs[i]);
  return s + "]";
}

std::string intList(const int* xs, int n) { return intList(std::vector<int>(xs, xs + n)); }

// A text cut to at most n bytes without splitting a UTF-8 sequence (schemas limit reasons).
std::string cut(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t end = n;
  while (end > 0 && (s[end] & 0xc0) == 0x80) end--;
  return s.substr(0, end);
}

}  // namespace

MlNode::~MlNode() {
  releaseAssignment();
}

bool MlNode::init(const MlNodeOptions& o, const MlNodeIo& io, std::string* err) {
  o_ = o;
  io_ = io;
  if (!ml_valid_id(o.id)) {
    *err = "node id \"" + o.id + "\" must be 1-64 characters of A-Z a-z 0-9 _ . -";
    return false;
  }
  if (!ml_valid_id(o.mesh)) {
    *err = "mesh id \"" + o.mesh + "\" must be 1-64 characters of A-Z a-z 0-9 _ . -";
    return false;
  }
  char why[512] = "";
  if (o.shard) {
    std::string e;
    if (!ml_shard_open(o.shard, &shard_, &e)) {
      *err = "shard " + o.shardPath + " refused: " + e;
      return false;
    }
    fromShard_ = true;
    g_ = shard_.config;
  } else {
    MlCheckpoint* c = ml_checkpoint_open(o.modelPath.c_str(), why, sizeof why);
    if (!c) {
      *err = why;
      return false;
    }
    g_ = *ml_checkpoint_config(c);
    ml_checkpoint_close(c);
  }
  std::string schemaErr;
  if (!assignmentSchema_.load(ML_SCHEMA_ASSIGNMENT, &schemaErr) || !sessionSchema_.load(ML_SCHEMA_SESSION, &schemaErr) ||
      !steeringSchema_.load(ML_SCHEMA_STEERING, &schemaErr)) {
    *err = "built-in schema: " + schemaErr;
    return false;
  }
  values_.assign(65535, 0.0f);
  tBroadcast_ = ml_topic_broadcast(o.mesh);
  tAssign_ = ml_topic_assign(o.mesh, o.id);
  tSession_ = ml_topic_session(o.mesh);
  tSteer_ = ml_topic_steer(o.mesh, o.id);
  tStatus_ = ml_topic_status(o.mesh, o.id);
  tAck_ = ml_topic_ack(o.mesh, o.id);
  tResult_ = ml_topic_result(o.mesh, o.id);
  tErrors_ = ml_topic_errors(o.mesh);
  tTelemetry_ = ml_topic_telemetry(o.mesh, o.id);
  return true;
}

std::vector<std::string> MlNode::subscriptionsQos0() const { return {tBroadcast_}; }
std::vector<std::string> MlNode::subscriptionsQos1() const { return {tAssign_, tSession_, tSteer_}; }
std::string MlNode::willTopic() const { return tStatus_; }
std::string MlNode::willPayload() const {
  return "{\"protocol\":1,\"node\":" + json_quote(o_.id) + ",\"state\":\"offline\",\"reason\":\"connection lost\"}";
}

size_t MlNode::weightBytes() const { return assignment_ && assignment_->slices ? ml_slices_weight_bytes(assignment_->slices) : 0; }

size_t MlNode::cacheBytes() const {
  size_t n = 0;
  for (const auto& s : sessions_) n += ml_session_cache_bytes(s.second);
  return n;
}

void MlNode::publishText(const std::string& topic, const std::string& text, int qos, bool retain) {
  io_.publish(io_.ctx, topic, (const uint8_t*)text.data(), text.size(), qos, retain);
}

// Drops a message: one log line and one report on the errors topic, both rate-limited (a
// flood must not become a flood of reports).
void MlNode::reject(const std::string& topic, const std::string& reason) {
  uint64_t heldBefore = 0;
  if (io_.nowMs && !reports_.take(io_.nowMs(io_.ctx), &heldBefore)) return;
  const std::string said = cut(ml_with_held_count(reason, heldBefore), 2000);
  io_.log(io_.ctx, "warn", "dropped message on " + topic + ": " + said);
  publishText(tErrors_, "{\"protocol\":1,\"source\":" + json_quote(o_.id) + ",\"topic\":" + json_quote(topic) + ",\"reason\":" + json_quote(said) + "}", 0, false);
}

void MlNode::status(const char* state, const std::string& extra) {
  std::string m = "{\"protocol\":1,\"node\":" + json_quote(o_.id) + ",\"state\":\"" + state + "\"";
  if (o_.pid > 0) m += ",\"pid\":" + std::to_string(o_.pid);
  publishText(tStatus_, m + extra + "}", 1, true);
}

void MlNode::ack(const char* kind, const std::string& id, bool ok, const std::string& error) {
  std::string m = "{\"protocol\":1,\"node\":" + json_quote(o_.id) + ",\"kind\":\"" + kind + "\",\"id\":" + json_quote(cut(id, 80)) + ",\"ok\":" + (ok ? "true" : "false");
  if (!error.empty()) m += ",\"error\":" + json_quote(cut(error, 1000));
  publishText(tAck_, m + "}", 1, false);
}

void MlNode::announce() { status("online", ""); }

void MlNode::goodbye() {
  publishText(tStatus_, "{\"protocol\":1,\"node\":" + json_quote(o_.id) + ",\"state\":\"offline\",\"reason\":\"stopped\"}", 1, true);
}

void MlNode::heartbeat(uint64_t uptimeMs, uint64_t rssBytes) {
  const MlNodeCounters& c = counters_;
  std::string m = "{\"protocol\":1,\"node\":" + json_quote(o_.id) + ",\"uptimeMs\":" + std::to_string(uptimeMs) + ",\"rssBytes\":" + std::to_string(rssBytes) +
                  ",\"weightBytes\":" + std::to_string(weightBytes()) + ",\"cacheBytes\":" + std::to_string(cacheBytes()) +
                  ",\"sessions\":" + std::to_string(sessions_.size()) + ",\"framesIn\":" + std::to_string(c.framesIn) +
                  ",\"framesOut\":" + std::to_string(c.framesOut) + ",\"dropped\":" + std::to_string(c.malformed + c.invalidJson + c.stale) + "}";
  publishText(tTelemetry_, m, 0, false);
}

void MlNode::onMessage(const std::string& topic, const uint8_t* payload, size_t len) {
  JsonValue m;
  if (topic == tBroadcast_) onBroadcast(payload, len);
  else if (topic == tAssign_) {
    if (parseControl("assignment", assignmentSchema_, topic, payload, len, &m)) onAssignment(m);
  } else if (topic == tSession_) {
    if (parseControl("session", sessionSchema_, topic, payload, len, &m)) onSession(m);
  } else if (topic == tSteer_) {
    if (parseControl("steering", steeringSchema_, topic, payload, len, &m)) onSteering(m);
  }
}

bool MlNode::parseControl(const char* kind, const JsonSchema& schema, const std::string& topic, const uint8_t* payload, size_t len, JsonValue* out) {
  std::string why;
  if (!json_parse((const char*)payload, len, out, &why)) {
    counters_.invalidJson++;
    reject(topic, std::string(kind) + " message is not JSON: " + why);
    return false;
  }
  if (!schema.validate(*out, &why)) {
    counters_.invalidJson++;
    reject(topic, std::string(kind) + " message fails schemas/" + kind + ".json: " + why);
    return false;
  }
  return true;
}

void MlNode::clearSessions() {
  for (auto& s : sessions_) ml_session_free(s.second);
  sessions_.clear();
}

void MlNode::releaseAssignment() {
  clearSessions();
  if (assignment_) {
    if (assignment_->slices) ml_slices_free(assignment_->slices);
    delete assignment_;
    assignment_ = nullptr;
  }
}

void MlNode::onAssignment(const JsonValue& m) {
  const std::string id = m.get("assignment")->string;
  const JsonValue& model = *m.get("model");
  std::string mismatch;
  struct { const char* key; int32_t here; } keys[] = {{"dim", g_.dim}, {"nLayers", g_.nLayers}, {"nHeads", g_.nHeads},
                                                       {"nKvHeads", g_.nKvHeads}, {"vocabSize", g_.vocabSize}, {"seqLen", g_.seqLen}};
  for (const auto& k : keys) {
    double there = model.get(k.key)->number;
    if (there != k.here) mismatch += (mismatch.empty() ? "" : ", ") + std::string(k.key) + " " + std::to_string(k.here) + " here, " + json_number(there) + " at the gateway";
  }
  std::vector<int> heads;
  for (const auto& h : m.get("heads")->items) heads.push_back((int)h.number);
  std::string error;
  if (!mismatch.empty()) error = "model mismatch: " + mismatch;
  else
    for (int h : heads)
      if (h >= g_.nHeads) {
        error = "head " + std::to_string(h) + " does not exist (the model has " + std::to_string(g_.nHeads) + ")";
        break;
      }
  if (error.empty() && fromShard_ && !heads.empty()) {
    // a shard holds one group's rows in one encoding: only that assignment can be taken
    std::vector<int> sorted(heads);
    std::sort(sorted.begin(), sorted.end());
    const std::string& wanted = m.get("weights")->string;
    const char* held = ml_weight_format_name(shard_.format);
    if (sorted != shard_.heads) error = "this node's shard holds heads " + intList(shard_.heads) + ", not " + intList(sorted);
    else if (wanted != held) error = std::string("this node's shard holds ") + held + " weights, not " + wanted;
  }
  if (!error.empty()) {
    reject(tAssign_, "assignment " + id + " refused: " + error);
    ack("assignment", id, false, error);
    return;
  }
  releaseAssignment();
  steeringVector_.clear();  // cut for the previous heads
  steeringLayer_ = -1;
  if (heads.empty()) {
    status("online", "");
    ack("assignment", id, true, "");
    return;
  }
  std::sort(heads.begin(), heads.end());
  status("loading", ",\"assignment\":" + json_quote(id) + ",\"heads\":" + intList(heads));
  MlWeightFormat format = ML_WEIGHTS_F32;  // the assignment schema allows only the four names
  ml_weight_format_of(m.get("weights")->string.c_str(), &format);
  const bool int8 = format == ML_WEIGHTS_INT8;
  const char* formatName = ml_weight_format_name(format);
  char why[512] = "";
  MlSlices* slices = nullptr;
  if (fromShard_) {
    std::string e;  // checked when the node started: its header, geometry and CRC-32
    if (!(slices = ml_shard_load(o_.shard, shard_, &e))) snprintf(why, sizeof why, "%s", e.c_str());
  } else {
    MlCheckpoint* c = ml_checkpoint_open(o_.modelPath.c_str(), why, sizeof why);
    if (c) {
      slices = ml_slices_load_format(c, heads.data(), (int)heads.size(), format, why, sizeof why);
      ml_checkpoint_close(c);
    }
  }
  if (!slices) {
    std::string e = "cannot load heads " + intList(heads) + ": " + why;
    io_.log(io_.ctx, "error", e);
    status("failed", ",\"assignment\":" + json_quote(id) + ",\"reason\":" + json_quote(cut(e, 1000)));
    ack("assignment", id, false, e);
    return;
  }
  assignment_ = new Assignment();
  assignment_->id = id;
  assignment_->slot = (int)m.get("slot")->number;
  assignment_->heads = heads;
  const std::string& transport = m.get("transport")->string;
  assignment_->transport = transport == "int8" ? ML_ENCODING_INT8 : transport == "int4" ? ML_ENCODING_INT4 : transport == "int7" ? ML_ENCODING_INT7 : transport == "int7h" ? ML_ENCODING_INT7H : ML_ENCODING_F32;
  assignment_->int8Weights = int8;
  assignment_->slices = slices;
  std::string kv = intList(ml_slices_kv_heads(slices), ml_slices_kv_head_count(slices));
  size_t bytes = ml_slices_weight_bytes(slices);
  status("ready", ",\"assignment\":" + json_quote(id) + ",\"heads\":" + intList(heads) + ",\"kvHeads\":" + kv + ",\"weights\":\"" + formatName +
                      "\",\"weightBytes\":" + std::to_string(bytes));
  ack("assignment", id, true, "");
  io_.log(io_.ctx, "info", "assignment " + id + ": heads " + intList(heads) + " kv " + kv + ", " + formatName + " weights " + std::to_string(bytes) +
                               " bytes, slot " + std::to_string(assignment_->slot));
}

void MlNode::onSession(const JsonValue& m) {
  if (!assignment_) return;  // an idle node takes part in no session
  const std::string op = m.get("op")->string;
  uint32_t session = (uint32_t)m.get("session")->number;
  const std::string id = op + ":" + std::to_string(session);
  if (m.get("assignment")->string != assignment_->id) {
    counters_.stale++;
    io_.log(io_.ctx, "debug", "session " + id + " for assignment " + m.get("assignment")->string + " ignored (current " + assignment_->id + ")");
    return;
  }
  auto found = std::find_if(sessions_.begin(), sessions_.end(), [&](const std::pair<uint32_t, MlSession*>& s) { return s.first == session; });
  if (op == "start") {
    if (found != sessions_.end()) {
      ml_session_free(found->second);
      sessions_.erase(found);
    }
    while ((int)sessions_.size() >= std::max(1, o_.maxSessions)) {
      ml_session_free(sessions_.front().second);
      sessions_.erase(sessions_.begin());
    }
    sessions_.emplace_back(session, ml_session_new(assignment_->slices, g_.seqLen));
  } else if (found != sessions_.end()) {  // "end": the schema admits only start and end
    ml_session_free(found->second);
    sessions_.erase(found);
  }
  ack("session", id, true, "");
}

void MlNode::onSteering(const JsonValue& m) {
  const std::string id = m.get("id")->string;
  std::string error;
  std::vector<int> heads;
  for (const auto& h : m.get("heads")->items) heads.push_back((int)h.number);
  int layer = (int)m.get("layer")->number;
  const int width = (int)heads.size() * g_.headSize;
  const JsonValue& channels = *m.get("channels");
  if (!assignment_) error = "steering " + id + " arrived before any assignment";
  else if (heads != assignment_->heads) error = "steering " + id + " is for heads " + intList(heads) + ", this node computes " + intList(assignment_->heads);
  else if (layer >= g_.nLayers) error = "steering " + id + ": layer " + std::to_string(layer) + " does not exist (the model has " + std::to_string(g_.nLayers) + ")";
  else
    for (const auto& c : channels.items)
      if ((int)c.get("share")->items.size() != width) {
        error = "steering " + id + ": channel " + c.get("name")->string + " carries " + std::to_string(c.get("share")->items.size()) + " values, this node's heads need " + std::to_string(width);
        break;
      }
  if (!error.empty()) {
    reject(tSteer_, error);
    ack("steering", id, false, error);
    return;
  }
  if (channels.items.empty()) {
    steeringVector_.clear();
    steeringLayer_ = -1;
  } else {
    // alpha * sum over channels of reading * share, in double, stored as float32 (lib/steering/shares.ts nodeSteeringVector)
    std::vector<double> sum(width, 0.0);
    const double alpha = m.get("alpha")->number;
    for (const auto& c : channels.items) {
      const double r = c.get("reading")->number;
      if (r == 0) continue;
      const auto& share = c.get("share")->items;
      for (int i = 0; i < width; i++) sum[i] += alpha * r * (double)(float)share[i].number;
    }
    steeringVector_.assign(width, 0.0f);
    for (int i = 0; i < width; i++) steeringVector_[i] = (float)sum[i];
    steeringLayer_ = layer;
  }
  ack("steering", id, true, "");
}

void MlNode::onBroadcast(const uint8_t* payload, size_t len) {
  MlBodyHeader h;
  std::string why;
  if (!ml_body_decode(payload, len, &h, values_.data(), &why)) {
    counters_.malformed++;
    return reject(tBroadcast_, why);
  }
  counters_.framesIn++;
  if (h.type != ML_BODY_BROADCAST) why = "frame type " + std::to_string(h.type) + " on the broadcast topic (expected " + std::to_string(ML_BODY_BROADCAST) + ")";
  else if (h.count != g_.dim) why = "broadcast carries " + std::to_string(h.count) + " values (the model's dim is " + std::to_string(g_.dim) + ")";
  else if (h.layer >= g_.nLayers) why = "layer " + std::to_string(h.layer) + " does not exist (the model has " + std::to_string(g_.nLayers) + ")";
  else if (h.pos >= g_.seqLen) why = "position " + std::to_string(h.pos) + " is beyond the context of " + std::to_string(g_.seqLen);
  else if (assignment_ && h.encoding != assignment_->transport)
    why = std::string("broadcast encoded ") + ml_encoding_name(h.encoding) + ", assignment says " + ml_encoding_name(assignment_->transport);
  if (!why.empty()) {
    counters_.malformed++;
    return reject(tBroadcast_, why);
  }
  MlSession* session = nullptr;
  if (assignment_)
    for (auto& s : sessions_)
      if (s.first == h.session) session = s.second;
  if (!session) {
    counters_.stale++;
    return;
  }
  MlSteering steering{steeringLayer_, steeringVector_.data()};
  const float* out = ml_session_forward(session, values_.data(), h.pos, h.layer, steeringLayer_ >= 0 ? &steering : nullptr);
  MlBodyHeader r = h;
  r.type = ML_BODY_RESULT;
  r.encoding = assignment_->transport;
  r.sender = (uint16_t)assignment_->slot;
  r.count = (uint16_t)(assignment_->heads.size() * g_.headSize);
  r.groupSize = (uint16_t)ml_result_group_size(r.encoding, g_.headSize);
  out_.resize(ml_body_bytes(r.encoding, r.count, r.groupSize));
  size_t n = ml_body_encode(r, out, out_.data());
  io_.publish(io_.ctx, tResult_, out_.data(), n, 0, false);
  counters_.framesOut++;
}

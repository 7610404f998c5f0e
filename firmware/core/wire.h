// The MQTT mesh as the firmware speaks it: the topic tree of lib/mesh/wire.ts (the one
// definition; docs/PROTOCOL.md). The binary messages on `broadcast` and `result/{node}` are
// head-link bodies (link.h). test/firmware-node.test.ts checks these constants against wire.ts
// (`mesh-llm-node --wire`).
#pragma once
#include <string>

static const int ML_PROTOCOL_VERSION = 1;

// ---- topics: everything of one mesh under mesh-llm/{mesh}/ ----------------------------------
std::string ml_topic_root(const std::string& mesh);
std::string ml_topic_broadcast(const std::string& mesh);
std::string ml_topic_result(const std::string& mesh, const std::string& node);
std::string ml_topic_status(const std::string& mesh, const std::string& node);
std::string ml_topic_assign(const std::string& mesh, const std::string& node);
std::string ml_topic_session(const std::string& mesh);
std::string ml_topic_ack(const std::string& mesh, const std::string& node);
std::string ml_topic_telemetry(const std::string& mesh, const std::string& node);
std::string ml_topic_errors(const std::string& mesh);
std::string ml_topic_steer(const std::string& mesh, const std::string& node);
// Mesh and node ids: 1-64 of A-Z a-z 0-9 _ . -
bool ml_valid_id(const std::string& id);

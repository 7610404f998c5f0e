#include "wire.h"

std::string ml_topic_root(const std::string& mesh) { return "mesh-llm/" + mesh; }
std::string ml_topic_broadcast(const std::string& mesh) { return ml_topic_root(mesh) + "/broadcast"; }
std::string ml_topic_result(const std::string& mesh, const std::string& node) { return ml_topic_root(mesh) + "/result/" + node; }
std::string ml_topic_status(const std::string& mesh, const std::string& node) { return ml_topic_root(mesh) + "/status/" + node; }
std::string ml_topic_assign(const std::string& mesh, const std::string& node) { return ml_topic_root(mesh) + "/assign/" + node; }
std::string ml_topic_session(const std::string& mesh) { return ml_topic_root(mesh) + "/session"; }
std::string ml_topic_ack(const std::string& mesh, const std::string& node) { return ml_topic_root(mesh) + "/ack/" + node; }
std::string ml_topic_telemetry(const std::string& mesh, const std::string& node) { return ml_topic_root(mesh) + "/telemetry/" + node; }
std::string ml_topic_errors(const std::string& mesh) { return ml_topic_root(mesh) + "/errors"; }
std::string ml_topic_steer(const std::string& mesh, const std::string& node) { return ml_topic_root(mesh) + "/steer/" + node; }

bool ml_valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

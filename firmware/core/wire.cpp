#include "wire.h"

#include <math.h>
#include <string.h>

#include <vector>

#include "head_group.h"

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

static uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static void wr16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static float rdf(const uint8_t* p) {
  uint32_t u = rd32(p);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static void wrf(uint8_t* p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  wr32(p, u);
}

static int group_count(int n, int gs) { return (n + gs - 1) / gs; }

size_t ml_frame_bytes(uint8_t encoding, int count, int groupSize) {
  return ML_FRAME_HEADER_BYTES + (encoding == ML_ENCODING_F32 ? (size_t)count * 4 : (size_t)group_count(count, groupSize) * 4 + (size_t)count);
}

static std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
#include <stdio.h>
static std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// JavaScript's Number#toString for the values this file reports (integers and non-finite floats).
static std::string js_number(float v) {
  if (isnan(v)) return "NaN";
  if (isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return fmt("%g", (double)v);
}

bool ml_frame_decode(const uint8_t* buf, size_t len, MlFrameHeader* h, float* values, std::string* err) {
  if (len < ML_FRAME_HEADER_BYTES) {
    *err = fmt("frame is %zu bytes, shorter than the %zu-byte header", len, ML_FRAME_HEADER_BYTES);
    return false;
  }
  uint16_t magic = rd16(buf);
  if (magic != ML_FRAME_MAGIC) {
    *err = fmt("bad magic 0x%x (expected 0x%x, \"ML\")", magic, ML_FRAME_MAGIC);
    return false;
  }
  if (buf[2] != ML_FRAME_VERSION) {
    *err = fmt("unsupported frame version %u (this build speaks %u)", buf[2], ML_FRAME_VERSION);
    return false;
  }
  h->type = buf[3];
  if (h->type != ML_FRAME_BROADCAST && h->type != ML_FRAME_RESULT) {
    *err = fmt("unknown frame type %u", h->type);
    return false;
  }
  h->encoding = buf[4];
  if (h->encoding != ML_ENCODING_F32 && h->encoding != ML_ENCODING_INT8) {
    *err = fmt("unknown encoding %u", h->encoding);
    return false;
  }
  if (buf[5] != 0) {
    *err = fmt("reserved byte is %u, not 0", buf[5]);
    return false;
  }
  h->sender = rd16(buf + 6);
  h->session = rd32(buf + 8);
  h->seq = rd32(buf + 12);
  h->pos = rd16(buf + 16);
  h->layer = rd16(buf + 18);
  h->count = rd16(buf + 20);
  h->groupSize = rd16(buf + 22);
  if (h->count == 0) {
    *err = "frame carries no values";
    return false;
  }
  if (h->encoding == ML_ENCODING_F32 && h->groupSize != 0) {
    *err = fmt("float32 frame with group size %u (must be 0)", h->groupSize);
    return false;
  }
  if (h->encoding == ML_ENCODING_INT8 && h->groupSize == 0) {
    *err = "int8 frame with group size 0";
    return false;
  }
  size_t expected = ml_frame_bytes(h->encoding, h->count, h->groupSize);
  if (len != expected) {
    *err = fmt("frame is %zu bytes; its header (%u %s values) implies %zu", len, h->count, h->encoding == ML_ENCODING_F32 ? "f32" : "int8", expected);
    return false;
  }
  const uint8_t* p = buf + ML_FRAME_HEADER_BYTES;
  if (h->encoding == ML_ENCODING_F32) {
    for (int i = 0; i < h->count; i++) values[i] = rdf(p + 4 * i);
  } else {
    int groups = group_count(h->count, h->groupSize);
    std::vector<float> scales(groups);
    for (int g = 0; g < groups; g++) scales[g] = rdf(p + 4 * g);
    ml_dequantize((const int8_t*)(p + 4 * groups), scales.data(), h->count, h->groupSize, values);
  }
  for (int i = 0; i < h->count; i++) {
    if (!isfinite(values[i])) {
      *err = fmt("value %d is not finite (%s)", i, js_number(values[i]).c_str());
      return false;
    }
  }
  return true;
}

size_t ml_frame_encode(const MlFrameHeader& h, const float* values, uint8_t* out) {
  wr16(out, ML_FRAME_MAGIC);
  out[2] = ML_FRAME_VERSION;
  out[3] = h.type;
  out[4] = h.encoding;
  out[5] = 0;
  wr16(out + 6, h.sender);
  wr32(out + 8, h.session);
  wr32(out + 12, h.seq);
  wr16(out + 16, h.pos);
  wr16(out + 18, h.layer);
  wr16(out + 20, h.count);
  uint16_t gs = h.encoding == ML_ENCODING_INT8 ? h.groupSize : 0;
  wr16(out + 22, gs);
  uint8_t* p = out + ML_FRAME_HEADER_BYTES;
  if (h.encoding == ML_ENCODING_F32) {
    for (int i = 0; i < h.count; i++) wrf(p + 4 * i, values[i]);
  } else {
    int groups = group_count(h.count, gs);
    std::vector<float> scales(groups);
    ml_quantize(values, h.count, gs, (int8_t*)(p + 4 * groups), scales.data());
    for (int g = 0; g < groups; g++) wrf(p + 4 * g, scales[g]);
  }
  return ml_frame_bytes(h.encoding, h.count, gs);
}

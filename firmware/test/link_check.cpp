// link-check: the firmware core's head-link body (core/link.h) and radio frame
// (core/radio_frame.h) on vectors TypeScript wrote (lib/link/vectors.ts), so the tests can
// require byte-for-byte agreement (test/link-vectors.test.ts).
//
//   link-check < VECTORS
//
// Reads one JSON object per line and prints one JSON line per input line:
//
//   body vector   {"body": HEX, "values"?: HEX of float32}
//     -> {"ok": true, "header": {...}, "written": HEX, "decoded": HEX, "encoded"?: HEX}
//        written: the body rewritten from its parsed header and raw payload (ml_body_write);
//        decoded: its values as float32 (ml_body_decode); encoded: the body encoded from
//        "values", or for float32 from the decoded values (ml_body_encode).
//     -> {"ok": false, "error": SENTENCE[, "header", "written" when only decoding failed]}
//
// Errors in the input itself (not JSON, bad hex): {"ok": false, "input": SENTENCE}.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "json.h"
#include "link.h"

namespace {

using Bytes = std::vector<uint8_t>;

std::string hex(const uint8_t* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

std::string hex(const Bytes& b) { return hex(b.data(), b.size()); }

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unhex(const std::string& s, Bytes* out) {
  if (s.size() % 2) return false;
  out->resize(s.size() / 2);
  for (size_t i = 0; i < out->size(); i++) {
    int hi = hexDigit(s[2 * i]), lo = hexDigit(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

// A hex string member of the vector, or false.
bool hexMember(const JsonValue& v, const char* key, Bytes* out) {
  const JsonValue* m = v.get(key);
  return m && m->type == JsonValue::String && unhex(m->string, out);
}

std::string field(const char* name, const std::string& json, bool first = false) { return std::string(first ? "" : ",") + json_quote(name) + ":" + json; }

std::string bodyHeaderJson(const MlBodyHeader& h) {
  return "{" + field("type", std::to_string(h.type), true) + field("encoding", json_quote(ml_encoding_name(h.encoding))) + field("sender", std::to_string(h.sender)) +
         field("session", std::to_string(h.session)) + field("seq", std::to_string(h.seq)) + field("pos", std::to_string(h.pos)) +
         field("layer", std::to_string(h.layer)) + field("count", std::to_string(h.count)) + field("groupSize", std::to_string(h.groupSize)) + "}";
}

Bytes floatBytes(const float* v, size_t n) {
  Bytes b(4 * n);
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    ml_write_le(b.data() + 4 * i, 4, u);
  }
  return b;
}

std::vector<float> floatsOf(const Bytes& b) {
  std::vector<float> v(b.size() / 4);
  for (size_t i = 0; i < v.size(); i++) {
    uint32_t u = ml_read_le(b.data() + 4 * i, 4);
    memcpy(&v[i], &u, 4);
  }
  return v;
}

std::string failure(const std::string& error) { return "{\"ok\":false,\"error\":" + json_quote(error) + "}"; }

// A body: check and rewrite it, decode it, encode it again.
std::string checkBodyVector(const JsonValue& v) {
  Bytes body, given;
  if (!hexMember(v, "body", &body)) return "{\"ok\":false,\"input\":\"body must be a hex string\"}";
  const bool hasValues = v.get("values") != nullptr;
  if (hasValues && (!hexMember(v, "values", &given) || given.size() % 4)) return "{\"ok\":false,\"input\":\"values must be hex of float32 values\"}";
  MlBodyHeader h;
  const uint8_t* payload = nullptr;
  std::string err;
  if (!ml_body_check(body.data(), body.size(), &h, &payload, &err)) return failure(err);
  if (hasValues && given.size() / 4 != h.count) return "{\"ok\":false,\"input\":\"values and the header's count differ\"}";
  Bytes written(ml_body_bytes(h.encoding, h.count, h.groupSize));
  written.resize(ml_body_write(h, payload, written.data()));
  const std::string parsed = field("header", bodyHeaderJson(h)) + field("written", json_quote(hex(written)));
  std::vector<float> values(h.count);
  if (!ml_body_decode(body.data(), body.size(), &h, values.data(), &err)) return "{\"ok\":false,\"error\":" + json_quote(err) + parsed + "}";
  std::string out = "{\"ok\":true" + parsed + field("decoded", json_quote(hex(floatBytes(values.data(), values.size()))));
  if (hasValues || h.encoding == ML_ENCODING_F32) {
    const std::vector<float> source = hasValues ? floatsOf(given) : values;
    Bytes encoded(ml_body_bytes(h.encoding, h.count, h.groupSize));
    encoded.resize(ml_body_encode(h, source.data(), encoded.data()));
    out += field("encoded", json_quote(hex(encoded)));
  }
  return out + "}";
}

std::string checkVector(const std::string& line) {
  JsonValue v;
  std::string err;
  if (!json_parse(line.data(), line.size(), &v, &err)) return "{\"ok\":false,\"input\":" + json_quote("not JSON: " + err) + "}";
  if (v.type == JsonValue::Object && v.get("body")) return checkBodyVector(v);
  return "{\"ok\":false,\"input\":\"a vector has body\"}";
}

}  // namespace

int main(int argc, char**) {
  if (argc != 1) {
    fprintf(stderr, "usage: link-check < VECTORS (one JSON object per line)\n");
    return 2;
  }
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') n--;
    printf("%s\n", checkVector(std::string(line, (size_t)n)).c_str());
  }
  free(line);
  return 0;
}

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
//   frames vector  {"key": HEX, "meshId": N, "address": N, "frames": [HEX, ...],
//                   "sender"?: {"source": N, "destination": N, "counter": N, "maxFrameBytes": N}}
//     A receiver of that address (MlFrameReceiver) takes the frames in order:
//     -> {"events": [EVENT per frame]}, EVENT = {"event": "rejected" | "duplicate" | "fragment" |
//        "body" | "sensors" | "nack", "reason"?, "detail"? (rejected), "missing"? (fragment), "body"? and
//        "bodyHeader"? (body), "nack"? (nack), "header"? and "resealed"? (every frame that
//        opens under its source's key derived from the network key: its header, and the frame sealed again from header and
//        fragment, "" when that header cannot be sealed), "sent"? (body and nack, with "sender": the message cut into frames again
//        by an MlFrameSender)}
//
// Errors in the input itself (not JSON, bad hex): {"ok": false, "input": SENTENCE}.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "json.h"
#include "link.h"
#include "radio_frame.h"

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

std::string intListJson(const std::vector<int>& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); i++) s += (i ? "," : "") + std::to_string(xs[i]);
  return s + "]";
}

std::string hexListJson(const std::vector<Bytes>& frames) {
  std::string s = "[";
  for (size_t i = 0; i < frames.size(); i++) s += (i ? "," : "") + json_quote(hex(frames[i]));
  return s + "]";
}

std::string radioHeaderJson(const MlRadioHeader& h) {
  return "{" + field("kind", json_quote(h.kind == ML_FRAME_NACK ? "nack" : h.kind == ML_FRAME_SENSORS ? "sensors" : "fragment"), true) + field("meshId", std::to_string(h.meshId)) +
         field("source", std::to_string(h.source)) + field("destination", std::to_string(h.destination)) + field("counter", std::to_string(h.counter)) +
         field("messageNumber", std::to_string(h.messageNumber)) + field("fragmentIndex", std::to_string(h.fragmentIndex)) +
         field("fragmentCount", std::to_string(h.fragmentCount)) + "}";
}

// A whole-number member in lo..hi, or false.
bool intMember(const JsonValue& v, const char* key, double lo, double hi, uint32_t* out) {
  const JsonValue* m = v.get(key);
  if (!m || !m->isInteger() || m->number < lo || m->number > hi) return false;
  *out = (uint32_t)m->number;
  return true;
}

// Every frame of an outgoing message, sealed by the sender.
std::vector<Bytes> framesOf(MlFrameSender* sender, const MlOutgoing& m) {
  std::vector<Bytes> frames;
  for (int i = 0; i < m.fragmentCount; i++) {
    Bytes f(ML_RADIO_MAX_FRAME_BYTES);
    f.resize(sender->frame(m, i, f.data()));
    frames.push_back(f);
  }
  return frames;
}

struct SenderSpec {
  bool given = false;
  uint32_t source = 0, destination = 0, counter = 0, maxFrameBytes = 0;
};

// What one frame did to the receiver, as JSON.
std::string frameEvent(MlFrameReceiver* receiver, const uint8_t* key, uint8_t meshId, const SenderSpec& spec, const Bytes& frame) {
  std::string out;
  MlRadioFrame opened;
  std::string ignored;
  MlRadioKeyring every;
  every.every(key);
  if (ml_radio_open(every, meshId, frame.data(), frame.size(), &opened, &ignored) == ML_RADIO_ACCEPTED) {
    Bytes resealed(ML_RADIO_MAX_FRAME_BYTES);
    resealed.resize(ml_radio_seal(every.open(opened.h.source), opened.h, opened.fragment, opened.fragmentBytes, resealed.data()));
    out += field("header", radioHeaderJson(opened.h)) + field("resealed", json_quote(hex(resealed)));
  }
  const MlReceiveEvent e = receiver->receive(frame.data(), frame.size());
  MlFrameSender sender;
  std::string err;
  uint8_t sealKey[ML_NETWORK_KEY_BYTES];
  const bool resend = spec.given && ml_sealing_key(key, (uint8_t)spec.source, sealKey) && sender.init(sealKey, meshId, (uint8_t)spec.source, spec.maxFrameBytes, spec.counter, &err);
  MlOutgoing m;
  switch (e.kind) {
    case MlReceiveEvent::REJECTED:
      return "{\"event\":\"rejected\"" + field("reason", json_quote(ml_radio_reject_name(e.reason))) + field("detail", json_quote(e.detail)) + out + "}";
    case MlReceiveEvent::DUPLICATE:
      return "{\"event\":\"duplicate\"" + out + "}";
    case MlReceiveEvent::FRAGMENT:
      return "{\"event\":\"fragment\"" + field("missing", intListJson(e.missing)) + out + "}";
    case MlReceiveEvent::BODY:
      out += field("body", json_quote(hex(e.body))) + field("bodyHeader", bodyHeaderJson(e.header));
      if (resend) out += field("sent", sender.body((uint8_t)spec.destination, e.body.data(), e.body.size(), &m, &err) ? hexListJson(framesOf(&sender, m)) : json_quote(err));
      return "{\"event\":\"body\"" + out + "}";
    case MlReceiveEvent::SENSORS:
      return "{\"event\":\"sensors\"" + field("body", json_quote(hex(e.body))) + out + "}";
    case MlReceiveEvent::NACK:
      out += field("nack", "{" + field("fragmentCount", std::to_string(e.nack.fragmentCount), true) + field("missing", intListJson(e.nack.missing)) + "}");
      if (resend) out += field("sent", sender.nack(e.frame.h.destination, e.frame.h.messageNumber, e.nack, &m, &err) ? hexListJson(framesOf(&sender, m)) : json_quote(err));
      return "{\"event\":\"nack\"" + out + "}";
  }
  return "{}";
}

// A set of frames: open, re-seal and receive each, reassemble the body, cut it into frames again.
std::string checkFramesVector(const JsonValue& v) {
  Bytes key;
  uint32_t meshId = 0, address = 0;
  if (!hexMember(v, "key", &key) || key.size() != ML_NETWORK_KEY_BYTES) return "{\"ok\":false,\"input\":\"key must be 16 bytes of hex\"}";
  if (!intMember(v, "meshId", 0, 255, &meshId) || !intMember(v, "address", 0, 255, &address)) return "{\"ok\":false,\"input\":\"meshId and address are 0..255\"}";
  const JsonValue* frames = v.get("frames");
  if (frames->type != JsonValue::Array) return "{\"ok\":false,\"input\":\"frames must be an array\"}";
  SenderSpec spec;
  if (const JsonValue* s = v.get("sender")) {
    spec.given = intMember(*s, "source", 0, 255, &spec.source) && intMember(*s, "destination", 0, 255, &spec.destination) &&
                 intMember(*s, "counter", 0, 4294967295.0, &spec.counter) && intMember(*s, "maxFrameBytes", 0, 255, &spec.maxFrameBytes);
    if (!spec.given) return "{\"ok\":false,\"input\":\"sender has source, destination, counter and maxFrameBytes\"}";
  }
  MlFrameReceiver receiver;
  MlRadioKeyring keys;
  keys.derive(key.data(), (uint8_t)address);
  receiver.init(keys, (uint8_t)meshId, (uint8_t)address);
  std::string events;
  for (const JsonValue& f : frames->items) {
    Bytes frame;
    if (f.type != JsonValue::String || !unhex(f.string, &frame)) return "{\"ok\":false,\"input\":\"a frame must be a hex string\"}";
    events += (events.empty() ? "" : ",") + frameEvent(&receiver, key.data(), (uint8_t)meshId, spec, frame);
  }
  return "{\"events\":[" + events + "]}";
}

std::string checkVector(const std::string& line) {
  JsonValue v;
  std::string err;
  if (!json_parse(line.data(), line.size(), &v, &err)) return "{\"ok\":false,\"input\":" + json_quote("not JSON: " + err) + "}";
  if (v.type == JsonValue::Object && v.get("body")) return checkBodyVector(v);
  if (v.type == JsonValue::Object && v.get("frames")) return checkFramesVector(v);
  return "{\"ok\":false,\"input\":\"a vector has body or frames\"}";
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

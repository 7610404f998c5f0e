// The head-link body (link.h): a port of lib/link/body.ts, with its error sentences.
#include "link.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "head_group.h"  // ml_quantize, ml_dequantize

const char* ml_encoding_name(uint8_t code) {
  return code == ML_ENCODING_F32 ? "f32" : code == ML_ENCODING_INT8 ? "int8" : code == ML_ENCODING_INT4 ? "int4" : code == ML_ENCODING_INT7 ? "int7" : code == ML_ENCODING_INT7H ? "int7h" : nullptr;
}

bool ml_encoding_rotated(uint8_t code) { return code == ML_ENCODING_INT7H; }

int ml_encoding_bits(uint8_t code) { return code == ML_ENCODING_INT7 || code == ML_ENCODING_INT7H ? 7 : code == ML_ENCODING_INT4 ? 4 : 8; }

int ml_encoding_levels(uint8_t code) { return code == ML_ENCODING_INT7 || code == ML_ENCODING_INT7H ? ML_INT7_LEVELS : code == ML_ENCODING_INT4 ? ML_INT4_LEVELS : 127; }

int ml_broadcast_group_size(uint8_t code) { return code == ML_ENCODING_F32 ? 0 : code == ML_ENCODING_INT7 || code == ML_ENCODING_INT7H ? 128 : ML_INT8_GROUP_SIZE; }

int ml_result_group_size(uint8_t code, int headSize) {
  return code == ML_ENCODING_F32 ? 0 : ml_aligned_group_size(headSize, code == ML_ENCODING_INT7 || code == ML_ENCODING_INT7H ? 64 : ML_INT8_GROUP_SIZE);
}

uint32_t ml_read_le(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}

void ml_write_le(uint8_t* p, int bytes, uint32_t v) {
  for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

std::string ml_format(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

uint32_t ml_field_read(const uint8_t* header, const MlField& f) {
  const uint8_t* p = header + f.offset;
  if (f.nibble == ML_HIGH_NIBBLE) return *p >> 4;
  if (f.nibble == ML_LOW_NIBBLE) return *p & 0x0f;
  return ml_read_le(p, f.bytes);
}

void ml_field_write(uint8_t* header, const MlField& f, uint32_t v) {
  uint8_t* p = header + f.offset;
  if (f.nibble == ML_HIGH_NIBBLE) *p |= (uint8_t)(v << 4);
  else if (f.nibble == ML_LOW_NIBBLE) *p |= (uint8_t)(v & 0x0f);
  else ml_write_le(p, f.bytes, v);
}

uint32_t ml_field_max(const MlField& f) {
  if (f.nibble != ML_WHOLE_BYTES) return 0x0f;
  return f.bytes == 4 ? 0xffffffffu : (1u << (8 * f.bytes)) - 1;
}

namespace {

// JavaScript's Number#toString of a value that is not finite (what decodeBody reports).
std::string js_non_finite(float v) {
  if (isnan(v)) return "NaN";
  return v > 0 ? "Infinity" : "-Infinity";
}

float read_float(const uint8_t* p) {
  uint32_t u = ml_read_le(p, 4);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void write_float(uint8_t* p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  ml_write_le(p, 4, u);
}

int group_count(int count, int groupSize) { return (count + groupSize - 1) / groupSize; }

bool power_of_two(uint32_t n) { return (n & (n - 1)) == 0; }

// body.ts rotationProblem: why groups of this size cannot carry a Walsh-Hadamard transform, or "".
std::string rotation_problem(uint32_t count, uint32_t groupSize) {
  const uint32_t last = count - (uint32_t)(group_count((int)count, (int)groupSize) - 1) * groupSize;
  if (!power_of_two(groupSize) && count > groupSize) return ml_format("group size %u is not a power of two", groupSize);
  if (!power_of_two(last)) return ml_format("the last group has %u values, not a power of two", last);
  return "";
}

// Each group of x [n] (groups of groupSize, the last may be shorter) through f.
void each_group(float* x, int n, int groupSize, void (*f)(float*, int)) {
  for (int g0 = 0; g0 < n; g0 += groupSize) f(x + g0, n - g0 < groupSize ? n - g0 : groupSize);
}

// Payload bytes of count values: float32 values, or the groups' float32 scales then the int8
// values (int4: two a byte).
size_t payload_bytes(uint8_t encoding, int count, int groupSize) {
  if (encoding == ML_ENCODING_F32) return (size_t)count * 4;
  return (size_t)group_count(count, groupSize) * 4 + ((size_t)count * ml_encoding_bits(encoding) + 7) / 8;
}

// The group size a body of this encoding carries: float32 bodies carry 0.
uint16_t carried_group_size(const MlBodyHeader& h) { return h.encoding == ML_ENCODING_F32 ? 0 : h.groupSize; }

void write_header(const MlBodyHeader& h, uint8_t* out) {
  uint32_t raw[ML_BODY_FIELD_COUNT];
  raw[ML_FIELD_MAGIC] = ML_BODY_MAGIC;
  raw[ML_FIELD_VERSION] = ML_BODY_VERSION;
  raw[ML_FIELD_TYPE] = h.type;
  raw[ML_FIELD_ENCODING] = h.encoding;
  raw[ML_FIELD_RESERVED] = 0;
  raw[ML_FIELD_SENDER] = h.sender;
  raw[ML_FIELD_SESSION] = h.session;
  raw[ML_FIELD_SEQ] = h.seq;
  raw[ML_FIELD_POS] = h.pos;
  raw[ML_FIELD_LAYER] = h.layer;
  raw[ML_FIELD_COUNT] = h.count;
  raw[ML_FIELD_GROUP_SIZE] = carried_group_size(h);
  memset(out, 0, ML_BODY_HEADER_BYTES);
  for (int i = 0; i < ML_BODY_FIELD_COUNT; i++) ml_field_write(out, ML_BODY_FIELDS[i], raw[i]);
}

}  // namespace

size_t ml_body_bytes(uint8_t encoding, int count, int groupSize) {
  return ML_BODY_HEADER_BYTES + payload_bytes(encoding, count, encoding == ML_ENCODING_F32 ? 0 : groupSize);
}

bool ml_body_check(const uint8_t* buf, size_t len, MlBodyHeader* h, const uint8_t** payload, std::string* err) {
  if (len < ML_BODY_HEADER_BYTES) {
    *err = ml_format("body is %zu bytes, shorter than the %zu-byte header", len, ML_BODY_HEADER_BYTES);
    return false;
  }
  uint32_t raw[ML_BODY_FIELD_COUNT];
  for (int i = 0; i < ML_BODY_FIELD_COUNT; i++) raw[i] = ml_field_read(buf, ML_BODY_FIELDS[i]);
  const uint32_t encoding = raw[ML_FIELD_ENCODING], count = raw[ML_FIELD_COUNT], groupSize = raw[ML_FIELD_GROUP_SIZE];
  if (raw[ML_FIELD_MAGIC] != ML_BODY_MAGIC) {
    *err = ml_format("bad magic 0x%x (expected 0x%x, \"ML\")", raw[ML_FIELD_MAGIC], ML_BODY_MAGIC);
    return false;
  }
  if (raw[ML_FIELD_VERSION] != ML_BODY_VERSION) {
    *err = ml_format("unsupported body version %u (this build speaks %u)", raw[ML_FIELD_VERSION], ML_BODY_VERSION);
    return false;
  }
  if (raw[ML_FIELD_TYPE] != ML_BODY_BROADCAST && raw[ML_FIELD_TYPE] != ML_BODY_RESULT && raw[ML_FIELD_TYPE] != ML_BODY_STEERING) {
    *err = ml_format("unknown body type %u", raw[ML_FIELD_TYPE]);
    return false;
  }
  const char* encodingName = ml_encoding_name((uint8_t)encoding);
  if (!encodingName) {
    *err = ml_format("unknown encoding %u", encoding);
    return false;
  }
  if (raw[ML_FIELD_RESERVED] != 0) {
    *err = ml_format("reserved byte is %u, not 0", raw[ML_FIELD_RESERVED]);
    return false;
  }
  if (count == 0) {
    *err = "body carries no values";
    return false;
  }
  if (encoding == ML_ENCODING_F32 && groupSize != 0) {
    *err = ml_format("float32 body with group size %u (must be 0)", groupSize);
    return false;
  }
  if (encoding != ML_ENCODING_F32 && groupSize == 0) {
    *err = ml_format("%s body with group size 0", encodingName);
    return false;
  }
  if (ml_encoding_rotated((uint8_t)encoding)) {
    const std::string problem = rotation_problem(count, groupSize);
    if (!problem.empty()) {
      *err = ml_format("%s body of %u values in groups of %u: %s", encodingName, count, groupSize, problem.c_str());
      return false;
    }
  }
  const size_t expected = ml_body_bytes((uint8_t)encoding, (int)count, (int)groupSize);
  if (len != expected) {
    *err = ml_format("body is %zu bytes; its header (%u %s values) implies %zu", len, count, encodingName, expected);
    return false;
  }
  h->type = (uint8_t)raw[ML_FIELD_TYPE];
  h->encoding = (uint8_t)encoding;
  h->sender = (uint16_t)raw[ML_FIELD_SENDER];
  h->session = raw[ML_FIELD_SESSION];
  h->seq = raw[ML_FIELD_SEQ];
  h->pos = (uint16_t)raw[ML_FIELD_POS];
  h->layer = (uint16_t)raw[ML_FIELD_LAYER];
  h->count = (uint16_t)count;
  h->groupSize = (uint16_t)groupSize;
  *payload = buf + ML_BODY_HEADER_BYTES;
  return true;
}

size_t ml_body_write(const MlBodyHeader& h, const uint8_t* payload, uint8_t* out) {
  write_header(h, out);
  const size_t n = payload_bytes(h.encoding, h.count, carried_group_size(h));
  memcpy(out + ML_BODY_HEADER_BYTES, payload, n);
  return ML_BODY_HEADER_BYTES + n;
}

bool ml_body_decode(const uint8_t* buf, size_t len, MlBodyHeader* h, float* values, std::string* err) {
  const uint8_t* p = nullptr;
  if (!ml_body_check(buf, len, h, &p, err)) return false;
  if (h->encoding == ML_ENCODING_F32) {
    for (int i = 0; i < h->count; i++) values[i] = read_float(p + 4 * i);
  } else if (h->encoding == ML_ENCODING_INT8) {
    const int groups = group_count(h->count, h->groupSize);
    std::vector<float> scales(groups);
    for (int g = 0; g < groups; g++) scales[g] = read_float(p + 4 * g);
    ml_dequantize((const int8_t*)(p + 4 * groups), scales.data(), h->count, h->groupSize, values);
  } else {
    // body.ts checkPackedCodes: codes -L..L, the bits after the last code 0
    const int groups = group_count(h->count, h->groupSize);
    const uint8_t* codes = p + 4 * groups;
    const int bits = ml_encoding_bits(h->encoding), L = ml_encoding_levels(h->encoding);
    const size_t len = ((size_t)h->count * bits + 7) / 8;
    const char* name = ml_encoding_name(h->encoding);
    for (int i = 0; i < h->count; i++) {
      if (ml_signed_code(codes, len, i, bits) == -L - 1) {
        *err = ml_format("%s value %d has code %d (codes are -%d..%d)", name, i, -L - 1, L, L);
        return false;
      }
    }
    const int used = (int)(((size_t)h->count * bits) % 8);
    if (used != 0 && (codes[len - 1] >> used) != 0) {
      *err = ml_format("%s body with nonzero bits after its last value", name);
      return false;
    }
    std::vector<float> scales(groups);
    for (int g = 0; g < groups; g++) scales[g] = read_float(p + 4 * g);
    std::vector<int8_t> q(h->count);
    ml_unpack_codes(codes, len, h->count, bits, q.data());
    ml_dequantize(q.data(), scales.data(), h->count, h->groupSize, values);
    if (ml_encoding_rotated(h->encoding)) each_group(values, h->count, h->groupSize, ml_inverse_walsh_hadamard);
  }
  for (int i = 0; i < h->count; i++) {
    if (!isfinite(values[i])) {
      *err = ml_format("value %d is not finite (%s)", i, js_non_finite(values[i]).c_str());
      return false;
    }
  }
  return true;
}

size_t ml_body_encode(const MlBodyHeader& h, const float* values, uint8_t* out) {
  write_header(h, out);
  uint8_t* p = out + ML_BODY_HEADER_BYTES;
  const uint16_t gs = carried_group_size(h);
  if (h.encoding == ML_ENCODING_F32) {
    for (int i = 0; i < h.count; i++) write_float(p + 4 * i, values[i]);
  } else if (h.encoding == ML_ENCODING_INT8) {
    const int groups = group_count(h.count, gs);
    std::vector<float> scales(groups);
    ml_quantize(values, h.count, gs, (int8_t*)(p + 4 * groups), scales.data());
    for (int g = 0; g < groups; g++) write_float(p + 4 * g, scales[g]);
  } else {
    const int groups = group_count(h.count, gs);
    std::vector<float> scales(groups);
    std::vector<int8_t> q(h.count);
    std::vector<float> coded(values, values + h.count);
    if (ml_encoding_rotated(h.encoding)) each_group(coded.data(), h.count, gs, ml_walsh_hadamard);
    ml_quantize_clamped(coded.data(), h.count, gs, ml_encoding_levels(h.encoding), q.data(), scales.data());
    for (int g = 0; g < groups; g++) write_float(p + 4 * g, scales[g]);
    ml_pack_codes(q.data(), h.count, ml_encoding_bits(h.encoding), p + 4 * groups);
  }
  return ML_BODY_HEADER_BYTES + payload_bytes(h.encoding, h.count, gs);
}

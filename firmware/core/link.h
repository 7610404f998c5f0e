// The head-link body as the firmware speaks it: the one message between the gateway and its
// head nodes (a layer's broadcast, or one node's head outputs), whether MQTT carries it whole
// or the radio carries it in fragments (radio_frame.h). The one definition is
// lib/link/body.ts (docs/PROTOCOL.md, "Head-link body"); test/firmware-node.test.ts compares
// the table below with its BODY_FIELDS and ENCODING_CODES (`mesh-llm-node --wire`), and
// test/link-vectors.test.ts has the firmware re-encode bodies TypeScript wrote, byte for byte.
//
// Header, ML_BODY_HEADER_BYTES (24) bytes, little-endian, as ML_BODY_FIELDS lists it; then the
// payload: float32, count float32 values; int8, ceil(count / groupSize) float32 scales, then
// count int8 values; int4, the scales then ceil(count / 2) bytes of two codes -7..7 each (low
// nibble first; an odd count's last high nibble 0); int7, the scales then ceil(7 count / 8)
// bytes of seven-bit codes -63..63 as a little-endian bit stream (unused high bits 0): the
// group-wise codes of lib/llm/quant.ts, quant.cpp here. int7h is int7's layout carrying each
// group's Walsh-Hadamard transform (ml_walsh_hadamard); every group's length is a power of two.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>

static const uint16_t ML_BODY_MAGIC = 0x4c4d;  // "ML" read as a little-endian u16
static const uint8_t ML_BODY_VERSION = 1;
static const size_t ML_BODY_HEADER_BYTES = 24;
static const uint16_t ML_GATEWAY_SENDER = 0;   // a result's sender is its node's slot (1..65534)

// Message types.
static const uint8_t ML_BODY_BROADCAST = 1;  // gateway -> nodes: the layer's attention input
static const uint8_t ML_BODY_RESULT = 2;     // node -> gateway: its heads' attention outputs
static const uint8_t ML_BODY_STEERING = 3;   // gateway -> one node: the f32 vector added to its heads' outputs at `layer`

// Encoding codes (lib/link/body.ts ENCODING_CODES).
static const uint8_t ML_ENCODING_F32 = 0;
static const uint8_t ML_ENCODING_INT8 = 1;
static const uint8_t ML_ENCODING_INT4 = 2;
static const uint8_t ML_ENCODING_INT7 = 3;
static const uint8_t ML_ENCODING_INT7H = 4;
// The name of an encoding code as lib/llm/quant.ts spells it ("f32", "int8", "int4", "int7", "int7h"), or nullptr.
const char* ml_encoding_name(uint8_t code);
// Bits of a code on the wire (int8 8, int7 7, int4 4) and the largest code (127, 63, 7).
int ml_encoding_bits(uint8_t code);
int ml_encoding_levels(uint8_t code);
// The group sizes of the mesh's bodies (lib/llm/engine.ts broadcastGroupSize, resultGroupSize).
int ml_broadcast_group_size(uint8_t code);
int ml_result_group_size(uint8_t code, int headSize);
// Whether an encoding's groups carry their Walsh-Hadamard transform (int7h).
bool ml_encoding_rotated(uint8_t code);

// The header's fields in order, the table every function below follows.
enum MlBodyFieldId {
  ML_FIELD_MAGIC,
  ML_FIELD_VERSION,
  ML_FIELD_TYPE,
  ML_FIELD_ENCODING,
  ML_FIELD_RESERVED,
  ML_FIELD_SENDER,
  ML_FIELD_SESSION,
  ML_FIELD_SEQ,
  ML_FIELD_POS,
  ML_FIELD_LAYER,
  ML_FIELD_COUNT,
  ML_FIELD_GROUP_SIZE,
  ML_BODY_FIELD_COUNT
};
// A header field (this table's and radio_frame.h's): `bytes` little-endian bytes at `offset`,
// or one nibble of the byte there.
enum MlNibble : uint8_t { ML_WHOLE_BYTES, ML_HIGH_NIBBLE, ML_LOW_NIBBLE };
struct MlField {
  const char* name;  // as the TypeScript table names it
  uint8_t offset;
  uint8_t bytes;     // 1, 2 or 4
  MlNibble nibble = ML_WHOLE_BYTES;  // unless the field is half of a byte
};
static const MlField ML_BODY_FIELDS[ML_BODY_FIELD_COUNT] = {
    {"magic", 0, 2},    {"version", 2, 1}, {"type", 3, 1}, {"encoding", 4, 1}, {"reserved", 5, 1},  {"sender", 6, 2},
    {"session", 8, 4},  {"seq", 12, 4},    {"pos", 16, 2}, {"layer", 18, 2},   {"count", 20, 2},    {"groupSize", 22, 2},
};

// Little-endian unsigned integers of 1, 2 or 4 bytes.
uint32_t ml_read_le(const uint8_t* p, int bytes);
void ml_write_le(uint8_t* p, int bytes, uint32_t v);
// printf into a std::string: the sentences of link.cpp and radio_frame.cpp.
std::string ml_format(const char* f, ...) __attribute__((format(printf, 1, 2)));

// A field of a header (the table above, or the radio header's). Writing expects a header that
// starts zeroed (nibbles are or-ed in) and a value that fits the field.
uint32_t ml_field_read(const uint8_t* header, const MlField& f);
void ml_field_write(uint8_t* header, const MlField& f, uint32_t v);
// The largest value a field holds.
uint32_t ml_field_max(const MlField& f);

// A header's variable fields (magic, version and reserved are constants).
struct MlBodyHeader {
  uint8_t type;
  uint8_t encoding;
  uint16_t sender;
  uint32_t session;
  uint32_t seq;        // the broadcast's sequence number; a result echoes it
  uint16_t pos;
  uint16_t layer;
  uint16_t count;      // values, 1..65535
  uint16_t groupSize;  // int8, int4: values per scale; float32: 0
};

// Bytes of a body of count values (header included); groupSize is ignored for float32.
size_t ml_body_bytes(uint8_t encoding, int count, int groupSize);

// Checks a body's header and length without decoding its values (what a forwarder needs).
// On success fills h and points *payload at the payload (ml_body_bytes(...) - 24 bytes);
// otherwise false and, in err, lib/link/body.ts checkBody's sentence for the first fault.
bool ml_body_check(const uint8_t* buf, size_t len, MlBodyHeader* h, const uint8_t** payload, std::string* err);

// Writes a body from a header and its raw payload (ml_body_bytes(...) - 24 bytes, as
// ml_body_check returned it) into out, which must hold ml_body_bytes(...). Returns the length.
size_t ml_body_write(const MlBodyHeader& h, const uint8_t* payload, uint8_t* out);

// Checks and decodes a body into header and values (int8 bodies dequantised; values must hold
// 65535). false and lib/link/body.ts decodeBody's sentence in err when it is malformed or a
// value is not finite.
bool ml_body_decode(const uint8_t* buf, size_t len, MlBodyHeader* h, float* values, std::string* err);

// Encodes values [h.count] (int8: in groups of h.groupSize, as lib/llm/quant.ts) into out,
// which must hold ml_body_bytes(...); h.count must be 1..65535 and, for int8, h.groupSize at
// least 1. Returns the body's length. The same bytes as lib/link/body.ts encodeBody.
size_t ml_body_encode(const MlBodyHeader& h, const float* values, uint8_t* out);

// The mesh wire format as the firmware speaks it: the MQTT topic tree and the binary tensor
// frame of lib/mesh/wire.ts (the one definition; docs/PROTOCOL.md). The test
// test/firmware-node.test.ts checks these constants against wire.ts (`mesh-llm-node --wire`).
#pragma once
#include <stddef.h>
#include <stdint.h>
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

// ---- tensor frames ----------------------------------------------------------------------------
// Header, 24 bytes, little-endian: 'M' 'L', u8 version, u8 type, u8 encoding, u8 reserved (0),
// u16 sender, u32 session, u32 seq, u16 pos, u16 layer, u16 count, u16 groupSize. Payload:
// float32: count float32; int8: ceil(count / groupSize) float32 scales, then count int8.
static const uint16_t ML_FRAME_MAGIC = 0x4c4d;  // "ML" read as a little-endian u16
static const uint8_t ML_FRAME_VERSION = 1;
static const size_t ML_FRAME_HEADER_BYTES = 24;
static const uint8_t ML_FRAME_BROADCAST = 1;
static const uint8_t ML_FRAME_RESULT = 2;
static const uint8_t ML_ENCODING_F32 = 0;
static const uint8_t ML_ENCODING_INT8 = 1;

struct MlFrameHeader {
  uint8_t type;
  uint8_t encoding;
  uint16_t sender;
  uint32_t session;
  uint32_t seq;
  uint16_t pos;
  uint16_t layer;
  uint16_t count;
  uint16_t groupSize;
};

// Decodes a frame into header and values (int8 frames dequantised; values must hold 65535).
// Returns false and a sentence in err (the same sentences as wire.ts decodeFrame) when the
// frame is malformed.
bool ml_frame_decode(const uint8_t* buf, size_t len, MlFrameHeader* h, float* values, std::string* err);

// Bytes of a frame of count values in this encoding.
size_t ml_frame_bytes(uint8_t encoding, int count, int groupSize);

// Encodes values [h.count] (int8: in groups of h.groupSize, as lib/llm/quant.ts) into out,
// which must hold ml_frame_bytes(...). Returns the frame's length.
size_t ml_frame_encode(const MlFrameHeader& h, const float* values, uint8_t* out);

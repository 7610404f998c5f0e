// Weight shards: one head node's W_Q/W_K/W_V rows, what it holds in flash instead of the whole
// checkpoint. A port of the reader of lib/firmware/shard.ts (the one definition; `mesh-llm
// shard` writes them, docs/FIRMWARE.md states the layout): a 56-byte header plus head ids
// (magic "MLSH", version, weight format, node and node count, the model's geometry, head and
// kv head ids, group size, header and payload bytes, CRC-32 of the file), then per layer the
// rows of W_Q, W_K, W_V (float32; or int8, int4, int2 codes followed by their float32 scales,
// int2 also offsets). Version 1 shards (float32 and int8 only, the same layout) still load.
// The source is the storage HAL's MlShardSource: a file on the host, a flash partition on the
// ESP32; when the source is mapped the head group computes from the rows in place.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "../hal/storage.h"
#include "head_group.h"

static const uint32_t ML_SHARD_VERSION = 2;          // what mesh-llm shard writes
static const uint32_t ML_SHARD_OLDEST_VERSION = 1;   // float32 and int8 shards before int4/int2
static const size_t ML_SHARD_FIXED_HEADER_BYTES = 56;

struct MlShardInfo {
  uint32_t version;
  MlWeightFormat format;  // version 1: f32 or int8 only
  int node, nodes;
  MlConfig config;   // dim .. seqLen from the header; headSize, kvDim, kvMul derived
  std::vector<int> heads, kvHeads;
  int groupSize;
  size_t headerBytes, payloadBytes;
  uint32_t crc;
};

// CRC-32 (IEEE 802.3, zlib's crc32), continued from crc (0 to start).
uint32_t ml_crc32(uint32_t crc, const uint8_t* p, size_t n);

// Reads and checks the header, its geometry, the file's size and its CRC-32. false and the
// reason ("checksum mismatch ...", "shard version 9 ...") in err.
bool ml_shard_open(MlShardSource* src, MlShardInfo* out, std::string* err);

// What the mesh expects of this node: its geometry, and its heads (empty: any).
struct MlShardExpect {
  const MlConfig* config;  // null: not checked
  int node;                // 0: not checked
  std::vector<int> heads;  // empty: not checked
};
// false and the reason when the shard is not this node's.
bool ml_shard_check(const MlShardInfo& s, const MlShardExpect& want, std::string* err);

// The payload as head-group slices (computing as ml_slices_load_format would for its heads):
// views of the rows in place when the source is mapped (the source must then outlive the
// slices), else a copy of the payload the slices own.
MlSlices* ml_shard_load(MlShardSource* src, const MlShardInfo& s, std::string* err);

// A shard in a file, read with stdio into RAM (mesh-llm-node --shard-load copy; the host's
// default is the mapped firmware/host/mapped_shard.h).
class MlFileShard : public MlShardSource {
 public:
  ~MlFileShard() override;
  bool open(const char* path, std::string* err);
  size_t size() override { return size_; }
  bool read(size_t offset, uint8_t* out, size_t len) override;

 private:
  void* f_ = nullptr;
  size_t size_ = 0;
};

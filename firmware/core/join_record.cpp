#include "join_record.h"

#include <string.h>

#include "link.h"   // ml_read_le, ml_format
#include "shard.h"  // ml_crc32

namespace {
const size_t CRC_OFFSET = 28;
}  // namespace

bool ml_join_record_read(const uint8_t* b, size_t len, MlJoinRecord* out, std::string* err) {
  if (len < ML_JOIN_FIXED_BYTES) {
    *err = ml_format("%zu bytes is shorter than a join record header (%zu)", len, ML_JOIN_FIXED_BYTES);
    return false;
  }
  if (memcmp(b, "MLJR", 4) != 0) {
    *err = "not a join record (no MLJR magic): provision the node with mesh-llm provision";
    return false;
  }
  const uint32_t version = ml_read_le(b + 4, 2);
  if (version != ML_JOIN_VERSION) {
    *err = ml_format("join record version %u (this build reads %u)", (unsigned)version, (unsigned)ML_JOIN_VERSION);
    return false;
  }
  const size_t total = ml_read_le(b + 6, 2), planBytes = ml_read_le(b + 10, 2);
  if (total != ML_JOIN_FIXED_BYTES + planBytes || total > len) {
    *err = ml_format("record of %zu bytes with a %zu-byte plan in %zu bytes", total, planBytes, len);
    return false;
  }
  const uint32_t said = ml_read_le(b + CRC_OFFSET, 4);
  const uint8_t zero[4] = {0, 0, 0, 0};
  const uint32_t crc = ml_crc32(ml_crc32(ml_crc32(0, b, CRC_OFFSET), zero, 4), b + CRC_OFFSET + 4, total - CRC_OFFSET - 4);
  if (crc != said) {
    *err = ml_format("checksum mismatch (CRC-32 %x, the record says %x): the record is damaged", (unsigned)crc, (unsigned)said);
    return false;
  }
  MlJoinRecord r;
  r.version = version;
  r.meshId = b[8];
  r.address = b[9];
  memcpy(r.key, b + 12, ML_NETWORK_KEY_BYTES);
  r.plan.assign((const char*)b + ML_JOIN_FIXED_BYTES, planBytes);
  if (r.address < 1 || r.address > 254) {
    *err = ml_format("node address %u (1..254)", (unsigned)r.address);
    return false;
  }
  *out = r;
  return true;
}

bool ml_join_record_apply(const MlJoinRecord& r, MlRadioNodeConfig* c, MlConfig* model, std::vector<int>* heads, std::string* err) {
  std::string why;
  if (!ml_radio_join_parse(r.plan.data(), r.plan.size(), c, model, heads, &why)) {
    *err = "its plan: " + why;
    return false;
  }
  c->address = r.address;
  c->meshId = r.meshId;
  memcpy(c->key, r.key, ML_NETWORK_KEY_BYTES);
  return true;
}

// The join record: an ESP32 head node's provisioning, written by `mesh-llm provision` as a
// binary image for its `join` data partition (partitions_*.csv); on the host, a file
// (mesh-llm-radio-node --join FILE). A port of the reader of lib/firmware/join-record.ts (the
// one definition; docs/FIRMWARE.md states the layout): a 32-byte header (magic "MLJR", version,
// record bytes, radio mesh id, node address, plan bytes, the mesh's 16-byte network key, CRC-32
// of the record), then the join plan as JSON (radio_join.h parses it).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "radio_join.h"

static const uint32_t ML_JOIN_VERSION = 1;
static const size_t ML_JOIN_FIXED_BYTES = 32;

struct MlJoinRecord {
  uint32_t version;
  uint8_t meshId;
  uint8_t address;
  uint8_t key[ML_NETWORK_KEY_BYTES];  // the mesh's network key (per-node keys are derived from it)
  std::string plan;                   // the join plan, JSON
};

// Reads and checks a record at the start of bytes [len] (a partition image may run on past
// it). false and the reason ("checksum mismatch ...", "join record version 9 ...") in err.
bool ml_join_record_read(const uint8_t* bytes, size_t len, MlJoinRecord* out, std::string* err);

// The radio node's configuration from a record: its address, mesh id and key, and its plan
// (ml_radio_join_parse); what the mesh expects of it in model and heads. false and why.
bool ml_join_record_apply(const MlJoinRecord& r, MlRadioNodeConfig* c, MlConfig* model, std::vector<int>* heads, std::string* err);

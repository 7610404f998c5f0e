#include "shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"

uint32_t ml_crc32(uint32_t crc, const uint8_t* p, size_t n) {
  static uint32_t table[256];
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

namespace {

const size_t CRC_OFFSET = 52;

size_t headerBytesFor(size_t heads, size_t kvHeads) { return (ML_SHARD_FIXED_HEADER_BYTES + 2 * (heads + kvHeads) + 3) / 4 * 4; }

// The bytes of one layer's block of a projection of `rows` rows, as the shard stores it.
size_t blockBytes(const MlConfig& g, size_t rows, MlWeightFormat f, size_t* codeBytes = nullptr) {
  return ml_weight_block_bytes(f, rows * (size_t)g.dim, ml_weight_group_size(f, g.dim), codeBytes);
}

size_t payloadBytesFor(const MlConfig& g, size_t heads, size_t kvHeads, MlWeightFormat f) {
  return (size_t)g.nLayers * (blockBytes(g, heads * g.headSize, f) + 2 * blockBytes(g, kvHeads * g.headSize, f));
}

// The CRC-32 of the whole shard with its own field zero: over the mapping, or read in pieces.
bool fileCrc(MlShardSource* src, size_t size, uint32_t* out, std::string* err) {
  const uint8_t zero[4] = {0, 0, 0, 0};
  if (const uint8_t* m = src->mapped()) {
    *out = ml_crc32(ml_crc32(ml_crc32(0, m, CRC_OFFSET), zero, 4), m + CRC_OFFSET + 4, size - CRC_OFFSET - 4);
    return true;
  }
  uint32_t crc = 0;
  uint8_t buf[1024];
  for (size_t at = 0; at < size;) {
    const size_t n = size - at < sizeof buf ? size - at : sizeof buf;
    if (!src->read(at, buf, n)) {
      *err = ml_format("read failed at byte %zu", at);
      return false;
    }
    for (size_t i = 0; i < n; i++)
      if (at + i >= CRC_OFFSET && at + i < CRC_OFFSET + 4) buf[i] = 0;
    crc = ml_crc32(crc, buf, n);
    at += n;
  }
  *out = crc;
  return true;
}

std::string idList(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); i++) s += (i ? ", " : "") + std::to_string(ids[i]);
  return "[" + s + "]";
}

}  // namespace

bool ml_shard_open(MlShardSource* src, MlShardInfo* out, std::string* err) {
  uint8_t h[ML_SHARD_FIXED_HEADER_BYTES];
  const size_t size = src->size();
  if (size < sizeof h || !src->read(0, h, sizeof h)) {
    *err = ml_format("%zu bytes is shorter than a shard header (%zu)", size, sizeof h);
    return false;
  }
  if (memcmp(h, "MLSH", 4) != 0) {
    *err = "not a weight shard (no MLSH magic)";
    return false;
  }
  MlShardInfo s{};
  s.version = ml_read_le(h + 4, 2);
  if (s.version < ML_SHARD_OLDEST_VERSION || s.version > ML_SHARD_VERSION) {
    *err = ml_format("shard version %u (this build reads versions %u to %u; cut it again with mesh-llm shard)", (unsigned)s.version, (unsigned)ML_SHARD_OLDEST_VERSION, (unsigned)ML_SHARD_VERSION);
    return false;
  }
  // the weight format's code: 0 f32, 1 int8, 2 int4, 3 int2 (version 1 knew 0 and 1)
  const unsigned code = h[6];
  if (code > (s.version == 1 ? 1u : 3u)) {
    *err = ml_format("unknown weight format code %u in a version %u shard", code, (unsigned)s.version);
    return false;
  }
  s.format = (MlWeightFormat)code;
  s.node = (int)ml_read_le(h + 8, 2);
  s.nodes = (int)ml_read_le(h + 10, 2);
  MlConfig& g = s.config;
  int32_t* fields[7] = {&g.dim, &g.hiddenDim, &g.nLayers, &g.nHeads, &g.nKvHeads, &g.vocabSize, &g.seqLen};
  for (int i = 0; i < 7; i++) *fields[i] = (int32_t)ml_read_le(h + 12 + 4 * i, 4);
  const size_t nHeads = ml_read_le(h + 40, 2), nKv = ml_read_le(h + 42, 2);
  s.groupSize = (int)ml_read_le(h + 44, 2);
  s.headerBytes = ml_read_le(h + 46, 2);
  s.payloadBytes = ml_read_le(h + 48, 4);
  s.crc = ml_read_le(h + CRC_OFFSET, 4);
  if (s.headerBytes != headerBytesFor(nHeads, nKv) || size != s.headerBytes + s.payloadBytes) {
    *err = ml_format("%zu bytes; its header says %zu + %zu", size, s.headerBytes, s.payloadBytes);
    return false;
  }
  uint32_t crc = 0;
  if (!fileCrc(src, size, &crc, err)) return false;
  if (crc != s.crc) {
    *err = ml_format("checksum mismatch (CRC-32 %x, the header says %x): the shard is damaged", (unsigned)crc, (unsigned)s.crc);
    return false;
  }
  // the geometry: what the header says must make a head group
  if (g.dim <= 0 || g.nLayers <= 0 || g.nHeads <= 0 || g.nKvHeads <= 0 || g.seqLen <= 0 || g.dim % g.nHeads || g.nHeads % g.nKvHeads) {
    *err = ml_format("geometry dim %d, %d heads, %d kv heads, %d layers does not make heads", (int)g.dim, (int)g.nHeads, (int)g.nKvHeads, (int)g.nLayers);
    return false;
  }
  g.headSize = g.dim / g.nHeads;
  g.kvDim = g.nKvHeads * g.headSize;
  g.kvMul = g.nHeads / g.nKvHeads;
  g.sharedClassifier = false;
  std::vector<uint8_t> ids(2 * (nHeads + nKv));
  if (!src->read(ML_SHARD_FIXED_HEADER_BYTES, ids.data(), ids.size())) {
    *err = "read failed in the head ids";
    return false;
  }
  for (size_t i = 0; i < nHeads + nKv; i++) (i < nHeads ? s.heads : s.kvHeads).push_back((int)ml_read_le(&ids[2 * i], 2));
  bool ok = !s.heads.empty();
  for (size_t i = 0; i < s.heads.size(); i++) ok = ok && s.heads[i] < g.nHeads && (i == 0 || s.heads[i] > s.heads[i - 1]);
  std::vector<int> kvWanted;
  for (int hd : s.heads)
    if (kvWanted.empty() || kvWanted.back() != hd / g.kvMul) kvWanted.push_back(hd / g.kvMul);
  if (!ok || kvWanted != s.kvHeads) {
    *err = "heads " + idList(s.heads) + " and kv heads " + idList(s.kvHeads) + " do not fit the geometry (" + std::to_string(g.nHeads) + " heads, " + std::to_string(g.nKvHeads) + " kv heads)";
    return false;
  }
  const int gs = ml_weight_group_size(s.format, g.dim);
  if (s.groupSize != gs || (gs && g.dim % gs)) {
    *err = ml_format("%s group size %d (this build computes %s rows of %d in groups of %d%s)", ml_weight_format_name(s.format), s.groupSize, ml_weight_format_name(s.format), (int)g.dim, gs,
                     gs && g.dim % gs ? ", which do not divide them" : "");
    return false;
  }
  // every block's codes end on a 4-byte boundary, so the float32 parameters after them are aligned in place
  for (size_t rows : {nHeads * g.headSize, nKv * g.headSize}) {
    size_t codes = 0;
    blockBytes(g, rows, s.format, &codes);
    if (codes % 4) {
      *err = ml_format("%s codes of %zu rows of %d take %zu bytes, not a multiple of 4: their scales would be unaligned", ml_weight_format_name(s.format), rows, (int)g.dim, codes);
      return false;
    }
  }
  const size_t want = payloadBytesFor(g, nHeads, nKv, s.format);
  if (s.payloadBytes != want) {
    *err = ml_format("payload of %zu bytes; %zu heads and %zu kv heads of this geometry need %zu", s.payloadBytes, nHeads, nKv, want);
    return false;
  }
  *out = s;
  return true;
}

bool ml_shard_check(const MlShardInfo& s, const MlShardExpect& want, std::string* err) {
  if (want.config) {
    const MlConfig& a = s.config;
    const MlConfig& b = *want.config;
    struct { const char* name; int32_t shard, mesh; } f[] = {{"dim", a.dim, b.dim}, {"nLayers", a.nLayers, b.nLayers}, {"nHeads", a.nHeads, b.nHeads}, {"nKvHeads", a.nKvHeads, b.nKvHeads}, {"seqLen", a.seqLen, b.seqLen}};
    std::string mismatch;
    for (const auto& x : f)
      if (x.shard != x.mesh) mismatch += (mismatch.empty() ? "" : ", ") + ml_format("%s %d in the shard, %d in the mesh", x.name, (int)x.shard, (int)x.mesh);
    if (!mismatch.empty()) {
      *err = "the shard is for another model: " + mismatch;
      return false;
    }
  }
  if (want.node && s.node != want.node) {
    *err = ml_format("the shard is node %d's of %d; this is node %d", s.node, s.nodes, want.node);
    return false;
  }
  if (!want.heads.empty() && want.heads != s.heads) {
    *err = "the shard holds heads " + idList(s.heads) + "; the mesh assigns this node " + idList(want.heads);
    return false;
  }
  return true;
}

MlSlices* ml_shard_load(MlShardSource* src, const MlShardInfo& s, std::string* err) {
  const MlConfig& g = s.config;
  const uint8_t* base = src->mapped();
  void* owned = nullptr;
  if (!base) {
    // not mapped: the payload is copied into RAM once (PSRAM on the ESP32), the views point there
    owned = malloc(s.payloadBytes ? s.payloadBytes : 1);
    if (!owned || !src->read(s.headerBytes, (uint8_t*)owned, s.payloadBytes)) {
      free(owned);
      *err = ml_format("out of memory or a read failure loading the shard's %zu bytes of rows", s.payloadBytes);
      return nullptr;
    }
  }
  const uint8_t* p = base ? base + s.headerBytes : (const uint8_t*)owned;
  const int gs = ml_weight_group_size(s.format, g.dim);
  std::vector<MlProjectionView> views((size_t)3 * g.nLayers);
  size_t at = 0;
  for (size_t i = 0; i < views.size(); i++) {
    const size_t rows = (i % 3 == 0 ? s.heads.size() : s.kvHeads.size()) * (size_t)g.headSize;
    const size_t n = rows * (size_t)g.dim;
    size_t codes = 0;
    const size_t bytes = blockBytes(g, rows, s.format, &codes);
    MlProjectionView& v = views[i];
    v = MlProjectionView{(int)rows, nullptr, nullptr, nullptr, nullptr};
    if (s.format == ML_WEIGHTS_F32) v.w = (const float*)(p + at);
    else {
      v.codes = p + at;
      v.scales = (const float*)(p + at + codes);
      if (s.format == ML_WEIGHTS_INT2) v.offsets = v.scales + n / (size_t)gs;
    }
    at += bytes;
  }
  std::vector<int> heads(s.heads), kv(s.kvHeads);
  char why[256] = "";
  MlSlices* slices = ml_slices_view(g, heads.data(), (int)heads.size(), kv.data(), (int)kv.size(), s.format, views.data(), owned, why, sizeof why);
  if (!slices) *err = why;
  return slices;
}

MlFileShard::~MlFileShard() {
  if (f_) fclose((FILE*)f_);
}

bool MlFileShard::open(const char* path, std::string* err) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    *err = ml_format("%s cannot be opened: %s", path, strerror(errno));
    return false;
  }
  fseek(f, 0, SEEK_END);
  size_ = (size_t)ftell(f);
  f_ = f;
  return true;
}

bool MlFileShard::read(size_t offset, uint8_t* out, size_t len) {
  FILE* f = (FILE*)f_;
  return f && fseek(f, (long)offset, SEEK_SET) == 0 && fread(out, 1, len, f) == len;
}

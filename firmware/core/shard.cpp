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

size_t payloadBytesFor(const MlConfig& g, size_t heads, size_t kvHeads, uint8_t encoding) {
  const size_t rows = (size_t)g.nLayers * (heads + 2 * kvHeads) * (size_t)g.headSize;
  const size_t rowBytes = encoding == ML_ENCODING_F32 ? 4 * (size_t)g.dim : (size_t)g.dim + 4 * ((size_t)g.dim / ML_INT8_GROUP_SIZE);
  return rows * rowBytes;
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
  if (s.version != ML_SHARD_VERSION) {
    *err = ml_format("shard version %u (this build reads %u)", (unsigned)s.version, (unsigned)ML_SHARD_VERSION);
    return false;
  }
  s.encoding = h[6];
  if (s.encoding != ML_ENCODING_F32 && s.encoding != ML_ENCODING_INT8) {
    *err = ml_format("unknown encoding code %u", (unsigned)s.encoding);
    return false;
  }
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
  // the CRC-32 of the whole file with its own field zero, read in pieces (flash or file)
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
  if (s.encoding == ML_ENCODING_INT8 ? (s.groupSize != ML_INT8_GROUP_SIZE || g.dim % ML_INT8_GROUP_SIZE) : s.groupSize != 0) {
    *err = ml_format("int8 group size %d (this build computes groups of %d on rows of a multiple of it; float32 has 0)", s.groupSize, ML_INT8_GROUP_SIZE);
    return false;
  }
  const size_t want = payloadBytesFor(g, nHeads, nKv, s.encoding);
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
  const bool int8 = s.encoding == ML_ENCODING_INT8;
  const int L = g.nLayers;
  std::vector<MlProjectionRows> rows((size_t)3 * L, MlProjectionRows{0, nullptr, nullptr, nullptr});
  size_t at = s.headerBytes;
  bool ok = true;
  for (int l = 0; l < L && ok; l++)
    for (int t = 0; t < 3 && ok; t++) {
      MlProjectionRows& r = rows[(size_t)3 * l + t];
      r.rows = (int)(t == 0 ? s.heads.size() : s.kvHeads.size()) * g.headSize;
      const size_t n = (size_t)r.rows * g.dim;
      if (int8) {
        r.q = (int8_t*)malloc(n);
        r.scales = (float*)malloc(n / ML_INT8_GROUP_SIZE * 4);
        ok = r.q && r.scales && src->read(at, (uint8_t*)r.q, n) && src->read(at + n, (uint8_t*)r.scales, n / ML_INT8_GROUP_SIZE * 4);
        at += n + n / ML_INT8_GROUP_SIZE * 4;
      } else {
        r.w = (float*)malloc(n * 4);
        ok = r.w && src->read(at, (uint8_t*)r.w, n * 4);
        at += n * 4;
      }
    }
  std::vector<int> heads(s.heads), kv(s.kvHeads);
  char why[256] = "";
  MlSlices* slices = nullptr;
  if (ok) slices = ml_slices_adopt(g, heads.data(), (int)heads.size(), kv.data(), (int)kv.size(), int8, rows.data(), why, sizeof why);
  else {
    for (auto& r : rows) {
      free(r.w);
      free(r.q);
      free(r.scales);
    }
    snprintf(why, sizeof why, "out of memory or a read failure loading the shard's rows");
  }
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

// llama2.c checkpoints for the native head node: a port of the reader of lib/llm/checkpoint.ts
// for the float32 headers, version 0 (legacy, 28-byte header of 7 int32) and version 1
// ("ak42" magic, 256-byte header). An int8 version-2 file is refused with a sentence saying so.
// The file is validated against the size its header implies; then only the rows a head group
// needs are read (fseek/fread). The only OS calls are stdio file reading. Values are read as
// stored, little-endian (the host and the ESP32-S3 are both little-endian).
#include "head_group.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

const uint32_t MAGIC_AK42 = 0x616b3432;
const int AK42_HEADER_BYTES = 256;
const int LEGACY_HEADER_BYTES = 28;

// Writes "model file PATH: <what>" into err (truncated to errLen).
void fail(char* err, size_t errLen, const char* path, const char* fmt, ...) {
  if (!err || errLen == 0) return;
  int n = snprintf(err, errLen, "model file %s: ", path);
  if (n < 0 || (size_t)n >= errLen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + n, errLen - (size_t)n, fmt, ap);
  va_end(ap);
}

int32_t readI32(const unsigned char* p) {
  uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
  int32_t v;
  memcpy(&v, &u, 4);
  return v;
}

}  // namespace

// The per-head tensors head groups read (internal: ml_checkpoint_read_rows in head_group.cpp).
enum MlHeadTensor { ML_TENSOR_WQ = 0, ML_TENSOR_WK = 1, ML_TENSOR_WV = 2 };

struct MlCheckpoint {
  FILE* f;
  char* path;
  int version;
  MlConfig config;
  long long fileBytes;
  // Byte offsets of layer 0 of wq, wk, wv, and their rows per layer (cols = dim).
  long long offset[3];
  int32_t rows[3];
};

MlCheckpoint* ml_checkpoint_open(const char* path, char* err, size_t errLen) {
  if (err && errLen) err[0] = '\0';
  FILE* f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) {
      fail(err, errLen, path, "does not exist (expected a llama2.c checkpoint such as stories260K.bin; run `npm run fetch-model`)");
    } else {
      fail(err, errLen, path, "cannot be opened (%s)", strerror(errno));
    }
    return nullptr;
  }
  unsigned char head[AK42_HEADER_BYTES];
  memset(head, 0, sizeof head);
  size_t got = fread(head, 1, sizeof head, f);
  if (ferror(f)) {
    fail(err, errLen, path, "cannot be read (%s)", strerror(errno));
    fclose(f);
    return nullptr;
  }
  long long fileBytes = -1;
  if (fseek(f, 0, SEEK_END) == 0) fileBytes = ftell(f);
  if (fileBytes < 0) {
    fail(err, errLen, path, "cannot be read (its size is unknown: %s)", strerror(errno));
    fclose(f);
    return nullptr;
  }
  if (got < (size_t)LEGACY_HEADER_BYTES) {
    fail(err, errLen, path, "is %lld bytes, too short for a llama2.c header (at least %d bytes expected)", fileBytes, LEGACY_HEADER_BYTES);
    fclose(f);
    return nullptr;
  }
  uint32_t magic = (uint32_t)readI32(head);
  int version;
  int base;
  if (magic == MAGIC_AK42) {
    if (got < (size_t)AK42_HEADER_BYTES) {
      fail(err, errLen, path, "is %lld bytes, shorter than the %d-byte \"ak42\" header", fileBytes, AK42_HEADER_BYTES);
      fclose(f);
      return nullptr;
    }
    int32_t v = readI32(head + 4);
    if (v == 2) {
      fail(err, errLen, path,
           "is an int8 (version-2) checkpoint; the native head node reads float32 checkpoints (version 0 or 1): "
           "give it the float32 export of the model (its int8 mode quantises the float32 weights itself)");
      fclose(f);
      return nullptr;
    }
    if (v != 1) {
      fail(err, errLen, path, "has the \"ak42\" magic but version %d; the native head node reads versions 0 (legacy) and 1 (float32)", (int)v);
      fclose(f);
      return nullptr;
    }
    version = 1;
    base = 8;
  } else {
    version = 0;
    base = 0;
  }
  int32_t ints[7];
  for (int i = 0; i < 7; i++) ints[i] = readI32(head + base + 4 * i);
  int32_t dim = ints[0], hiddenDim = ints[1], nLayers = ints[2], nHeads = ints[3], nKvHeads = ints[4], rawVocab = ints[5], seqLen = ints[6];
  bool shared;
  int32_t vocabSize;
  if (version == 0) {
    shared = rawVocab > 0;
    vocabSize = rawVocab < 0 ? (rawVocab == INT32_MIN ? INT32_MAX : -rawVocab) : rawVocab;
  } else {
    shared = head[36] != 0;
    vocabSize = rawVocab;
  }
  bool sane = dim > 0 && dim <= 65536 && hiddenDim > 0 && hiddenDim <= (1 << 20) && nLayers > 0 && nLayers <= 1024 &&
              nHeads > 0 && nKvHeads > 0 && nKvHeads <= nHeads && nHeads % nKvHeads == 0 && dim % nHeads == 0 &&
              (dim / nHeads) % 2 == 0 && vocabSize > 0 && vocabSize <= (1 << 22) && seqLen > 0 && seqLen <= (1 << 20);
  if (!sane) {
    fail(err, errLen, path,
         "is not a llama2.c checkpoint: magic 0x%08x is not \"ak42\" (0x616b3432), and read as a legacy version-0 header "
         "its dimensions are impossible (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d)",
         (unsigned)magic, (int)dim, (int)hiddenDim, (int)nLayers, (int)nHeads, (int)nKvHeads, (int)rawVocab, (int)seqLen);
    fclose(f);
    return nullptr;
  }
  MlConfig c;
  c.dim = dim;
  c.hiddenDim = hiddenDim;
  c.nLayers = nLayers;
  c.nHeads = nHeads;
  c.nKvHeads = nKvHeads;
  c.vocabSize = vocabSize;
  c.seqLen = seqLen;
  c.sharedClassifier = shared;
  c.headSize = dim / nHeads;
  c.kvDim = nKvHeads * c.headSize;
  c.kvMul = nHeads / nKvHeads;

  // The layout of checkpoint.ts: tensors back to back, float32, in the order of the version.
  const long long D = dim, H = hiddenDim, L = nLayers, V = vocabSize, hs = c.headSize, kv = c.kvDim;
  const long long qRows = (long long)nHeads * hs;
  long long off = version == 0 ? LEGACY_HEADER_BYTES : AK42_HEADER_BYTES;
  long long wq, wk, wv;
  if (version == 0) {
    off += V * D * 4;                 // tokenEmbedding
    off += L * D * 4;                 // rmsAtt
    wq = off; off += L * qRows * D * 4;
    wk = off; off += L * kv * D * 4;
    wv = off; off += L * kv * D * 4;
    off += L * D * qRows * 4;         // wo
    off += L * D * 4;                 // rmsFfn
    off += 3 * L * H * D * 4;         // w1, w2, w3
    off += D * 4;                     // rmsFinal
    off += 2 * (long long)seqLen * (hs / 2) * 4;  // freq_cis_real and freq_cis_imag, unused
    if (!shared) off += V * D * 4;    // wcls
  } else {
    off += L * D * 4;                 // rmsAtt
    off += L * D * 4;                 // rmsFfn
    off += D * 4;                     // rmsFinal
    off += V * D * 4;                 // tokenEmbedding
    wq = off; off += L * qRows * D * 4;
    wk = off; off += L * kv * D * 4;
    wv = off; off += L * kv * D * 4;
    off += L * D * qRows * 4;         // wo
    off += 3 * L * H * D * 4;         // w1, w2, w3
    if (!shared) off += V * D * 4;    // wcls
  }
  if (fileBytes != off) {
    fail(err, errLen, path,
         "%s: %lld bytes, but its version-%d header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab %d, seq_len %d, "
         "%s classifier) implies %lld bytes",
         fileBytes < off ? "is truncated" : "has trailing bytes", fileBytes, version, (int)dim, (int)hiddenDim, (int)nLayers, (int)nHeads,
         (int)nKvHeads, (int)vocabSize, (int)seqLen, shared ? "shared" : "separate", off);
    fclose(f);
    return nullptr;
  }
  MlCheckpoint* ck = (MlCheckpoint*)calloc(1, sizeof(MlCheckpoint));
  char* p = (char*)malloc(strlen(path) + 1);
  if (!ck || !p) {
    free(ck);
    free(p);
    fclose(f);
    fail(err, errLen, path, "cannot be opened (out of memory)");
    return nullptr;
  }
  strcpy(p, path);
  ck->f = f;
  ck->path = p;
  ck->version = version;
  ck->config = c;
  ck->fileBytes = fileBytes;
  ck->offset[ML_TENSOR_WQ] = wq;
  ck->offset[ML_TENSOR_WK] = wk;
  ck->offset[ML_TENSOR_WV] = wv;
  ck->rows[ML_TENSOR_WQ] = (int32_t)qRows;
  ck->rows[ML_TENSOR_WK] = (int32_t)kv;
  ck->rows[ML_TENSOR_WV] = (int32_t)kv;
  return ck;
}

const MlConfig* ml_checkpoint_config(const MlCheckpoint* c) { return c ? &c->config : nullptr; }

void ml_checkpoint_close(MlCheckpoint* c) {
  if (!c) return;
  if (c->f) fclose(c->f);
  free(c->path);
  free(c);
}

// Internal to the core (declared in head_group.cpp): rows [row0, row0 + nRows) of one layer of
// wq, wk or wv ([rows, dim] float32) into out [nRows * dim]. Returns false with a sentence in err.
bool ml_checkpoint_read_rows(MlCheckpoint* c, int tensor, int layer, int row0, int nRows, float* out, char* err, size_t errLen) {
  static const char* const NAMES[3] = {"wq", "wk", "wv"};
  if (tensor < 0 || tensor > 2) return false;
  const long long cols = c->config.dim;
  const long long rows = c->rows[tensor];
  if (layer < 0 || layer >= c->config.nLayers || row0 < 0 || nRows < 0 || row0 + nRows > rows) {
    if (err && errLen) {
      snprintf(err, errLen, "%s: rows %d..%d of layer %d are outside [%lld x %lld] x %d", NAMES[tensor], row0, row0 + nRows, layer, rows, cols,
               (int)c->config.nLayers);
    }
    return false;
  }
  const long long at = c->offset[tensor] + (((long long)layer * rows + row0) * cols) * 4;
  const size_t count = (size_t)nRows * (size_t)cols;
  if (fseek(c->f, (long)at, SEEK_SET) != 0 || fread(out, sizeof(float), count, c->f) != count) {
    fail(err, errLen, c->path, "ended early while reading %lld bytes at offset %lld", (long long)count * 4, at);
    return false;
  }
  return true;
}

// head-check: runs the firmware core's head step on recorded inputs, so the tests can compare
// it with the TypeScript HeadGroup (test/firmware-head.test.ts).
//
//   head-check MODEL HEADS f32|int8|int4|int2 IN OUT [CONTEXT]
//     MODEL    a float32 llama2.c checkpoint (version 0 or 1)
//     HEADS    the group's query heads, comma-separated (e.g. 1,2), any order
//     CONTEXT  KV cache length (default: the model's seq_len)
//     IN       records, little-endian, each an int32 tag and its payload:
//                1 step      int32 pos, int32 layer, float32 xb[dim]
//                            -> appends the head outputs float32[heads * headSize] to OUT
//                2 steering  int32 layer (-1: none), float32 vector[heads * headSize]
//                            -> used by the following steps
//                3 reset     (no payload) -> forgets every cached key and value
//     OUT      the outputs of the step records, back to back
//   Prints one JSON line: heads, kvHeads, headSize, dim, weightBytes, cacheBytes, steps.
//
//   head-check quant GROUP IN OUT
//     IN float32[n]; OUT: int8 q[n], float32 scales[ceil(n / GROUP)] (ml_quantize), float32
//     dequantised[n] (ml_dequantize), float32 round trip[n] (ml_int8_round_trip), then int32
//     ml_aligned_group_size(n, GROUP).
//
//   head-check quant4 GROUP IN OUT
//     IN float32[n]; OUT: int4 codes q[n] one a byte, float32 scales[ceil(n / GROUP)]
//     (ml_quantize_int4), the codes packed two a byte [ceil(n / 2)] (ml_pack_int4), float32
//     round trip[n] (ml_int4_round_trip).
//
//   head-check quant2 GROUP IN OUT
//     IN float32[n]; OUT: int2 codes q[n] one a byte, float32 scales and offsets
//     [ceil(n / GROUP)] each (ml_quantize_int2).
//
//   head-check expf IN OUT
//     IN float64[n] -> OUT float32[n]: the head step's expf (math.ts expf) of each value.
//
//   head-check rope HEADSIZE POSITIONS OUT
//     OUT: for pos in 0..POSITIONS-1, float32 cos[HEADSIZE / 2] then sin[HEADSIZE / 2]: the
//     head step's RoPE table (math.ts ropeTable).
//
// Errors: a sentence on stderr and exit status 1 (2 for a usage error).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head_group.h"

// Internal to the core (head_group.cpp), exported for this tool.
float ml_expf(double x);
void ml_rope_table(int pos, int headSize, float* cosOut, float* sinOut);

namespace {

int usage() {
  fprintf(stderr,
          "usage: head-check MODEL HEADS f32|int8|int4|int2 IN OUT [CONTEXT]\n"
          "       head-check quant GROUP IN OUT\n"
          "       head-check quant4 GROUP IN OUT\n"
          "       head-check quant2 GROUP IN OUT\n"
          "       head-check expf IN OUT\n"
          "       head-check rope HEADSIZE POSITIONS OUT\n");
  return 2;
}

int failf(const char* what, const char* detail = nullptr) {
  if (detail) fprintf(stderr, "head-check: %s: %s\n", what, detail);
  else fprintf(stderr, "head-check: %s\n", what);
  return 1;
}

// Reads a whole file into a malloc'd buffer.
unsigned char* readFile(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (!f) return nullptr;
  size_t cap = 1 << 16, n = 0;
  unsigned char* buf = (unsigned char*)malloc(cap);
  while (buf) {
    if (n == cap) {
      unsigned char* bigger = (unsigned char*)realloc(buf, cap * 2);
      if (!bigger) {
        free(buf);
        buf = nullptr;
        break;
      }
      buf = bigger;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (buf && ferror(f)) {
    free(buf);
    buf = nullptr;
  }
  fclose(f);
  *len = n;
  return buf;
}

bool parseInt(const char* s, long* out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

int quantMode(int argc, char** argv) {
  if (argc != 5) return usage();
  long gs;
  if (!parseInt(argv[2], &gs) || gs < 1 || gs > 1 << 20) return failf("GROUP must be a positive integer", argv[2]);
  size_t len = 0;
  unsigned char* in = readFile(argv[3], &len);
  if (!in) return failf("cannot read", argv[3]);
  if (len % 4) {
    free(in);
    return failf("IN must hold float32 values", argv[3]);
  }
  const int n = (int)(len / 4);
  const int groups = (n + (int)gs - 1) / (int)gs;
  float* x = (float*)malloc(len + 4);
  int8_t* q = (int8_t*)malloc((size_t)n + 1);
  float* scales = (float*)malloc(sizeof(float) * ((size_t)groups + 1));
  float* deq = (float*)malloc(len + 4);
  if (!x || !q || !scales || !deq) return failf("out of memory");
  memcpy(x, in, len);
  free(in);
  ml_quantize(x, n, (int)gs, q, scales);
  ml_dequantize(q, scales, n, (int)gs, deq);
  ml_int8_round_trip(x, n, (int)gs);
  int32_t aligned = ml_aligned_group_size(n, (int)gs);
  FILE* out = fopen(argv[4], "wb");
  if (!out) return failf("cannot write", argv[4]);
  bool ok = fwrite(q, 1, (size_t)n, out) == (size_t)n && fwrite(scales, 4, (size_t)groups, out) == (size_t)groups &&
            fwrite(deq, 4, (size_t)n, out) == (size_t)n && fwrite(x, 4, (size_t)n, out) == (size_t)n && fwrite(&aligned, 4, 1, out) == 1;
  if (fclose(out) != 0 || !ok) return failf("cannot write", argv[4]);
  free(x);
  free(q);
  free(scales);
  free(deq);
  return 0;
}

// quant4 and quant2: the int4 and int2 group codes of IN (see the top of this file).
int lowBitMode(int argc, char** argv, bool int4) {
  if (argc != 5) return usage();
  long gs;
  if (!parseInt(argv[2], &gs) || gs < 1 || gs > 1 << 20) return failf("GROUP must be a positive integer", argv[2]);
  size_t len = 0;
  unsigned char* in = readFile(argv[3], &len);
  if (!in) return failf("cannot read", argv[3]);
  if (len % 4) {
    free(in);
    return failf("IN must hold float32 values", argv[3]);
  }
  const int n = (int)(len / 4);
  const int groups = (n + (int)gs - 1) / (int)gs;
  float* x = (float*)malloc(len + 4);
  int8_t* q = (int8_t*)malloc((size_t)n + 1);
  float* scales = (float*)malloc(sizeof(float) * ((size_t)groups + 1));
  float* offsets = (float*)malloc(sizeof(float) * ((size_t)groups + 1));
  uint8_t* packed = (uint8_t*)malloc((size_t)n / 2 + 1);
  if (!x || !q || !scales || !offsets || !packed) return failf("out of memory");
  memcpy(x, in, len);
  free(in);
  FILE* out = fopen(argv[4], "wb");
  if (!out) return failf("cannot write", argv[4]);
  bool ok;
  if (int4) {
    ml_quantize_int4(x, n, (int)gs, q, scales);
    ml_pack_int4(q, n, packed);
    ml_int4_round_trip(x, n, (int)gs);
    const size_t bytes = ((size_t)n + 1) / 2;
    ok = fwrite(q, 1, (size_t)n, out) == (size_t)n && fwrite(scales, 4, (size_t)groups, out) == (size_t)groups && fwrite(packed, 1, bytes, out) == bytes &&
         fwrite(x, 4, (size_t)n, out) == (size_t)n;
  } else {
    ml_quantize_int2(x, n, (int)gs, q, scales, offsets);
    ok = fwrite(q, 1, (size_t)n, out) == (size_t)n && fwrite(scales, 4, (size_t)groups, out) == (size_t)groups && fwrite(offsets, 4, (size_t)groups, out) == (size_t)groups;
  }
  if (fclose(out) != 0 || !ok) return failf("cannot write", argv[4]);
  free(x);
  free(q);
  free(scales);
  free(offsets);
  free(packed);
  return 0;
}

int expfMode(int argc, char** argv) {
  if (argc != 4) return usage();
  size_t len = 0;
  unsigned char* in = readFile(argv[2], &len);
  if (!in) return failf("cannot read", argv[2]);
  if (len % 8) {
    free(in);
    return failf("IN must hold float64 values", argv[2]);
  }
  const size_t n = len / 8;
  float* y = (float*)malloc(4 * n + 4);
  if (!y) return failf("out of memory");
  for (size_t i = 0; i < n; i++) {
    double x;
    memcpy(&x, in + 8 * i, 8);
    y[i] = ml_expf(x);
  }
  free(in);
  FILE* out = fopen(argv[3], "wb");
  if (!out) return failf("cannot write", argv[3]);
  bool ok = fwrite(y, 4, n, out) == n;
  if (fclose(out) != 0 || !ok) return failf("cannot write", argv[3]);
  free(y);
  return 0;
}

int ropeMode(int argc, char** argv) {
  long hs, positions;
  if (argc != 5) return usage();
  if (!parseInt(argv[2], &hs) || hs < 2 || hs % 2 || hs > 1 << 16) return failf("HEADSIZE must be a positive even integer, not", argv[2]);
  if (!parseInt(argv[3], &positions) || positions < 1 || positions > 1 << 24) return failf("POSITIONS must be a positive integer, not", argv[3]);
  const size_t half = (size_t)hs / 2;
  float* c = (float*)malloc(4 * half);
  float* s = (float*)malloc(4 * half);
  FILE* out = fopen(argv[4], "wb");
  if (!c || !s || !out) return failf("cannot write", argv[4]);
  bool ok = true;
  for (long pos = 0; pos < positions && ok; pos++) {
    ml_rope_table((int)pos, (int)hs, c, s);
    ok = fwrite(c, 4, half, out) == half && fwrite(s, 4, half, out) == half;
  }
  if (fclose(out) != 0 || !ok) return failf("cannot write", argv[4]);
  free(c);
  free(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "quant") == 0) return quantMode(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "quant4") == 0) return lowBitMode(argc, argv, true);
  if (argc >= 2 && strcmp(argv[1], "quant2") == 0) return lowBitMode(argc, argv, false);
  if (argc >= 2 && strcmp(argv[1], "expf") == 0) return expfMode(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "rope") == 0) return ropeMode(argc, argv);
  if (argc != 6 && argc != 7) return usage();
  const char* modelPath = argv[1];
  const char* headsText = argv[2];
  MlWeightFormat format;
  if (!ml_weight_format_of(argv[3], &format)) return failf("the weight format must be f32, int8, int4 or int2, not", argv[3]);

  // HEADS: comma-separated integers
  int heads[4096];
  int count = 0;
  {
    const char* p = headsText;
    while (*p) {
      char* end = nullptr;
      errno = 0;
      long h = strtol(p, &end, 10);
      if (end == p || errno || h < -1000000 || h > 1000000 || (*end && *end != ',') || count == 4096) {
        return failf("HEADS must be comma-separated head ids such as 1,2, not", headsText);
      }
      heads[count++] = (int)h;
      p = *end ? end + 1 : end;
      if (*end && !*p) return failf("HEADS must be comma-separated head ids such as 1,2, not", headsText);
    }
  }

  char err[512];
  MlCheckpoint* ck = ml_checkpoint_open(modelPath, err, sizeof err);
  if (!ck) return failf(err);
  const MlConfig* c = ml_checkpoint_config(ck);
  long context = c->seqLen;
  if (argc == 7 && (!parseInt(argv[6], &context) || context < 1 || context > 1 << 24)) {
    ml_checkpoint_close(ck);
    return failf("CONTEXT must be a positive integer, not", argv[6]);
  }
  MlSlices* sl = ml_slices_load_format(ck, heads, count, format, err, sizeof err);
  if (!sl) {
    ml_checkpoint_close(ck);
    return failf(err);
  }
  MlSession* s = ml_session_new(sl, (int)context);
  if (!s) return failf("out of memory for the KV cache");

  const int dim = c->dim, hs = c->headSize, width = ml_slices_head_count(sl) * hs;
  size_t len = 0;
  unsigned char* in = readFile(argv[4], &len);
  if (!in) return failf("cannot read", argv[4]);
  FILE* out = fopen(argv[5], "wb");
  if (!out) return failf("cannot write", argv[5]);

  float* steerVector = (float*)calloc((size_t)width, sizeof(float));
  float* xb = (float*)malloc(sizeof(float) * (size_t)dim);
  MlSteering steering = {-1, steerVector};
  bool steer = false;
  long steps = 0;
  size_t at = 0;
  char where[160];
  while (at < len) {
    int32_t tag;
    snprintf(where, sizeof where, "%s: record at byte %zu", argv[4], at);
    if (len - at < 4) return failf(where, "is truncated");
    memcpy(&tag, in + at, 4);
    at += 4;
    if (tag == 1) {
      int32_t pl[2];
      if (len - at < 8 + 4 * (size_t)dim) return failf(where, "is truncated");
      memcpy(pl, in + at, 8);
      memcpy(xb, in + at + 8, 4 * (size_t)dim);
      at += 8 + 4 * (size_t)dim;
      if (pl[0] < 0 || pl[0] >= context) return failf(where, "has a position outside the context");
      if (pl[1] < 0 || pl[1] >= c->nLayers) return failf(where, "has a layer outside the model");
      const float* y = ml_session_forward(s, xb, pl[0], pl[1], steer ? &steering : nullptr);
      if (!y) return failf(where, "was refused by ml_session_forward");
      if (fwrite(y, 4, (size_t)width, out) != (size_t)width) return failf("cannot write", argv[5]);
      steps++;
    } else if (tag == 2) {
      int32_t layer;
      if (len - at < 4 + 4 * (size_t)width) return failf(where, "is truncated");
      memcpy(&layer, in + at, 4);
      memcpy(steerVector, in + at + 4, 4 * (size_t)width);
      at += 4 + 4 * (size_t)width;
      steering.layer = layer;
      steer = layer >= 0;
    } else if (tag == 3) {
      ml_session_reset(s);
    } else {
      return failf(where, "has an unknown tag");
    }
  }
  if (fclose(out) != 0) return failf("cannot write", argv[5]);

  printf("{\"heads\":[");
  for (int i = 0; i < ml_slices_head_count(sl); i++) printf(i ? ",%d" : "%d", ml_slices_heads(sl)[i]);
  printf("],\"kvHeads\":[");
  for (int i = 0; i < ml_slices_kv_head_count(sl); i++) printf(i ? ",%d" : "%d", ml_slices_kv_heads(sl)[i]);
  printf("],\"headSize\":%d,\"dim\":%d,\"weightBytes\":%zu,\"cacheBytes\":%zu,\"steps\":%ld}\n", hs, dim, ml_slices_weight_bytes(sl),
         ml_session_cache_bytes(s), steps);
  free(in);
  free(xb);
  free(steerVector);
  ml_session_free(s);
  ml_slices_free(sl);
  ml_checkpoint_close(ck);
  return 0;
}

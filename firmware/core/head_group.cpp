// The head step: a port of lib/llm/head.ts (HeadGroup) with the reference kernels of
// lib/llm/math.ts, lib/llm/quant.ts (matmulInt8) and lib/llm/kernels.ts (JsKvCache). The
// arithmetic is JavaScript's: every intermediate in double, rounded to float32 where the
// TypeScript stores into a Float32Array or calls Math.fround. Each (float) cast below is such a
// rounding, each double local a JS number; sums keep the TypeScript order. Built with
// -ffp-contract=off (no fused multiply-add), the outputs are bit-identical to the TypeScript's.
//
// Library functions: sqrt is correctly rounded everywhere. pow, cos and sin (RoPE table) are
// not guaranteed to agree between libms to the last bit of a double, but only their float32
// roundings are used; glibc's match V8's for every head size 2..512 (pow) and for head sizes
// 8, 16, 64, 128 at positions 0..8191 (cos, sin); test/firmware-head.test.ts checks the table
// for head sizes 2..256 at positions 0..2047 against math.ts. Another libm (the ESP32's newlib)
// should be checked the same way. The 2^(j/32) table of expf is not computed: glibc's
// pow(2, j/32) differs from V8's Math.pow in the last bit for j = 15, 20, 23, 24, so the table
// holds V8's doubles (with glibc's table no float32 input in (-104, 0] gives a different expf,
// but softmax passes double differences, so only V8's table is safe).
#include "head_group.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Defined in checkpoint.cpp (internal to the core): rows of one layer of wq (0), wk (1), wv (2).
bool ml_checkpoint_read_rows(MlCheckpoint* c, int tensor, int layer, int row0, int nRows, float* out, char* err, size_t errLen);

// The accumulator of dot products and sums. By default double, as JavaScript computes: the
// head step is then bit-identical to the TypeScript one. -D ML_ACCUM_FLOAT32 accumulates in
// float instead, what the ESP32-S3's single-precision FPU does in hardware (its double is
// software floating point); bench/firmware-numerics.ts measures what that costs in fidelity.
#ifdef ML_ACCUM_FLOAT32
typedef float acc_t;
#else
typedef double acc_t;
#endif

namespace {

// ---- math.ts ----------------------------------------------------------------------------

// math.ts EXP_FRACTION: 2^(j/32), the doubles V8's Math.pow gives.
const double EXP_FRACTION[32] = {
    0x1.0000000000000p0, 0x1.059b0d3158574p0, 0x1.0b5586cf9890fp0, 0x1.11301d0125b51p0, 0x1.172b83c7d517bp0, 0x1.1d4873168b9aap0,
    0x1.2387a6e756238p0, 0x1.29e9df51fdee1p0, 0x1.306fe0a31b715p0, 0x1.371a7373aa9cbp0, 0x1.3dea64c123422p0, 0x1.44e086061892dp0,
    0x1.4bfdad5362a27p0, 0x1.5342b569d4f82p0, 0x1.5ab07dd485429p0, 0x1.6247eb03a5584p0, 0x1.6a09e667f3bcdp0, 0x1.71f75e8ec5f74p0,
    0x1.7a11473eb0187p0, 0x1.82589994cce13p0, 0x1.8ace5422aa0dcp0, 0x1.93737b0cdc5e5p0, 0x1.9c49182a3f090p0, 0x1.a5503b23e255cp0,
    0x1.ae89f995ad3aep0, 0x1.b7f76f2fb5e47p0, 0x1.c199bdd85529cp0, 0x1.cb720dcef9069p0, 0x1.d5818dcfba487p0, 0x1.dfc97337b9b5fp0,
    0x1.ea4afa2a490dap0, 0x1.f50765b6e4540p0,
};
const double EXP_STEP_HI = 6.93147180369123816490e-1 / 32;
const double EXP_STEP_LO = 1.90821492927058770002e-10 / 32;
const double LN2 = 0x1.62e42fefa39efp-1;  // Math.LN2
const double EXP_STEPS_PER_LN2 = 32 / LN2;

// math.ts expf: e^x rounded to float32.
float expf_js(double x) {
  // outside (-104, 89) and NaN float32 gives 0, Infinity or NaN whatever the libm
  if (!(x > -104 && x < 89)) return (float)exp(x);
  const double k = floor(x * EXP_STEPS_PER_LN2 + 0.5);
  const double r = x - k * EXP_STEP_HI - k * EXP_STEP_LO;
  const double er = 1 + r * (1 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120)))));
  const int ki = (int)k;          // |k| < 2^13 here
  const int j = ki & 31;          // JS k & 31 (two's complement)
  const int m = (ki - j) / 32;    // JS k >> 5 (floor), exact division
  return (float)(er * EXP_FRACTION[j] * ldexp(1.0, m));  // EXP_SCALE[m + 160] = 2^m exactly
}

// math.ts matmul (and dot): out[r] = sum over c of w[r, c] x[c], in order, in double.
void matmul(float* out, const float* x, const float* w, int rows, int cols) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* w0 = w + (size_t)r * cols;
    const float* w1 = w0 + cols;
    const float* w2 = w1 + cols;
    const float* w3 = w2 + cols;
    acc_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int c = 0; c < cols; c++) {
      const acc_t xc = x[c];
      s0 += (acc_t)w0[c] * xc;
      s1 += (acc_t)w1[c] * xc;
      s2 += (acc_t)w2[c] * xc;
      s3 += (acc_t)w3[c] * xc;
    }
    out[r] = (float)s0;
    out[r + 1] = (float)s1;
    out[r + 2] = (float)s2;
    out[r + 3] = (float)s3;
  }
  for (; r < rows; r++) {
    const float* wr = w + (size_t)r * cols;
    acc_t s = 0;
    for (int c = 0; c < cols; c++) s += (acc_t)wr[c] * (acc_t)x[c];
    out[r] = (float)s;
  }
}

// quant.ts matmulInt8: per row, per group the in-order dot of q and x in double, then
// sum += scale * dot in double; stored as float32.
void matmulInt8(float* out, const float* x, const int8_t* q, const float* scales, int rows, int cols, int gs) {
  const int groups = cols / gs;
  for (int r = 0; r < rows; r++) {
    acc_t sum = 0;
    for (int g = 0; g < groups; g++) {
      const int8_t* qg = q + (size_t)r * cols + (size_t)g * gs;
      const float* xg = x + (size_t)g * gs;
      acc_t dot = 0;
      for (int i = 0; i < gs; i++) dot += (acc_t)qg[i] * (acc_t)xg[i];
      sum += (acc_t)scales[(size_t)r * groups + g] * dot;
    }
    out[r] = (float)sum;
  }
}

// math.ts softmax over x[0, n), in place.
void softmax(float* x, int n) {
  float max = x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] > max) max = x[i];
  }
  acc_t sum = 0;
  for (int i = 0; i < n; i++) {
    const float e = expf_js((double)x[i] - (double)max);
    x[i] = e;
    sum += e;
  }
  const double total = (float)sum;
  for (int i = 0; i < n; i++) x[i] = (float)((double)x[i] / total);
}

// math.ts weightedRowSum: out[d] = sum over t < len of a[t] v[t * stride + d], for d < n.
void weightedRowSum(float* out, const float* a, int len, const float* v, int stride, int n) {
  for (int d = 0; d < n; d++) {
    acc_t s = 0;
    const float* vd = v + d;
    for (int t = 0; t < len; t++) s += (acc_t)a[t] * (acc_t)vd[(size_t)t * stride];
    out[d] = (float)s;
  }
}

// math.ts ropeTable (ROPE_THETA 10000): cos and sin [headSize / 2] for one position.
void ropeTable(int pos, int headSize, float* cosOut, float* sinOut) {
  const int half = headSize / 2;
  for (int p = 0; p < half; p++) {
    const float e = (float)((double)(2 * p) / headSize);
    const float freq = (float)(1 / (double)(float)pow(10000.0, (double)e));
    const float angle = (float)((double)pos * (double)freq);
    cosOut[p] = (float)cos((double)angle);
    sinOut[p] = (float)sin((double)angle);
  }
}

// math.ts rope: rotates v [2 * half] in place.
void rope(float* v, const float* c, const float* s, int half) {
  for (int p = 0; p < half; p++) {
    const double v0 = v[2 * p];
    const double v1 = v[2 * p + 1];
    v[2 * p] = (float)((double)(float)(v0 * c[p]) - (double)(float)(v1 * s[p]));
    v[2 * p + 1] = (float)((double)(float)(v0 * s[p]) + (double)(float)(v1 * c[p]));
  }
}

}  // namespace

// Internal to the core, exported for firmware/test/head_check.cpp (which declares them): the
// expf and the RoPE table of the head step, so the tests compare them with math.ts directly.
float ml_expf(double x) { return expf_js(x); }
void ml_rope_table(int pos, int headSize, float* cosOut, float* sinOut) { ropeTable(pos, headSize, cosOut, sinOut); }

namespace {

void setErr(char* err, size_t errLen, const char* fmt, ...) {
  if (!err || errLen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errLen, fmt, ap);
  va_end(ap);
}

}  // namespace

// ---- slices ---------------------------------------------------------------------------------

namespace {

// One layer's projection [rows, cols]: float32 w, or codes q one a byte (int8, int4, int2),
// or packed codes (int4 two a byte, int2 four a byte, as a shard holds them), with scales
// [rows * cols / groupSize] (int2 also offsets). The arrays are malloc'd, or (slices of a
// shard, MlSlices.view) read-only rows of the shard's bytes, used in place.
struct Projection {
  int rows;
  int cols;
  int groupSize;
  MlWeightFormat format;
  const float* w;
  const int8_t* q;
  const float* scales;
  const float* offsets;
  const uint8_t* packed;
};

}  // namespace

struct MlSlices {
  MlConfig config;
  MlWeightFormat format;
  int headCount;
  int* heads;      // ascending
  int kvCount;
  int* kvHeads;    // ascending
  int* kvOfHead;   // local kv index of each local query head
  Projection* wq;  // [nLayers]
  Projection* wk;
  Projection* wv;
  bool view;       // the projections' arrays are the shard's bytes (ml_slices_view): not freed here
  void* owned;     // the shard payload the views point into when it was copied (freed here), or null
};

namespace {

void freeProjections(Projection* p, int n, bool view) {
  if (!p) return;
  for (int i = 0; i < n && !view; i++) {
    free((void*)p[i].w);
    free((void*)p[i].q);
    free((void*)p[i].scales);
    free((void*)p[i].offsets);
    free((void*)p[i].packed);
  }
  free(p);
}

}  // namespace

int ml_weight_group_size(MlWeightFormat f, int dim) {
  const int gs = f == ML_WEIGHTS_INT2 ? ML_INT2_GROUP_SIZE : ML_INT8_GROUP_SIZE;
  return f == ML_WEIGHTS_F32 ? 0 : gs < dim ? gs : dim;
}

size_t ml_weight_block_bytes(MlWeightFormat f, size_t n, int groupSize, size_t* codeBytes) {
  const size_t codes = f == ML_WEIGHTS_F32 ? 4 * n : f == ML_WEIGHTS_INT8 ? n : f == ML_WEIGHTS_INT4 ? (n * 4 + 7) / 8 : (n * 2 + 7) / 8;
  if (codeBytes) *codeBytes = codes;
  if (f == ML_WEIGHTS_F32) return codes;
  return codes + (n / (size_t)groupSize) * 4 * (f == ML_WEIGHTS_INT2 ? 2 : 1);
}

namespace {

// quant.ts storageBytes: packed codes plus the float32 parameters of each group.
size_t projectionBytes(const Projection& p) {
  const size_t n = (size_t)p.rows * p.cols;
  if (p.w) return n * 4;
  const size_t groups = n / p.groupSize;
  if (p.format == ML_WEIGHTS_INT8) return n + groups * 4;
  if (p.format == ML_WEIGHTS_INT4) return (n * 4 + 7) / 8 + groups * 4;
  return (n * 2 + 7) / 8 + groups * 8;
}

// The row group size of a format for rows of dim (head.ts weightGroupSize).
int weightGroupSize(MlWeightFormat f, int dim) {
  const int gs = f == ML_WEIGHTS_INT2 ? ML_INT2_GROUP_SIZE : ML_INT8_GROUP_SIZE;
  return gs < dim ? gs : dim;
}

// Reads the rows of a per-head tensor for some heads (each headSize consecutive rows) into a
// new projection, quantised row by row in its format (quant.ts quantizeMatrix).
bool loadProjection(MlCheckpoint* c, int tensor, int layer, const int* ids, int count, MlWeightFormat format, Projection* p, char* err, size_t errLen) {
  const MlConfig& g = *ml_checkpoint_config(c);
  const int hs = g.headSize, dim = g.dim;
  p->rows = count * hs;
  p->cols = dim;
  p->format = format;
  const size_t n = (size_t)p->rows * dim;
  float* w = (float*)malloc(n * sizeof(float));
  if (!w) {
    setErr(err, errLen, "out of memory loading the head group's weights (%zu bytes)", n * sizeof(float));
    return false;
  }
  for (int i = 0; i < count; i++) {
    if (!ml_checkpoint_read_rows(c, tensor, layer, ids[i] * hs, hs, w + (size_t)i * hs * dim, err, errLen)) {
      free(w);
      return false;
    }
  }
  if (format == ML_WEIGHTS_F32) {
    p->w = w;
    return true;
  }
  const int gs = p->groupSize = weightGroupSize(format, dim);
  int8_t* codes = (int8_t*)malloc(n);
  float* scales = (float*)malloc((n / gs) * sizeof(float));
  float* offsets = format == ML_WEIGHTS_INT2 ? (float*)malloc((n / gs) * sizeof(float)) : nullptr;
  p->q = codes;
  p->scales = scales;
  p->offsets = offsets;
  if (!codes || !scales || (format == ML_WEIGHTS_INT2 && !offsets)) {
    free(w);
    setErr(err, errLen, "out of memory quantising the head group's weights");
    return false;
  }
  for (int r = 0; r < p->rows; r++) {
    const float* row = w + (size_t)r * dim;
    int8_t* q = codes + (size_t)r * dim;
    const size_t g = (size_t)r * (dim / gs);
    if (format == ML_WEIGHTS_INT8) ml_quantize(row, dim, gs, q, scales + g);
    else if (format == ML_WEIGHTS_INT4) ml_quantize_int4(row, dim, gs, q, scales + g);
    else ml_quantize_int2(row, dim, gs, q, scales + g, offsets + g);
  }
  free(w);
  return true;
}

int compareInts(const void* a, const void* b) {
  const int x = *(const int*)a, y = *(const int*)b;
  return x < y ? -1 : x > y ? 1 : 0;
}

}  // namespace

void ml_slices_free(MlSlices* s) {
  if (!s) return;
  const int L = s->config.nLayers;
  freeProjections(s->wq, L, s->view);
  freeProjections(s->wk, L, s->view);
  freeProjections(s->wv, L, s->view);
  free(s->owned);
  free(s->heads);
  free(s->kvHeads);
  free(s->kvOfHead);
  free(s);
}

bool ml_weight_format_of(const char* name, MlWeightFormat* format) {
  static const char* const names[] = {"f32", "int8", "int4", "int2"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, names[i]) == 0) {
      *format = (MlWeightFormat)i;
      return true;
    }
  }
  return false;
}

const char* ml_weight_format_name(MlWeightFormat format) {
  return format == ML_WEIGHTS_INT8 ? "int8" : format == ML_WEIGHTS_INT4 ? "int4" : format == ML_WEIGHTS_INT2 ? "int2" : "f32";
}

MlSlices* ml_slices_load(MlCheckpoint* c, const int* heads, int count, bool int8, char* err, size_t errLen) {
  return ml_slices_load_format(c, heads, count, int8 ? ML_WEIGHTS_INT8 : ML_WEIGHTS_F32, err, errLen);
}

MlSlices* ml_slices_load_format(MlCheckpoint* c, const int* heads, int count, MlWeightFormat format, char* err, size_t errLen) {
  if (err && errLen) err[0] = '\0';
  if (!c) {
    setErr(err, errLen, "no checkpoint");
    return nullptr;
  }
  const MlConfig& g = *ml_checkpoint_config(c);
  // head.ts loadHeadSlices: distinct ids in 0..nHeads-1, kept sorted
  bool ok = count > 0 && heads != nullptr;
  int* sorted = nullptr;
  if (ok) {
    sorted = (int*)malloc(sizeof(int) * (size_t)count);
    if (!sorted) {
      setErr(err, errLen, "out of memory");
      return nullptr;
    }
    memcpy(sorted, heads, sizeof(int) * (size_t)count);
    qsort(sorted, (size_t)count, sizeof(int), compareInts);
    for (int i = 0; i < count && ok; i++) {
      if (sorted[i] < 0 || sorted[i] >= g.nHeads || (i > 0 && sorted[i] == sorted[i - 1])) ok = false;
    }
  }
  if (!ok) {
    // "head group [3, 3] must be distinct head ids in 0..7", as head.ts says it
    char list[256];
    size_t at = 0;
    list[0] = '\0';
    for (int i = 0; heads && i < count && at < sizeof list; i++) {
      int n = snprintf(list + at, sizeof list - at, i ? ", %d" : "%d", heads[i]);
      if (n < 0) break;
      at += (size_t)n;
    }
    setErr(err, errLen, "head group [%s] must be distinct head ids in 0..%d", list, (int)g.nHeads - 1);
    free(sorted);
    return nullptr;
  }
  if (format != ML_WEIGHTS_F32 && g.dim % weightGroupSize(format, g.dim) != 0) {
    setErr(err, errLen, "%s group size %d does not divide the row length %d", ml_weight_format_name(format), weightGroupSize(format, g.dim), (int)g.dim);
    free(sorted);
    return nullptr;
  }
  MlSlices* s = (MlSlices*)calloc(1, sizeof(MlSlices));
  if (!s) {
    free(sorted);
    setErr(err, errLen, "out of memory");
    return nullptr;
  }
  s->config = g;
  s->format = format;
  s->headCount = count;
  s->heads = sorted;
  // kvHeadsFor: the distinct floor(h / kvMul), ascending (heads are sorted, so are these)
  s->kvHeads = (int*)malloc(sizeof(int) * (size_t)count);
  s->kvOfHead = (int*)malloc(sizeof(int) * (size_t)count);
  const int L = g.nLayers;
  s->wq = (Projection*)calloc((size_t)L, sizeof(Projection));
  s->wk = (Projection*)calloc((size_t)L, sizeof(Projection));
  s->wv = (Projection*)calloc((size_t)L, sizeof(Projection));
  if (!s->kvHeads || !s->kvOfHead || !s->wq || !s->wk || !s->wv) {
    ml_slices_free(s);
    setErr(err, errLen, "out of memory");
    return nullptr;
  }
  for (int i = 0; i < count; i++) {
    const int kv = sorted[i] / g.kvMul;
    if (s->kvCount == 0 || s->kvHeads[s->kvCount - 1] != kv) s->kvHeads[s->kvCount++] = kv;
    s->kvOfHead[i] = s->kvCount - 1;
  }
  for (int l = 0; l < L; l++) {
    if (!loadProjection(c, 0, l, s->heads, s->headCount, format, &s->wq[l], err, errLen) ||
        !loadProjection(c, 1, l, s->kvHeads, s->kvCount, format, &s->wk[l], err, errLen) ||
        !loadProjection(c, 2, l, s->kvHeads, s->kvCount, format, &s->wv[l], err, errLen)) {
      ml_slices_free(s);
      return nullptr;
    }
  }
  return s;
}

size_t ml_slices_weight_bytes(const MlSlices* s) {
  size_t n = 0;
  for (int l = 0; l < s->config.nLayers; l++) n += projectionBytes(s->wq[l]) + projectionBytes(s->wk[l]) + projectionBytes(s->wv[l]);
  return n;
}

int ml_slices_head_count(const MlSlices* s) { return s->headCount; }
const int* ml_slices_heads(const MlSlices* s) { return s->heads; }
int ml_slices_kv_head_count(const MlSlices* s) { return s->kvCount; }
const int* ml_slices_kv_heads(const MlSlices* s) { return s->kvHeads; }

// ---- sessions -------------------------------------------------------------------------------

struct MlSession {
  const MlSlices* slices;
  int context;
  size_t layerElems;  // kvCount * context * headSize: one layer's keys (or values)
  float* keys;        // [nLayers][kvCount][context][headSize]
  float* values;
  float* att;         // [context]
  float* q;           // [headCount * headSize]
  float* k;           // [kvCount * headSize]
  float* v;
  float* out;         // [headCount * headSize]
  int ropePos;        // position of the RoPE table below, -1: none
  float* ropeCos;     // [headSize / 2]
  float* ropeSin;
};

void ml_session_free(MlSession* s) {
  if (!s) return;
  free(s->keys);
  free(s->values);
  free(s->att);
  free(s->q);
  free(s->k);
  free(s->v);
  free(s->out);
  free(s->ropeCos);
  free(s->ropeSin);
  free(s);
}

MlSession* ml_session_new(const MlSlices* sl, int contextLength) {
  if (!sl || contextLength <= 0) return nullptr;
  MlSession* s = (MlSession*)calloc(1, sizeof(MlSession));
  if (!s) return nullptr;
  const int hs = sl->config.headSize;
  s->slices = sl;
  s->context = contextLength;
  s->layerElems = (size_t)sl->kvCount * contextLength * hs;
  const size_t cacheElems = s->layerElems * (size_t)sl->config.nLayers;
  s->keys = (float*)calloc(cacheElems, sizeof(float));
  s->values = (float*)calloc(cacheElems, sizeof(float));
  s->att = (float*)calloc((size_t)contextLength, sizeof(float));
  s->q = (float*)calloc((size_t)sl->headCount * hs, sizeof(float));
  s->k = (float*)calloc((size_t)sl->kvCount * hs, sizeof(float));
  s->v = (float*)calloc((size_t)sl->kvCount * hs, sizeof(float));
  s->out = (float*)calloc((size_t)sl->headCount * hs, sizeof(float));
  s->ropeCos = (float*)calloc((size_t)hs / 2, sizeof(float));
  s->ropeSin = (float*)calloc((size_t)hs / 2, sizeof(float));
  s->ropePos = -1;
  if (!s->keys || !s->values || !s->att || !s->q || !s->k || !s->v || !s->out || !s->ropeCos || !s->ropeSin) {
    ml_session_free(s);
    return nullptr;
  }
  return s;
}

void ml_session_reset(MlSession* s) {
  const size_t n = s->layerElems * (size_t)s->slices->config.nLayers;
  memset(s->keys, 0, n * sizeof(float));
  memset(s->values, 0, n * sizeof(float));
}

size_t ml_session_cache_bytes(const MlSession* s) { return 2 * s->layerElems * (size_t)s->slices->config.nLayers * sizeof(float); }

namespace {

// matmulInt8 on packed codes (a shard's int4 or int2 rows, read in place): the same sums in
// the same order, each code taken from its bits (int4 two's complement -7..7, int2 0..3).
void matmulPacked(float* out, const float* x, const uint8_t* packed, MlWeightFormat f, const float* scales, int rows, int cols, int gs) {
  const int bits = f == ML_WEIGHTS_INT4 ? 4 : 2;
  const int mask = (1 << bits) - 1;
  const int perByte = 8 / bits;
  const bool isSigned = f == ML_WEIGHTS_INT4;
  const int groups = cols / gs;
  for (int r = 0; r < rows; r++) {
    acc_t sum = 0;
    for (int g = 0; g < groups; g++) {
      const size_t base = (size_t)r * cols + (size_t)g * gs;
      const float* xg = x + (size_t)g * gs;
      acc_t dot = 0;
      for (int i = 0; i < gs; i++) {
        const size_t at = base + (size_t)i;
        int code = (packed[at / perByte] >> ((at % perByte) * bits)) & mask;
        if (isSigned && code > mask / 2) code -= mask + 1;
        dot += (acc_t)code * (acc_t)xg[i];
      }
      sum += (acc_t)scales[(size_t)r * groups + g] * dot;
    }
    out[r] = (float)sum;
  }
}

void project(const Projection& p, const float* x, float* out) {
  if (p.w) matmul(out, x, p.w, p.rows, p.cols);
  else {
    if (p.packed) matmulPacked(out, x, p.packed, p.format, p.scales, p.rows, p.cols, p.groupSize);
    else matmulInt8(out, x, p.q, p.scales, p.rows, p.cols, p.groupSize);
    if (p.offsets) ml_add_group_offsets(out, x, p.offsets, p.rows, p.cols, p.groupSize);
  }
}

}  // namespace

const float* ml_session_forward(MlSession* s, const float* xb, int pos, int layer, const MlSteering* steering) {
  const MlSlices* sl = s->slices;
  const MlConfig& g = sl->config;
  if (pos < 0 || pos >= s->context || layer < 0 || layer >= g.nLayers) return nullptr;
  const int hs = g.headSize, half = hs / 2;
  project(sl->wq[layer], xb, s->q);
  project(sl->wk[layer], xb, s->k);
  project(sl->wv[layer], xb, s->v);
  // RoPE on every query head and on the new key of every kv head
  if (s->ropePos != pos) {
    ropeTable(pos, hs, s->ropeCos, s->ropeSin);
    s->ropePos = pos;
  }
  for (int i = 0; i < sl->headCount; i++) rope(s->q + (size_t)i * hs, s->ropeCos, s->ropeSin, half);
  for (int j = 0; j < sl->kvCount; j++) rope(s->k + (size_t)j * hs, s->ropeCos, s->ropeSin, half);
  // append k and v of each kv head j at row (j, pos) of this layer's cache
  float* keys = s->keys + (size_t)layer * s->layerElems;
  float* values = s->values + (size_t)layer * s->layerElems;
  for (int j = 0; j < sl->kvCount; j++) {
    const size_t row = ((size_t)j * s->context + pos) * hs;
    memcpy(keys + row, s->k + (size_t)j * hs, sizeof(float) * (size_t)hs);
    memcpy(values + row, s->v + (size_t)j * hs, sizeof(float) * (size_t)hs);
  }
  // kernels.ts JsKvCache.attend for each query head over positions 0..pos of its kv head:
  // out_i = softmax(K_j q_i / sqrt(headSize))^T V_j
  const double scale = (float)sqrt((double)hs);
  const int n = pos + 1;
  for (int i = 0; i < sl->headCount; i++) {
    const size_t base = (size_t)sl->kvOfHead[i] * s->context * hs;
    float* att = s->att;
    matmul(att, s->q + (size_t)i * hs, keys + base, n, hs);
    for (int t = 0; t < n; t++) att[t] = (float)((double)att[t] / scale);
    softmax(att, n);
    weightedRowSum(s->out + (size_t)i * hs, att, n, values + base, hs, hs);
  }
  if (steering && steering->layer == layer && steering->vector) {
    const int m = sl->headCount * hs;
    for (int i = 0; i < m; i++) s->out[i] = (float)((double)s->out[i] + (double)steering->vector[i]);
  }
  return s->out;
}

// ---- slices from rows already read ------------------------------------------------------------

// An empty MlSlices for these heads: their ids, the kv head of each, room for every layer's three
// projections (filled by the caller). nullptr with the reason in err when it cannot be.
static MlSlices* newSlices(const MlConfig& g, const int* heads, int count, const int* kvHeads, int kvCount, MlWeightFormat format, char* err, size_t errLen) {
  const int L = g.nLayers;
  MlSlices* s = kvCount > count ? nullptr : (MlSlices*)calloc(1, sizeof(MlSlices));
  if (s) {
    s->heads = (int*)malloc(sizeof(int) * (size_t)count);
    s->kvHeads = (int*)malloc(sizeof(int) * (size_t)count);
    s->kvOfHead = (int*)malloc(sizeof(int) * (size_t)count);
    s->wq = (Projection*)calloc((size_t)L, sizeof(Projection));
    s->wk = (Projection*)calloc((size_t)L, sizeof(Projection));
    s->wv = (Projection*)calloc((size_t)L, sizeof(Projection));
  }
  if (!s || !s->heads || !s->kvHeads || !s->kvOfHead || !s->wq || !s->wk || !s->wv) {
    if (s) ml_slices_free(s);
    setErr(err, errLen, kvCount > count ? "more kv heads than query heads" : "out of memory");
    return nullptr;
  }
  s->config = g;
  s->format = format;
  s->headCount = count;
  s->kvCount = kvCount;
  memcpy(s->heads, heads, sizeof(int) * (size_t)count);
  memcpy(s->kvHeads, kvHeads, sizeof(int) * (size_t)kvCount);
  for (int i = 0; i < count; i++) {
    s->kvOfHead[i] = -1;
    for (int k = 0; k < kvCount; k++)
      if (kvHeads[k] == heads[i] / g.kvMul) s->kvOfHead[i] = k;
  }
  return s;
}

MlSlices* ml_slices_adopt(const MlConfig& g, const int* heads, int count, const int* kvHeads, int kvCount, bool int8, MlProjectionRows* rows, char* err, size_t errLen) {
  const int L = g.nLayers;
  auto freeRows = [&]() {
    for (int i = 0; i < 3 * L; i++) {
      free(rows[i].w);
      free(rows[i].q);
      free(rows[i].scales);
    }
  };
  for (int l = 0; l < L; l++) {
    for (int t = 0; t < 3; t++) {
      const MlProjectionRows& r = rows[3 * l + t];
      const int want = (t == 0 ? count : kvCount) * g.headSize;
      if (r.rows != want || (int8 ? (!r.q || !r.scales) : !r.w)) {
        setErr(err, errLen, "layer %d projection %d has %d rows (expected %d)", l, t, r.rows, want);
        freeRows();
        return nullptr;
      }
    }
  }
  MlSlices* s = newSlices(g, heads, count, kvHeads, kvCount, int8 ? ML_WEIGHTS_INT8 : ML_WEIGHTS_F32, err, errLen);
  if (!s) {
    freeRows();
    return nullptr;
  }
  Projection* dst[3] = {s->wq, s->wk, s->wv};
  for (int l = 0; l < L; l++)
    for (int t = 0; t < 3; t++) {
      MlProjectionRows& r = rows[3 * l + t];
      dst[t][l] = Projection{r.rows, g.dim, int8 ? weightGroupSize(ML_WEIGHTS_INT8, g.dim) : 0, s->format, r.w, r.q, r.scales, nullptr, nullptr};
    }
  return s;
}

MlSlices* ml_slices_view(const MlConfig& g, const int* heads, int count, const int* kvHeads, int kvCount, MlWeightFormat format, const MlProjectionView* views, void* owned, char* err, size_t errLen) {
  const int L = g.nLayers;
  const int gs = ml_weight_group_size(format, g.dim);
  for (int i = 0; i < 3 * L; i++) {
    const MlProjectionView& v = views[i];
    const int want = (i % 3 == 0 ? count : kvCount) * g.headSize;
    const bool complete = format == ML_WEIGHTS_F32 ? v.w != nullptr : v.codes != nullptr && v.scales != nullptr && (format != ML_WEIGHTS_INT2 || v.offsets != nullptr);
    if (v.rows != want || !complete) {
      setErr(err, errLen, "layer %d projection %d has %d rows (expected %d)", i / 3, i % 3, v.rows, want);
      free(owned);
      return nullptr;
    }
  }
  MlSlices* s = newSlices(g, heads, count, kvHeads, kvCount, format, err, errLen);
  if (!s) {
    free(owned);
    return nullptr;
  }
  s->view = true;
  s->owned = owned;
  Projection* dst[3] = {s->wq, s->wk, s->wv};
  const bool packed = format == ML_WEIGHTS_INT4 || format == ML_WEIGHTS_INT2;
  for (int i = 0; i < 3 * L; i++) {
    const MlProjectionView& v = views[i];
    dst[i % 3][i / 3] = Projection{v.rows, g.dim, gs, format, v.w, packed ? nullptr : (const int8_t*)v.codes, v.scales, v.offsets, packed ? v.codes : nullptr};
  }
  return s;
}

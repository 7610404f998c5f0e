/*
 * The gateway's int8 layer step as a Node-API addon (lib/native/kernels.ts loads it,
 * lib/native/build.ts compiles it), the same arithmetic as the int8 ONNX graphs of
 * lib/onnx/gateway.ts, one call per layer:
 *
 *   x1 = x + W_O . heads,  n = RMSNorm(x1),  y = x1 + W_2 . (silu(W_1 . n) * (W_3 . n))
 *   logits = W_cls . RMSNorm(x)
 *
 * Each product: the activation quantised to uint8 (quantize_activation: ONNX's
 * DynamicQuantizeLinear), then y = (a - zp) . W^T in exact integers, scaled back to float32.
 * Shapes: W [rows, cols] int8, one float32 scale per row; a [cols] uint8 with one zero point
 * and one scale; x, heads, y [dim]; logits [vocab].
 *
 * W is held "packed" (lib/native/kernels.ts packRows): rows in groups of 4 and columns in
 * chunks of 64, each chunk of the 4 rows of a group 256 consecutive bytes, rows padded to a
 * multiple of 4 and columns to a multiple of 64 with zeros. The product then reads W as one
 * sequential stream, which is what keeps it at the memory's streaming rate (a row-major
 * layout reads 4 streams at once and ran at 0.75-0.8 of that rate: docs/PERFORMANCE.md).
 *
 * The sums are exact 32-bit integers whatever the instruction set (|sum| <= 255 * 128 * cols,
 * below 2^31 for cols < 65793): AVX-512 VNNI (vpdpbusd), else AVX2, else plain C, chosen once
 * by what the CPU reports (choose_kernel). Then y[r] = float(sum_r - zp * rowSum_r) * float(aScale * wScale_r),
 * float32 arithmetic in that order, as the ONNX pattern MatMulInteger -> Cast -> Mul does.
 */
#include <math.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ML_X86 1
#include <immintrin.h>
#endif

/* sums[r] = sum_c a[c] * w[r, c] for the rows of the packed groups [g0, g1) */
typedef void (*group_sums_fn)(const int8_t *packed, const uint8_t *a, size_t cols, size_t g0, size_t g1, int32_t *sums);

#define GROUP_SUMS_BODY                                                      \
  for (size_t g = g0; g < g1; g++) {                                         \
    const int8_t *p = packed + g * 4 * cols;                                 \
    int32_t s[4] = {0, 0, 0, 0};                                             \
    for (size_t c = 0; c < cols; c += 64, p += 256)                          \
      for (int k = 0; k < 4; k++)                                            \
        for (int j = 0; j < 64; j++) s[k] += (int32_t)a[c + j] * (int32_t)p[k * 64 + j]; \
    for (int k = 0; k < 4; k++) sums[g * 4 + k] = s[k];                      \
  }

static void group_sums_c(const int8_t *packed, const uint8_t *a, size_t cols, size_t g0, size_t g1, int32_t *sums) {
  GROUP_SUMS_BODY
}

#ifdef ML_X86
/* the same loop, vectorised by the compiler for AVX2 (widening to 16 bits, then pmaddwd: exact) */
__attribute__((target("avx2"), optimize("O3"))) static void group_sums_avx2(const int8_t *packed, const uint8_t *a, size_t cols, size_t g0, size_t g1, int32_t *sums) {
  GROUP_SUMS_BODY
}

/* one activation load per chunk, four vpdpbusd (uint8 x int8, summed in 32 bits without saturation) */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void group_sums_vnni(const int8_t *packed, const uint8_t *a, size_t cols, size_t g0, size_t g1, int32_t *sums) {
  for (size_t g = g0; g < g1; g++) {
    const int8_t *p = packed + g * 4 * cols;
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t c = 0; c < cols; c += 64, p += 256) {
      const __m512i av = _mm512_loadu_si512((const void *)(a + c));
      s0 = _mm512_dpbusd_epi32(s0, av, _mm512_loadu_si512((const void *)p));
      s1 = _mm512_dpbusd_epi32(s1, av, _mm512_loadu_si512((const void *)(p + 64)));
      s2 = _mm512_dpbusd_epi32(s2, av, _mm512_loadu_si512((const void *)(p + 128)));
      s3 = _mm512_dpbusd_epi32(s3, av, _mm512_loadu_si512((const void *)(p + 192)));
    }
    sums[g * 4] = _mm512_reduce_add_epi32(s0);
    sums[g * 4 + 1] = _mm512_reduce_add_epi32(s1);
    sums[g * 4 + 2] = _mm512_reduce_add_epi32(s2);
    sums[g * 4 + 3] = _mm512_reduce_add_epi32(s3);
  }
}
#endif

static group_sums_fn group_sums = group_sums_c;
static const char *kernel_name = "c";

/*
 * The widest the CPU has; MESH_LLM_INT8_KERNEL=c or =avx2 asks for a narrower one (the tests
 * compare every path the machine can run). `kernel` on the exports says which is used.
 */
static void choose_kernel(void) {
  const char *want = getenv("MESH_LLM_INT8_KERNEL");
  if (want && strcmp(want, "c") == 0) return;
#ifdef ML_X86
  __builtin_cpu_init();
  if (want && strcmp(want, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
    group_sums = group_sums_avx2;
    kernel_name = "avx2";
  } else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")) {
    group_sums = group_sums_vnni;
    kernel_name = "avx512-vnni";
  } else if (__builtin_cpu_supports("avx2")) {
    group_sums = group_sums_avx2;
    kernel_name = "avx2";
  }
#endif
}

/* ---- the arithmetic (no Node-API below this line until the bindings) ---- */

/* An int8 matrix as lib/native/kernels.ts packRows lays it out. */
typedef struct {
  const int8_t *packed;
  const float *scales;
  const int32_t *row_sums;
  size_t rows, cols, cols_padded;
} packed_i8;

#define RMS_EPS 1e-5

/* Sums of up to this many groups of 4 rows at a time into a stack buffer, then scaled. */
#define SUMS_CHUNK_GROUPS 256

/* y [rows] = float(sum_c (a[c] - zp) * W[r, c]) * (a_scale * scale_r), a [cols_padded] */
static void matvec_i8(const packed_i8 *m, const uint8_t *a, int zp, float a_scale, float *y) {
  const size_t groups = (m->rows + 3) / 4;
  int32_t sums[SUMS_CHUNK_GROUPS * 4];
  for (size_t g0 = 0; g0 < groups; g0 += SUMS_CHUNK_GROUPS) {
    const size_t g1 = g0 + SUMS_CHUNK_GROUPS < groups ? g0 + SUMS_CHUNK_GROUPS : groups;
    group_sums(m->packed + g0 * 4 * m->cols_padded, a, m->cols_padded, 0, g1 - g0, sums);
    for (size_t r = g0 * 4; r < g1 * 4 && r < m->rows; r++) {
      const float s = a_scale * m->scales[r];
      y[r] = (float)((int64_t)sums[r - g0 * 4] - (int64_t)zp * m->row_sums[r]) * s;
    }
  }
}

static float clamp_code(float v) {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/*
 * x [n] -> q [n_padded] uint8 over [min(0, min x), max(0, max x)]: scale = range / 255,
 * zp = round(-min / scale), q = clamp(round(x / scale) + zp, 0, 255), rounding half to even
 * (nearbyintf in the default rounding mode); the padding holds zp, so it adds nothing.
 */
static void quantize_activation(const float *x, size_t n, size_t n_padded, uint8_t *q, float *scale, int *zp) {
  float lo = 0, hi = 0;
  for (size_t i = 0; i < n; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  const float s = (hi - lo) / 255.0f;
  *scale = s;
  if (s == 0) {
    *zp = 0;
    memset(q, 0, n_padded);
    return;
  }
  const int z = (int)clamp_code(nearbyintf(-lo / s));
  *zp = z;
  for (size_t i = 0; i < n; i++) q[i] = (uint8_t)clamp_code(nearbyintf(x[i] / s) + (float)z);
  memset(q + n, z, n_padded - n);
}

/* y = W . x, x [cols] quantised into codes [cols_padded] first */
static void product(const packed_i8 *m, const float *x, uint8_t *codes, float *y) {
  float scale;
  int zp;
  quantize_activation(x, m->cols, m->cols_padded, codes, &scale, &zp);
  matvec_i8(m, codes, zp, scale, y);
}

/* out = w * x / sqrt(mean(x^2) + eps), as lib/llm/math.ts rmsnorm rounds it. Shapes [n]. */
static void rmsnorm(float *out, const float *x, const float *w, size_t n) {
  double ss = 0;
  for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
  const float mean = (float)(ss / (double)n);
  const float scale = (float)(1.0 / sqrt((double)(float)((double)mean + RMS_EPS)));
  for (size_t i = 0; i < n; i++) out[i] = w[i] * (scale * x[i]);
}

/* h1 = silu(h1) * h3. Shapes [n]. */
static void swiglu(float *h1, const float *h3, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = h1[i];
    h1[i] = v * (1.0f / (1.0f + expf(-v))) * h3[i];
  }
}

typedef struct {
  packed_i8 wo, w13, w2;
  const float *rms_ffn;
  size_t dim, hidden;
} layer_i8;

/* One layer: y = x1 + W_2 . swiglu(W_13 . RMSNorm(x1)), x1 = x + W_O . heads. scratch: 2 dim + 2 hidden floats, codes: the widest padded row. */
static void layer_step(const layer_i8 *l, const float *x, const float *heads, float *y, float *scratch, uint8_t *codes) {
  const size_t dim = l->dim, hidden = l->hidden;
  float *attn = scratch, *n = scratch + dim, *h13 = scratch + 2 * dim;
  product(&l->wo, heads, codes, attn);
  for (size_t i = 0; i < dim; i++) y[i] = x[i] + attn[i];
  rmsnorm(n, y, l->rms_ffn, dim);
  product(&l->w13, n, codes, h13);
  swiglu(h13, h13 + hidden, hidden);
  product(&l->w2, h13, codes, attn);
  for (size_t i = 0; i < dim; i++) y[i] += attn[i];
}

/* ---- Node-API bindings ---- */

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_range_error(env, "ERR_MESH_LLM_NATIVE", message);
  return NULL;
}

static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok) return 0;
  return type == want;
}

static int property(napi_env env, napi_value obj, const char *name, napi_value *out) {
  napi_valuetype t;
  if (napi_typeof(env, obj, &t) != napi_ok || t != napi_object) return 0;
  return napi_get_named_property(env, obj, name, out) == napi_ok;
}

static int typed_property(napi_env env, napi_value obj, const char *name, napi_typedarray_type want, void **data, size_t *length) {
  napi_value v;
  return property(env, obj, name, &v) && typed_array(env, v, want, data, length);
}

static int size_property(napi_env env, napi_value obj, const char *name, size_t *out) {
  napi_value v;
  uint32_t u;
  if (!property(env, obj, name, &v) || napi_get_value_uint32(env, v, &u) != napi_ok) return 0;
  *out = u;
  return 1;
}

/* A PackedInt8 (lib/native/kernels.ts) into m; on a bad one, a message naming `what` into err. */
static int read_packed(napi_env env, napi_value obj, const char *what, packed_i8 *m, char *err, size_t errlen) {
  void *packed, *scales, *sums;
  size_t packed_len, scales_len, sums_len;
  if (!size_property(env, obj, "rows", &m->rows) || !size_property(env, obj, "cols", &m->cols) || !size_property(env, obj, "colsPadded", &m->cols_padded) ||
      !typed_property(env, obj, "packed", napi_int8_array, &packed, &packed_len) || !typed_property(env, obj, "scales", napi_float32_array, &scales, &scales_len) ||
      !typed_property(env, obj, "rowSums", napi_int32_array, &sums, &sums_len)) {
    snprintf(err, errlen, "%s: expected a packed int8 matrix { rows, cols, colsPadded, packed: Int8Array, scales: Float32Array, rowSums: Int32Array }", what);
    return 0;
  }
  if (m->cols == 0 || m->cols_padded != (m->cols + 63) / 64 * 64 || m->cols_padded > 65536) {
    snprintf(err, errlen, "%s: colsPadded must be cols rounded up to a multiple of 64, at most 65536 (the sums stay within 32 bits)", what);
    return 0;
  }
  if (packed_len != (m->rows + 3) / 4 * 4 * m->cols_padded || scales_len != m->rows || sums_len != m->rows) {
    snprintf(err, errlen, "%s: packed has the wrong length for %zu x %zu (rows padded to a multiple of 4, cols to 64), or scales/rowSums not one per row", what, m->rows, m->cols);
    return 0;
  }
  m->packed = packed;
  m->scales = scales;
  m->row_sums = sums;
  return 1;
}

static napi_value args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) return throw_error(env, usage);
  return argv[0];
}

/* One allocation for a call's scratch: `floats` float32 values, then `bytes` activation codes. NULL when out of memory; free() it after the call. */
static void *scratch_block(size_t floats, size_t bytes, float **f, uint8_t **codes) {
  float *block = malloc(floats * sizeof(float) + bytes);
  if (block) {
    *f = block;
    *codes = (uint8_t *)(block + floats);
  }
  return block;
}

/* product(m: PackedInt8, x: Float32Array [cols], out: Float32Array [rows]) */
static napi_value js_product(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv, "product(m, x, out) takes 3 arguments")) return NULL;
  char err[256];
  packed_i8 m;
  void *x, *y;
  size_t xn, yn;
  if (!read_packed(env, argv[0], "product: m", &m, err, sizeof err)) return throw_error(env, err);
  if (!typed_array(env, argv[1], napi_float32_array, &x, &xn) || xn != m.cols) return throw_error(env, "product: x must be a Float32Array of the matrix's cols values");
  if (!typed_array(env, argv[2], napi_float32_array, &y, &yn) || yn != m.rows) return throw_error(env, "product: out must be a Float32Array of the matrix's rows values");
  float *unused;
  uint8_t *codes;
  void *block = scratch_block(0, m.cols_padded, &unused, &codes);
  if (!block) return throw_error(env, "product: out of memory");
  product(&m, x, codes, y);
  free(block);
  return NULL;
}

/* quantizeActivation(x: Float32Array [n], q: Uint8Array [>= n]) -> [scale, zeroPoint] */
static napi_value js_quantize(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv, "quantizeActivation(x, q) takes 2 arguments")) return NULL;
  void *x, *q;
  size_t n, qn;
  if (!typed_array(env, argv[0], napi_float32_array, &x, &n)) return throw_error(env, "quantizeActivation: x must be a Float32Array");
  if (!typed_array(env, argv[1], napi_uint8_array, &q, &qn) || qn < n) return throw_error(env, "quantizeActivation: q must be a Uint8Array at least as long as x");
  float scale;
  int zp;
  quantize_activation(x, n, qn, q, &scale, &zp);
  napi_value result, s, z;
  napi_create_array_with_length(env, 2, &result);
  napi_create_double(env, scale, &s);
  napi_create_int32(env, zp, &z);
  napi_set_element(env, result, 0, s);
  napi_set_element(env, result, 1, z);
  return result;
}

/* layerStep(layer: { wo, w13, w2: PackedInt8, rmsFfn: Float32Array }, x: Float32Array [dim], heads [dim], out [dim]) */
static napi_value js_layer_step(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv, "layerStep(layer, x, heads, out) takes 4 arguments")) return NULL;
  char err[256];
  layer_i8 l;
  napi_value v;
  void *rms, *x, *heads, *y;
  size_t rms_n, xn, hn, yn;
  if (!property(env, argv[0], "wo", &v)) return throw_error(env, "layerStep: layer must be an object { wo, w13, w2, rmsFfn }");
  if (!read_packed(env, v, "layerStep: layer.wo", &l.wo, err, sizeof err)) return throw_error(env, err);
  if (!property(env, argv[0], "w13", &v) || !read_packed(env, v, "layerStep: layer.w13", &l.w13, err, sizeof err)) return throw_error(env, err);
  if (!property(env, argv[0], "w2", &v) || !read_packed(env, v, "layerStep: layer.w2", &l.w2, err, sizeof err)) return throw_error(env, err);
  if (!typed_property(env, argv[0], "rmsFfn", napi_float32_array, &rms, &rms_n)) return throw_error(env, "layerStep: layer.rmsFfn must be a Float32Array");
  l.dim = l.wo.rows;
  l.hidden = l.w2.cols;
  if (l.wo.cols != l.dim || l.w13.cols != l.dim || l.w13.rows != 2 * l.hidden || l.w2.rows != l.dim || rms_n != l.dim)
    return throw_error(env, "layerStep: the matrices do not fit one layer (wo [dim, dim], w13 [2 hidden, dim], w2 [dim, hidden], rmsFfn [dim])");
  l.rms_ffn = rms;
  if (!typed_array(env, argv[1], napi_float32_array, &x, &xn) || xn != l.dim) return throw_error(env, "layerStep: x must be a Float32Array of dim values");
  if (!typed_array(env, argv[2], napi_float32_array, &heads, &hn) || hn != l.dim) return throw_error(env, "layerStep: heads must be a Float32Array of dim values");
  if (!typed_array(env, argv[3], napi_float32_array, &y, &yn) || yn != l.dim) return throw_error(env, "layerStep: out must be a Float32Array of dim values");
  const size_t widest = l.w2.cols_padded > l.wo.cols_padded ? l.w2.cols_padded : l.wo.cols_padded;
  float *scratch;
  uint8_t *codes;
  void *block = scratch_block(2 * l.dim + 2 * l.hidden, widest, &scratch, &codes);
  if (!block) return throw_error(env, "layerStep: out of memory");
  layer_step(&l, x, heads, y, scratch, codes);
  free(block);
  return NULL;
}

/* logitsStep(w: PackedInt8 [vocab, dim], rmsFinal: Float32Array [dim], x [dim], out [vocab]) */
static napi_value js_logits_step(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv, "logitsStep(w, rmsFinal, x, out) takes 4 arguments")) return NULL;
  char err[256];
  packed_i8 m;
  void *rms, *x, *y;
  size_t rms_n, xn, yn;
  if (!read_packed(env, argv[0], "logitsStep: w", &m, err, sizeof err)) return throw_error(env, err);
  if (!typed_array(env, argv[1], napi_float32_array, &rms, &rms_n) || rms_n != m.cols) return throw_error(env, "logitsStep: rmsFinal must be a Float32Array of dim values");
  if (!typed_array(env, argv[2], napi_float32_array, &x, &xn) || xn != m.cols) return throw_error(env, "logitsStep: x must be a Float32Array of dim values");
  if (!typed_array(env, argv[3], napi_float32_array, &y, &yn) || yn != m.rows) return throw_error(env, "logitsStep: out must be a Float32Array of vocab values");
  float *n;
  uint8_t *codes;
  void *block = scratch_block(m.cols, m.cols_padded, &n, &codes);
  if (!block) return throw_error(env, "logitsStep: out of memory");
  rmsnorm(n, x, rms, m.cols);
  product(&m, n, codes, y);
  free(block);
  return NULL;
}

static int export_function(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok && napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  choose_kernel();
  napi_value name;
  if (!export_function(env, exports, "product", js_product) || !export_function(env, exports, "quantizeActivation", js_quantize) ||
      !export_function(env, exports, "layerStep", js_layer_step) || !export_function(env, exports, "logitsStep", js_logits_step))
    return NULL;
  if (napi_create_string_utf8(env, kernel_name, NAPI_AUTO_LENGTH, &name) != napi_ok || napi_set_named_property(env, exports, "kernel", name) != napi_ok) return NULL;
  return exports;
}

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME mesh_llm_int8_gateway
#endif
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

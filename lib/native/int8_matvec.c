/*
 * The gateway's int8 matrix-vector product as a Node-API addon (lib/native/kernels.ts loads
 * it, lib/native/build.ts compiles it): y = (a - zp) . W^T, scaled back to float32.
 *
 * Shapes: W [rows, cols] int8, one float32 scale per row; a [cols] uint8 with one zero point
 * and one scale (the activation quantised as ONNX's DynamicQuantizeLinear does); y [rows].
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
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
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

/* Sums of 4 rows at a time into this stack buffer, then scaled: no allocation per call. */
#define SUMS_CHUNK_GROUPS 256

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_range_error(env, "ERR_MESH_LLM_MATVEC", message);
  return NULL;
}

static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok) return 0;
  return type == want;
}

/*
 * matvecI8(packed: Int8Array, rows, cols, a: Uint8Array, zeroPoint, aScale, wScales: Float32Array,
 *          rowSums: Int32Array, out: Float32Array): cols is the padded column count (a multiple of 64).
 */
static napi_value matvec_i8(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 9) return throw_error(env, "matvecI8 takes 9 arguments (packed, rows, cols, a, zeroPoint, aScale, wScales, rowSums, out)");
  void *packed, *a, *wScales, *rowSums, *out;
  size_t packedLen, aLen, scalesLen, sumsLen, outLen;
  uint32_t rows, cols;
  int32_t zp;
  double aScaleD;
  if (!typed_array(env, argv[0], napi_int8_array, &packed, &packedLen)) return throw_error(env, "matvecI8: packed must be an Int8Array");
  if (napi_get_value_uint32(env, argv[1], &rows) != napi_ok) return throw_error(env, "matvecI8: rows must be a number");
  if (napi_get_value_uint32(env, argv[2], &cols) != napi_ok) return throw_error(env, "matvecI8: cols must be a number");
  if (!typed_array(env, argv[3], napi_uint8_array, &a, &aLen)) return throw_error(env, "matvecI8: a must be a Uint8Array");
  if (napi_get_value_int32(env, argv[4], &zp) != napi_ok) return throw_error(env, "matvecI8: zeroPoint must be a number");
  if (napi_get_value_double(env, argv[5], &aScaleD) != napi_ok) return throw_error(env, "matvecI8: aScale must be a number");
  if (!typed_array(env, argv[6], napi_float32_array, &wScales, &scalesLen)) return throw_error(env, "matvecI8: wScales must be a Float32Array");
  if (!typed_array(env, argv[7], napi_int32_array, &rowSums, &sumsLen)) return throw_error(env, "matvecI8: rowSums must be an Int32Array");
  if (!typed_array(env, argv[8], napi_float32_array, &out, &outLen)) return throw_error(env, "matvecI8: out must be a Float32Array");
  const size_t groups = ((size_t)rows + 3) / 4;
  if (cols == 0 || cols % 64 != 0 || cols > 65536) return throw_error(env, "matvecI8: cols must be a multiple of 64 from 64 to 65536 (the packed, padded width; the sums stay within 32 bits)");
  if (packedLen != groups * 4 * (size_t)cols) return throw_error(env, "matvecI8: packed has the wrong length for rows x cols (rows padded to a multiple of 4)");
  if (aLen != cols) return throw_error(env, "matvecI8: a must have cols values");
  if (scalesLen < rows || sumsLen < rows || outLen < rows) return throw_error(env, "matvecI8: wScales, rowSums and out need rows values each");
  if (zp < 0 || zp > 255) return throw_error(env, "matvecI8: zeroPoint must be 0..255");
  const float aScale = (float)aScaleD;
  const float *ws = (const float *)wScales;
  const int32_t *rs = (const int32_t *)rowSums;
  float *y = (float *)out;
  int32_t sums[SUMS_CHUNK_GROUPS * 4];
  for (size_t g0 = 0; g0 < groups; g0 += SUMS_CHUNK_GROUPS) {
    const size_t g1 = g0 + SUMS_CHUNK_GROUPS < groups ? g0 + SUMS_CHUNK_GROUPS : groups;
    group_sums((const int8_t *)packed + g0 * 4 * (size_t)cols, (const uint8_t *)a, cols, 0, g1 - g0, sums);
    for (size_t r = g0 * 4; r < g1 * 4 && r < rows; r++) {
      const float s = aScale * ws[r];
      y[r] = (float)((int64_t)sums[r - g0 * 4] - (int64_t)zp * rs[r]) * s;
    }
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  choose_kernel();
  napi_value fn, name;
  if (napi_create_function(env, "matvecI8", NAPI_AUTO_LENGTH, matvec_i8, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "matvecI8", fn) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, kernel_name, NAPI_AUTO_LENGTH, &name) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "kernel", name) != napi_ok) return NULL;
  return exports;
}

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME mesh_llm_int8_matvec
#endif
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

// Group-wise quantisation (int8 and int4 symmetric, int2 affine): a port of lib/llm/quant.ts
// with the same arithmetic. JavaScript
// computes in double and rounds to float32 where it stores into a Float32Array or calls
// Math.fround; the casts below are those roundings.
#include "head_group.h"

#include <math.h>

namespace {

// Math.round-half-away of a double (quant.ts roundHalfAway).
double roundHalfAway(double v) { return v < 0 ? -floor(-v + 0.5) : floor(v + 0.5); }

// What storing a double into an Int8Array gives (ECMAScript ToInt8): NaN and infinities 0,
// otherwise truncated toward zero and taken modulo 256. Quantised values are in -127..127 but
// for degenerate scales (subnormal) the quotient can leave that range; JS wraps, so do we.
int8_t toInt8(double v) {
  if (!(v == v) || v == INFINITY || v == -INFINITY) return 0;
  double t = trunc(v);
  double m = fmod(t, 256.0);  // exact, sign of t
  if (m < 0) m += 256.0;
  int u = (int)m;  // 0..255
  return (int8_t)(u >= 128 ? u - 256 : u);
}

// max|v| / levels in float32, Math.max semantics (a NaN makes the maximum NaN).
float groupScale(const float* x, int len, int levels = 127) {
  double maxAbs = 0;
  for (int i = 0; i < len; i++) {
    double a = fabs((double)x[i]);
    if (!(a == a) || !(maxAbs == maxAbs)) maxAbs = NAN;
    else if (a > maxAbs) maxAbs = a;
  }
  return (float)(maxAbs / levels);
}

// The int8 value of v in a group of that scale, as a double (before the Int8Array store).
double quantizeValue(float v, float scale) {
  return scale == 0 ? 0 : roundHalfAway((double)(float)((double)v / (double)scale));
}

// quant.ts quantizeValue with levels < 127: the code clamped to -levels..levels (a NaN stays
// NaN, which the Int8Array store makes 0).
double quantizeClamped(float v, float scale, int levels) {
  double q = quantizeValue(v, scale);
  if (q > levels) q = levels;
  if (q < -levels) q = -levels;
  return q;
}

}  // namespace

void ml_quantize(const float* x, int n, int groupSize, int8_t* q, float* scales) {
  for (int g0 = 0, g = 0; g0 < n; g0 += groupSize, g++) {
    int len = n - g0 < groupSize ? n - g0 : groupSize;
    float scale = groupScale(x + g0, len);
    scales[g] = scale;
    for (int i = 0; i < len; i++) q[g0 + i] = toInt8(quantizeValue(x[g0 + i], scale));
  }
}

void ml_dequantize(const int8_t* q, const float* scales, int n, int groupSize, float* out) {
  for (int g0 = 0, g = 0; g0 < n; g0 += groupSize, g++) {
    double scale = scales[g];
    int end = g0 + groupSize < n ? g0 + groupSize : n;
    for (int i = g0; i < end; i++) out[i] = (float)((double)q[i] * scale);
  }
}

void ml_int8_round_trip(float* x, int n, int groupSize) {
  for (int g0 = 0; g0 < n; g0 += groupSize) {
    int len = n - g0 < groupSize ? n - g0 : groupSize;
    float scale = groupScale(x + g0, len);
    // quant.ts multiplies the un-stored quotient by the scale: no Int8Array in between
    for (int i = g0; i < g0 + len; i++) x[i] = (float)(quantizeValue(x[i], scale) * (double)scale);
  }
}

void ml_quantize_clamped(const float* x, int n, int groupSize, int levels, int8_t* q, float* scales) {
  for (int g0 = 0, g = 0; g0 < n; g0 += groupSize, g++) {
    int len = n - g0 < groupSize ? n - g0 : groupSize;
    float scale = groupScale(x + g0, len, levels);
    scales[g] = scale;
    for (int i = 0; i < len; i++) q[g0 + i] = toInt8(quantizeClamped(x[g0 + i], scale, levels));
  }
}

void ml_quantize_int4(const float* x, int n, int groupSize, int8_t* q, float* scales) { ml_quantize_clamped(x, n, groupSize, ML_INT4_LEVELS, q, scales); }

void ml_clamped_round_trip(float* x, int n, int groupSize, int levels) {
  for (int g0 = 0; g0 < n; g0 += groupSize) {
    int len = n - g0 < groupSize ? n - g0 : groupSize;
    float scale = groupScale(x + g0, len, levels);
    for (int i = g0; i < g0 + len; i++) x[i] = (float)(quantizeClamped(x[i], scale, levels) * (double)scale);
  }
}

void ml_int4_round_trip(float* x, int n, int groupSize) { ml_clamped_round_trip(x, n, groupSize, ML_INT4_LEVELS); }

// quant.ts quantizeAffineInto: min and max of the group's float32 values (< and > comparisons
// in order), scale = float32((max - min) / 3), q = round(float32((v - min) / scale)) in 0..3.
void ml_quantize_int2(const float* x, int n, int groupSize, int8_t* q, float* scales, float* offsets) {
  for (int g0 = 0, g = 0; g0 < n; g0 += groupSize, g++) {
    int len = n - g0 < groupSize ? n - g0 : groupSize;
    float min = x[g0], max = x[g0];
    for (int i = 1; i < len; i++) {
      const float v = x[g0 + i];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float scale = (float)(((double)max - (double)min) / ML_INT2_MAX);
    scales[g] = scale;
    offsets[g] = min;
    for (int i = 0; i < len; i++) {
      double c = scale == 0 ? 0 : roundHalfAway((double)(float)(((double)x[g0 + i] - (double)min) / (double)scale));
      // Math.min(3, Math.max(0, c)): a NaN stays NaN (stored as 0)
      if (c < 0) c = 0;
      if (c > ML_INT2_MAX) c = ML_INT2_MAX;
      q[g0 + i] = toInt8(c);
    }
  }
}

void ml_add_group_offsets(float* out, const float* x, const float* offsets, int rows, int cols, int groupSize) {
  const int groups = cols / groupSize;
  for (int r = 0; r < rows; r++) {
    double sum = out[r];
    for (int g = 0; g < groups; g++) {
      double xs = 0;  // quant.ts xSum[g]: the group's x in order, in double
      for (int i = 0; i < groupSize; i++) xs += (double)x[g * groupSize + i];
      sum += (double)offsets[(size_t)r * groups + g] * xs;
    }
    out[r] = (float)sum;
  }
}

void ml_pack_codes(const int8_t* q, int n, int bits, uint8_t* out) {
  const size_t bytes = ((size_t)n * bits + 7) / 8;
  for (size_t i = 0; i < bytes; i++) out[i] = 0;
  const int mask = (1 << bits) - 1;
  for (int i = 0; i < n; i++) {
    const size_t at = (size_t)i * bits;
    const int v = (q[i] & mask) << (at & 7);  // at most 14 bits
    out[at >> 3] |= (uint8_t)(v & 0xff);
    if (v > 0xff) out[(at >> 3) + 1] |= (uint8_t)(v >> 8);
  }
}

int ml_signed_code(const uint8_t* bytes, size_t len, int i, int bits) {
  const size_t at = (size_t)i * bits;
  const int word = bytes[at >> 3] | ((at >> 3) + 1 < len ? bytes[(at >> 3) + 1] << 8 : 0);
  const int u = (word >> (at & 7)) & ((1 << bits) - 1);
  return u >= 1 << (bits - 1) ? u - (1 << bits) : u;
}

void ml_unpack_codes(const uint8_t* bytes, size_t len, int n, int bits, int8_t* q) {
  for (int i = 0; i < n; i++) q[i] = (int8_t)ml_signed_code(bytes, len, i, bits);
}

void ml_pack_int4(const int8_t* q, int n, uint8_t* out) { ml_pack_codes(q, n, 4, out); }

void ml_unpack_int4(const uint8_t* bytes, int n, int8_t* q) { ml_unpack_codes(bytes, ((size_t)n + 1) / 2, n, 4, q); }

int ml_aligned_group_size(int n, int limit) {
  for (int g = n < limit ? n : limit; g > 1; g--) {
    if (n % g == 0) return g;
  }
  return 1;
}

void ml_walsh_hadamard(float* x, int n) {
  if (n < 1 || (n & (n - 1)) != 0) return;  // not a power of two: the body checks refuse such groups first
  for (int h = 1; h < n; h *= 2) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; j++) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

void ml_inverse_walsh_hadamard(float* x, int n) {
  ml_walsh_hadamard(x, n);
  for (int i = 0; i < n; i++) x[i] = x[i] / (float)n;
}

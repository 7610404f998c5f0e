// Group-wise int8 quantisation: a port of lib/llm/quant.ts with the same arithmetic. JavaScript
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

// max|v| / 127 in float32, Math.max semantics (a NaN makes the maximum NaN).
float groupScale(const float* x, int len) {
  double maxAbs = 0;
  for (int i = 0; i < len; i++) {
    double a = fabs((double)x[i]);
    if (!(a == a) || !(maxAbs == maxAbs)) maxAbs = NAN;
    else if (a > maxAbs) maxAbs = a;
  }
  return (float)(maxAbs / 127);
}

// The int8 value of v in a group of that scale, as a double (before the Int8Array store).
double quantizeValue(float v, float scale) {
  return scale == 0 ? 0 : roundHalfAway((double)(float)((double)v / (double)scale));
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

int ml_aligned_group_size(int n, int limit) {
  for (int g = n < limit ? n : limit; g > 1; g--) {
    if (n % g == 0) return g;
  }
  return 1;
}

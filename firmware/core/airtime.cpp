#include "airtime.h"

#include <math.h>

double ml_time_on_air_ms(size_t payloadBytes, const MlModulation& m) {
  const double symbolMs = ldexp(1.0, m.sf) / m.bandwidthKHz;
  const bool ldro = symbolMs >= 16;
  const bool legacy = m.sf >= 7;
  const double preamble = m.preambleSymbols + (m.sf <= 6 ? 6.25 : 4.25);
  const double bits = 8.0 * (double)payloadBytes + 16 - 4.0 * m.sf + (legacy ? 8 : 0) + 20;
  const double bitsPerBlock = 4.0 * (m.sf - (legacy && ldro ? 2 : 0));
  const double payload = 8 + ceil(fmax(bits, 0) / bitsPerBlock) * m.codingRate;
  return (preamble + payload) * symbolMs;
}

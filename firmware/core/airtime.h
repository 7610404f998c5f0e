// LoRa time on air (Semtech's formula): a port of lib/radio/airtime.ts timeOnAirMs, in the
// same double arithmetic, so a node's slot arithmetic agrees with the gateway's MAC and the
// simulated channel to the bit. Explicit header, payload CRC, low-data-rate optimisation on
// exactly when a symbol lasts 16 ms or more.
#pragma once
#include <stddef.h>
#include <stdint.h>

struct MlModulation {
  int sf;             // 5..12
  int bandwidthKHz;   // 125, 250, 500
  int codingRate;     // 5..8 (4/x)
  int preambleSymbols = 8;
};

double ml_time_on_air_ms(size_t payloadBytes, const MlModulation& m);

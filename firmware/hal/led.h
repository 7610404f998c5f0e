// The LED HAL: one RGB status LED (a WS2812 on the ESP32 boards; the host prints the state).
// The colour for each node state comes from the core (node_state.h), so every build shows
// the same thing.
#pragma once
#include <stdint.h>

class MlLedHal {
 public:
  virtual ~MlLedHal() = default;
  virtual void show(uint8_t r, uint8_t g, uint8_t b) = 0;
};

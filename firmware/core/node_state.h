// What a radio head node is doing, as one event stream: the host build prints each change
// ("[radio-1] state: computing layer 3"), the ESP32 build shows it on its WS2812 LED in the
// colour below. docs/FIRMWARE.md lists the colours.
#pragma once
#include <stdint.h>

enum MlNodeState {
  ML_STATE_IDLE,       // dim white: listening, nothing under way
  ML_STATE_RECEIVING,  // blue: fragments of layer L's broadcast arriving
  ML_STATE_COMPUTING,  // yellow: its heads on a complete broadcast
  ML_STATE_SENDING,    // green: its result (or a NACK) on the air
  ML_STATE_ERROR,      // red: a refused shard, radio or broadcast
  ML_STATE_OFFLINE,    // off: not started, or stopped
  ML_STATE_COUNT
};

struct MlRgb {
  uint8_t r, g, b;
};

const char* ml_state_name(MlNodeState s);  // "idle", "receiving", ...
MlRgb ml_state_colour(MlNodeState s);

#include "node_state.h"

namespace {
struct StateInfo {
  const char* name;
  MlRgb colour;
};
const StateInfo STATES[ML_STATE_COUNT] = {
    {"idle", {8, 8, 8}},        {"receiving", {0, 0, 64}}, {"computing", {64, 48, 0}},
    {"sending", {0, 64, 0}},    {"error", {64, 0, 0}},     {"offline", {0, 0, 0}},
};
}  // namespace

const char* ml_state_name(MlNodeState s) { return s < ML_STATE_COUNT ? STATES[s].name : "unknown"; }
MlRgb ml_state_colour(MlNodeState s) { return s < ML_STATE_COUNT ? STATES[s].colour : MlRgb{64, 0, 0}; }

// The node's join record: its part of the gateway MAC's plan (slot channel, offset and
// length, guard, frame size, modulation, its sub-band's duty cycle and dwell limit, the result
// encoding) and what the mesh expects of it (model geometry, heads), as JSON. The simulated
// channel sends it in its WELCOME (lib/radio/sim-socket.ts SimWelcome); an ESP32 keeps it in
// NVS under "join", written when it is provisioned with its shard.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "radio_node.h"

// Fills the radio node's configuration (all but address, mesh id and key) and what the mesh
// expects; false and why when the JSON is not a join record.
bool ml_radio_join_parse(const char* json, size_t len, MlRadioNodeConfig* c, MlConfig* model, std::vector<int>* heads, std::string* err);

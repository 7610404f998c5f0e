// A node's sensor readings as the JSON of schemas/sensors.json (what the gateway accepts on
// mesh-llm/{mesh}/sensors/{node}): present channels only, null for a sensor that gave nothing.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>

#include "../hal/sensors.h"

const char* ml_sensor_channel_name(MlSensorChannel c);  // "soundDb", ...
std::string ml_sensor_json(const std::string& node, double atMs, const MlSensorReadings& r);

// The readings as the radio's sensor report (lib/radio/sensor-report.ts): u8 version 1, u8 mask
// of present channels (bit c: MlSensorChannel c), then each present reading as float32 LE (NaN:
// the sensor gave nothing). out holds ML_SENSOR_REPORT_MAX_BYTES; returns the length, 0 when a
// reading is infinite (refused: the gateway would refuse it too).
static const size_t ML_SENSOR_REPORT_MAX_BYTES = 2 + 4 * ML_SENSOR_CHANNELS;
size_t ml_sensor_report_encode(const MlSensorReadings& r, uint8_t* out);

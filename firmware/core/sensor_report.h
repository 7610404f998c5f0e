// A node's sensor readings as the JSON of schemas/sensors.json (what the gateway accepts on
// mesh-llm/{mesh}/sensors/{node}): present channels only, null for a sensor that gave nothing.
#pragma once
#include <string>

#include "../hal/sensors.h"

const char* ml_sensor_channel_name(MlSensorChannel c);  // "soundDb", ...
std::string ml_sensor_json(const std::string& node, double atMs, const MlSensorReadings& r);

#include "sensor_report.h"

#include <math.h>

#include "json.h"

const char* ml_sensor_channel_name(MlSensorChannel c) {
  static const char* names[ML_SENSOR_CHANNELS] = {"soundDb", "vibrationG", "lightLux", "temperatureC", "humidityPct"};
  return c < ML_SENSOR_CHANNELS ? names[c] : "unknown";
}

std::string ml_sensor_json(const std::string& node, double atMs, const MlSensorReadings& r) {
  std::string readings;
  for (int c = 0; c < ML_SENSOR_CHANNELS; c++) {
    if (!r.present[c]) continue;
    const double v = r.value[c];
    readings += (readings.empty() ? "" : ",") + json_quote(ml_sensor_channel_name((MlSensorChannel)c)) + ":" + (isfinite(v) ? json_number((float)v) : "null");
  }
  return "{\"protocol\":1,\"node\":" + json_quote(node) + ",\"at\":" + json_number(atMs) + ",\"readings\":{" + readings + "}}";
}

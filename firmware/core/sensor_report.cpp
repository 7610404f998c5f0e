#include "sensor_report.h"

#include <math.h>
#include <string.h>

#include "json.h"
#include "link.h"

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

size_t ml_sensor_report_encode(const MlSensorReadings& r, uint8_t* out) {
  out[0] = 1;
  out[1] = 0;
  size_t n = 2;
  for (int c = 0; c < ML_SENSOR_CHANNELS; c++) {
    if (!r.present[c]) continue;
    const float v = r.value[c];
    if (isinf(v)) return 0;
    out[1] |= (uint8_t)(1 << c);
    uint32_t bits;
    memcpy(&bits, &v, 4);
    ml_write_le(out + n, 4, bits);
    n += 4;
  }
  return n;
}

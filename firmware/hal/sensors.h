// The sensor HAL: one reading per channel the project steers by, in the units of
// schemas/sensors.json (soundDb, vibrationG, lightLux, temperatureC, humidityPct). A board
// without a sensor for a channel leaves it out; a sensor that gave nothing is NaN.
#pragma once

enum MlSensorChannel { ML_SOUND_DB, ML_VIBRATION_G, ML_LIGHT_LUX, ML_TEMPERATURE_C, ML_HUMIDITY_PCT, ML_SENSOR_CHANNELS };

struct MlSensorReadings {
  bool present[ML_SENSOR_CHANNELS];
  float value[ML_SENSOR_CHANNELS];  // NaN: the sensor gave nothing this time
};

class MlSensorHal {
 public:
  virtual ~MlSensorHal() = default;
  // Starts the buses and sensors; a sensor that does not answer is left out, not an error.
  virtual void begin() = 0;
  // One reading of every present channel (called on the node's schedule).
  virtual void read(MlSensorReadings* out) = 0;
};

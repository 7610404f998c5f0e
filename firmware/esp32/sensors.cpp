// The sensors behind the sensor HAL, through their maintained Arduino libraries (lib_deps in
// platformio.ini) and ESP-IDF's I2S driver for the microphone. NOT compiled in CI.
#include <Adafruit_BME280.h>
#include <Adafruit_LIS3DH.h>
#include <Adafruit_MPU6050.h>
#include <Adafruit_SHT31.h>
#include <BH1750.h>
#include <Wire.h>
#include <driver/i2s.h>
#include <math.h>

#include "esp32_hal.h"

namespace {
Adafruit_MPU6050 mpu;
Adafruit_LIS3DH lis;
BH1750 bh1750;
Adafruit_SHT31 sht31;
Adafruit_BME280 bme280;

const i2s_port_t MIC_PORT = I2S_NUM_0;
const int MIC_RATE = 16000;
// INMP441: -26 dBFS at 94 dB SPL (1 kHz), 24 bits left-justified in 32
const float MIC_DBFS_AT_94 = -26.0f;

bool startMic() {
  i2s_config_t c = {};
  c.mode = (i2s_mode_t)(I2S_MODE_MASTER | I2S_MODE_RX);
  c.sample_rate = MIC_RATE;
  c.bits_per_sample = I2S_BITS_PER_SAMPLE_32BIT;
  c.channel_format = I2S_CHANNEL_FMT_ONLY_LEFT;
  c.communication_format = I2S_COMM_FORMAT_STAND_I2S;
  c.dma_buf_count = 4;
  c.dma_buf_len = 256;
  i2s_pin_config_t pins = {};
  pins.bck_io_num = ML_PIN_I2S_SCK;
  pins.ws_io_num = ML_PIN_I2S_WS;
  pins.data_out_num = I2S_PIN_NO_CHANGE;
  pins.data_in_num = ML_PIN_I2S_SD;
  return i2s_driver_install(MIC_PORT, &c, 0, nullptr) == ESP_OK && i2s_set_pin(MIC_PORT, &pins) == ESP_OK;
}
}  // namespace

void MlEsp32Sensors::begin() {
  Wire.begin(ML_PIN_I2C_SDA, ML_PIN_I2C_SCL);
  mic_ = startMic();
  mpu_ = mpu.begin();
  if (mpu_) mpu.setAccelerometerRange(MPU6050_RANGE_4_G);
  lis_ = !mpu_ && lis.begin(0x18);
  if (lis_) lis.setRange(LIS3DH_RANGE_4_G);
  bh_ = bh1750.begin(BH1750::CONTINUOUS_HIGH_RES_MODE);
  sht_ = sht31.begin(0x44);
  bme_ = !sht_ && bme280.begin(0x76);
}

// RMS of 100 ms of samples as dB SPL.
float MlEsp32Sensors::soundDb() {
  int32_t samples[256];
  double sum = 0;
  size_t count = 0;
  while (count < MIC_RATE / 10) {
    size_t got = 0;
    if (i2s_read(MIC_PORT, samples, sizeof samples, &got, pdMS_TO_TICKS(50)) != ESP_OK || got == 0) return NAN;
    for (size_t i = 0; i < got / 4; i++) {
      const double s = (samples[i] >> 8) / 8388608.0;  // 24-bit full scale = 1
      sum += s * s;
    }
    count += got / 4;
  }
  const double dbfs = 10 * log10(sum / count + 1e-20);
  return (float)(94.0 + dbfs - MIC_DBFS_AT_94);
}

// RMS of the acceleration without gravity over 50 samples, in g.
float MlEsp32Sensors::vibrationG() {
  const int N = 50;
  double m[N];
  double mean = 0;
  for (int i = 0; i < N; i++) {
    sensors_event_t a, g, t;
    if (mpu_) mpu.getEvent(&a, &g, &t);
    else lis.getEvent(&a);
    m[i] = sqrt(a.acceleration.x * a.acceleration.x + a.acceleration.y * a.acceleration.y + a.acceleration.z * a.acceleration.z) / 9.80665;
    mean += m[i] / N;
    delay(2);
  }
  double var = 0;
  for (int i = 0; i < N; i++) var += (m[i] - mean) * (m[i] - mean) / N;
  return (float)sqrt(var);
}

void MlEsp32Sensors::read(MlSensorReadings* out) {
  for (int c = 0; c < ML_SENSOR_CHANNELS; c++) out->present[c] = false, out->value[c] = NAN;
  if (mic_) out->present[ML_SOUND_DB] = true, out->value[ML_SOUND_DB] = soundDb();
  if (mpu_ || lis_) out->present[ML_VIBRATION_G] = true, out->value[ML_VIBRATION_G] = vibrationG();
  if (bh_) out->present[ML_LIGHT_LUX] = true, out->value[ML_LIGHT_LUX] = bh1750.readLightLevel();
  if (sht_) {
    out->present[ML_TEMPERATURE_C] = out->present[ML_HUMIDITY_PCT] = true;
    out->value[ML_TEMPERATURE_C] = sht31.readTemperature();
    out->value[ML_HUMIDITY_PCT] = sht31.readHumidity();
  } else if (bme_) {
    out->present[ML_TEMPERATURE_C] = out->present[ML_HUMIDITY_PCT] = true;
    out->value[ML_TEMPERATURE_C] = bme280.readTemperature();
    out->value[ML_HUMIDITY_PCT] = bme280.readHumidity();
  }
}

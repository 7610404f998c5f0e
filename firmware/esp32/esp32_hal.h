// The ESP32-S3 implementations of the HAL (firmware/hal): thin wrappers over RadioLib, the
// Arduino-ESP32 core, ESP-IDF and the sensor vendors' maintained libraries. Everything the node
// decides is in firmware/core, compiled and tested on the host; this layer is NOT compiled in
// CI (PlatformIO's toolchains cannot be fetched there): see docs/FIRMWARE.md.
#pragma once
#include <Arduino.h>
#include <RadioLib.h>

#include <vector>

#include "../boards/pins.h"
#include "../hal/clock.h"
#include "../hal/led.h"
#include "../hal/radio.h"
#include "../hal/sensors.h"
#include "../hal/storage.h"

// SX1262 or SX1276 through RadioLib: begin, startReceive, the RX_DONE interrupt (DIO1 on the
// SX1262, DIO0 on the SX1276), scheduled transmit, RSSI and SNR of each packet.
class MlRadioLibRadio : public MlRadioHal {
 public:
  bool begin(const MlRadioSettings& s, std::string* err) override;
  bool startReceive(uint32_t frequencyHz) override;
  bool transmit(const uint8_t* frame, size_t len, uint32_t frequencyHz, double atMs, MlTxPurpose purpose, std::string* err) override;
  // Called from loop(): sends what is due, and hands over a frame the interrupt flagged.
  // Returns true with rx filled when a frame arrived (rx.bytes valid until the next poll).
  bool poll(double nowMs, MlReception* rx);

 private:
  struct Pending {
    std::vector<uint8_t> frame;
    uint32_t hz;
    double atMs;
  };
  std::vector<Pending> queue_;
  uint8_t buf_[256];
  uint32_t listenHz_ = 0;
  bool retune(uint32_t hz);
};

// esp_timer's microseconds as ms; wakeups kept for loop().
class MlEsp32Clock : public MlClockHal {
 public:
  double nowMs() override;
  void wakeAt(double atMs) override { wakes_.push_back(atMs); }
  // Whether a wakeup is due (and forgets it).
  bool due();

 private:
  std::vector<double> wakes_;
};

// NVS through Arduino's Preferences (namespace "mesh-llm").
class MlNvsStorage : public MlStorageHal {
 public:
  bool load(const char* key, uint8_t* out, size_t len) override;
  bool save(const char* key, const uint8_t* value, size_t len) override;
};

// The weight shard in the "shard" data partition (partitions_*.csv), mapped read-only into the
// data address space with esp_partition_mmap (the flash cache pages rows in as the head step
// reads them, so the weights need no PSRAM), and read with esp_partition_read.
class MlPartitionShard : public MlShardSource {
 public:
  bool open(std::string* err);
  size_t size() override { return size_; }
  bool read(size_t offset, uint8_t* out, size_t len) override;
  const uint8_t* mapped() override { return mapped_; }

 private:
  const void* part_ = nullptr;
  size_t size_ = 0;
  const uint8_t* mapped_ = nullptr;
  uint32_t mapHandle_ = 0;  // esp_partition_mmap_handle_t
};

// The join record (join_record.h) in the "join" data partition, as mesh-llm provision wrote it.
bool ml_read_join_partition(std::vector<uint8_t>* out, std::string* err);

// One WS2812 (Adafruit NeoPixel).
class MlWs2812Led : public MlLedHal {
 public:
  void begin();
  void show(uint8_t r, uint8_t g, uint8_t b) override;
};

// INMP441 (I2S) sound level, MPU-6050 or LIS3DH vibration, BH1750 light, SHT31 or BME280
// temperature and humidity; whichever answers on the board's I2C bus.
class MlEsp32Sensors : public MlSensorHal {
 public:
  void begin() override;
  void read(MlSensorReadings* out) override;

 private:
  bool mic_ = false, mpu_ = false, lis_ = false, bh_ = false, sht_ = false, bme_ = false;
  float soundDb();
  float vibrationG();
};

// Clock, storage, shard partition and LED on the ESP32-S3. NOT compiled in CI (docs/FIRMWARE.md).
#include <Adafruit_NeoPixel.h>
#include <Preferences.h>
#include <esp_partition.h>
#include <esp_timer.h>

#include "esp32_hal.h"

double MlEsp32Clock::nowMs() { return esp_timer_get_time() / 1000.0; }

bool MlEsp32Clock::due() {
  const double now = nowMs();
  for (size_t i = 0; i < wakes_.size(); i++)
    if (wakes_[i] <= now) {
      wakes_.erase(wakes_.begin() + i);
      return true;
    }
  return false;
}

namespace {
Preferences prefs;
Adafruit_NeoPixel pixel(1, ML_PIN_WS2812, NEO_GRB + NEO_KHZ800);
}  // namespace

bool MlNvsStorage::load(const char* key, uint8_t* out, size_t len) {
  prefs.begin("mesh-llm", true);
  const bool ok = prefs.getBytes(key, out, len) == len;
  prefs.end();
  return ok;
}

bool MlNvsStorage::save(const char* key, const uint8_t* value, size_t len) {
  prefs.begin("mesh-llm", false);
  const bool ok = prefs.putBytes(key, value, len) == len;  // NVS commits before returning
  prefs.end();
  return ok;
}

bool MlPartitionShard::open(std::string* err) {
  const esp_partition_t* p = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, (esp_partition_subtype_t)0x40, "shard");
  if (!p) {
    *err = "no \"shard\" data partition: flash with the project's partitions CSV";
    return false;
  }
  part_ = p;
  // the partition is larger than the shard: the header's sizes say where it ends
  uint8_t h[56];
  if (esp_partition_read(p, 0, h, sizeof h) != ESP_OK) {
    *err = "the shard partition cannot be read";
    return false;
  }
  size_ = (size_t)(h[46] | h[47] << 8) + (size_t)(h[48] | h[49] << 8 | h[50] << 16 | (uint32_t)h[51] << 24);
  if (size_ > p->size) size_ = p->size;  // ml_shard_open then names the mismatch
  // the rows in place: the MMU maps the partition (64 KiB pages) into the data address space
  const void* at = nullptr;
  esp_partition_mmap_handle_t handle;
  if (esp_partition_mmap(p, 0, size_, ESP_PARTITION_MMAP_DATA, &at, &handle) == ESP_OK) {
    mapped_ = (const uint8_t*)at;
    mapHandle_ = (uint32_t)handle;
  }  // else read (copied into PSRAM) as before
  return true;
}

bool ml_read_join_partition(std::vector<uint8_t>* out, std::string* err) {
  const esp_partition_t* p = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, (esp_partition_subtype_t)0x41, "join");
  if (!p) {
    *err = "no \"join\" data partition: flash with the project's partitions CSV";
    return false;
  }
  out->resize(p->size < 4096 ? p->size : 4096);  // a record is at most 4 KiB (lib/firmware/join-record.ts)
  if (esp_partition_read(p, 0, out->data(), out->size()) != ESP_OK) {
    *err = "the join partition cannot be read";
    return false;
  }
  return true;
}

bool MlPartitionShard::read(size_t offset, uint8_t* out, size_t len) {
  return esp_partition_read((const esp_partition_t*)part_, offset, out, len) == ESP_OK;
}

void MlWs2812Led::begin() {
  pixel.begin();
  pixel.clear();
  pixel.show();
}

void MlWs2812Led::show(uint8_t r, uint8_t g, uint8_t b) {
  pixel.setPixelColor(0, pixel.Color(r, g, b));
  pixel.show();
}

// The host's storage HAL: each key a small file in a folder, written durably (a temporary
// file, fsync, rename), as NVS commits on the ESP32.
#pragma once
#include <string>

#include "../../hal/storage.h"

class MlFileStorage : public MlStorageHal {
 public:
  explicit MlFileStorage(const std::string& dir) : dir_(dir) {}
  bool load(const char* key, uint8_t* out, size_t len) override;
  bool save(const char* key, const uint8_t* value, size_t len) override;

 private:
  std::string dir_;
};

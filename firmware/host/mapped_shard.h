// The host's weight shard in place: the shard file mmap'd read-only (the host counterpart of
// esp_partition_mmap of the ESP32's shard partition). The head group computes from its rows
// where they lie in the page cache: clean, shared, file-backed pages the kernel can drop and
// read again, not a private copy of the weights.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>

#include "../hal/storage.h"

class MlMappedFileShard : public MlShardSource {
 public:
  ~MlMappedFileShard() override;
  bool open(const char* path, std::string* err);
  size_t size() override { return size_; }
  bool read(size_t offset, uint8_t* out, size_t len) override;
  const uint8_t* mapped() override { return base_; }

 private:
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

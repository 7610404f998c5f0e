// The storage HAL: small values that survive a reboot (NVS on the ESP32, a file on the host),
// and the weight shard (a flash data partition on the ESP32, a file on the host).
#pragma once
#include <stddef.h>
#include <stdint.h>

class MlStorageHal {
 public:
  virtual ~MlStorageHal() = default;
  // false when the key was never saved (or cannot be read).
  virtual bool load(const char* key, uint8_t* out, size_t len) = 0;
  // Durable once it returns true.
  virtual bool save(const char* key, const uint8_t* value, size_t len) = 0;
};

// Read-only bytes of a weight shard (shard.h).
class MlShardSource {
 public:
  virtual ~MlShardSource() = default;
  virtual size_t size() = 0;
  virtual bool read(size_t offset, uint8_t* out, size_t len) = 0;
  // The shard's bytes mapped read-only into the address space (mmap of the file on the host,
  // esp_partition_mmap of the shard partition on the ESP32), valid while the source lives; the
  // head group then computes from the rows where they lie. nullptr: not mapped, the rows are
  // read (copied) into RAM.
  virtual const uint8_t* mapped() { return nullptr; }
};

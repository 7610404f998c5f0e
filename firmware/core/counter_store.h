// The node's own frame counter across reboots (docs/PROTOCOL.md, "Replay": a node that
// restarts must restore its counter). Writing flash on every frame would wear it out, so the
// store reserves counters in blocks, as LoRaWAN devices do: it saves `reserved = next + BLOCK`
// before the counter reaches the saved value, and after a reboot starts at the saved value,
// which is above every counter used before the reboot (up to BLOCK counters are skipped).
#pragma once
#include <stdint.h>

#include <string>

#include "../hal/storage.h"

class MlCounterStore {
 public:
  static const uint32_t BLOCK = 64;
  // Reads the saved reservation (0 on a first boot); false and why when storage fails.
  bool begin(MlStorageHal* storage, const char* key, std::string* err);
  // The counter to start at: above every one used before.
  uint32_t start() const { return start_; }
  // Called before a frame under `counter` goes out: extends the reservation when needed.
  // false (the frame must not go out) when the reservation cannot be saved.
  bool use(uint32_t counter, std::string* err);
  uint32_t saves() const { return saves_; }

 private:
  MlStorageHal* storage_ = nullptr;
  std::string key_;
  uint32_t start_ = 0, reserved_ = 0, saves_ = 0;
};

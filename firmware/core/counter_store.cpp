#include "counter_store.h"

#include "link.h"

bool MlCounterStore::begin(MlStorageHal* storage, const char* key, std::string* err) {
  storage_ = storage;
  key_ = key;
  uint8_t b[4];
  reserved_ = storage->load(key, b, 4) ? ml_read_le(b, 4) : 0;
  start_ = reserved_;
  return use(start_, err);
}

bool MlCounterStore::use(uint32_t counter, std::string* err) {
  if (counter < reserved_) return true;
  if (counter > UINT32_MAX - BLOCK) {
    *err = "the frame counter is exhausted: the mesh needs a new key";
    return false;
  }
  const uint32_t next = counter + BLOCK;
  uint8_t b[4];
  ml_write_le(b, 4, next);
  if (!storage_->save(key_.c_str(), b, 4)) {
    *err = ml_format("could not save the frame counter reservation %u", (unsigned)next);
    return false;
  }
  reserved_ = next;
  saves_++;
  return true;
}

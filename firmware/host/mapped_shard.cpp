#include "mapped_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

MlMappedFileShard::~MlMappedFileShard() {
  if (base_) munmap(base_, size_);
}

bool MlMappedFileShard::open(const char* path, std::string* err) {
  const int fd = ::open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    *err = std::string(path) + " cannot be opened: " + strerror(errno);
    if (fd >= 0) close(fd);
    return false;
  }
  size_ = (size_t)st.st_size;
  void* p = size_ ? mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  const int mapErrno = errno;
  close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) {
    *err = std::string(path) + (size_ ? std::string(" cannot be mapped: ") + strerror(mapErrno) : " is empty");
    size_ = 0;
    return false;
  }
  base_ = (uint8_t*)p;
  return true;
}

bool MlMappedFileShard::read(size_t offset, uint8_t* out, size_t len) {
  if (!base_ || offset > size_ || len > size_ - offset) return false;
  memcpy(out, base_ + offset, len);
  return true;
}

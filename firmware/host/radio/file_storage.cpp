#include "file_storage.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

bool MlFileStorage::load(const char* key, uint8_t* out, size_t len) {
  FILE* f = fopen((dir_ + "/" + key).c_str(), "rb");
  if (!f) return false;
  const bool ok = fread(out, 1, len, f) == len;
  fclose(f);
  return ok;
}

bool MlFileStorage::save(const char* key, const uint8_t* value, size_t len) {
  mkdir(dir_.c_str(), 0755);
  const std::string path = dir_ + "/" + key, tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return false;
  const bool ok = write(fd, value, len) == (ssize_t)len && fsync(fd) == 0;
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

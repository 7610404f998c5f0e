#include "sim_radio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "link.h"

double ml_read_f64(const uint8_t* p) {
  uint64_t u = 0;
  for (int i = 7; i >= 0; i--) u = (u << 8) | p[i];
  double v;
  memcpy(&v, &u, 8);
  return v;
}

void ml_write_f64(uint8_t* p, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
}

MlSimRadio::~MlSimRadio() {
  if (fd_ >= 0) close(fd_);
}

bool MlSimRadio::connect(const std::string& path, std::string* err) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    *err = "socket path " + path + " is too long";
    return false;
  }
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd_ < 0 || ::connect(fd_, (sockaddr*)&a, sizeof a) != 0) {
    *err = "cannot reach the simulated channel at " + path + ": " + strerror(errno);
    return false;
  }
  return true;
}

bool MlSimRadio::sendMessage(uint8_t type, const uint8_t* body, size_t len) {
  std::vector<uint8_t> m(3 + len);
  ml_write_le(m.data(), 2, (uint32_t)(1 + len));
  m[2] = type;
  if (len) memcpy(&m[3], body, len);
  for (size_t at = 0; at < m.size();) {
    const ssize_t n = write(fd_, m.data() + at, m.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    at += (size_t)n;
  }
  return true;
}

bool MlSimRadio::next(uint8_t* type, std::vector<uint8_t>* body) {
  for (;;) {
    if (in_.size() >= 2) {
      const size_t len = ml_read_le(in_.data(), 2);
      if (len >= 1 && in_.size() >= 2 + len) {
        *type = in_[2];
        body->assign(in_.begin() + 3, in_.begin() + 2 + (long)len);
        in_.erase(in_.begin(), in_.begin() + 2 + (long)len);
        return true;
      }
    }
    uint8_t buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return false;  // a signal: let the caller look
    if (n <= 0) return false;
    in_.insert(in_.end(), buf, buf + n);
  }
}

bool MlSimRadio::buffered() const { return in_.size() >= 2 && in_.size() >= 2 + ml_read_le(in_.data(), 2); }

bool MlSimRadio::begin(const MlRadioSettings&, std::string* err) {
  if (fd_ < 0) {
    *err = "not attached to the simulated channel";
    return false;
  }
  return true;
}

bool MlSimRadio::startReceive(uint32_t) { return fd_ >= 0; }

bool MlSimRadio::transmit(const uint8_t* frame, size_t len, uint32_t frequencyHz, double atMs, MlTxPurpose purpose, std::string* err) {
  std::vector<uint8_t> b(13 + len);
  b[0] = purpose;
  ml_write_le(&b[1], 4, frequencyHz);
  ml_write_f64(&b[5], atMs);
  memcpy(&b[13], frame, len);
  if (!sendMessage(ML_SIM_TX, b.data(), b.size())) {
    *err = "the simulated channel is gone";
    return false;
  }
  return true;
}

void MlSimRadio::wakeAt(double atMs) {
  uint8_t b[8];
  ml_write_f64(b, atMs);
  sendMessage(ML_SIM_WAKE_AT, b, 8);
}

bool MlSimRadio::hello(uint8_t address) { return sendMessage(ML_SIM_HELLO, &address, 1); }
bool MlSimRadio::done() { return sendMessage(ML_SIM_DONE, nullptr, 0); }

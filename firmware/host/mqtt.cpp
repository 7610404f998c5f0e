#include "mqtt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t mqtt_now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

namespace {

enum : uint8_t { CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, SUBSCRIBE = 8, SUBACK = 9, PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14 };

void putLength(std::vector<uint8_t>& b, size_t n) {
  do {
    uint8_t byte = n % 128;
    n /= 128;
    if (n > 0) byte |= 0x80;
    b.push_back(byte);
  } while (n > 0);
}

void putU16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back((uint8_t)(v >> 8));
  b.push_back((uint8_t)v);
}

void putString(std::vector<uint8_t>& b, const std::string& s) {
  putU16(b, (uint16_t)s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// A packet: fixed header byte, remaining length, then body.
void packet(std::vector<uint8_t>& out, uint8_t first, const std::vector<uint8_t>& body) {
  out.clear();
  out.push_back(first);
  putLength(out, body.size());
  out.insert(out.end(), body.begin(), body.end());
}

const char* connackReason(int code) {
  switch (code) {
    case 1: return "unacceptable protocol version";
    case 2: return "identifier rejected";
    case 3: return "server unavailable";
    case 4: return "bad username or password";
    case 5: return "not authorized";
  }
  return "refused";
}

}  // namespace

MqttClient::~MqttClient() {
  if (fd_ >= 0) close(fd_);
}

uint16_t MqttClient::packetId() {
  uint16_t id = nextId_++;
  if (nextId_ == 0) nextId_ = 1;
  return id;
}

bool MqttClient::sendAll(const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd_, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd pf = {fd_, POLLOUT, 0};
        ::poll(&pf, 1, 1000);
        continue;
      }
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  lastSendMs_ = mqtt_now_ms();
  return true;
}

bool MqttClient::connect(const MqttOptions& o, int timeoutMs, std::string* err) {
  keepAliveSec_ = o.keepAliveSec;
  struct addrinfo hints = {}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(o.port);
  int rc = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    *err = "cannot resolve " + o.host + ": " + gai_strerror(rc);
    return false;
  }
  std::string lastError = "no address";
  for (struct addrinfo* a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      fd_ = fd;
      break;
    }
    lastError = strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  if (fd_ < 0) {
    *err = lastError;
    return false;
  }
  std::vector<uint8_t> body;
  putString(body, "MQTT");
  body.push_back(4);  // protocol level 3.1.1
  uint8_t flags = 0x02;  // clean session
  if (!o.willTopic.empty()) flags |= 0x04 | (uint8_t)((o.willQos & 3) << 3) | (o.willRetain ? 0x20 : 0);
  if (!o.username.empty()) flags |= 0x80;
  if (!o.password.empty()) flags |= 0x40;
  body.push_back(flags);
  putU16(body, (uint16_t)o.keepAliveSec);
  putString(body, o.clientId);
  if (!o.willTopic.empty()) {
    putString(body, o.willTopic);
    putString(body, o.willPayload);
  }
  if (!o.username.empty()) putString(body, o.username);
  if (!o.password.empty()) putString(body, o.password);
  packet(out_, CONNECT << 4, body);
  if (!sendAll(out_.data(), out_.size())) {
    *err = std::string("cannot send CONNECT: ") + strerror(errno);
    return false;
  }
  // CONNACK: 0x20 0x02 flags code
  uint64_t deadline = mqtt_now_ms() + timeoutMs;
  while (in_.size() - inStart_ < 4) {
    int left = (int)(deadline - mqtt_now_ms());
    struct pollfd pf = {fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&pf, 1, left) <= 0) {
      *err = "no CONNACK within " + std::to_string(timeoutMs) + " ms";
      return false;
    }
    uint8_t buf[64];
    ssize_t r = recv(fd_, buf, sizeof buf, 0);
    if (r <= 0) {
      *err = r == 0 ? "the broker closed the connection" : strerror(errno);
      return false;
    }
    in_.insert(in_.end(), buf, buf + r);
  }
  const uint8_t* p = in_.data() + inStart_;
  if (p[0] != (CONNACK << 4) || p[1] != 2) {
    *err = "the broker answered CONNECT with something other than CONNACK";
    return false;
  }
  if (p[3] != 0) {
    *err = std::string("connection refused: ") + connackReason(p[3]);
    return false;
  }
  inStart_ += 4;
  return true;
}

bool MqttClient::subscribe(const std::vector<std::string>& topics, int qos, int timeoutMs, std::string* err) {
  std::vector<uint8_t> body;
  putU16(body, packetId());
  for (const auto& t : topics) {
    putString(body, t);
    body.push_back((uint8_t)qos);
  }
  packet(out_, (SUBSCRIBE << 4) | 0x02, body);
  if (!sendAll(out_.data(), out_.size())) {
    *err = std::string("cannot send SUBSCRIBE: ") + strerror(errno);
    return false;
  }
  subacked_ = false;
  uint64_t deadline = mqtt_now_ms() + timeoutMs;
  while (!subacked_) {
    int left = (int)(deadline - mqtt_now_ms());
    if (left <= 0) {
      *err = "no SUBACK within " + std::to_string(timeoutMs) + " ms";
      return false;
    }
    if (!poll(left, err)) return false;
  }
  return true;
}

bool MqttClient::publish(const std::string& topic, const uint8_t* payload, size_t len, int qos, bool retain) {
  out_.clear();
  out_.push_back((uint8_t)((PUBLISH << 4) | ((qos & 3) << 1) | (retain ? 1 : 0)));
  putLength(out_, 2 + topic.size() + (qos > 0 ? 2 : 0) + len);
  putString(out_, topic);
  if (qos > 0) {
    putU16(out_, packetId());
    unacked_++;
  }
  out_.insert(out_.end(), payload, payload + len);
  return sendAll(out_.data(), out_.size());
}

bool MqttClient::poll(int timeoutMs, std::string* err) {
  struct pollfd pf = {fd_, POLLIN, 0};
  int r = ::poll(&pf, 1, timeoutMs);
  if (r < 0 && errno != EINTR) {
    *err = strerror(errno);
    return false;
  }
  if (r <= 0) return true;
  return readAvailable(err);
}

bool MqttClient::readAvailable(std::string* err) {
  for (;;) {
    uint8_t buf[16384];
    ssize_t r = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (r == 0) {
      *err = "the broker closed the connection";
      return false;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      *err = strerror(errno);
      return false;
    }
    in_.insert(in_.end(), buf, buf + r);
    if ((size_t)r < sizeof buf) break;
  }
  return handlePackets(err);
}

bool MqttClient::handlePackets(std::string* err) {
  for (;;) {
    const uint8_t* p = in_.data() + inStart_;
    size_t avail = in_.size() - inStart_;
    if (avail < 2) break;
    size_t len = 0, mult = 1, i = 1;
    bool complete = false;
    for (; i < avail && i <= 4; i++) {
      len += (p[i] & 0x7f) * mult;
      mult *= 128;
      if (!(p[i] & 0x80)) {
        complete = true;
        break;
      }
    }
    if (!complete) {
      if (i > 4) {
        *err = "malformed remaining length from the broker";
        return false;
      }
      break;
    }
    size_t header = i + 1;
    if (avail < header + len) break;
    const uint8_t type = p[0] >> 4;
    const uint8_t* body = p + header;
    if (type == PUBLISH) {
      int qos = (p[0] >> 1) & 3;
      if (len < 2) {
        *err = "malformed PUBLISH from the broker";
        return false;
      }
      size_t tlen = ((size_t)body[0] << 8) | body[1];
      size_t off = 2 + tlen + (qos > 0 ? 2 : 0);
      if (off > len) {
        *err = "malformed PUBLISH from the broker";
        return false;
      }
      std::string topic((const char*)body + 2, tlen);
      if (qos == 1) {
        uint8_t ack[4] = {PUBACK << 4, 2, body[2 + tlen], body[3 + tlen]};
        if (!sendAll(ack, 4)) {
          *err = "cannot send PUBACK";
          return false;
        }
      }
      if (handler_) handler_(topic, body + off, len - off);
    } else if (type == PUBACK) {
      if (unacked_ > 0) unacked_--;
    } else if (type == SUBACK) {
      subacked_ = true;
      for (size_t k = 2; k < len; k++)
        if (body[k] == 0x80) {
          *err = "the broker refused a subscription";
          return false;
        }
    }
    // CONNACK repeats, PINGRESP: nothing to do
    inStart_ += header + len;
  }
  if (inStart_ == in_.size()) {
    in_.clear();
    inStart_ = 0;
  } else if (inStart_ > 65536) {
    in_.erase(in_.begin(), in_.begin() + inStart_);
    inStart_ = 0;
  }
  return true;
}

void MqttClient::keepAlive(uint64_t nowMs) {
  if (keepAliveSec_ > 0 && nowMs - lastSendMs_ >= (uint64_t)keepAliveSec_ * 500) {
    uint8_t ping[2] = {PINGREQ << 4, 0};
    sendAll(ping, 2);
  }
}

bool MqttClient::flush(int timeoutMs) {
  uint64_t deadline = mqtt_now_ms() + timeoutMs;
  std::string err;
  while (unacked_ > 0) {
    int left = (int)(deadline - mqtt_now_ms());
    if (left <= 0 || !poll(left, &err)) return false;
  }
  return true;
}

void MqttClient::disconnect() {
  if (fd_ < 0) return;
  uint8_t d[2] = {DISCONNECT << 4, 0};
  sendAll(d, 2);
  shutdown(fd_, SHUT_WR);
  close(fd_);
  fd_ = -1;
}

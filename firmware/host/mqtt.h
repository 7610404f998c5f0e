// A minimal MQTT 3.1.1 client over a POSIX TCP socket, enough for a head node: CONNECT (with
// credentials and a last will), SUBSCRIBE, PUBLISH at QoS 0 and 1, PUBACK of received QoS 1
// messages, PINGREQ, DISCONNECT. TCP_NODELAY is set before CONNECT is written (a small frame
// is never held back waiting for an ACK). Single-threaded: the caller polls.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <functional>
#include <string>
#include <vector>

struct MqttOptions {
  std::string host;
  int port = 1883;
  std::string clientId;
  std::string username;  // empty: none
  std::string password;
  int keepAliveSec = 30;
  std::string willTopic;  // empty: no will
  std::string willPayload;
  int willQos = 1;
  bool willRetain = true;
};

class MqttClient {
 public:
  using Handler = std::function<void(const std::string& topic, const uint8_t* payload, size_t len)>;
  ~MqttClient();
  // TCP connect, CONNECT, wait for CONNACK (timeoutMs). false and a sentence in err on failure.
  bool connect(const MqttOptions& o, int timeoutMs, std::string* err);
  // SUBSCRIBE and wait for the SUBACK (messages arriving meanwhile go to the handler).
  bool subscribe(const std::vector<std::string>& topics, int qos, int timeoutMs, std::string* err);
  bool publish(const std::string& topic, const uint8_t* payload, size_t len, int qos, bool retain);
  // Waits up to timeoutMs for data, then handles every complete packet. false when the
  // connection is gone (err says why).
  bool poll(int timeoutMs, std::string* err);
  // Reads without waiting (after an external poll said the socket is readable).
  bool readAvailable(std::string* err);
  // Sends PINGREQ when nothing was sent for half the keep-alive interval.
  void keepAlive(uint64_t nowMs);
  // Waits until every QoS 1 message sent so far is acknowledged, or timeoutMs passed.
  bool flush(int timeoutMs);
  void disconnect();
  int fd() const { return fd_; }
  void onMessage(Handler h) { handler_ = std::move(h); }

 private:
  int fd_ = -1;
  int keepAliveSec_ = 30;
  uint16_t nextId_ = 1;
  int unacked_ = 0;
  bool subacked_ = false;
  uint64_t lastSendMs_ = 0;
  std::vector<uint8_t> in_;
  size_t inStart_ = 0;
  std::vector<uint8_t> out_;
  Handler handler_;
  bool sendAll(const uint8_t* p, size_t n);
  bool handlePackets(std::string* err);
  uint16_t packetId();
};

uint64_t mqtt_now_ms();

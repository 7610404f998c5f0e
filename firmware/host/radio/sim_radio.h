// The host's radio and clock HALs: a simulated SX1262 that joins the project's simulated LoRa
// channel (lib/radio/channel.ts) through a unix socket the simulator listens on
// (lib/radio/sim-socket.ts defines the messages; docs/RADIO.md, "Native radio nodes"). The
// simulator decides airtime, collisions, half duplex, loss and the duty-cycle law; this side
// only carries frames and the simulator's time. Every RX, WAKE and WELCOME the simulator
// sends holds its clock until this side answers DONE, so simulated time stands still while
// the node computes.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "../../hal/clock.h"
#include "../../hal/radio.h"

// Message types (lib/radio/sim-socket.ts SIM_MESSAGES).
enum MlSimMessage : uint8_t {
  ML_SIM_HELLO = 0x01,
  ML_SIM_TX = 0x02,
  ML_SIM_WAKE_AT = 0x03,
  ML_SIM_DONE = 0x04,
  ML_SIM_WELCOME = 0x81,
  ML_SIM_TX_RESULT = 0x82,
  ML_SIM_RX = 0x83,
  ML_SIM_WAKE = 0x84,
  ML_SIM_REFUSED = 0x85,
};

// The address a HELLO gives for the gateway's radio (a modem's host build).
static const uint8_t ML_SIM_GATEWAY_ADDRESS = 0;

class MlSimRadio : public MlRadioHal, public MlClockHal {
 public:
  ~MlSimRadio() override;
  bool connect(const std::string& path, std::string* err);
  int fd() const { return fd_; }

  // MlRadioHal: the modulation is the channel's (the simulator's); begin and startReceive only check it is there.
  bool begin(const MlRadioSettings& s, std::string* err) override;
  bool startReceive(uint32_t frequencyHz) override;
  bool transmit(const uint8_t* frame, size_t len, uint32_t frequencyHz, double atMs, MlTxPurpose purpose, std::string* err) override;
  // MlClockHal: the simulator's time, as its last message gave it.
  double nowMs() override { return nowMs_; }
  void wakeAt(double atMs) override;

  bool hello(uint8_t address);
  bool done();
  // Blocks for the next message from the simulator: its type and body. false when the socket closed.
  bool next(uint8_t* type, std::vector<uint8_t>* body);
  // Whether a whole message is already buffered (poll would not say so).
  bool buffered() const;
  void setNow(double ms) { nowMs_ = ms; }

 private:
  int fd_ = -1;
  double nowMs_ = 0;
  std::vector<uint8_t> in_;
  bool sendMessage(uint8_t type, const uint8_t* body, size_t len);
};

// Little-endian float64 (the simulator's times).
double ml_read_f64(const uint8_t* p);
void ml_write_f64(uint8_t* p, double v);

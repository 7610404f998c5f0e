// The radio HAL: what the firmware core needs of a LoRa transceiver. The ESP32-S3 build drives
// an SX1262 or SX1276 through RadioLib (firmware/esp32/radio_radiolib.cpp); the host build is a
// simulated SX1262 attached to the project's simulated LoRa channel over a local socket
// (firmware/host/sim_radio.cpp), where airtime, collisions, half duplex and loss are decided.
// Times are in ms on the clock HAL's time base.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>

struct MlRadioSettings {
  uint32_t frequencyHz;      // the receive (broadcast) channel
  uint8_t sf;                // spreading factor 7..12
  uint16_t bandwidthKHz;     // 125, 250, 500
  uint8_t codingRate;        // denominator of 4/x: 5..8
  int8_t powerDbm;           // transmit power
  uint16_t preambleSymbols;  // 8
  uint8_t syncWord;          // 0x12: a private network
};

// One received frame, as the modem reports it at RX_DONE.
struct MlReception {
  const uint8_t* bytes;
  size_t len;
  double endMs;        // when its last symbol arrived
  uint32_t frequencyHz;
  int16_t rssiDbm;
  float snrDb;
};

// What a transmission is, for the simulator's airtime accounting (a real radio ignores it).
enum MlTxPurpose : uint8_t { ML_TX_NONE = 0, ML_TX_RESULT = 1, ML_TX_RESENT = 2, ML_TX_NACK = 3 };  // NONE: not in the head step's airtime account (a sensor report)

class MlRadioHal {
 public:
  virtual ~MlRadioHal() = default;
  // Configures the modem; false and a sentence when the chip does not answer or refuses a setting.
  virtual bool begin(const MlRadioSettings& s, std::string* err) = 0;
  // Listens on a frequency until the next transmit (half duplex) and after it.
  virtual bool startReceive(uint32_t frequencyHz) = 0;
  // Sends a frame starting at atMs (at once when atMs is now or past); false and why when the
  // radio refuses it (busy, duty cycle, bad length). Reception resumes after it.
  virtual bool transmit(const uint8_t* frame, size_t len, uint32_t frequencyHz, double atMs, MlTxPurpose purpose, std::string* err) = 0;
};

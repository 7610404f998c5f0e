// The gateway's serial LoRa modem framing, as a radio-modem firmware build speaks it on its
// UART or USB CDC: a port of gateway-bridge/serial.ts (the one definition; docs/PROTOCOL.md,
// "Serial LoRa modem"). Each message is followed by its CRC-16/CCITT-FALSE (little-endian),
// COBS-encoded and terminated by 0x00. Messages: TX (host to modem: u16 token, u32 tmst, u32
// frequency, u8 SF, u16 bandwidth kHz, u8 coding rate, i8 power, frame), TX_ACK (u16 token, u8
// status), RX (modem to host: u16 token, u32 tmst, u32 frequency, u8 SF, u16 bandwidth, u8
// coding rate, i16 RSSI, i8 SNR in 0.25 dB, frame), RX_ACK (u16 token).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

enum MlModemType : uint8_t { ML_MODEM_TX = 0x01, ML_MODEM_TX_ACK = 0x02, ML_MODEM_RX = 0x03, ML_MODEM_RX_ACK = 0x04 };
enum MlTxStatus : uint8_t { ML_TX_OK = 0, ML_TX_TOO_LATE = 1, ML_TX_BUSY = 2, ML_TX_DUTY_CYCLE = 3, ML_TX_BAD_PARAMETER = 4 };

struct MlModemMessage {
  uint8_t type = 0;
  uint16_t token = 0;
  uint32_t tmst = 0;          // TX, RX
  uint32_t frequencyHz = 0;   // TX, RX
  uint8_t sf = 0;
  uint16_t bandwidthKHz = 0;
  uint8_t codingRate = 0;
  int8_t powerDbm = 0;        // TX
  int16_t rssi = 0;           // RX
  int8_t snrQuarterDb = 0;    // RX
  uint8_t status = 0;         // TX_ACK
  std::vector<uint8_t> payload;  // TX, RX
};

uint16_t ml_crc16(const uint8_t* p, size_t n);  // CRC-16/CCITT-FALSE: "123456789" gives 0x29B1
std::vector<uint8_t> ml_cobs_encode(const uint8_t* p, size_t n);
bool ml_cobs_decode(const uint8_t* p, size_t n, std::vector<uint8_t>* out);

// One message, CRC and COBS applied, with its 0x00 delimiter: the bytes to write to the port.
std::vector<uint8_t> ml_modem_encode(const MlModemMessage& m);
// A decoded (COBS removed) frame with its CRC: the message, or false and serial.ts's reason.
bool ml_modem_decode(const uint8_t* p, size_t n, MlModemMessage* out, std::string* why);

// Splits the byte stream at 0x00 and decodes; what fails is counted and dropped.
class MlModemReader {
 public:
  // Feeds bytes; calls onMessage for each whole message.
  template <typename F>
  void push(const uint8_t* p, size_t n, F onMessage) {
    for (size_t i = 0; i < n; i++) {
      if (p[i] != 0) {
        if (buf_.size() < 1024) buf_.push_back(p[i]);
        continue;
      }
      if (buf_.empty()) continue;
      std::vector<uint8_t> raw;
      MlModemMessage m;
      std::string why;
      if (ml_cobs_decode(buf_.data(), buf_.size(), &raw) && ml_modem_decode(raw.data(), raw.size(), &m, &why)) onMessage(m);
      else malformed++;
      buf_.clear();
    }
  }
  uint64_t malformed = 0;

 private:
  std::vector<uint8_t> buf_;
};

// The modem's microsecond counter (32 bits) and the instant nearest nowMs it names
// (gateway-bridge/modem-time.ts).
uint32_t ml_timestamp_us(double ms);
double ml_from_timestamp_us(uint32_t tmst, double nowMs);

// The gateway's radio modem on an ESP32-S3 devkit with an SX1262, on USB serial: the same
// serial side as the host build (host/modem/modem_main.cpp, core/modem.cpp), RadioLib as its
// radio. It listens on the gateway's receive channel(s) and transmits TX frames at their tmst
// (its esp_timer microseconds). NOT compiled in CI (docs/FIRMWARE.md).
#include "esp32_hal.h"
#include "modem.h"

#ifndef ML_MODEM_RX_HZ
#define ML_MODEM_RX_HZ 868100000  // EU868 replies, 1-channel plan; set per region
#endif
#ifndef ML_MODEM_SF
#define ML_MODEM_SF 7
#endif

namespace {
MlRadioLibRadio radio;
MlEsp32Clock clock_;
MlModemReader reader;
uint16_t nextToken = 1;
const MlRadioSettings settings{ML_MODEM_RX_HZ, ML_MODEM_SF, 125, 5, 14, 8, 0x12};

void sendToHost(const MlModemMessage& m) {
  const std::vector<uint8_t> b = ml_modem_encode(m);
  Serial.write(b.data(), b.size());
}

void onHost(const MlModemMessage& m) {
  if (m.type != ML_MODEM_TX) return;  // RX_ACK: this build does not pace on it
  MlModemMessage ack;
  ack.type = ML_MODEM_TX_ACK;
  ack.token = m.token;
  const double now = clock_.nowMs();
  const double at = ml_from_timestamp_us(m.tmst, now);
  std::string err;
  if (m.sf != settings.sf || m.bandwidthKHz != settings.bandwidthKHz || m.codingRate != settings.codingRate) ack.status = ML_TX_BAD_PARAMETER;
  else if (at < now - 1) ack.status = ML_TX_TOO_LATE;
  else ack.status = radio.transmit(m.payload.data(), m.payload.size(), m.frequencyHz, at, (MlTxPurpose)0, &err) ? ML_TX_OK : ML_TX_BUSY;
  sendToHost(ack);
}
}  // namespace

void setup() {
  Serial.begin(115200);
  std::string err;
  if (!radio.begin(settings, &err) || !radio.startReceive(settings.frequencyHz)) {
    for (;;) delay(1000);  // the host sees no answer to its TX and says so
  }
}

void loop() {
  uint8_t buf[256];
  const size_t n = Serial.available() ? Serial.read(buf, sizeof buf) : 0;
  if (n) reader.push(buf, n, onHost);
  MlReception rx;
  if (radio.poll(clock_.nowMs(), &rx)) {
    MlModemMessage m;
    m.type = ML_MODEM_RX;
    m.token = nextToken;
    nextToken = (uint16_t)(nextToken % 0xffff + 1);
    m.tmst = ml_timestamp_us(rx.endMs);
    m.frequencyHz = rx.frequencyHz;
    m.sf = settings.sf;
    m.bandwidthKHz = settings.bandwidthKHz;
    m.codingRate = settings.codingRate;
    m.rssi = rx.rssiDbm;
    m.snrQuarterDb = (int8_t)(rx.snrDb * 4);
    m.payload.assign(rx.bytes, rx.bytes + rx.len);
    sendToHost(m);
  }
}

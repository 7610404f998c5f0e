// RadioLib behind the radio HAL. NOT compiled in CI (docs/FIRMWARE.md).
#include "esp32_hal.h"

namespace {

#if defined(ML_RADIO_SX1262)
SX1262 chip = new Module(ML_PIN_LORA_NSS, ML_PIN_LORA_DIO1, ML_PIN_LORA_RST, ML_PIN_LORA_BUSY);
#else
SX1276 chip = new Module(ML_PIN_LORA_NSS, ML_PIN_LORA_DIO0, ML_PIN_LORA_RST, ML_PIN_LORA_DIO1);
#endif

volatile bool received = false;
void IRAM_ATTR onRxDone() { received = true; }  // DIO1 (SX1262) / DIO0 (SX1276): RX_DONE

}  // namespace

bool MlRadioLibRadio::begin(const MlRadioSettings& s, std::string* err) {
  SPI.begin(ML_PIN_LORA_SCK, ML_PIN_LORA_MISO, ML_PIN_LORA_MOSI, ML_PIN_LORA_NSS);
#if defined(ML_RADIO_SX1262)
  int state = chip.begin(s.frequencyHz / 1e6f, (float)s.bandwidthKHz, s.sf, s.codingRate, s.syncWord, s.powerDbm, s.preambleSymbols, ML_LORA_TCXO_VOLTS);
  if (state == RADIOLIB_ERR_NONE) state = chip.setDio2AsRfSwitch(true);
#else
  int state = chip.begin(s.frequencyHz / 1e6f, (float)s.bandwidthKHz, s.sf, s.codingRate, s.syncWord, s.powerDbm, s.preambleSymbols);
#endif
  if (state == RADIOLIB_ERR_NONE) state = chip.setCRC(true);  // the mesh's frames carry the payload CRC (airtime.ts counts it)
  if (state != RADIOLIB_ERR_NONE) {
    *err = "the LoRa transceiver refused its settings (RadioLib error " + std::to_string(state) + ")";
    return false;
  }
  chip.setPacketReceivedAction(onRxDone);
  listenHz_ = s.frequencyHz;
  return true;
}

bool MlRadioLibRadio::retune(uint32_t hz) { return chip.setFrequency(hz / 1e6f) == RADIOLIB_ERR_NONE; }

bool MlRadioLibRadio::startReceive(uint32_t frequencyHz) {
  listenHz_ = frequencyHz;
  return retune(frequencyHz) && chip.startReceive() == RADIOLIB_ERR_NONE;
}

bool MlRadioLibRadio::transmit(const uint8_t* frame, size_t len, uint32_t frequencyHz, double atMs, MlTxPurpose, std::string* err) {
  if (len == 0 || len > 255) {
    *err = "a LoRa payload is 1..255 bytes";
    return false;
  }
  queue_.push_back(Pending{std::vector<uint8_t>(frame, frame + len), frequencyHz, atMs});
  return true;
}

bool MlRadioLibRadio::poll(double nowMs, MlReception* rx) {
  // due transmissions, in order: half duplex, so reception stops meanwhile
  while (!queue_.empty() && queue_.front().atMs <= nowMs) {
    Pending p = queue_.front();
    queue_.erase(queue_.begin());
    retune(p.hz);
    chip.transmit(p.frame.data(), p.frame.size());  // blocks for the time on air
    startReceive(listenHz_);
  }
  if (!received) return false;
  received = false;
  const size_t n = chip.getPacketLength();
  const int state = chip.readData(buf_, n);
  chip.startReceive();
  if (state != RADIOLIB_ERR_NONE) return false;  // CRC error: the core never sees it
  *rx = MlReception{buf_, n, nowMs, listenHz_, (int16_t)chip.getRSSI(), chip.getSNR()};
  return true;
}

#include "modem.h"

#include <math.h>

#include "link.h"

uint16_t ml_crc16(const uint8_t* p, size_t n) {
  uint16_t crc = 0xffff;
  for (size_t i = 0; i < n; i++) {
    crc ^= (uint16_t)(p[i] << 8);
    for (int k = 0; k < 8; k++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

std::vector<uint8_t> ml_cobs_encode(const uint8_t* p, size_t n) {
  std::vector<uint8_t> out(1, 0);
  size_t codeAt = 0;
  uint8_t code = 1;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == 0) {
      out[codeAt] = code;
      codeAt = out.size();
      out.push_back(0);
      code = 1;
    } else {
      out.push_back(p[i]);
      if (++code == 0xff) {
        out[codeAt] = code;
        codeAt = out.size();
        out.push_back(0);
        code = 1;
      }
    }
  }
  out[codeAt] = code;
  return out;
}

bool ml_cobs_decode(const uint8_t* p, size_t n, std::vector<uint8_t>* out) {
  out->clear();
  size_t i = 0;
  while (i < n) {
    const uint8_t code = p[i];
    if (code == 0 || i + code > n) return false;
    for (size_t j = 1; j < code; j++) {
      if (p[i + j] == 0) return false;
      out->push_back(p[i + j]);
    }
    i += code;
    if (code != 0xff && i < n) out->push_back(0);
  }
  return true;
}

std::vector<uint8_t> ml_modem_encode(const MlModemMessage& m) {
  std::vector<uint8_t> b;
  switch (m.type) {
    case ML_MODEM_TX:
    case ML_MODEM_RX: {
      const size_t header = m.type == ML_MODEM_TX ? 16 : 18;
      b.assign(header, 0);
      b[0] = m.type;
      ml_write_le(&b[1], 2, m.token);
      ml_write_le(&b[3], 4, m.tmst);
      ml_write_le(&b[7], 4, m.frequencyHz);
      b[11] = m.sf;
      ml_write_le(&b[12], 2, m.bandwidthKHz);
      b[14] = m.codingRate;
      if (m.type == ML_MODEM_TX) b[15] = (uint8_t)m.powerDbm;
      else {
        ml_write_le(&b[15], 2, (uint16_t)m.rssi);
        b[17] = (uint8_t)m.snrQuarterDb;
      }
      b.insert(b.end(), m.payload.begin(), m.payload.end());
      break;
    }
    case ML_MODEM_TX_ACK:
      b = {m.type, 0, 0, m.status};
      ml_write_le(&b[1], 2, m.token);
      break;
    default:
      b = {m.type, 0, 0};
      ml_write_le(&b[1], 2, m.token);
  }
  const uint16_t crc = ml_crc16(b.data(), b.size());
  b.push_back((uint8_t)crc);
  b.push_back((uint8_t)(crc >> 8));
  std::vector<uint8_t> out = ml_cobs_encode(b.data(), b.size());
  out.push_back(0);
  return out;
}

bool ml_modem_decode(const uint8_t* p, size_t n, MlModemMessage* out, std::string* why) {
  if (n < 3) {
    *why = "too short";
    return false;
  }
  if (ml_crc16(p, n - 2) != (uint16_t)ml_read_le(p + n - 2, 2)) {
    *why = "CRC mismatch";
    return false;
  }
  n -= 2;
  MlModemMessage m;
  m.type = p[0];
  if (n < 3) {
    *why = "too short";
    return false;
  }
  m.token = (uint16_t)ml_read_le(p + 1, 2);
  switch (m.type) {
    case ML_MODEM_TX:
    case ML_MODEM_RX: {
      const size_t header = m.type == ML_MODEM_TX ? 16 : 18;
      if (n < header) {
        *why = ml_format("a %s of %zu bytes (at least %zu)", m.type == ML_MODEM_TX ? "TX" : "RX", n, header);
        return false;
      }
      m.tmst = ml_read_le(p + 3, 4);
      m.frequencyHz = ml_read_le(p + 7, 4);
      m.sf = p[11];
      m.bandwidthKHz = (uint16_t)ml_read_le(p + 12, 2);
      m.codingRate = p[14];
      if (m.type == ML_MODEM_TX) m.powerDbm = (int8_t)p[15];
      else {
        m.rssi = (int16_t)ml_read_le(p + 15, 2);
        m.snrQuarterDb = (int8_t)p[17];
      }
      m.payload.assign(p + header, p + n);
      break;
    }
    case ML_MODEM_TX_ACK:
      if (n != 4) {
        *why = "a TX_ACK is 4 bytes";
        return false;
      }
      m.status = p[3];
      break;
    case ML_MODEM_RX_ACK:
      if (n != 3) {
        *why = "an RX_ACK is 3 bytes";
        return false;
      }
      break;
    default:
      *why = ml_format("unknown message type %u", (unsigned)m.type);
      return false;
  }
  *out = m;
  return true;
}

uint32_t ml_timestamp_us(double ms) { return (uint32_t)fmod(round(ms * 1000), 4294967296.0); }

double ml_from_timestamp_us(uint32_t tmst, double nowMs) {
  const double WRAP = 4294967296.0;
  const double nowUs = round(nowMs * 1000);
  double delta = fmod((double)tmst - fmod(nowUs, WRAP) + WRAP, WRAP);
  if (delta >= WRAP / 2) delta -= WRAP;
  return (nowUs + delta) / 1000;
}

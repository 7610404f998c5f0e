// The LoRa radio frame (radio_frame.h): a port of lib/radio/frame.ts, with its reasons and details.
#include "radio_frame.h"

#include <string.h>

#include <algorithm>

#include <mbedtls/cipher.h>
#include <mbedtls/cmac.h>

namespace {

// The first 4 bytes of AES-128-CMAC (RFC 4493) of data under key; false if mbedTLS fails.
bool mic(const uint8_t* key, const uint8_t* data, size_t len, uint8_t out[ML_RADIO_MIC_BYTES]) {
  uint8_t tag[16];
  const mbedtls_cipher_info_t* aes = mbedtls_cipher_info_from_type(MBEDTLS_CIPHER_AES_128_ECB);
  if (!aes || mbedtls_cipher_cmac(aes, key, 128, data, len, tag) != 0) return false;
  memcpy(out, tag, ML_RADIO_MIC_BYTES);
  return true;
}

// Compares without an early exit, so the time taken does not tell how much of a MIC was right.
bool sameBytes(const uint8_t* a, const uint8_t* b, size_t n) {
  uint8_t diff = 0;
  for (size_t i = 0; i < n; i++) diff |= (uint8_t)(a[i] ^ b[i]);
  return diff == 0;
}

uint32_t rawField(const MlRadioHeader& h, int field) {
  switch (field) {
    case ML_RADIO_FIELD_VERSION: return ML_RADIO_VERSION;
    case ML_RADIO_FIELD_KIND: return h.kind;
    case ML_RADIO_FIELD_MESH_ID: return h.meshId;
    case ML_RADIO_FIELD_SOURCE: return h.source;
    case ML_RADIO_FIELD_DESTINATION: return h.destination;
    case ML_RADIO_FIELD_COUNTER: return h.counter;
    case ML_RADIO_FIELD_MESSAGE_NUMBER: return h.messageNumber;
    case ML_RADIO_FIELD_FRAGMENT_INDEX: return h.fragmentIndex;
    default: return h.fragmentCount;
  }
}

// A message's name as one number, and as lib/radio/frame.ts messageKey writes it ("source/number",
// "sensors source/number" for a sensor report).
const uint32_t SENSORS_BIT = 1u << 24;
uint32_t messageKey(uint8_t source, uint16_t messageNumber, uint8_t kind = ML_FRAME_FRAGMENT) {
  return (kind == ML_FRAME_SENSORS ? SENSORS_BIT : 0) | (uint32_t)source << 16 | messageNumber;
}
std::string keyText(uint32_t key) { return ml_format("%s%u/%u", key & SENSORS_BIT ? "sensors " : "", (key >> 16) & 0xff, key & 0xffff); }

bool cmac(const uint8_t* key, const uint8_t* data, size_t len, uint8_t out[16]) {
  const mbedtls_cipher_info_t* aes = mbedtls_cipher_info_from_type(MBEDTLS_CIPHER_AES_128_ECB);
  return aes && mbedtls_cipher_cmac(aes, key, 128, data, len, out) == 0;
}

const size_t COMPLETED_MEMORY = 256;  // finished messages remembered, so late copies are duplicates
const size_t PARTIAL_MEMORY = 256;    // messages under way at once; the oldest is forgotten beyond

}  // namespace

const char* ml_radio_reject_name(MlRadioReject r) {
  static const char* const names[] = {"accepted", "length", "version", "type", "mesh", "source", "mic", "replay", "address", "fragment", "body"};
  return names[r];
}

// ---- keys -----------------------------------------------------------------------------------

bool ml_downlink_key(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t out[ML_NETWORK_KEY_BYTES]) {
  return cmac(networkKey, (const uint8_t*)"downlink", 8, out);
}

bool ml_uplink_key(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t address, uint8_t out[ML_NETWORK_KEY_BYTES]) {
  uint8_t m[7] = {'u', 'p', 'l', 'i', 'n', 'k', address};
  return cmac(networkKey, m, sizeof m, out);
}

bool ml_sealing_key(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t source, uint8_t out[ML_NETWORK_KEY_BYTES]) {
  return source == ML_RADIO_GATEWAY ? ml_downlink_key(networkKey, out) : ml_uplink_key(networkKey, source, out);
}

void MlRadioKeyring::derive(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t address) {
  if (address != ML_RADIO_GATEWAY) {
    uint8_t down[ML_NETWORK_KEY_BYTES], up[ML_NETWORK_KEY_BYTES];
    ml_downlink_key(networkKey, down);
    ml_uplink_key(networkKey, address, up);
    provision(down, up);
    return;
  }
  every(networkKey);
  mode_ = GATEWAY;
}

void MlRadioKeyring::provision(const uint8_t downlink[ML_NETWORK_KEY_BYTES], const uint8_t uplink[ML_NETWORK_KEY_BYTES]) {
  mode_ = NODE;
  memcpy(downlink_, downlink, ML_NETWORK_KEY_BYTES);
  memcpy(seal_, uplink, ML_NETWORK_KEY_BYTES);
  uplinks_.clear();
  have_.clear();
}

void MlRadioKeyring::every(const uint8_t networkKey[ML_NETWORK_KEY_BYTES]) {
  mode_ = EVERY;
  memcpy(network_, networkKey, ML_NETWORK_KEY_BYTES);
  ml_downlink_key(networkKey, downlink_);
  memcpy(seal_, downlink_, ML_NETWORK_KEY_BYTES);
  uplinks_.assign(256 * ML_NETWORK_KEY_BYTES, 0);
  have_.assign(256, false);
}

const uint8_t* MlRadioKeyring::open(uint8_t source) const {
  if (source == ML_RADIO_GATEWAY) return mode_ == GATEWAY ? nullptr : downlink_;
  if (mode_ == NODE || (mode_ == GATEWAY && source == ML_RADIO_EVERY_NODE)) return nullptr;
  uint8_t* k = &uplinks_[(size_t)source * ML_NETWORK_KEY_BYTES];
  if (!have_[source]) {
    ml_uplink_key(network_, source, k);
    have_[source] = true;
  }
  return k;
}

uint16_t ml_message_number(uint32_t seq) { return (uint16_t)(seq & 0xffff); }

size_t ml_fragment_capacity(size_t maxFrameBytes) { return maxFrameBytes - ML_RADIO_HEADER_BYTES - ML_RADIO_MIC_BYTES; }

size_t ml_radio_seal(const uint8_t key[ML_NETWORK_KEY_BYTES], const MlRadioHeader& h, const uint8_t* fragment, size_t n, uint8_t* out) {
  if (h.fragmentCount < 1 || h.fragmentIndex >= h.fragmentCount) return 0;
  if (n < 1 || n > ML_RADIO_MAX_FRAME_BYTES - ML_RADIO_HEADER_BYTES - ML_RADIO_MIC_BYTES) return 0;
  memset(out, 0, ML_RADIO_HEADER_BYTES);
  for (int i = 0; i < ML_RADIO_FIELD_COUNT; i++) {
    const uint32_t v = rawField(h, i);
    if (v > ml_field_max(ML_RADIO_FIELDS[i])) return 0;
    ml_field_write(out, ML_RADIO_FIELDS[i], v);
  }
  memcpy(out + ML_RADIO_HEADER_BYTES, fragment, n);
  const size_t signedBytes = ML_RADIO_HEADER_BYTES + n;
  if (!mic(key, out, signedBytes, out + signedBytes)) return 0;
  return signedBytes + ML_RADIO_MIC_BYTES;
}

MlRadioReject ml_radio_open(const MlRadioKeyring& keys, uint8_t meshId, const uint8_t* frame, size_t len, MlRadioFrame* out, std::string* detail) {
  if (len < ML_RADIO_MIN_FRAME_BYTES || len > ML_RADIO_MAX_FRAME_BYTES) {
    *detail = ml_format("%zu bytes; a frame has %zu..%zu", len, ML_RADIO_MIN_FRAME_BYTES, ML_RADIO_MAX_FRAME_BYTES);
    return ML_REJECT_LENGTH;
  }
  uint32_t raw[ML_RADIO_FIELD_COUNT];
  for (int i = 0; i < ML_RADIO_FIELD_COUNT; i++) raw[i] = ml_field_read(frame, ML_RADIO_FIELDS[i]);
  if (raw[ML_RADIO_FIELD_VERSION] != ML_RADIO_VERSION) {
    *detail = ml_format("version %u, expected %u", raw[ML_RADIO_FIELD_VERSION], ML_RADIO_VERSION);
    return ML_REJECT_VERSION;
  }
  const uint32_t kind = raw[ML_RADIO_FIELD_KIND];
  if (kind != ML_FRAME_FRAGMENT && kind != ML_FRAME_NACK && kind != ML_FRAME_SENSORS) {
    *detail = ml_format("unknown frame kind %u", kind);
    return ML_REJECT_TYPE;
  }
  if (raw[ML_RADIO_FIELD_MESH_ID] != meshId) {
    *detail = ml_format("mesh id %u, expected %u", raw[ML_RADIO_FIELD_MESH_ID], meshId);
    return ML_REJECT_MESH;
  }
  const uint32_t source = raw[ML_RADIO_FIELD_SOURCE];
  const uint8_t* key = keys.open((uint8_t)source);
  if (!key) {
    *detail = ml_format("a frame from %u; this radio takes none from that address", source);
    return ML_REJECT_SOURCE;
  }
  const size_t signedBytes = len - ML_RADIO_MIC_BYTES;
  uint8_t expected[ML_RADIO_MIC_BYTES];
  if (!mic(key, frame, signedBytes, expected) || !sameBytes(expected, frame + signedBytes, ML_RADIO_MIC_BYTES)) {
    *detail = ml_format("integrity code does not match the key of source %u", source);
    return ML_REJECT_MIC;
  }
  MlRadioHeader& h = out->h;
  h.kind = (uint8_t)kind;
  h.meshId = (uint8_t)raw[ML_RADIO_FIELD_MESH_ID];
  h.source = (uint8_t)raw[ML_RADIO_FIELD_SOURCE];
  h.destination = (uint8_t)raw[ML_RADIO_FIELD_DESTINATION];
  h.counter = raw[ML_RADIO_FIELD_COUNTER];
  h.messageNumber = (uint16_t)raw[ML_RADIO_FIELD_MESSAGE_NUMBER];
  h.fragmentIndex = (uint8_t)raw[ML_RADIO_FIELD_FRAGMENT_INDEX];
  h.fragmentCount = (uint8_t)raw[ML_RADIO_FIELD_FRAGMENT_COUNT];
  out->fragment = frame + ML_RADIO_HEADER_BYTES;
  out->fragmentBytes = signedBytes - ML_RADIO_HEADER_BYTES;
  return ML_RADIO_ACCEPTED;
}

// ---- NACK bodies ----------------------------------------------------------------------------

size_t ml_nack_bytes(int fragmentCount) { return 1 + (size_t)(fragmentCount + 7) / 8; }

size_t ml_nack_encode(const MlNack& n, uint8_t* out) {
  if (n.fragmentCount < 1 || n.fragmentCount > ML_RADIO_MAX_FRAGMENTS) return 0;
  const size_t len = ml_nack_bytes(n.fragmentCount);
  memset(out, 0, len);
  out[0] = (uint8_t)n.fragmentCount;
  for (int i : n.missing) {
    if (i < 0 || i >= n.fragmentCount) return 0;
    out[1 + (i >> 3)] |= (uint8_t)(1 << (i & 7));
  }
  return len;
}

bool ml_nack_decode(const uint8_t* body, size_t len, MlNack* out, std::string* err) {
  const int count = len >= 1 ? body[0] : 0;
  if (count == 0 || len != ml_nack_bytes(count)) {
    *err = ml_format("malformed NACK body of %zu bytes (fragment count %d)", len, count);
    return false;
  }
  out->fragmentCount = count;
  out->missing.clear();
  for (int i = 0; i < count; i++)
    if (body[1 + (i >> 3)] & (1 << (i & 7))) out->missing.push_back(i);
  return true;
}

// ---- sending --------------------------------------------------------------------------------

bool MlFrameSender::init(const uint8_t key[ML_NETWORK_KEY_BYTES], uint8_t meshId, uint8_t source, size_t maxFrameBytes, uint32_t counter, std::string* err) {
  if (maxFrameBytes < ML_RADIO_MIN_FRAME_BYTES || maxFrameBytes > ML_RADIO_MAX_FRAME_BYTES) {
    *err = ml_format("maximum frame size %zu: expected %zu..%zu bytes", maxFrameBytes, ML_RADIO_MIN_FRAME_BYTES, ML_RADIO_MAX_FRAME_BYTES);
    return false;
  }
  memcpy(key_, key, ML_NETWORK_KEY_BYTES);
  meshId_ = meshId;
  source_ = source;
  maxFrameBytes_ = maxFrameBytes;
  counter_ = counter;
  return true;
}

bool MlFrameSender::prepare(uint8_t kind, uint8_t destination, uint16_t messageNumber, const uint8_t* body, size_t len, MlOutgoing* out, std::string* err) const {
  const size_t capacity = ml_fragment_capacity(maxFrameBytes_);
  // as few fragments as the frame size allows, as even as that allows (lib/radio/frame.ts fragmentLayout)
  const size_t count = len == 0 ? 1 : (len + capacity - 1) / capacity;
  const size_t chunk = len == 0 ? 1 : (len + count - 1) / count;
  const bool isNack = kind == ML_FRAME_NACK;
  if (count > (isNack ? 1 : (size_t)ML_RADIO_MAX_FRAGMENTS)) {
    const std::string limit = isNack ? "a NACK has one" : ml_format("a message has at most %d", ML_RADIO_MAX_FRAGMENTS);
    *err = ml_format("a %zu-byte %s needs %zu fragments of %zu bytes; %s", len, isNack ? "NACK" : "body", count, capacity, limit.c_str());
    return false;
  }
  out->kind = kind;
  out->destination = destination;
  out->messageNumber = messageNumber;
  out->body.assign(body, body + len);
  out->chunkBytes = chunk;
  out->fragmentCount = (int)count;
  return true;
}

bool MlFrameSender::body(uint8_t destination, const uint8_t* body, size_t len, MlOutgoing* out, std::string* err) const {
  MlBodyHeader h;
  const uint8_t* payload = nullptr;
  if (!ml_body_check(body, len, &h, &payload, err)) return false;
  return prepare(ML_FRAME_FRAGMENT, destination, ml_message_number(h.seq), body, len, out, err);
}

bool MlFrameSender::sensors(uint16_t reportNumber, const uint8_t* report, size_t len, MlOutgoing* out, std::string* err) const {
  return prepare(ML_FRAME_SENSORS, ML_RADIO_GATEWAY, reportNumber, report, len, out, err);
}

bool MlFrameSender::nack(uint8_t aboutSource, uint16_t messageNumber, const MlNack& n, MlOutgoing* out, std::string* err) const {
  uint8_t body[1 + ML_RADIO_MAX_FRAGMENTS / 8 + 1];
  const size_t len = ml_nack_encode(n, body);
  if (len == 0) {
    *err = ml_format("a NACK about %d fragments lists a fragment outside 0..%d", n.fragmentCount, n.fragmentCount - 1);
    return false;
  }
  return prepare(ML_FRAME_NACK, aboutSource, messageNumber, body, len, out, err);
}

size_t MlFrameSender::frame(const MlOutgoing& m, int index, uint8_t* out) {
  if (index < 0 || index >= m.fragmentCount) return 0;
  const size_t from = (size_t)index * m.chunkBytes;
  const size_t n = std::min(m.chunkBytes, m.body.size() - from);
  const MlRadioHeader h{m.kind, meshId_, source_, m.destination, counter_, m.messageNumber, (uint8_t)index, (uint8_t)m.fragmentCount};
  const size_t len = ml_radio_seal(key_, h, m.body.data() + from, n, out);
  if (len) counter_++;
  return len;
}

// ---- receiving ------------------------------------------------------------------------------

bool MlReplayWindow::restore(MlStorageHal* storage, const char* prefix, uint8_t source, std::string* err) {
  storage_ = storage;
  prefix_ = prefix;
  kept_[source] = true;
  uint8_t b[4];
  const std::string key = prefix_ + std::to_string(source);
  if (!storage->load(key.c_str(), b, 4)) return true;  // nothing saved: a first boot
  (void)err;
  saved_[source] = last_[source] = ml_read_le(b, 4);
  heard_[source] = true;
  return true;
}

bool MlReplayWindow::check(uint8_t source, uint32_t counter, std::string* detail) {
  if (heard_[source] && counter <= last_[source]) {
    *detail = ml_format("counter %u from %u is not above %u", counter, source, last_[source]);
    return false;
  }
  if (heard_[source] && counter - last_[source] > ML_MAX_COUNTER_GAP) {
    *detail = ml_format("counter %u from %u is %u past %u; a counter moves at most %u ahead", counter, source, counter - last_[source], last_[source], ML_MAX_COUNTER_GAP);
    return false;
  }
  heard_[source] = true;
  last_[source] = counter;
  if (kept_[source] && (saves_ == 0 || counter >= saved_[source])) {
    const uint32_t floor = counter > UINT32_MAX - ML_REPLAY_SAVE_BLOCK ? UINT32_MAX : counter + ML_REPLAY_SAVE_BLOCK;
    uint8_t b[4];
    ml_write_le(b, 4, floor);
    const std::string key = prefix_ + std::to_string(source);
    // A frame is taken even when the floor cannot be saved (the window then holds until a restart).
    if (storage_->save(key.c_str(), b, 4)) {
      saved_[source] = floor;
      saves_++;
    }
  }
  return true;
}

MlReassembler::Status MlReassembler::add(const MlRadioFrame& f, std::vector<uint8_t>* body, std::vector<int>* missing, std::string* detail) {
  const uint32_t key = messageKey(f.h.source, f.h.messageNumber, f.h.kind);
  if (std::find(completed_.begin(), completed_.end(), key) != completed_.end()) return DUPLICATE;
  auto p = std::find_if(partial_.begin(), partial_.end(), [key](const Partial& x) { return x.key == key; });
  if (p == partial_.end()) {
    Partial fresh;
    fresh.key = key;
    fresh.fragments.resize(f.h.fragmentCount);
    fresh.have.assign(f.h.fragmentCount, false);
    partial_.push_back(fresh);
    if (partial_.size() > PARTIAL_MEMORY) partial_.erase(partial_.begin());
    p = partial_.end() - 1;
  }
  if (p->fragments.size() != (size_t)f.h.fragmentCount) {
    *detail = ml_format("message %s: fragment count %u after %zu", keyText(key).c_str(), f.h.fragmentCount, p->fragments.size());
    partial_.erase(p);
    return INCONSISTENT;
  }
  if (p->have[f.h.fragmentIndex]) return DUPLICATE;
  p->fragments[f.h.fragmentIndex].assign(f.fragment, f.fragment + f.fragmentBytes);
  p->have[f.h.fragmentIndex] = true;
  p->received++;
  if (p->received < (int)p->fragments.size()) {
    missing->clear();
    for (size_t i = 0; i < p->have.size(); i++)
      if (!p->have[i]) missing->push_back((int)i);
    return INCOMPLETE;
  }
  const std::vector<std::vector<uint8_t>> fragments = std::move(p->fragments);
  partial_.erase(p);
  remember(key);
  // they must tile the body: every one but the last of one length, the last no longer
  const size_t chunk = fragments[0].size(), last = fragments.size() - 1;
  for (size_t i = 1; i < fragments.size(); i++) {
    const size_t n = fragments[i].size();
    if (i < last ? n != chunk : n > chunk) {
      *detail = ml_format("message %s: fragment %zu is %zu bytes, fragment 0 is %zu: they do not tile a body", keyText(key).c_str(), i, n, chunk);
      return INCONSISTENT;
    }
  }
  body->clear();
  for (const auto& fragment : fragments) body->insert(body->end(), fragment.begin(), fragment.end());
  return COMPLETE;
}

bool MlReassembler::missing(uint8_t source, uint16_t messageNumber, std::vector<int>* out) const {
  const uint32_t key = messageKey(source, messageNumber);
  for (const Partial& p : partial_) {
    if (p.key != key) continue;
    out->clear();
    for (size_t i = 0; i < p.have.size(); i++)
      if (!p.have[i]) out->push_back((int)i);
    return true;
  }
  return false;
}

void MlReassembler::forget(uint8_t source, uint16_t messageNumber) {
  const uint32_t key = messageKey(source, messageNumber);
  partial_.erase(std::remove_if(partial_.begin(), partial_.end(), [key](const Partial& p) { return p.key == key; }), partial_.end());
  completed_.erase(std::remove(completed_.begin(), completed_.end(), key), completed_.end());
}

void MlReassembler::remember(uint32_t key) {
  completed_.push_back(key);
  if (completed_.size() > COMPLETED_MEMORY) completed_.erase(completed_.begin());
}

void MlFrameReceiver::init(const MlRadioKeyring& keys, uint8_t meshId, uint8_t address) {
  keys_ = keys;
  meshId_ = meshId;
  address_ = address;
}

MlRadioReject MlFrameReceiver::accept(const uint8_t* frame, size_t len, MlRadioFrame* out, std::string* detail) {
  const MlRadioReject opened = ml_radio_open(keys_, meshId_, frame, len, out, detail);
  if (opened != ML_RADIO_ACCEPTED) return opened;
  const MlRadioHeader& h = out->h;
  if (!replay.check(h.source, h.counter, detail)) return ML_REJECT_REPLAY;
  if (h.destination != address_ && h.destination != ML_RADIO_EVERY_NODE) {
    *detail = ml_format("frame for %u, this is %u", h.destination, address_);
    return ML_REJECT_ADDRESS;
  }
  if (h.fragmentCount == 0 || h.fragmentIndex >= h.fragmentCount) {
    *detail = ml_format("fragment %u of %u", h.fragmentIndex, h.fragmentCount);
    return ML_REJECT_FRAGMENT;
  }
  if (h.kind == ML_FRAME_NACK && h.fragmentCount != 1) {
    *detail = ml_format("a NACK in %u fragments; it travels in one frame", h.fragmentCount);
    return ML_REJECT_FRAGMENT;
  }
  return ML_RADIO_ACCEPTED;
}

MlReceiveEvent MlFrameReceiver::receive(const uint8_t* frame, size_t len) {
  MlRadioFrame f;
  MlReceiveEvent e;
  e.reason = accept(frame, len, &f, &e.detail);
  return e.reason == ML_RADIO_ACCEPTED ? file(f) : e;
}

MlReceiveEvent MlFrameReceiver::file(const MlRadioFrame& f) {
  MlReceiveEvent e;
  e.frame = f;
  const auto rejected = [&e](const std::string& detail) {
    e.kind = MlReceiveEvent::REJECTED;
    e.reason = ML_REJECT_BODY;
    e.detail = detail;
    return e;
  };
  if (f.h.kind == ML_FRAME_NACK) {
    std::string err;
    if (!ml_nack_decode(f.fragment, f.fragmentBytes, &e.nack, &err)) return rejected(err);
    e.kind = MlReceiveEvent::NACK;
    return e;
  }
  std::string detail;
  switch (reassembler.add(f, &e.body, &e.missing, &detail)) {
    case MlReassembler::DUPLICATE:
      e.kind = MlReceiveEvent::DUPLICATE;
      return e;
    case MlReassembler::INCOMPLETE:
      e.kind = MlReceiveEvent::FRAGMENT;
      return e;
    case MlReassembler::INCONSISTENT:
      return rejected(detail);
    case MlReassembler::COMPLETE:
      break;
  }
  if (f.h.kind == ML_FRAME_SENSORS) {
    e.kind = MlReceiveEvent::SENSORS;
    return e;
  }
  const std::string key = keyText(messageKey(f.h.source, f.h.messageNumber));
  const uint8_t* payload = nullptr;
  std::string err;
  if (!ml_body_check(e.body.data(), e.body.size(), &e.header, &payload, &err)) return rejected("message " + key + ": " + err);
  if (ml_message_number(e.header.seq) != f.h.messageNumber)
    return rejected(ml_format("message %s carries a body of sequence number %u, whose message number is %u", key.c_str(), e.header.seq, ml_message_number(e.header.seq)));
  e.kind = MlReceiveEvent::BODY;
  return e;
}

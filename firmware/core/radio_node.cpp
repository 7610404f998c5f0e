#include "radio_node.h"

#include <math.h>

namespace {
const size_t LAYERS_KEPT = 4;  // the gateway works on one layer at a time
}

MlRadioNode::~MlRadioNode() {
  for (auto& s : sessions_) ml_session_free(s.s);
  if (slices_) ml_slices_free(slices_);
}

bool MlRadioNode::init(const MlRadioNodeConfig& c, const MlConfig& g, MlSlices* slices, MlRadioHal* radio, MlClockHal* clock, MlCounterStore* counter, const MlRadioNodeIo& io, std::string* err,
                       MlStorageHal* replayStorage) {
  c_ = c;
  slices_ = slices;
  radio_ = radio;
  clock_ = clock;
  counter_ = counter;
  io_ = io;
  if (c.address < 1 || c.address > 254) {
    *err = ml_format("radio address %d: expected 1..254", (int)c.address);
    return false;
  }
  if (c.slotLengthMs <= c.guardMs) {
    *err = ml_format("a slot of %.1f ms leaves nothing after the %.1f ms guard", c.slotLengthMs, c.guardMs);
    return false;
  }
  g_ = g;
  MlRadioKeyring keys;
  keys.derive(c.key, c.address);
  if (!sender_.init(keys.seal(), c.meshId, c.address, c.maxFrameBytes, counter->start(), err)) return false;
  receiver_.init(keys, c.meshId, c.address);
  if (replayStorage && !receiver_.replay.restore(replayStorage, "window-", ML_RADIO_GATEWAY, err)) return false;
  setState(ML_STATE_IDLE, -1);
  return true;
}

void MlRadioNode::setState(MlNodeState s, int layer) {
  if (s == state_ && s != ML_STATE_RECEIVING && s != ML_STATE_COMPUTING) return;
  state_ = s;
  if (io_.state) io_.state(io_.ctx, s, layer);
}

void MlRadioNode::onReception(const MlReception& rx) {
  counters_.framesIn++;
  MlRadioFrame f;
  std::string detail;
  const MlRadioReject why = receiver_.accept(rx.bytes, rx.len, &f, &detail);
  if (why != ML_RADIO_ACCEPTED) {
    // The gateway's NACKs to other nodes land here as "address", other nodes' results as "source": routine, not a fault.
    counters_.rejected++;
    counters_.byReason[why]++;
    log(why == ML_REJECT_ADDRESS || why == ML_REJECT_SOURCE ? "debug" : "warn", std::string("dropped a frame (") + ml_radio_reject_name(why) + "): " + detail);
    return;
  }
  if (f.h.source != ML_RADIO_GATEWAY || f.h.kind == ML_FRAME_SENSORS) return;
  follow(f.h.messageNumber);
  MlReceiveEvent ev = receiver_.file(f);
  if (ev.kind == MlReceiveEvent::REJECTED) {
    counters_.rejected++;
    counters_.byReason[ev.reason]++;
    log("warn", std::string("dropped a frame (") + ml_radio_reject_name(ev.reason) + "): " + ev.detail);
    return;
  }
  if (ev.kind == MlReceiveEvent::NACK) {
    // The gateway asks again for fragments of this node's result.
    Layer* st = layer(f.h.messageNumber);
    if (st) {
      st->resend = ev.nack.missing;
      st->resendAsked = true;
    }
    return;
  }
  Layer* st = layerFor(f.h.messageNumber, f.h.fragmentCount);
  if (ev.kind == MlReceiveEvent::FRAGMENT) setState(ML_STATE_RECEIVING, -1);
  if (ev.kind == MlReceiveEvent::BODY) take(st, ev.body);
  if (f.h.fragmentIndex == f.h.fragmentCount - 1) bookSlot(st, rx.endMs);
}

void MlRadioNode::follow(uint16_t m) {
  if (heardGateway_ && m == latestMessage_) return;
  heardGateway_ = true;
  latestMessage_ = m;
  receiver_.reassembler.forget(ML_RADIO_GATEWAY, m);
  for (size_t i = 0; i < layers_.size(); i++)
    if (layers_[i].messageNumber == m) {
      layers_.erase(layers_.begin() + (long)i);
      break;
    }
}

MlRadioNode::Layer* MlRadioNode::layer(uint16_t m) {
  for (auto& l : layers_)
    if (l.messageNumber == m) return &l;
  return nullptr;
}

MlRadioNode::Layer* MlRadioNode::layerFor(uint16_t m, int fragmentCount) {
  Layer* st = layer(m);
  if (!st) {
    if (layers_.size() >= LAYERS_KEPT) {
      // the oldest goes, and any slot booked for it with it
      const uint16_t gone = layers_.front().messageNumber;
      layers_.erase(layers_.begin());
      for (size_t i = bookings_.size(); i-- > 0;)
        if (bookings_[i].messageNumber == gone) bookings_.erase(bookings_.begin() + (long)i);
    }
    layers_.push_back(Layer{});
    st = &layers_.back();
    st->messageNumber = m;
  }
  st->fragmentCount = fragmentCount;
  return st;
}

// A reassembled broadcast body: decoded and kept, or refused (then the node stays silent about it).
void MlRadioNode::take(Layer* st, const std::vector<uint8_t>& body) {
  std::vector<float> values(65535);
  MlBodyHeader h;
  std::string why;
  if (!ml_body_decode(body.data(), body.size(), &h, values.data(), &why)) {
  } else if (h.type == ML_BODY_STEERING) {
    return takeSteering(st, h, values);
  } else if (h.type != ML_BODY_BROADCAST) why = ml_format("a body of type %d, not a broadcast (%d)", (int)h.type, (int)ML_BODY_BROADCAST);
  else if (h.count != g_.dim) why = ml_format("a broadcast of %d values; the model's dim is %d", (int)h.count, (int)g_.dim);
  else if (h.layer >= g_.nLayers) why = ml_format("layer %d does not exist (the model has %d)", (int)h.layer, (int)g_.nLayers);
  else if (h.pos >= g_.seqLen) why = ml_format("position %d is beyond the context of %d", (int)h.pos, (int)g_.seqLen);
  if (!why.empty()) {
    counters_.rejected++;
    counters_.refusedBodies++;
    st->refused = ml_format("message %u: ", (unsigned)st->messageNumber) + why;
    log("warn", "refused a broadcast: " + st->refused);
    setState(ML_STATE_ERROR, -1);
    return;
  }
  values.resize(h.count);
  st->broadcast = h;
  st->values.swap(values);
  st->haveBroadcast = true;
}

// A steering body: the vector every session adds to its head outputs at its layer (as lib/radio/node.ts
// takeSteering; all zeros turns steering off), or refused (the node stays silent about it).
void MlRadioNode::takeSteering(Layer* st, const MlBodyHeader& h, std::vector<float>& values) {
  const int width = ml_slices_head_count(slices_) * g_.headSize;
  std::string why;
  if (h.encoding != ML_ENCODING_F32) why = ml_format("a steering body encoded %s, not f32", ml_encoding_name(h.encoding));
  else if ((int)h.count != width) why = ml_format("a steering body of %d values; this node's %d heads need %d", (int)h.count, ml_slices_head_count(slices_), width);
  else if (h.layer >= g_.nLayers) why = ml_format("steering at layer %d, which does not exist (the model has %d)", (int)h.layer, (int)g_.nLayers);
  if (!why.empty()) {
    counters_.rejected++;
    counters_.refusedBodies++;
    st->refused = ml_format("message %u: ", (unsigned)st->messageNumber) + why;
    log("warn", "refused steering: " + st->refused);
    return;
  }
  values.resize(h.count);
  bool any = false;
  for (float v : values) any = any || v != 0.0f;
  steeringVector_.swap(values);
  steeringLayer_ = any ? (int)h.layer : -1;
  st->steered = true;
  counters_.steering++;
}

// The marker ended at markerEndMs: reply in this node's slot of the round.
void MlRadioNode::bookSlot(Layer* st, double markerEndMs) {
  const double at = markerEndMs + c_.slotOffsetMs;
  if (st->slotAtMs == at) return;
  st->slotAtMs = at;
  bookings_.push_back(Booking{at, st->messageNumber});
  clock_->wakeAt(at);
}

void MlRadioNode::onTimer() {
  const double now = clock_->nowMs();
  for (;;) {
    size_t best = bookings_.size();
    for (size_t i = 0; i < bookings_.size(); i++)
      if (bookings_[i].atMs <= now + 1e-9 && (best == bookings_.size() || bookings_[i].atMs < bookings_[best].atMs)) best = i;
    if (best == bookings_.size()) return;
    const Booking b = bookings_[best];
    bookings_.erase(bookings_.begin() + (long)best);
    reply(b.messageNumber, b.atMs);
  }
}

void MlRadioNode::report(const MlSensorReadings& r) {
  uint8_t b[ML_SENSOR_REPORT_MAX_BYTES];
  const size_t n = ml_sensor_report_encode(r, b);
  if (!n) {
    log("warn", "a sensor reading is infinite: the report is not sent");
    return;
  }
  report_.assign(b, b + n);
}

void MlRadioNode::sendReport(double slotStart, double from) {
  if (report_.empty() || from < 0) return;
  MlOutgoing m;
  std::string err;
  if (!sender_.sensors(reportNumber_, report_.data(), report_.size(), &m, &err)) {
    log("error", "sensor report: " + err);
    report_.clear();
    return;
  }
  std::vector<int> all;
  for (int i = 0; i < m.fragmentCount; i++) all.push_back(i);
  if (send(m, all, slotStart, from, ML_TX_NONE) < 0) return;  // waits for the next slot
  report_.clear();
  reportNumber_++;
  counters_.sensorReports++;
}

void MlRadioNode::reply(uint16_t m, double slotStart) {
  Layer* st = layer(m);
  if (!st || !st->refused.empty()) return;
  double t = slotStart;
  if (st->steered) {
    // the acknowledgement of a steering body: a NACK that lacks nothing
    MlNack n;
    n.fragmentCount = st->fragmentCount;
    MlOutgoing ack;
    std::string err;
    if (!sender_.nack(ML_RADIO_GATEWAY, m, n, &ack, &err)) {
      log("error", "steering acknowledgement: " + err);
      return;
    }
    t = send(ack, {0}, slotStart, slotStart, ML_TX_NACK);
  } else if (st->haveBroadcast && !st->haveResult) {
    std::vector<uint8_t> body;
    if (!compute(st, &body)) return;
    std::string err;
    if (!sender_.body(ML_RADIO_GATEWAY, body.data(), body.size(), &st->result, &err)) {
      log("error", "result body: " + err);
      return;
    }
    st->haveResult = true;
    st->resendAsked = false;
    counters_.results++;
    std::vector<int> all;
    for (int i = 0; i < st->result.fragmentCount; i++) all.push_back(i);
    t = send(st->result, all, slotStart, slotStart, ML_TX_RESULT);
  } else if (st->haveResult && st->resendAsked) {
    const std::vector<int> which = st->resend;
    st->resendAsked = false;
    st->resend.clear();
    counters_.resent += which.size();
    t = send(st->result, which, slotStart, slotStart, ML_TX_RESENT);
  } else if (!st->haveBroadcast) {
    MlNack n;
    n.fragmentCount = st->fragmentCount;
    if (!receiver_.reassembler.missing(ML_RADIO_GATEWAY, m, &n.missing)) {
      n.missing.clear();
      for (int i = 0; i < st->fragmentCount; i++) n.missing.push_back(i);
    }
    MlOutgoing nack;
    std::string err;
    if (!sender_.nack(ML_RADIO_GATEWAY, m, n, &nack, &err)) {
      log("error", "NACK: " + err);
      return;
    }
    counters_.nacks++;
    t = send(nack, {0}, slotStart, slotStart, ML_TX_NACK);
  }
  sendReport(slotStart, t);
}

// This node's heads on the broadcast, as the result body it sends: signed with its address, echoing the broadcast.
bool MlRadioNode::compute(Layer* st, std::vector<uint8_t>* body) {
  const MlBodyHeader& b = st->broadcast;
  setState(ML_STATE_COMPUTING, b.layer);
  MlSession* s = session(b.session);
  if (!s) {
    log("error", "out of memory for a session's KV cache");
    setState(ML_STATE_ERROR, b.layer);
    return false;
  }
  MlSteering steering{steeringLayer_, steeringVector_.data()};
  const float* out = ml_session_forward(s, st->values.data(), b.pos, b.layer, steeringLayer_ >= 0 ? &steering : nullptr);
  MlBodyHeader h{};
  h.type = ML_BODY_RESULT;
  h.encoding = c_.resultEncoding;
  h.sender = c_.address;
  h.session = b.session;
  h.seq = b.seq;
  h.pos = b.pos;
  h.layer = b.layer;
  h.count = (uint16_t)(ml_slices_head_count(slices_) * g_.headSize);
  h.groupSize = c_.resultEncoding == ML_ENCODING_INT8 ? (uint16_t)c_.resultGroupSize : 0;
  body->resize(ml_body_bytes(h.encoding, h.count, h.groupSize));
  ml_body_encode(h, out, body->data());
  return true;
}

// Frames one after another within the slot, as the duty cycle allows; what does not fit waits for a NACK.
double MlRadioNode::send(const MlOutgoing& m, const std::vector<int>& indices, double slotStart, double from, MlTxPurpose purpose) {
  const double slotEnd = slotStart + c_.slotLengthMs - c_.guardMs;
  const char* kind = purpose == ML_TX_RESULT ? "result" : purpose == ML_TX_RESENT ? "resent" : purpose == ML_TX_NACK ? "NACK" : "sensor report";
  setState(ML_STATE_SENDING, -1);
  double t = from;
  uint8_t frame[ML_RADIO_MAX_FRAME_BYTES];
  for (int i : indices) {
    std::string err;
    if (!counter_->use(sender_.counter(), &err)) {
      log("error", err);
      setState(ML_STATE_ERROR, -1);
      return -1;
    }
    const size_t n = sender_.frame(m, i, frame);
    if (!n) continue;
    const double ms = ml_time_on_air_ms(n, c_.modulation);
    const double start = fmax(t, fmax(busyUntil_, availableAt_));
    if (start + ms > slotEnd + 1e-6 || (c_.maxDwellMs > 0 && ms > c_.maxDwellMs)) {
      counters_.dutyCycleSkips++;
      t = -1;
      break;
    }
    if (!radio_->transmit(frame, n, c_.slotHz, start, purpose, &err)) {
      counters_.radioRefusals++;
      log("warn", std::string("the radio refused a ") + kind + " frame: " + err);
      t = -1;
      break;
    }
    busyUntil_ = start + ms;
    availableAt_ = busyUntil_ + ms * (1 / c_.dutyCycle - 1);
    t = busyUntil_;
  }
  setState(ML_STATE_IDLE, -1);
  return t;
}

MlSession* MlRadioNode::session(uint32_t id) {
  for (auto& s : sessions_)
    if (s.id == id) return s.s;
  MlSession* s = ml_session_new(slices_, g_.seqLen);
  if (!s) return nullptr;
  sessions_.push_back(Session{id, s});
  while ((int)sessions_.size() > c_.maxSessions) {
    ml_session_free(sessions_.front().s);
    sessions_.erase(sessions_.begin());
  }
  return s;
}

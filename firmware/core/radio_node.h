// A head node behind the radio: what an ESP32-S3 with an SX1262 runs, and what the host build
// runs against the simulated channel. A port of lib/radio/node.ts (docs/PROTOCOL.md, "LoRa
// medium access"): it holds its shard's weight slices (its heads are fixed), listens on the
// broadcast channel, reassembles each layer's broadcast body (radio_frame.h), computes its
// heads (head_group.h) and replies in its slot of the round: its result body, the result
// fragments the gateway's NACK asked for again, or a NACK of the broadcast fragments it lacks.
// Its slot (channel, offset after the marker, length) is the gateway MAC's plan
// (lib/radio/mac.ts meshLayout), given to the node when it joins. It keeps its own duty-cycle
// clock and stays silent rather than break it; its frame counter survives reboots through the
// storage HAL (counter_store.h). Hardware only through the HAL: radio, clock.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "../hal/clock.h"
#include "../hal/radio.h"
#include "airtime.h"
#include "counter_store.h"
#include "head_group.h"
#include "node_state.h"
#include "radio_frame.h"
#include "sensor_report.h"

struct MlRadioNodeConfig {
  uint8_t address = 1;  // 1..254, the slot the mesh gateway gives it
  uint8_t meshId = 1;
  uint8_t key[ML_NETWORK_KEY_BYTES] = {};  // the network key: the node derives its two keys from it (MlRadioKeyring::derive)
  size_t maxFrameBytes = ML_RADIO_DEFAULT_FRAME_BYTES;
  MlModulation modulation{7, 125, 5, 8};
  uint32_t broadcastHz = 0;
  // The node's slot: where it replies, when after the marker's end, for how long (guard included).
  uint32_t slotHz = 0;
  double slotOffsetMs = 0, slotLengthMs = 0, guardMs = 5;
  // Its slot's sub-band: duty cycle (1 = none) and the longest transmission (0 = no limit).
  double dutyCycle = 1, maxDwellMs = 0;
  // How results are encoded (lib/radio/mac.ts meshEncodings): f32 or int8 in groups of resultGroupSize.
  uint8_t resultEncoding = ML_ENCODING_INT8;
  int resultGroupSize = 0;
  int maxSessions = 2;
};

struct MlRadioNodeCounters {
  uint64_t framesIn = 0, rejected = 0, results = 0, resent = 0, nacks = 0, dutyCycleSkips = 0, refusedBodies = 0, radioRefusals = 0, sensorReports = 0, steering = 0;
  uint64_t byReason[ML_REJECT_BODY + 1] = {};  // rejected frames by MlRadioReject
};

struct MlRadioNodeIo {
  void* ctx;
  void (*log)(void* ctx, const char* level, const std::string& message);
  void (*state)(void* ctx, MlNodeState s, int layer);  // every change of state
};

class MlRadioNode {
 public:
  ~MlRadioNode();
  // g: the model's geometry (the shard's); takes ownership of slices. replayStorage: where the
  // node keeps its replay window of the gateway's counter across reboots (key "window-0"; none:
  // it starts afresh). false and why when the configuration or the counter store fails.
  bool init(const MlRadioNodeConfig& c, const MlConfig& g, MlSlices* slices, MlRadioHal* radio, MlClockHal* clock, MlCounterStore* counter, const MlRadioNodeIo& io, std::string* err,
            MlStorageHal* replayStorage = nullptr);
  // A frame the radio received.
  void onReception(const MlReception& rx);
  // The clock HAL's wakeup: runs the slots that are due.
  void onTimer();
  // The node's sensor readings (read on its schedule, through the sensor HAL): sent to the
  // gateway as a sensor report after its reply in its next slot (its slot holds one report
  // frame when the mesh carries sensor reports). A newer reading replaces one not yet sent.
  void report(const MlSensorReadings& r);

  const MlRadioNodeCounters& counters() const { return counters_; }
  uint32_t nextCounter() const { return sender_.counter(); }

 private:
  struct Layer {
    uint16_t messageNumber = 0;
    int fragmentCount = 0;
    bool haveBroadcast = false;
    MlBodyHeader broadcast{};
    std::vector<float> values;
    std::string refused;
    bool steered = false;  // the message is this node's steering, taken: the reply is an empty NACK (the acknowledgement)
    bool haveResult = false;
    MlOutgoing result;
    std::vector<int> resend;
    bool resendAsked = false;
    double slotAtMs = -1;
  };
  struct Booking {
    double atMs;
    uint16_t messageNumber;
  };
  struct Session {
    uint32_t id;
    MlSession* s;
  };
  MlRadioNodeConfig c_;
  MlSlices* slices_ = nullptr;
  MlConfig g_{};
  MlRadioHal* radio_ = nullptr;
  MlClockHal* clock_ = nullptr;
  MlCounterStore* counter_ = nullptr;
  MlRadioNodeIo io_{};
  MlFrameSender sender_;
  MlFrameReceiver receiver_;
  MlRadioNodeCounters counters_;
  std::vector<Layer> layers_;  // oldest first, at most 4
  std::vector<Booking> bookings_;
  std::vector<Session> sessions_;  // oldest first
  bool heardGateway_ = false;
  uint16_t latestMessage_ = 0;
  // its duty-cycle clock (one sub-band, half duplex)
  double busyUntil_ = -1e300, availableAt_ = -1e300;
  MlNodeState state_ = ML_STATE_OFFLINE;
  // the sensor report waiting for a slot
  std::vector<uint8_t> report_;
  uint16_t reportNumber_ = 0;
  // the steering every session adds (a steering body from the gateway, lib/link/body.ts type 3): layer -1 none
  std::vector<float> steeringVector_;
  int steeringLayer_ = -1;

  void log(const char* level, const std::string& m) { io_.log(io_.ctx, level, m); }
  void setState(MlNodeState s, int layer);
  void follow(uint16_t messageNumber);
  Layer* layer(uint16_t messageNumber);
  Layer* layerFor(uint16_t messageNumber, int fragmentCount);
  void take(Layer* st, const std::vector<uint8_t>& body);
  void takeSteering(Layer* st, const MlBodyHeader& h, std::vector<float>& values);
  void bookSlot(Layer* st, double markerEndMs);
  void reply(uint16_t messageNumber, double slotStartMs);
  bool compute(Layer* st, std::vector<uint8_t>* body);
  // Sends the frames from fromMs within the slot; the time the last one ends, or a negative number when they did not all go.
  double send(const MlOutgoing& m, const std::vector<int>& indices, double slotStartMs, double fromMs, MlTxPurpose purpose);
  void sendReport(double slotStartMs, double fromMs);
  MlSession* session(uint32_t id);
};

// The LoRa radio frame as the firmware speaks it: how the radio carries head-link bodies
// (link.h) in fragments, and the NACKs that ask for what was lost. A port of
// lib/radio/frame.ts (the one definition; docs/PROTOCOL.md, "LoRa radio frames"), with its
// reject reasons and details; test/firmware-node.test.ts compares the header table with
// RADIO_HEADER_FIELDS and test/link-vectors.test.ts has this code open, re-seal and reassemble
// frames TypeScript sealed. No hardware calls: the radio driver hands frames in and out.
//
// A frame is at most maxFrameBytes (230 by default, less where a region's data rate says so):
//
//   byte  size  field
//   0     1     version (high nibble, 2) | kind (low nibble: 1 body fragment, 2 NACK, 3 sensor report)
//   1     1     mesh id
//   2     1     source address (0 the gateway, 1..254 head nodes)
//   3     1     destination address (255 every node)
//   4     4     frame counter of the source (strictly increasing per source)
//   8     2     message number: the low 16 bits of the body's sequence number
//   10    1     fragment index
//   11    1     fragment count (1..255)
//   12    n     fragment: body bytes [index * (maxFrameBytes - 16), + n)
//   12+n  4     MIC: the first 4 bytes of AES-128-CMAC (RFC 4493) over bytes 0 .. 11+n under the
//               source's sealing key (mbedTLS's CMAC, which ESP-IDF ships too)
//
// Keys, from the mesh's 16-byte network key K: the gateway seals under the downlink key
// AES-CMAC(K, "downlink"), which every node holds; node a under its uplink key
// AES-CMAC(K, "uplink" || a). A node opens frames from the gateway only, the gateway frames from
// nodes 1..254 only (MlRadioKeyring). Counters: strictly increasing per source and at most
// ML_MAX_COUNTER_GAP ahead of the last one taken; the replay window can be kept in storage.
//
// A message is named by its source and its message number. NACK body: u8 the fragment count
// of the message it asks about, then a bitmap of ceil(count / 8) bytes, bit i (byte i >> 3,
// bit i & 7) set when fragment i is missing; its destination and message number are the
// message's, its source the asker's. A NACK travels in one frame.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "../hal/storage.h"
#include "link.h"

static const uint8_t ML_RADIO_VERSION = 2;
static const size_t ML_RADIO_HEADER_BYTES = 12;
static const size_t ML_RADIO_MIC_BYTES = 4;
static const size_t ML_RADIO_MIN_FRAME_BYTES = ML_RADIO_HEADER_BYTES + 1 + ML_RADIO_MIC_BYTES;  // 17
static const size_t ML_RADIO_MAX_FRAME_BYTES = 255;       // LoRa's largest payload
static const size_t ML_RADIO_DEFAULT_FRAME_BYTES = 230;   // the seed's packet budget
static const int ML_RADIO_MAX_FRAGMENTS = 255;
static const uint8_t ML_RADIO_GATEWAY = 0;
static const uint8_t ML_RADIO_EVERY_NODE = 255;
static const size_t ML_NETWORK_KEY_BYTES = 16;
// How far ahead of the last counter taken from a source its next may be (lib/radio/frame.ts MAX_COUNTER_GAP).
static const uint32_t ML_MAX_COUNTER_GAP = 16384;
// Counters taken per write of a replay window's floor (lib/radio/frame.ts REPLAY_SAVE_BLOCK).
static const uint32_t ML_REPLAY_SAVE_BLOCK = 16;

// What a frame carries (lib/radio/frame.ts FRAME_KINDS).
static const uint8_t ML_FRAME_FRAGMENT = 1;  // a fragment of a head-link body
static const uint8_t ML_FRAME_NACK = 2;
static const uint8_t ML_FRAME_SENSORS = 3;   // a fragment of a node's sensor report (sensor_report.h)

// ---- keys -----------------------------------------------------------------------------------

// AES-CMAC(K, "downlink"), AES-CMAC(K, "uplink" || address), and the one frames from source carry.
bool ml_downlink_key(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t out[ML_NETWORK_KEY_BYTES]);
bool ml_uplink_key(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t address, uint8_t out[ML_NETWORK_KEY_BYTES]);
bool ml_sealing_key(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t source, uint8_t out[ML_NETWORK_KEY_BYTES]);

// The keys one radio holds (lib/radio/frame.ts RadioKeyring): the one it seals with, and those
// it opens others' frames with.
class MlRadioKeyring {
 public:
  // What the radio at address holds, from the network key (keyringOf): the gateway opens
  // nodes 1..254, a node the gateway only.
  void derive(const uint8_t networkKey[ML_NETWORK_KEY_BYTES], uint8_t address);
  // A node provisioned with its two keys only (it never holds the network key).
  void provision(const uint8_t downlink[ML_NETWORK_KEY_BYTES], const uint8_t uplink[ML_NETWORK_KEY_BYTES]);
  // Every source's key (tools and tests: everyKeyring).
  void every(const uint8_t networkKey[ML_NETWORK_KEY_BYTES]);
  const uint8_t* seal() const { return seal_; }
  // The key frames from source carry; nullptr when this radio takes none from it.
  const uint8_t* open(uint8_t source) const;

 private:
  enum Mode { NODE, GATEWAY, EVERY } mode_ = NODE;
  uint8_t network_[ML_NETWORK_KEY_BYTES] = {}, seal_[ML_NETWORK_KEY_BYTES] = {}, downlink_[ML_NETWORK_KEY_BYTES] = {};
  mutable std::vector<uint8_t> uplinks_;  // 256 x 16, filled as sources are heard (GATEWAY, EVERY)
  mutable std::vector<bool> have_;
};

// The radio header's fields in order (lib/radio/frame.ts RADIO_HEADER_FIELDS).
enum MlRadioFieldId {
  ML_RADIO_FIELD_VERSION,
  ML_RADIO_FIELD_KIND,
  ML_RADIO_FIELD_MESH_ID,
  ML_RADIO_FIELD_SOURCE,
  ML_RADIO_FIELD_DESTINATION,
  ML_RADIO_FIELD_COUNTER,
  ML_RADIO_FIELD_MESSAGE_NUMBER,
  ML_RADIO_FIELD_FRAGMENT_INDEX,
  ML_RADIO_FIELD_FRAGMENT_COUNT,
  ML_RADIO_FIELD_COUNT
};
static const MlField ML_RADIO_FIELDS[ML_RADIO_FIELD_COUNT] = {
    {"version", 0, 1, ML_HIGH_NIBBLE}, {"kind", 0, 1, ML_LOW_NIBBLE}, {"meshId", 1, 1}, {"source", 2, 1}, {"destination", 3, 1},
    {"counter", 4, 4},                 {"messageNumber", 8, 2},       {"fragmentIndex", 10, 1},          {"fragmentCount", 11, 1},
};

struct MlRadioHeader {
  uint8_t kind;
  uint8_t meshId;
  uint8_t source;
  uint8_t destination;
  uint32_t counter;
  uint16_t messageNumber;
  uint8_t fragmentIndex;
  uint8_t fragmentCount;
};

// An opened frame: its header and its fragment (pointing into the frame's bytes).
struct MlRadioFrame {
  MlRadioHeader h;
  const uint8_t* fragment;
  size_t fragmentBytes;
};

// Why a frame was dropped, in the order a receiver checks.
enum MlRadioReject {
  ML_RADIO_ACCEPTED,
  ML_REJECT_LENGTH,
  ML_REJECT_VERSION,
  ML_REJECT_TYPE,
  ML_REJECT_MESH,
  ML_REJECT_SOURCE,
  ML_REJECT_MIC,
  ML_REJECT_REPLAY,
  ML_REJECT_ADDRESS,
  ML_REJECT_FRAGMENT,
  ML_REJECT_BODY
};
// "length", "version", "type", "mesh", "source", "mic", "replay", "address", "fragment", "body".
const char* ml_radio_reject_name(MlRadioReject r);

// The message number of a body of sequence number seq: its low 16 bits.
uint16_t ml_message_number(uint32_t seq);
// Body bytes one frame carries: maxFrameBytes - 16.
size_t ml_fragment_capacity(size_t maxFrameBytes);

// Writes header, fragment [n] and MIC into out (which holds 16 + n bytes); returns 16 + n, or 0
// when the header or n is out of range (a fragment index not below a count of 1..255, a nibble
// field above 15, n not in 1..239).
size_t ml_radio_seal(const uint8_t key[ML_NETWORK_KEY_BYTES], const MlRadioHeader& h, const uint8_t* fragment, size_t n, uint8_t* out);

// A frame's own checks in order: length (17..255), version, kind, mesh id, a key for its
// source, MIC. On success fills out; otherwise a reason and, in detail, lib/radio/frame.ts
// openFrame's words.
MlRadioReject ml_radio_open(const MlRadioKeyring& keys, uint8_t meshId, const uint8_t* frame, size_t len, MlRadioFrame* out, std::string* detail);

// ---- NACK bodies ----------------------------------------------------------------------------

struct MlNack {
  int fragmentCount;         // of the message asked about, 1..255
  std::vector<int> missing;  // its missing fragment indices, ascending
};

// Bytes of a NACK body about a message of fragmentCount fragments: 1 + ceil(count / 8).
size_t ml_nack_bytes(int fragmentCount);
// Encodes a NACK body into out (ml_nack_bytes(n.fragmentCount)); 0 when a count or index is out of range.
size_t ml_nack_encode(const MlNack& n, uint8_t* out);
// Decodes a NACK body; false and lib/radio/frame.ts decodeNack's sentence in err when malformed.
bool ml_nack_decode(const uint8_t* body, size_t len, MlNack* out, std::string* err);

// ---- sending --------------------------------------------------------------------------------

// A message ready to send, and to send again in part.
struct MlOutgoing {
  uint8_t kind;
  uint8_t destination;
  uint16_t messageNumber;
  std::vector<uint8_t> body;
  size_t chunkBytes;  // bytes per fragment (all but the last, which holds the rest): as even as the count allows
  int fragmentCount;
};

// One transmitter's frames: cuts messages into fragments and stamps each with the next counter.
class MlFrameSender {
 public:
  // sealKey: the sender's own key (MlRadioKeyring::seal, ml_sealing_key); maxFrameBytes 17..255;
  // counter: of the next frame (a node restores it after a restart).
  bool init(const uint8_t sealKey[ML_NETWORK_KEY_BYTES], uint8_t meshId, uint8_t source, size_t maxFrameBytes, uint32_t counter, std::string* err);
  uint32_t counter() const { return counter_; }
  // A head-link body for destination (checked with ml_body_check; its message number comes from
  // its sequence number), or a NACK about a message; false and a sentence when it does not fit.
  bool body(uint8_t destination, const uint8_t* body, size_t len, MlOutgoing* out, std::string* err) const;
  bool nack(uint8_t aboutSource, uint16_t messageNumber, const MlNack& n, MlOutgoing* out, std::string* err) const;
  // A sensor report (sensor_report.h) for the gateway under its own report number.
  bool sensors(uint16_t reportNumber, const uint8_t* report, size_t len, MlOutgoing* out, std::string* err) const;
  // Seals fragment index of m into out (maxFrameBytes) under the next counter; returns its length (0: bad index).
  size_t frame(const MlOutgoing& m, int index, uint8_t* out);

 private:
  uint8_t key_[ML_NETWORK_KEY_BYTES] = {};
  uint8_t meshId_ = 0, source_ = 0;
  size_t maxFrameBytes_ = ML_RADIO_DEFAULT_FRAME_BYTES;
  uint32_t counter_ = 0;
  bool prepare(uint8_t kind, uint8_t destination, uint16_t messageNumber, const uint8_t* body, size_t len, MlOutgoing* out, std::string* err) const;
};

// ---- receiving ------------------------------------------------------------------------------

// Per source, the highest counter accepted: anything not above it is a replay (LoRaWAN's FCnt
// rule), anything more than ML_MAX_COUNTER_GAP above it is refused too; the first counter heard
// from a source (with nothing stored) is taken as it comes.
class MlReplayWindow {
 public:
  // Keeps the window of source in storage under "<prefix><source>": starts from the floor saved
  // there (at or above every counter taken before), and saves counter + ML_REPLAY_SAVE_BLOCK
  // whenever a counter reaches the saved floor. false and why when storage fails.
  bool restore(MlStorageHal* storage, const char* prefix, uint8_t source, std::string* err);
  // Takes the counter (and remembers it), or false and lib/radio/frame.ts ReplayWindow's words in detail.
  bool check(uint8_t source, uint32_t counter, std::string* detail);
  bool accept(uint8_t source, uint32_t counter) {
    std::string ignored;
    return check(source, counter, &ignored);
  }
  bool heard(uint8_t source) const { return heard_[source]; }
  uint32_t lastAccepted(uint8_t source) const { return last_[source]; }
  uint32_t saves() const { return saves_; }

 private:
  bool heard_[256] = {};
  uint32_t last_[256] = {};
  MlStorageHal* storage_ = nullptr;
  std::string prefix_;
  bool kept_[256] = {};      // sources whose window is kept in storage
  uint32_t saved_[256] = {}; // their saved floors
  uint32_t saves_ = 0;
};

// Collects fragments in any order and reports which are still missing; remembers its last 256
// finished messages so late copies count as duplicates, and keeps at most 256 under way.
class MlReassembler {
 public:
  enum Status { INCOMPLETE, COMPLETE, DUPLICATE, INCONSISTENT };
  // Files an opened fragment. INCOMPLETE: missing lists what the message still lacks;
  // COMPLETE: body holds the joined bytes (not yet checked); INCONSISTENT: detail says why.
  Status add(const MlRadioFrame& f, std::vector<uint8_t>* body, std::vector<int>* missing, std::string* detail);
  // Missing fragment indices of a message under way; false when none is.
  bool missing(uint8_t source, uint16_t messageNumber, std::vector<int>* out) const;
  // Forgets a message, under way or finished, so its name can start a new message.
  void forget(uint8_t source, uint16_t messageNumber);

 private:
  struct Partial {
    uint32_t key;
    std::vector<std::vector<uint8_t>> fragments;
    std::vector<bool> have;
    int received = 0;
  };
  std::vector<Partial> partial_;    // oldest first
  std::vector<uint32_t> completed_; // keys, oldest first
  void remember(uint32_t key);
};

// What a received frame did.
struct MlReceiveEvent {
  enum Kind { REJECTED, DUPLICATE, FRAGMENT, BODY, NACK, SENSORS } kind = REJECTED;
  MlRadioReject reason = ML_RADIO_ACCEPTED;  // REJECTED
  std::string detail;                        // REJECTED
  MlRadioFrame frame{};                      // all but REJECTED: the frame (BODY: the one that completed it)
  std::vector<int> missing;                  // FRAGMENT
  std::vector<uint8_t> body;                 // BODY: the whole head-link body, checked with ml_body_check; SENSORS: the report
  MlBodyHeader header{};                     // BODY
  MlNack nack;                               // NACK
};

// One radio's receive path: the frame's checks, replay window, addressing, fragment numbers,
// reassembly, the body's own checks. Nothing it receives makes it fail.
class MlFrameReceiver {
 public:
  // keys: what this radio holds; address: this receiver's; it takes frames sent to it and to ML_RADIO_EVERY_NODE.
  void init(const MlRadioKeyring& keys, uint8_t meshId, uint8_t address);
  // A frame through every check, then filed.
  MlReceiveEvent receive(const uint8_t* frame, size_t len);
  // The frame's own checks: length, version, kind, mesh, source, MIC, counter, destination, fragment numbers.
  MlRadioReject accept(const uint8_t* frame, size_t len, MlRadioFrame* out, std::string* detail);
  // Files an accepted frame: decodes a NACK, or adds a fragment and checks the body it completes.
  MlReceiveEvent file(const MlRadioFrame& f);

  MlReplayWindow replay;
  MlReassembler reassembler;

 private:
  MlRadioKeyring keys_;
  uint8_t meshId_ = 0, address_ = 0;
};

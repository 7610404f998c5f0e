// The head node's computation, in plain C++ with no hardware calls: it builds for the host
// with g++ (the native head node, tests) and for the ESP32-S3. It is a port of
// lib/llm/head.ts, lib/llm/math.ts and lib/llm/quant.ts with the same arithmetic (dot
// products accumulated in double, stored as float32), so a native node returns the same head
// outputs as a node.js one.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Hyper-parameters of a Llama-2 architecture model (a llama2.c checkpoint header) and what
// every step derives from them.
struct MlConfig {
  int32_t dim;        // width of the residual stream
  int32_t hiddenDim;  // width of the FFN
  int32_t nLayers;
  int32_t nHeads;     // query heads
  int32_t nKvHeads;   // key/value heads
  int32_t vocabSize;
  int32_t seqLen;     // context length (also the KV cache length)
  bool sharedClassifier;
  int32_t headSize;   // dim / nHeads
  int32_t kvDim;      // nKvHeads * headSize
  int32_t kvMul;      // nHeads / nKvHeads
};

// ---- checkpoint.cpp: llama2.c checkpoints, version 0 (legacy) and 1 (float32 "ak42") --------

struct MlCheckpoint;

// Opens and validates a checkpoint (header, file size). On failure returns nullptr and writes
// a sentence saying what is wrong into err.
MlCheckpoint* ml_checkpoint_open(const char* path, char* err, size_t errLen);
const MlConfig* ml_checkpoint_config(const MlCheckpoint* c);
void ml_checkpoint_close(MlCheckpoint* c);

// ---- quant.cpp: group-wise int8, int4 and int2, as lib/llm/quant.ts ----------------------------

// Weight formats of a head group (lib/llm/quant.ts WeightFormat).
enum MlWeightFormat { ML_WEIGHTS_F32, ML_WEIGHTS_INT8, ML_WEIGHTS_INT4, ML_WEIGHTS_INT2 };
// int4 codes are -7..7 (scale max|v| / 7); int2 codes 0..3 (scale (max - min) / 3, offset min).
static const int ML_INT4_LEVELS = 7;
static const int ML_INT2_MAX = 3;
// Weight row group sizes (quant.ts FORMAT_SPECS): int8 and int4 32, int2 128 (at most the row).
static const int ML_INT2_GROUP_SIZE = 128;

// scale = max|v| / 127 (float32), q = round-half-away(float32(v / scale)); x [n] -> q [n],
// scales [ceil(n / groupSize)].
void ml_quantize(const float* x, int n, int groupSize, int8_t* q, float* scales);
// out[i] = q[i] * scales[i / groupSize]
void ml_dequantize(const int8_t* q, const float* scales, int n, int groupSize, float* out);
// The values a receiver sees after int8 encoding and decoding of x [n], in place.
void ml_int8_round_trip(float* x, int n, int groupSize);
// int4 groups (codes -7..7 one a byte, clamped), and their round trip in place.
void ml_quantize_int4(const float* x, int n, int groupSize, int8_t* q, float* scales);
void ml_int4_round_trip(float* x, int n, int groupSize);
// int2 affine groups: q [n] in 0..3, scales and offsets [ceil(n / groupSize)].
void ml_quantize_int2(const float* x, int n, int groupSize, int8_t* q, float* scales, float* offsets);
// After the int8 kernel wrote out [rows]: out[r] = float32(out[r] + sum over groups g of
// offsets[r, g] * sum(x[g])) (quant.ts addGroupOffsets). x [cols].
void ml_add_group_offsets(float* out, const float* x, const float* offsets, int rows, int cols, int groupSize);
// Symmetric groups with codes clamped to -levels..levels (int4: 7, int7: 63), and their round trip.
void ml_quantize_clamped(const float* x, int n, int groupSize, int levels, int8_t* q, float* scales);
void ml_clamped_round_trip(float* x, int n, int groupSize, int levels);
static const int ML_INT7_LEVELS = 63;
// The unnormalised Walsh-Hadamard transform of x [n] in place, n a power of two (quant.ts
// walshHadamard: butterflies (a, b) -> (a + b, a - b) of half-width 1, 2, 4, ..., float32
// sums), and its inverse (the transform again, then x / n).
void ml_walsh_hadamard(float* x, int n);
void ml_inverse_walsh_hadamard(float* x, int n);
// Codes of `bits` bits as a little-endian bit stream, low bit first, unused high bits 0 (quant.ts
// packCodes / unpackCodes / signedCode); len is the stream's length in bytes.
void ml_pack_codes(const int8_t* q, int n, int bits, uint8_t* out);
void ml_unpack_codes(const uint8_t* bytes, size_t len, int n, int bits, int8_t* q);
int ml_signed_code(const uint8_t* bytes, size_t len, int i, int bits);
// Two int4 codes a byte, the first in the low nibble (quant.ts packInt4 / unpackInt4).
void ml_pack_int4(const int8_t* q, int n, uint8_t* out);
void ml_unpack_int4(const uint8_t* bytes, int n, int8_t* q);
// The largest divisor of n that is at most limit (lib/llm/quant.ts alignedGroupSize).
int ml_aligned_group_size(int n, int limit);

// ---- head_group.cpp -----------------------------------------------------------------------

// Int8 group size of weight rows (lib/llm/head.ts INT8_GROUP_SIZE).
static const int ML_INT8_GROUP_SIZE = 32;

// A head group's weights: for every layer the rows of W_Q of its query heads and of W_K, W_V
// of the key/value heads they need, float32 or int8 (rows quantised in groups of 32).
struct MlSlices;

// Reads only the group's rows from the checkpoint. heads: distinct ids in 0..nHeads-1, any
// order (kept sorted ascending). On failure nullptr and a sentence in err.
MlSlices* ml_slices_load(MlCheckpoint* c, const int* heads, int count, bool int8, char* err, size_t errLen);
// The same in any weight format (int8 and int4 rows in groups of 32, int2 in groups of 128 (at most the row)).
MlSlices* ml_slices_load_format(MlCheckpoint* c, const int* heads, int count, MlWeightFormat format, char* err, size_t errLen);
// The weight format of its name ("f32", "int8", "int4", "int2"); false for any other.
bool ml_weight_format_of(const char* name, MlWeightFormat* format);
const char* ml_weight_format_name(MlWeightFormat format);
void ml_slices_free(MlSlices* s);
// Bytes of the weights in their storage format (packed codes plus float32 group parameters), as HeadGroup.weightBytes.
size_t ml_slices_weight_bytes(const MlSlices* s);
int ml_slices_head_count(const MlSlices* s);
const int* ml_slices_heads(const MlSlices* s);      // ascending
int ml_slices_kv_head_count(const MlSlices* s);
const int* ml_slices_kv_heads(const MlSlices* s);   // ascending

// Added to a group's head outputs at one layer after attention (head_output = attention +
// alpha * steering): vector [headCount * headSize], in ascending head order.
struct MlSteering {
  int layer;
  const float* vector;
};

// One session's state of a head group: KV cache [nLayers][kvHeads][contextLength][headSize]
// for keys and for values, and working vectors.
struct MlSession;

MlSession* ml_session_new(const MlSlices* s, int contextLength);
void ml_session_free(MlSession* s);
void ml_session_reset(MlSession* s);  // forgets every cached key and value
size_t ml_session_cache_bytes(const MlSession* s);

// One layer at one position: xb [dim] is the broadcast attention input. Returns the attention
// outputs of the group's heads concatenated in ascending head order [headCount * headSize]
// (owned by the session, overwritten by the next call); steering may be null. pos must be in
// 0..contextLength-1 and layer in 0..nLayers-1 (the caller checks).
const float* ml_session_forward(MlSession* s, const float* xb, int pos, int layer, const MlSteering* steering);

// ---- slices from rows already read (a weight shard, shard.h) ---------------------------------

// One projection's rows [rows, dim], malloc'd: float32 w, or int8 q with scales [rows * dim / 32].
struct MlProjectionRows {
  int rows;
  float* w;
  int8_t* q;
  float* scales;
};

// A group's slices from rows the caller read: heads and kvHeads ascending (kvHeads those the
// heads need), rows[3 * layer + t] for t = 0 wq, 1 wk, 2 wv. Takes ownership of every array
// (also on failure). nullptr and a sentence in err when a shape does not fit the geometry.
MlSlices* ml_slices_adopt(const MlConfig& g, const int* heads, int count, const int* kvHeads, int kvCount, bool int8, MlProjectionRows* rows, char* err, size_t errLen);

// ---- slices over a weight shard's bytes, used in place (shard.h) ------------------------------

// The row group size of a format for rows of dim (head.ts weightGroupSize): int8 and int4 32,
// int2 128, each at most dim; 0 for float32.
int ml_weight_group_size(MlWeightFormat f, int dim);
// Bytes of a block of n weights in a format as a shard stores it (quant.ts storageBytes): the
// codes (float32 values; int8 one a byte; int4 two a byte; int2 four a byte) then the float32
// scales (int2: then the offsets), one per group. codeBytes gets the codes' share.
size_t ml_weight_block_bytes(MlWeightFormat f, size_t n, int groupSize, size_t* codeBytes);

// One projection's rows [rows, dim] in a shard's layout: float32 w, or codes (int8 one a byte,
// int4 two a byte low nibble first, int2 four a byte low bits first) with float32 scales
// [rows * dim / groupSize] (int2 also offsets). Read-only; 4-byte aligned floats.
struct MlProjectionView {
  int rows;
  const float* w;
  const uint8_t* codes;
  const float* scales;
  const float* offsets;
};

// A group's slices whose weights are the views (rows[3 * layer + t], t = 0 wq, 1 wk, 2 wv),
// used where they lie: a mapped shard file or flash partition (owned null: the caller keeps
// it mapped while the slices live), or a copy of the payload the slices take (owned, freed by
// ml_slices_free, also on failure). nullptr and a sentence in err when a shape does not fit.
MlSlices* ml_slices_view(const MlConfig& g, const int* heads, int count, const int* kvHeads, int kvCount, MlWeightFormat format, const MlProjectionView* views, void* owned, char* err, size_t errLen);

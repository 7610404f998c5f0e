// head-serve: the firmware core's head step as a pipe, one step at a time, so a TypeScript
// HeadRunner can drive it through a whole teacher-forced pass (bench/firmware-numerics.ts).
// Built twice: head-serve (double accumulation, bit-identical to the TypeScript) and
// head-serve-f32acc (-D ML_ACCUM_FLOAT32, what the ESP32-S3's FPU does).
//
//   head-serve MODEL HEADS f32|int8
//     stdin: records, little-endian: int32 tag 1, int32 pos, int32 layer, float32 xb[dim]
//            -> stdout: float32 outputs[heads * headSize], flushed; int32 tag 3: reset
//   Errors: a sentence on stderr, exit 1 (2: usage).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "head_group.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: head-serve MODEL HEADS f32|int8\n");
    return 2;
  }
  char err[512];
  MlCheckpoint* c = ml_checkpoint_open(argv[1], err, sizeof err);
  if (!c) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  std::vector<int> heads;
  for (char* p = strtok(argv[2], ","); p; p = strtok(nullptr, ",")) heads.push_back(atoi(p));
  MlSlices* s = ml_slices_load(c, heads.data(), (int)heads.size(), !strcmp(argv[3], "int8"), err, sizeof err);
  if (!s) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  const MlConfig& g = *ml_checkpoint_config(c);
  MlSession* session = ml_session_new(s, g.seqLen);
  std::vector<float> xb((size_t)g.dim);
  const size_t outN = heads.size() * (size_t)g.headSize;
  int32_t tag;
  while (fread(&tag, 4, 1, stdin) == 1) {
    if (tag == 3) {
      ml_session_reset(session);
      continue;
    }
    int32_t pl[2];
    if (tag != 1 || fread(pl, 4, 2, stdin) != 2 || fread(xb.data(), 4, xb.size(), stdin) != xb.size()) {
      fprintf(stderr, "head-serve: a malformed record\n");
      return 1;
    }
    if (pl[0] < 0 || pl[0] >= g.seqLen || pl[1] < 0 || pl[1] >= g.nLayers) {
      fprintf(stderr, "head-serve: position %d or layer %d out of range\n", pl[0], pl[1]);
      return 1;
    }
    const float* out = ml_session_forward(session, xb.data(), pl[0], pl[1], nullptr);
    fwrite(out, 4, outN, stdout);
    fflush(stdout);
  }
  return 0;
}

#include "radio_join.h"

#include <math.h>

#include "json.h"

namespace {
double num(const JsonValue& o, const char* key, double fallback = NAN) {
  const JsonValue* v = o.get(key);
  return v && v->type == JsonValue::Number ? v->number : fallback;
}
}  // namespace

bool ml_radio_join_parse(const char* json, size_t len, MlRadioNodeConfig* c, MlConfig* model, std::vector<int>* heads, std::string* err) {
  JsonValue w;
  if (!json_parse(json, len, &w, err)) return false;
  const JsonValue* slot = w.get("slot");
  const JsonValue* m = w.get("model");
  const JsonValue* r = w.get("result");
  const JsonValue* hs = w.get("heads");
  if (!slot || !m || !r || !hs || hs->type != JsonValue::Array) {
    *err = "a join record without slot, model, result or heads";
    return false;
  }
  c->maxFrameBytes = (size_t)num(w, "maxFrameBytes");
  c->modulation = MlModulation{(int)num(w, "sf"), (int)num(w, "bandwidthKHz"), (int)num(w, "codingRate"), (int)num(w, "preambleSymbols", 8)};
  c->broadcastHz = (uint32_t)num(w, "broadcastHz");
  c->slotHz = (uint32_t)num(*slot, "frequencyHz");
  c->slotOffsetMs = num(*slot, "offsetMs");
  c->slotLengthMs = num(*slot, "lengthMs");
  c->guardMs = num(w, "guardMs");
  c->dutyCycle = num(w, "dutyCycle");
  c->maxDwellMs = num(w, "maxDwellMs", 0);
  const JsonValue* enc = r->get("encoding");
  c->resultEncoding = enc && enc->string == "f32" ? ML_ENCODING_F32 : ML_ENCODING_INT8;
  c->resultGroupSize = (int)num(*r, "groupSize", 0);
  *model = MlConfig{};
  model->dim = (int32_t)num(*m, "dim");
  model->nLayers = (int32_t)num(*m, "nLayers");
  model->nHeads = (int32_t)num(*m, "nHeads");
  model->nKvHeads = (int32_t)num(*m, "nKvHeads");
  model->seqLen = (int32_t)num(*m, "seqLen");
  heads->clear();
  for (const auto& h : hs->items) heads->push_back((int)h.number);
  const bool sane = c->maxFrameBytes >= ML_RADIO_MIN_FRAME_BYTES && c->maxFrameBytes <= ML_RADIO_MAX_FRAME_BYTES && c->modulation.sf >= 5 && c->modulation.sf <= 12 && c->dutyCycle > 0 &&
                    c->dutyCycle <= 1 && c->slotLengthMs > 0 && !isnan(c->slotOffsetMs) && model->dim > 0;
  if (!sane) {
    *err = "a join record with a frame size, spreading factor, duty cycle, slot or model out of range";
    return false;
  }
  return true;
}

// A small strict JSON reader (RFC 8259, as JavaScript's JSON.parse accepts it) and writer
// helpers, for the node's control messages (schemas/*.json). Not on the tensor path.
#pragma once
#include <stddef.h>
#include <string>
#include <utility>
#include <vector>

struct JsonValue {
  enum Type { Null, Bool, Number, String, Array, Object } type = Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> items;                               // Array
  std::vector<std::pair<std::string, JsonValue>> members;     // Object, in document order

  // The member named key (the last one, as JSON.parse keeps), or nullptr.
  const JsonValue* get(const std::string& key) const;
  bool isInteger() const;
};

// Parses text; false and a sentence in err when it is not JSON.
bool json_parse(const char* text, size_t len, JsonValue* out, std::string* err);

// A JSON string literal for s (quotes included; control characters escaped).
std::string json_quote(const std::string& s);
// A JSON number for v as JavaScript's JSON.stringify writes integers and shortest floats.
std::string json_number(double v);

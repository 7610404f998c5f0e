// A JSON Schema (draft-07) validator for the subset schemas/*.json use: type, const, enum,
// required, properties, additionalProperties: false, items, minimum, maximum, minLength,
// maxLength, minItems, maxItems, uniqueItems, pattern (of the form ^[class]{m,n}$) and $ref
// to #/definitions. The node validates the control messages it receives against the same
// schema files the TypeScript side gives ajv (compiled into the firmware at build time), and
// reports failures in ajv's words: "<path> <what>".
#pragma once
#include <string>

#include "json.h"

class JsonSchema {
 public:
  // Parses a schema's text; false and a sentence in err when it uses something not supported.
  bool load(const char* text, std::string* err);
  // True when v conforms; otherwise false and "<instance path or (root)> <message>" in err.
  bool validate(const JsonValue& v, std::string* err) const;

 private:
  JsonValue root_;
  bool check(const JsonValue& schema, const JsonValue& v, const std::string& path, std::string* err) const;
  bool supported(const JsonValue& schema, std::string* err) const;
};

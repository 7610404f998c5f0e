#include "schema.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

namespace {

bool equal(const JsonValue& a, const JsonValue& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case JsonValue::Null: return true;
    case JsonValue::Bool: return a.boolean == b.boolean;
    case JsonValue::Number: return a.number == b.number;
    case JsonValue::String: return a.string == b.string;
    case JsonValue::Array:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); i++)
        if (!equal(a.items[i], b.items[i])) return false;
      return true;
    case JsonValue::Object:
      if (a.members.size() != b.members.size()) return false;
      for (const auto& m : a.members) {
        const JsonValue* o = b.get(m.first);
        if (!o || !equal(m.second, *o)) return false;
      }
      return true;
  }
  return false;
}

// Code points of a UTF-8 string (ajv counts characters, not bytes).
size_t chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xc0) != 0x80) n++;
  return n;
}

// A pattern ^[class]{m,n}$: the class's characters and ranges, and the bounds.
struct SimplePattern {
  std::string singles;
  std::string ranges;  // pairs
  long lo = 0, hi = 0;
  bool parse(const std::string& p) {
    if (p.size() < 8 || p[0] != '^' || p[1] != '[' || p[p.size() - 1] != '$') return false;
    size_t close = p.find(']', 2);
    if (close == std::string::npos) return false;
    for (size_t i = 2; i < close; i++) {
      if (i + 2 < close && p[i + 1] == '-') {
        ranges += p[i];
        ranges += p[i + 2];
        i += 2;
      } else {
        singles += p[i];
      }
    }
    return sscanf(p.c_str() + close + 1, "{%ld,%ld}$", &lo, &hi) == 2;
  }
  bool matches(const std::string& s) const {
    long n = 0;
    for (char c : s) {
      bool ok = singles.find(c) != std::string::npos;
      for (size_t r = 0; !ok && r + 1 < ranges.size(); r += 2) ok = c >= ranges[r] && c <= ranges[r + 1];
      if (!ok) return false;
      n++;
    }
    return n >= lo && n <= hi;
  }
};

std::string num(double v) { return json_number(v); }

const char* typeName(const JsonValue& v) {
  switch (v.type) {
    case JsonValue::Null: return "null";
    case JsonValue::Bool: return "boolean";
    case JsonValue::Number: return "number";
    case JsonValue::String: return "string";
    case JsonValue::Array: return "array";
    case JsonValue::Object: return "object";
  }
  return "?";
}

bool hasType(const JsonValue& v, const std::string& t) {
  if (t == "integer") return v.isInteger();
  if (t == "number") return v.type == JsonValue::Number;
  return t == typeName(v);
}

}  // namespace

bool JsonSchema::load(const char* text, std::string* err) {
  std::string why;
  if (!json_parse(text, strlen(text), &root_, &why)) {
    *err = "schema is not JSON: " + why;
    return false;
  }
  return supported(root_, err);
}

bool JsonSchema::supported(const JsonValue& s, std::string* err) const {
  static const char* known[] = {"$schema", "$id", "title", "description", "type", "const", "enum", "required", "properties",
                                "additionalProperties", "items", "minimum", "maximum", "minLength", "maxLength", "minItems",
                                "maxItems", "uniqueItems", "pattern", "$ref", "definitions", "examples", "default"};
  if (s.type != JsonValue::Object) {
    *err = "a schema must be an object";
    return false;
  }
  for (const auto& m : s.members) {
    bool ok = false;
    for (const char* k : known) ok = ok || m.first == k;
    if (!ok) {
      *err = "schema keyword " + m.first + " is not supported by the firmware's validator";
      return false;
    }
    if (m.first == "additionalProperties" && !(m.second.type == JsonValue::Bool && !m.second.boolean)) {
      *err = "only additionalProperties: false is supported";
      return false;
    }
    if (m.first == "pattern") {
      SimplePattern p;
      if (!p.parse(m.second.string)) {
        *err = "pattern " + m.second.string + " is not of the form ^[class]{m,n}$";
        return false;
      }
    }
    if (m.first == "$ref" && m.second.string.rfind("#/definitions/", 0) != 0) {
      *err = "$ref " + m.second.string + " is not a #/definitions/ reference";
      return false;
    }
    if (m.first == "properties" || m.first == "definitions")
      for (const auto& p : m.second.members)
        if (!supported(p.second, err)) return false;
    if (m.first == "items" && !supported(m.second, err)) return false;
  }
  return true;
}

bool JsonSchema::validate(const JsonValue& v, std::string* err) const { return check(root_, v, "", err); }

bool JsonSchema::check(const JsonValue& s, const JsonValue& v, const std::string& path, std::string* err) const {
  const std::string where = path.empty() ? "(root)" : path;
  auto fail = [&](const std::string& what) {
    *err = where + " " + what;
    return false;
  };
  if (const JsonValue* ref = s.get("$ref")) {
    const JsonValue* defs = root_.get("definitions");
    const JsonValue* target = defs ? defs->get(ref->string.substr(strlen("#/definitions/"))) : nullptr;
    if (!target) return fail("refers to a missing definition " + ref->string);
    if (!check(*target, v, path, err)) return false;
  }
  if (const JsonValue* t = s.get("type")) {
    if (!hasType(v, t->string)) return fail("must be " + t->string);
  }
  if (const JsonValue* c = s.get("const")) {
    if (!equal(*c, v)) return fail("must be equal to constant");
  }
  if (const JsonValue* e = s.get("enum")) {
    bool any = false;
    for (const auto& option : e->items) any = any || equal(option, v);
    if (!any) return fail("must be equal to one of the allowed values");
  }
  if (v.type == JsonValue::Number) {
    if (const JsonValue* m = s.get("minimum"))
      if (v.number < m->number) return fail("must be >= " + num(m->number));
    if (const JsonValue* m = s.get("maximum"))
      if (v.number > m->number) return fail("must be <= " + num(m->number));
  }
  if (v.type == JsonValue::String) {
    if (const JsonValue* m = s.get("maxLength"))
      if (chars(v.string) > m->number) return fail("must NOT have more than " + num(m->number) + " characters");
    if (const JsonValue* m = s.get("minLength"))
      if (chars(v.string) < m->number) return fail("must NOT have fewer than " + num(m->number) + " characters");
    if (const JsonValue* m = s.get("pattern")) {
      SimplePattern p;
      p.parse(m->string);
      if (!p.matches(v.string)) return fail("must match pattern \"" + m->string + "\"");
    }
  }
  if (v.type == JsonValue::Array) {
    if (const JsonValue* m = s.get("maxItems"))
      if (v.items.size() > m->number) return fail("must NOT have more than " + num(m->number) + " items");
    if (const JsonValue* m = s.get("minItems"))
      if (v.items.size() < m->number) return fail("must NOT have fewer than " + num(m->number) + " items");
    if (const JsonValue* items = s.get("items"))
      for (size_t i = 0; i < v.items.size(); i++)
        if (!check(*items, v.items[i], path + "/" + std::to_string(i), err)) return false;
    if (const JsonValue* u = s.get("uniqueItems"))
      if (u->boolean)
        for (size_t i = v.items.size(); i-- > 1;)
          for (size_t j = i; j-- > 0;)
            if (equal(v.items[i], v.items[j]))
              return fail("must NOT have duplicate items (items ## " + std::to_string(j) + " and " + std::to_string(i) + " are identical)");
  }
  if (v.type == JsonValue::Object) {
    if (const JsonValue* r = s.get("required"))
      for (const auto& name : r->items)
        if (!v.get(name.string)) return fail("must have required property '" + name.string + "'");
    const JsonValue* props = s.get("properties");
    if (s.get("additionalProperties"))
      for (const auto& m : v.members)
        if (!props || !props->get(m.first)) return fail("must NOT have additional properties");
    if (props)
      for (const auto& p : props->members)
        if (const JsonValue* member = v.get(p.first))
          if (!check(p.second, *member, path + "/" + p.first, err)) return false;
  }
  return true;
}

#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const JsonValue* JsonValue::get(const std::string& key) const {
  for (size_t i = members.size(); i-- > 0;)
    if (members[i].first == key) return &members[i].second;
  return nullptr;
}

bool JsonValue::isInteger() const { return type == Number && isfinite(number) && floor(number) == number; }

namespace {

struct Parser {
  const char* p;
  const char* end;
  const char* start;
  std::string* err;
  int depth = 0;

  bool fail(const char* what) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s at position %ld", what, (long)(p - start));
    *err = buf;
    return false;
  }
  void ws() {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  }
  bool literal(const char* word) {
    size_t n = strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) return fail("unexpected token");
    p += n;
    return true;
  }
  static void utf8(std::string& s, unsigned cp) {
    if (cp < 0x80) s += (char)cp;
    else if (cp < 0x800) {
      s += (char)(0xc0 | (cp >> 6));
      s += (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      s += (char)(0xe0 | (cp >> 12));
      s += (char)(0x80 | ((cp >> 6) & 0x3f));
      s += (char)(0x80 | (cp & 0x3f));
    } else {
      s += (char)(0xf0 | (cp >> 18));
      s += (char)(0x80 | ((cp >> 12) & 0x3f));
      s += (char)(0x80 | ((cp >> 6) & 0x3f));
      s += (char)(0x80 | (cp & 0x3f));
    }
  }
  bool hex4(unsigned* out) {
    if (end - p < 4) return fail("bad unicode escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
      char c = *p++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else return fail("bad unicode escape");
    }
    *out = v;
    return true;
  }
  bool str(std::string& s) {
    p++;  // opening quote
    for (;;) {
      if (p >= end) return fail("unterminated string");
      unsigned char c = (unsigned char)*p++;
      if (c == '"') return true;
      if (c < 0x20) return fail("control character in string");
      if (c != '\\') {
        s += (char)c;
        continue;
      }
      if (p >= end) return fail("unterminated string");
      char e = *p++;
      switch (e) {
        case '"': s += '"'; break;
        case '\\': s += '\\'; break;
        case '/': s += '/'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          unsigned cp;
          if (!hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
            const char* save = p;
            p += 2;
            unsigned lo;
            if (!hex4(&lo)) return false;
            if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            else p = save;
          }
          utf8(s, cp);
          break;
        }
        default: return fail("bad escape in string");
      }
    }
  }
  bool num(double* out) {
    const char* s = p;
    if (p < end && *p == '-') p++;
    if (p >= end) return fail("bad number");
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < end && *p >= '0' && *p <= '9') p++;
    else return fail("bad number");
    if (p < end && *p == '.') {
      p++;
      if (p >= end || *p < '0' || *p > '9') return fail("bad number");
      while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      p++;
      if (p < end && (*p == '+' || *p == '-')) p++;
      if (p >= end || *p < '0' || *p > '9') return fail("bad number");
      while (p < end && *p >= '0' && *p <= '9') p++;
    }
    std::string text(s, p - s);
    *out = strtod(text.c_str(), nullptr);
    return true;
  }
  bool value(JsonValue& v) {
    if (++depth > 64) return fail("nested too deeply");
    ws();
    if (p >= end) return fail("unexpected end of input");
    bool ok = true;
    char c = *p;
    if (c == '{') {
      v.type = JsonValue::Object;
      p++;
      ws();
      if (p < end && *p == '}') p++;
      else
        for (;;) {
          ws();
          if (p >= end || *p != '"') return fail("expected a property name");
          std::string key;
          if (!str(key)) return false;
          ws();
          if (p >= end || *p != ':') return fail("expected ':'");
          p++;
          JsonValue member;
          if (!value(member)) return false;
          v.members.emplace_back(std::move(key), std::move(member));
          ws();
          if (p < end && *p == ',') { p++; continue; }
          if (p < end && *p == '}') { p++; break; }
          return fail("expected ',' or '}'");
        }
    } else if (c == '[') {
      v.type = JsonValue::Array;
      p++;
      ws();
      if (p < end && *p == ']') p++;
      else
        for (;;) {
          JsonValue item;
          if (!value(item)) return false;
          v.items.push_back(std::move(item));
          ws();
          if (p < end && *p == ',') { p++; continue; }
          if (p < end && *p == ']') { p++; break; }
          return fail("expected ',' or ']'");
        }
    } else if (c == '"') {
      v.type = JsonValue::String;
      ok = str(v.string);
    } else if (c == 't') {
      v.type = JsonValue::Bool;
      v.boolean = true;
      ok = literal("true");
    } else if (c == 'f') {
      v.type = JsonValue::Bool;
      ok = literal("false");
    } else if (c == 'n') {
      ok = literal("null");
    } else {
      v.type = JsonValue::Number;
      ok = num(&v.number);
    }
    depth--;
    return ok;
  }
};

}  // namespace

bool json_parse(const char* text, size_t len, JsonValue* out, std::string* err) {
  Parser ps{text, text + len, text, err};
  *out = JsonValue();
  if (!ps.value(*out)) return false;
  ps.ws();
  if (ps.p != ps.end) return ps.fail("unexpected data after the value");
  return true;
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += (char)c;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  char buf[40];
  if (!isfinite(v)) return "null";
  if (floor(v) == v && fabs(v) < 9007199254740992.0) snprintf(buf, sizeof buf, "%.0f", v);
  else {
    // the shortest representation that reads back to the same double
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (strtod(buf, nullptr) == v) break;
    }
  }
  return buf;
}

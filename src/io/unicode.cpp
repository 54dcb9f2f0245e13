#include "io/unicode.h"

namespace mpq::unicode {

size_t char_len(std::string_view s, size_t pos) {
  const auto b = static_cast<uint8_t>(s[pos]);
  size_t n = 1;
  uint32_t min_cp = 0;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2, min_cp = 0x80;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3, min_cp = 0x800;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4, min_cp = 0x10000;
  } else {
    return 1;  // ASCII, continuation byte or invalid lead byte
  }
  if (pos + n > s.size()) return 1;
  uint32_t cp = b & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    const auto c = static_cast<uint8_t>(s[pos + i]);
    if ((c & 0xC0) != 0x80) return 1;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 1;
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const size_t n = char_len(s, pos);
    if (n == 1 && static_cast<uint8_t>(s[pos]) >= 0x80) return false;
    pos += n;
  }
  return true;
}

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table = [] {
    ByteLevelTable t;
    t.cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = printable ? b : next++;
      append_utf8(t.byte_to_utf8[b], cp);
      t.cp_to_byte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

}  // namespace mpq::unicode

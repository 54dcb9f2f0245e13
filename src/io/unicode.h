// Small UTF-8 helpers and the GPT-2 byte <-> unicode table used by byte-level BPE tokenizers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mpq::unicode {

// Length of the UTF-8 sequence starting at s[pos], clamped to the bytes left. A byte that cannot
// start a well-formed sequence (stray continuation byte, truncated or overlong sequence) counts
// as one character of its own, so malformed input still splits into pieces that cover every
// byte exactly once.
size_t char_len(std::string_view s, size_t pos);

// Appends the UTF-8 encoding of code point `cp` to `out`.
void append_utf8(std::string& out, uint32_t cp);

// True when `s` is well-formed UTF-8.
bool is_valid_utf8(std::string_view s);

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in order, so that every byte has a visible, non-space stand-in.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_utf8;  // byte -> UTF-8 of its stand-in character
  std::array<int16_t, 512> cp_to_byte;        // stand-in code point (< 512) -> byte, or -1
};
const ByteLevelTable& byte_level_table();

}  // namespace mpq::unicode

// SentencePiece-style BPE with byte fallback, as llama.cpp's "llama" vocab and llama2.c's
// encoder: optional dummy-prefix space, spaces -> U+2581, one symbol per UTF-8 character, then
// repeatedly merge the adjacent pair whose concatenation is the token with the highest score
// (ties: leftmost). Symbols that never became tokens (characters missing from the vocabulary)
// fall back to their bytes' "<0xXX>" tokens, or to <unk> when the model has no byte tokens.
#include <cstdio>

#include "io/tokenizer_internal.h"
#include "io/unicode.h"

namespace mpq::tok {

namespace {
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK
}

SpmEncoder::SpmEncoder(const TokenizerSpec& spec, const TokenMap& token_to_id)
    : spec_(spec), token_to_id_(token_to_id) {
  // Byte tokens are found by their text, not their position: llama2.c files put them at 3..258
  // but other SentencePiece models order them differently.
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = token_to_id_.find(std::string_view(name));
    byte_token_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
}

void SpmEncoder::encode(std::string_view text, bool fragment_start,
                        std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string norm;
  norm.reserve(text.size() + text.size() / 2 + 3);
  if (spec_.add_space_prefix && fragment_start) norm += kSpace;
  for (char c : text) {
    if (c == ' ') {
      norm += kSpace;
    } else {
      norm += c;
    }
  }

  std::vector<Symbol> syms;
  syms.reserve(norm.size());
  for (size_t pos = 0; pos < norm.size();) {
    const size_t n = unicode::char_len(norm, pos);
    auto it = token_to_id_.find(std::string_view(norm).substr(pos, n));
    const int32_t index = static_cast<int32_t>(syms.size());
    syms.push_back({index - 1, -1, static_cast<uint32_t>(pos), static_cast<uint32_t>(n),
                    it == token_to_id_.end() ? -1 : it->second});
    if (index > 0) syms[index - 1].next = index;
    pos += n;
  }

  const std::string_view whole(norm);
  merge_symbols(syms, [&](const Symbol& l, const Symbol& r, double& priority, int32_t& id) {
    auto it = token_to_id_.find(whole.substr(l.start, l.len + r.len));
    if (it == token_to_id_.end()) return false;
    id = it->second;
    priority = spec_.scores[id];
    return true;
  });

  for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(syms.size()); i = syms[i].next) {
    const Symbol& s = syms[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    for (uint32_t k = 0; k < s.len; ++k) {
      const int32_t byte_id = byte_token_[static_cast<uint8_t>(norm[s.start + k])];
      if (byte_id >= 0) {
        out.push_back(byte_id);
      } else if (spec_.unk_id >= 0) {
        out.push_back(spec_.unk_id);
        break;  // one <unk> per unknown character, as SentencePiece
      }
    }
  }
}

}  // namespace mpq::tok

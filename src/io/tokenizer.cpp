// Tokenizer: validates a TokenizerSpec, splits special tokens out of the text when asked, runs the
// SentencePiece or byte-level BPE encoder on the rest, and decodes ids back to bytes.
#include <algorithm>

#include "io/tokenizer_internal.h"
#include "io/unicode.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace mpq {

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::string source;
  tok::TokenMap token_to_id;
  std::vector<std::string> pieces;  // bytes each token decodes to
  // Special tokens (control / user-defined / unknown) by first byte, longest first.
  std::vector<int32_t> specials_by_byte[256];
  bool has_user_defined = false;  // some token is UserDefined (always split out of the text)
  std::unique_ptr<tok::SpmEncoder> spm;
  std::unique_ptr<tok::BpeEncoder> bpe;

  // Tokens cut out of the text before the encoder runs: control and unknown tokens with
  // parse_special, user-defined ones always (llama.cpp's rule; Hugging Face, which always
  // extracts special tokens, treats the unknown token as special too).
  bool is_special(int32_t id) const {
    const TokenType t = spec.token_types[id];
    return t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown;
  }
  std::string decode_piece(int32_t id) const;
  void encode_text(std::string_view text, bool fragment_start, std::vector<int32_t>& out) const {
    if (spm) {
      spm->encode(text, fragment_start, out);
    } else {
      bpe->encode(text, out);
    }
  }
};

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581

// "<0xXX>" -> XX, or -1.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

void check_id(int32_t id, int32_t n, const std::string& source, const char* what) {
  if (id < -1 || id >= n) {
    fail(source, std::string(what) + " id " + std::to_string(id) + " is out of range (vocabulary of " +
                     std::to_string(n) + " tokens)");
  }
}

}  // namespace

std::string Tokenizer::Impl::decode_piece(int32_t id) const {
  const std::string& text = spec.tokens[id];
  const TokenType type = spec.token_types[id];
  if (type == TokenType::Control || type == TokenType::UserDefined ||
      type == TokenType::Unknown) {
    return text;  // added tokens are stored as their literal text in both kinds
  }
  if (spec.kind == TokenizerSpec::Kind::SentencePiece) {
    if (type == TokenType::Byte) {
      const int b = parse_byte_token(text);
      if (b >= 0) return std::string(1, static_cast<char>(b));
    }
    std::string out;
    for (size_t pos = 0; pos < text.size();) {
      if (text.compare(pos, kSpace.size(), kSpace) == 0) {
        out += ' ';
        pos += kSpace.size();
      } else {
        out += text[pos++];
      }
    }
    return out;
  }
  // Byte-level: map each stand-in character back to its byte; characters outside the table
  // (should not occur in a byte-level vocabulary) are kept as they are.
  const auto& table = unicode::byte_level_table();
  std::string out;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = unicode::char_len(text, pos);
    uint32_t cp = 0x110000;
    const auto b0 = static_cast<uint8_t>(text[pos]);
    if (n == 1 && b0 < 0x80) {
      cp = b0;
    } else if (n == 2) {
      cp = ((b0 & 0x1F) << 6) | (static_cast<uint8_t>(text[pos + 1]) & 0x3F);
    }
    if (cp < table.cp_to_byte.size() && table.cp_to_byte[cp] >= 0) {
      out += static_cast<char>(table.cp_to_byte[cp]);
    } else {
      out.append(text, pos, n);
    }
    pos += n;
  }
  return out;
}

Tokenizer::Tokenizer(TokenizerSpec spec, std::string source) : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.source = std::move(source);
  const std::string& src = im.source;
  const auto n = static_cast<int64_t>(spec.tokens.size());
  if (n == 0) fail(src, "tokenizer has no tokens");
  if (n > INT32_MAX) fail(src, "tokenizer has too many tokens");
  const auto n32 = static_cast<int32_t>(n);
  if (spec.scores.empty()) spec.scores.assign(n, 0.0f);
  if (spec.token_types.empty()) spec.token_types.assign(n, TokenType::Normal);
  if (static_cast<int64_t>(spec.scores.size()) != n) {
    fail(src, std::to_string(spec.scores.size()) + " scores for " + std::to_string(n) + " tokens");
  }
  if (static_cast<int64_t>(spec.token_types.size()) != n) {
    fail(src, std::to_string(spec.token_types.size()) + " token types for " + std::to_string(n) +
                  " tokens");
  }
  check_id(spec.bos_id, n32, src, "BOS");
  check_id(spec.eos_id, n32, src, "EOS");
  check_id(spec.unk_id, n32, src, "UNK");
  check_id(spec.pad_id, n32, src, "padding");
  if (spec.add_bos && spec.bos_id < 0) fail(src, "add_bos is set but the model has no BOS token");
  if (spec.add_eos && spec.eos_id < 0) fail(src, "add_eos is set but the model has no EOS token");

  im.token_to_id.reserve(n);
  for (int32_t id = 0; id < n32; ++id) {
    im.token_to_id.emplace(spec.tokens[id], id);  // the first of duplicate texts wins
  }
  im.spec = std::move(spec);
  const TokenizerSpec& s = im.spec;
  if (s.kind == TokenizerSpec::Kind::SentencePiece) {
    im.spm = std::make_unique<tok::SpmEncoder>(s, im.token_to_id);
  } else {
    im.bpe = std::make_unique<tok::BpeEncoder>(s, im.token_to_id, src);
  }

  im.pieces.resize(n);
  for (int32_t id = 0; id < n32; ++id) {
    im.pieces[id] = im.decode_piece(id);
    if (im.is_special(id) && !s.tokens[id].empty()) {
      im.specials_by_byte[static_cast<uint8_t>(s.tokens[id][0])].push_back(id);
      im.has_user_defined |= s.token_types[id] == TokenType::UserDefined;
    }
  }
  for (auto& list : im.specials_by_byte) {
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return s.tokens[a].size() > s.tokens[b].size();
    });
  }
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && im.spec.add_bos) out.push_back(im.spec.bos_id);
  // Special tokens are cut out of the text before it is encoded, as llama.cpp does: user-defined
  // tokens always (they are ordinary vocabulary that the model's BPE could not build), control
  // and unknown tokens (BOS, chat markers, <unk>) only with parse_special, so plain text never
  // smuggles them in.
  // SentencePiece adds its dummy prefix after each special token, as llama.cpp.
  size_t fragment = 0;
  bool fragment_start = true;
  if (parse_special || im.has_user_defined) {
    for (size_t pos = 0; pos < text.size();) {
      int32_t found = -1;
      for (int32_t id : im.specials_by_byte[static_cast<uint8_t>(text[pos])]) {
        if ((parse_special || im.spec.token_types[id] == TokenType::UserDefined) &&
            text.substr(pos).starts_with(im.spec.tokens[id])) {
          found = id;
          break;
        }
      }
      if (found < 0) {
        ++pos;
        continue;
      }
      if (pos > fragment) im.encode_text(text.substr(fragment, pos - fragment), fragment_start, out);
      out.push_back(found);
      pos += im.spec.tokens[found].size();
      fragment = pos;
      fragment_start = true;
    }
  }
  if (fragment < text.size()) im.encode_text(text.substr(fragment), fragment_start, out);
  if (add_special && im.spec.add_eos) out.push_back(im.spec.eos_id);
  return out;
}

std::string Tokenizer::decode_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    fail(impl_->source, "token id " + std::to_string(id) + " is out of range (vocabulary of " +
                            std::to_string(vocab_size()) + " tokens)");
  }
  return impl_->pieces[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  // Control tokens (BOS, EOS, chat markers) render as nothing, so that decode(encode(x, true))
  // gives x back; decode_token() still shows their text. The SentencePiece dummy prefix is
  // dropped from the first text token, as llama.cpp's detokenizer does.
  const Impl& im = *impl_;
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    std::string piece = decode_token(id);
    if (im.spec.token_types[id] == TokenType::Control) continue;
    if (first && im.spm && im.spec.add_space_prefix && !piece.empty() && piece[0] == ' ') {
      piece.erase(0, 1);
    }
    first = false;
    out += piece;
  }
  return out;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->spec.tokens.size()); }

const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }

}  // namespace mpq

// Byte-level BPE (GPT-2, Llama 3, Qwen 2, SmolLM): regex pre-tokenization, the GPT-2
// byte -> unicode mapping, then merges applied by rank (lowest first, ties leftmost), as Hugging
// Face `tokenizers` and llama.cpp do.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "io/tokenizer_internal.h"
#include "io/unicode.h"
#include "mpq/error.h"

namespace mpq::tok {

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer table. The patterns are those of the models' tokenizer.json pre_tokenizer
// definitions, as llama.cpp lists them per `tokenizer.ggml.pre` name (llama-vocab.cpp). llama.cpp
// spells the case-insensitive contractions (?i:'s|...) as '[sS]|... because std::regex lacks
// (?i:); we keep that spelling so that GGUF models split exactly as in llama.cpp.

const std::string& gpt2_regex() {
  // HF ByteLevel(use_regex=true). The final |\s+ only ever matches a lone whitespace that is a
  // gap of the other alternatives anyway; it is kept to be literally HF's pattern.
  static const std::string re =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  return re;
}

namespace {

const std::string kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek LLM: letters of cased scripts, ASCII/fullwidth punctuation, CJK and numbers are split
// in turn (the Latin-and-friends class is spelled out because \p{L} would also take CJK).
const std::vector<std::string> kDeepseekLlm = {
    "[\r\n]",
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293"
    "\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C"
    "\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5"
    "\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77"
    "\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59"
    "\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC"
    "\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107"
    "\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE"
    "\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
    "\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F"
    "\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2"
    "\U000118A0-\U000118DF\U0001E900-\U0001E943]+",
    "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
    "\\s+$",
    "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+",
    "\\p{N}+",
};

}  // namespace

bool pre_regexes_for(const std::string& name, std::vector<std::string>& regexes,
                     bool& ignore_merges) {
  ignore_merges = false;
  auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (name == n) return true;
    }
    return false;
  };
  // "default" (what llama.cpp assumes when a GGUF names no pre-tokenizer) is taken as GPT-2, the
  // convention of HF ByteLevel; llama.cpp's own "default" list is a legacy approximation.
  if (is({"default", "gpt2", "gpt-2", "mpt", "olmo", "jais", "phi-2", "roberta-bpe"})) {
    regexes = {gpt2_regex()};
  } else if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"})) {
    regexes = {kLlama3};
    ignore_merges = true;  // llama.cpp and Llama 3's tokenizer.json ("ignore_merges": true)
  } else if (is({"dbrx", "smaug-bpe", "chatglm-bpe", "glm4"})) {
    regexes = {kLlama3};
  } else if (is({"qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "megrez", "stablelm2"})) {
    regexes = {kQwen2};
  } else if (is({"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                 "minerva-7b"})) {
    // HF: Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]
    regexes = {R"(\p{N})", gpt2_regex()};
  } else if (is({"deepseek-llm"})) {
    regexes = kDeepseekLlm;
  } else {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Regex splitting.

namespace {
pcre2_code* code_of(void* p) { return static_cast<pcre2_code*>(p); }
}  // namespace

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns, const std::string& source) : source_(source) {
  for (const std::string& pattern : patterns) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    // MATCH_INVALID_UTF: text read from files may hold malformed UTF-8; such bytes then never
    // match and end up in the gaps, which byte-level BPE encodes like any other bytes.
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error,
                                     &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      for (void* c : codes_) pcre2_code_free(code_of(c));
      fail(source, "pre-tokenizer regex does not compile (" +
                       std::string(reinterpret_cast<char*>(message)) + " at offset " +
                       std::to_string(offset) + "): " + pattern);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter still works
    codes_.push_back(code);
  }
}

RegexSplitter::~RegexSplitter() {
  for (void* c : codes_) pcre2_code_free(code_of(c));
}

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (void* const& c : codes_) {
    pcre2_code* code = code_of(c);
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
    next.clear();
    next.reserve(pieces.size() * 2);
    const size_t regex = &c - codes_.data();
    for (std::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0;   // where the next search starts
      size_t last = 0;  // end of the last piece emitted
      while (pos < piece.size()) {
        const int rc = pcre2_match(code, subject, piece.size(), pos, 0, md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
            rc == PCRE2_ERROR_JIT_STACKLIMIT) {
          fail(source_, "pre-tokenizer regex " + std::to_string(regex + 1) + " exceeded PCRE2's match limit on a " +
                            std::to_string(piece.size()) + "-byte piece of the text (the regex backtracks too much "
                            "on this input)");
        }
        if (rc < 0) fail(source_, "pre-tokenizer regex " + std::to_string(regex + 1) + " failed with PCRE2 error " + std::to_string(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t start = ov[0], end = ov[1];
        if (end == start) {  // an empty match splits nothing; move on one character
          pos = start + unicode::char_len(piece, start);
          continue;
        }
        if (start > last) next.push_back(piece.substr(last, start - last));
        next.push_back(piece.substr(start, end - start));
        last = pos = end;
      }
      if (last < piece.size()) next.push_back(piece.substr(last));
    }
    pieces.swap(next);
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE.

namespace {
uint64_t pair_key(int32_t l, int32_t r) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
}
constexpr size_t kMaxCachedWords = 1 << 20;  // bounds memory on adversarial input
}  // namespace

BpeEncoder::BpeEncoder(const TokenizerSpec& spec, const TokenMap& token_to_id,
                       const std::string& source)
    : spec_(spec), token_to_id_(token_to_id), splitter_(spec.pre_regexes, source) {
  const auto& table = unicode::byte_level_table();
  for (int b = 0; b < 256; ++b) {
    auto it = token_to_id_.find(std::string_view(table.byte_to_utf8[b]));
    byte_token_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string& m = spec.merges[rank];
    // Tokens never contain a plain space in byte-level BPE (it is mapped to U+0120), so the
    // first space after the first character separates the two sides.
    const size_t sp = m.find(' ', 1);
    const std::string what = "merge " + std::to_string(rank) + " '" + m + "'";
    if (sp == std::string::npos) fail(source, what + " is not 'left right'");
    const std::string_view left = std::string_view(m).substr(0, sp);
    const std::string_view right = std::string_view(m).substr(sp + 1);
    auto l = token_to_id_.find(left), r = token_to_id_.find(right);
    if (l == token_to_id_.end()) fail(source, what + " names unknown token '" + std::string(left) + "'");
    if (r == token_to_id_.end()) fail(source, what + " names unknown token '" + std::string(right) + "'");
    auto merged = token_to_id_.find(std::string(left) + std::string(right));
    if (merged == token_to_id_.end()) {
      fail(source, what + " yields '" + std::string(left) + std::string(right) +
                       "', which is not a token");
    }
    // The first (best-ranked) occurrence of a pair wins, as in HF.
    merges_.emplace(pair_key(l->second, r->second),
                    std::make_pair(static_cast<int32_t>(rank), merged->second));
  }
}

void BpeEncoder::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (spec_.ignore_merges) {
    std::string mapped;
    for (char c : word) mapped += unicode::byte_level_table().byte_to_utf8[static_cast<uint8_t>(c)];
    auto it = token_to_id_.find(std::string_view(mapped));
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per byte: the byte -> unicode map sends every byte to one character.
  std::vector<Symbol> syms(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    syms[i] = {static_cast<int32_t>(i) - 1,
               i + 1 < word.size() ? static_cast<int32_t>(i + 1) : -1, static_cast<uint32_t>(i),
               1, byte_token_[static_cast<uint8_t>(word[i])]};
  }
  merge_symbols(syms, [&](const Symbol& l, const Symbol& r, double& priority, int32_t& id) {
    if (l.id < 0 || r.id < 0) return false;
    auto it = merges_.find(pair_key(l.id, r.id));
    if (it == merges_.end()) return false;
    priority = -static_cast<double>(it->second.first);
    id = it->second.second;
    return true;
  });
  for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(syms.size()); i = syms[i].next) {
    if (syms[i].id >= 0) {
      out.push_back(syms[i].id);
    } else if (spec_.unk_id >= 0) {
      out.push_back(spec_.unk_id);  // the vocabulary lacks this byte's character
    }
  }
}

void BpeEncoder::encode(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  for (std::string_view word : splitter_.split(text)) {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    ids.clear();
    encode_word(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(std::string(word), ids);
  }
}

}  // namespace mpq::tok

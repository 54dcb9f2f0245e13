// Hugging Face tokenizer files written from a TokenizerSpec (io/tokenizer_hf_writer.h).
//
// The files are read back with mpq's own tokenizer.json reader and must encode exactly as the
// tokenizer they were written from, on WikiText-2 and TinyStories text and on edge cases, with
// and without BOS/EOS and special-token parsing. mpq's reader turns BPE merges back into
// SentencePiece scores, so for SentencePiece vocabularies the written merges are also run under
// Hugging Face's own rule (lowest merge rank first, bytes before merges) by a small reference
// here. transformers itself is checked by hand (docs/INTEROP.md).
#include "test_util.h"
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/tokenizer_hf_writer.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace fs = std::filesystem;
using mpq::TokenType;
using mpq::Tokenizer;
using mpq::TokenizerSpec;
using mpq::test::TempDir;
using nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {

const std::string kShared = MPQ_SHARED_DIR;
const std::string kData = MPQ_TEST_DATA_DIR;
const std::string kStoriesGguf = kShared + "/models/stories260K/gguf/stories260K.gguf";
const std::string kSmolGguf = mpq::test::default_model();
const std::string kWiki = kShared + "/text/wikitext-2-raw-v1/wiki.test.raw";
const std::string kTiny = kShared + "/text/tinystories-sample/tiny.txt";

#define REQUIRE_FILE(path)                                                \
  do {                                                                    \
    if (!fs::exists(path)) GTEST_SKIP() << "missing " << (path);          \
  } while (0)

template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no mpq::Error thrown";
  } catch (const mpq::Error& e) {
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message '" << e.what() << "' lacks '" << n << "'";
    }
  }
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TokenizerSpec gguf_spec(const std::string& path) {
  mpq::GgufFile gguf(path);
  return mpq::tokenizer_spec_from_gguf(gguf);
}

// Writes the three files into `dir` and reads tokenizer.json back with mpq's reader.
TokenizerSpec write_and_read(const TokenizerSpec& spec, const TempDir& dir, int64_t max_context = 0) {
  mpq::write_hf_tokenizer_files(spec, "source.gguf", max_context,
                                [&](const std::string& name) { return dir.file(name); });
  return mpq::tokenizer_spec_from_hf_json(dir.file("tokenizer.json"));
}

// The first ~`bytes` of a text file, cut after a newline (whole lines, whole characters).
std::string text_head(const std::string& path, size_t bytes) {
  std::string text = mpq::test::slurp(path);
  if (text.size() > bytes) text.resize(text.rfind('\n', bytes) + 1);
  return text;
}

// Edge cases: leading/trailing spaces, runs of spaces and newlines, digits (SmolLM splits each),
// CRLF and tabs, non-ASCII, characters outside small vocabularies (byte fallback), and the text
// of special tokens of both test models.
const std::vector<std::string> kEdgeCases = {
    "",
    " ",
    "  two leading spaces",
    "\n\nstarts with newlines\n",
    " \n = Robert Boulter = \n \n",
    "digits 1234567890, 3.14159, 1,000,000 and \u0661\u0662\u0663 \u00bd x\u00b2",
    "tabs\tand\r\nCRLF\r\n\ttrailing spaces   ",
    "Caf\u00e9 d\u00e9j\u00e0 vu \u2014 \u201cquotes\u201d \u4f60\u597d \U0001F642 \u00a0nbsp",
    "I'M SURE they'll say it's fine, don't you?",
    "<s>Once upon a time</s> there was <unk> and <0x41>",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>Once upon a time<|endoftext|>",
};

// Both tokenizers give the same ids on `text` in every mode (BOS/EOS on and off, special tokens
// parsed or not), and `back` decodes them as `source` does.
void expect_same_encoding(const Tokenizer& source, const Tokenizer& back, const std::string& text,
                          const std::string& what) {
  for (bool add_special : {false, true}) {
    for (bool parse_special : {false, true}) {
      const Ids want = source.encode(text, add_special, parse_special);
      const Ids got = back.encode(text, add_special, parse_special);
      ASSERT_EQ(got.size(), want.size()) << what << " add_special=" << add_special
                                         << " parse_special=" << parse_special;
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(got[i], want[i]) << what << ": first difference at token " << i
                                   << " (add_special=" << add_special
                                   << ", parse_special=" << parse_special << ")";
      }
      // (not ASSERT_EQ: it would print whole texts)
      ASSERT_TRUE(back.decode(got) == source.decode(want)) << what << ": decoded texts differ";
    }
  }
}

// The spec fields the files carry (scores of a SentencePiece vocabulary are re-derived from the
// merge ranks by the reader; they are compared through encoding instead).
void expect_same_spec(const TokenizerSpec& a, const TokenizerSpec& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.tokens, b.tokens);
  // Unused and undefined tokens (Qwen's [PAD...]) are plain vocabulary in tokenizer.json and read
  // back as normal: mpq treats the three alike.
  auto plain = [](std::vector<TokenType> types) {
    for (TokenType& t : types) {
      if (t == TokenType::Unused || t == TokenType::Undefined) t = TokenType::Normal;
    }
    return types;
  };
  EXPECT_TRUE(plain(a.token_types) == plain(b.token_types)) << "token types differ";
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.unk_id, b.unk_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(a.chat_template, b.chat_template);
  if (a.kind == TokenizerSpec::Kind::ByteLevelBpe) {
    EXPECT_EQ(a.merges, b.merges);
    EXPECT_EQ(a.pre_regexes, b.pre_regexes);
    EXPECT_EQ(a.ignore_merges, b.ignore_merges);
  } else {
    EXPECT_EQ(a.add_space_prefix, b.add_space_prefix);
  }
}

// Hugging Face's BPE as transformers runs a SentencePiece-style tokenizer.json: added tokens (and
// the special tokens tokenizer_config.json names, which transformers adds) cut out of the raw
// text (leftmost, longest), each remaining piece normalized on its own (Prepend,
// Replace), one symbol per character, a character that is not a token replaced by its byte
// tokens (byte_fallback) or the unknown token, then the adjacent pair of lowest merge rank
// merged first (ties leftmost). Written from the tokenizers documentation and source, not from
// mpq's encoder; handles exactly the forms the writer emits.
class HfSentencePieceReference {
 public:
  HfSentencePieceReference(const json& doc, const json& config) {
    const json& model = doc.at("model");
    for (const auto& [text, id] : model.at("vocab").items()) vocab_[text] = id.get<int32_t>();
    byte_fallback_ = model.at("byte_fallback").get<bool>();
    if (model.at("unk_token").is_string()) unk_ = vocab_.at(model.at("unk_token").get<std::string>());
    const json& merges = model.at("merges");
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const int32_t l = vocab_.at(merges[rank][0].get<std::string>());
      const int32_t r = vocab_.at(merges[rank][1].get<std::string>());
      const int32_t m = vocab_.at(merges[rank][0].get<std::string>() + merges[rank][1].get<std::string>());
      ranks_.emplace(key(l, r), std::make_pair(static_cast<int32_t>(rank), m));
    }
    for (const json& added : doc.at("added_tokens")) added_.push_back(added.at("content").get<std::string>());
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (config.at(key).is_string()) added_.push_back(config.at(key).get<std::string>());
    }
    const json& norm = doc.at("normalizer");
    if (norm.at("type") == "Sequence") {
      for (const json& n : norm.at("normalizers")) prepend_ |= n.at("type") == "Prepend";
    }
  }

  Ids encode(const std::string& text) const {
    Ids out;
    size_t piece = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t best = 0;
      for (const std::string& a : added_) {
        if (a.size() > best && text.compare(pos, a.size(), a) == 0) best = a.size();
      }
      if (best == 0) {
        ++pos;
        continue;
      }
      encode_piece(text.substr(piece, pos - piece), out);
      out.push_back(vocab_.at(text.substr(pos, best)));
      pos += best;
      piece = pos;
    }
    encode_piece(text.substr(piece), out);
    return out;
  }

 private:
  static uint64_t key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }

  void encode_piece(const std::string& raw, Ids& out) const {
    if (raw.empty()) return;
    std::string norm = prepend_ ? "\xE2\x96\x81" : "";
    for (char c : raw) norm += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    std::vector<mpq::tok::Symbol> syms;
    auto add = [&](int32_t id) {
      const auto i = static_cast<int32_t>(syms.size());
      syms.push_back({i - 1, -1, static_cast<uint32_t>(i), 1, id});
      if (i > 0) syms[i - 1].next = i;
    };
    for (size_t pos = 0; pos < norm.size();) {
      const size_t n = mpq::unicode::char_len(norm, pos);
      auto it = vocab_.find(norm.substr(pos, n));
      if (it != vocab_.end()) {
        add(it->second);
      } else if (byte_fallback_) {
        for (size_t k = 0; k < n; ++k) {
          char name[8];
          std::snprintf(name, sizeof name, "<0x%02X>", static_cast<uint8_t>(norm[pos + k]));
          add(vocab_.at(name));
        }
      } else if (unk_ >= 0) {
        add(unk_);
      }
      pos += n;
    }
    mpq::tok::merge_symbols(syms, [&](const mpq::tok::Symbol& l, const mpq::tok::Symbol& r,
                                      double& priority, int32_t& id) {
      auto it = ranks_.find(key(l.id, r.id));
      if (it == ranks_.end()) return false;
      priority = -static_cast<double>(it->second.first);
      id = it->second.second;
      return true;
    });
    for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(syms.size()); i = syms[i].next) {
      out.push_back(syms[i].id);
    }
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> ranks_;  // pair -> (rank, merged id)
  std::vector<std::string> added_;
  bool byte_fallback_ = false;
  bool prepend_ = false;
  int32_t unk_ = -1;
};

// A byte-level vocabulary: the 256 byte characters (id = byte), then merged tokens.
TokenizerSpec byte_level_spec() {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::ByteLevelBpe;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(mpq::unicode::byte_level_table().byte_to_utf8[b]);
  for (const char* t : {"he", "ll", "hell", "hello", "<|end|>"}) spec.tokens.push_back(t);
  spec.merges = {"h e", "l l", "he ll", "hell o"};
  spec.token_types.assign(spec.tokens.size(), TokenType::Normal);
  spec.token_types.back() = TokenType::Control;
  spec.eos_id = static_cast<int32_t>(spec.tokens.size()) - 1;
  spec.pre_regexes = {mpq::tok::gpt2_regex()};
  return spec;
}

// A SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then pieces with scores.
TokenizerSpec sentencepiece_spec() {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::SentencePiece;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.token_types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    spec.tokens.push_back(name);
    spec.token_types.push_back(TokenType::Byte);
  }
  spec.scores.assign(spec.tokens.size(), 0.0f);
  const std::vector<std::pair<std::string, float>> pieces = {
      {"\xE2\x96\x81", -10}, {"a", -11}, {"b", -12}, {"c", -13},
      {"\xE2\x96\x81" "a", -1}, {"ab", -2}, {"\xE2\x96\x81" "ab", -3}, {"bc", -4}};
  for (const auto& [text, score] : pieces) {
    spec.tokens.push_back(text);
    spec.scores.push_back(score);
    spec.token_types.push_back(TokenType::Normal);
  }
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.add_bos = true;
  return spec;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Real tokenizers: GGUF -> files -> mpq's tokenizer.json reader

TEST(HfTokenizerWriter, Stories260KSentencePieceReadsBackIdentically) {
  REQUIRE_FILE(kStoriesGguf);
  REQUIRE_FILE(kWiki);
  TempDir dir;
  const TokenizerSpec spec = gguf_spec(kStoriesGguf);
  const TokenizerSpec back_spec = write_and_read(spec, dir, 2048);
  expect_same_spec(spec, back_spec);
  const Tokenizer source(spec, kStoriesGguf), back(back_spec, dir.file("tokenizer.json"));
  expect_same_encoding(source, back, text_head(kWiki, 300000), "wiki.test.raw");
  if (fs::exists(kTiny)) expect_same_encoding(source, back, mpq::test::slurp(kTiny), "tiny.txt");
  for (const std::string& text : kEdgeCases) expect_same_encoding(source, back, text, "edge case " + text);
  const std::string wiki = text_head(kWiki, 100000);
  EXPECT_EQ(back.decode(back.encode(wiki, true)), wiki);
}

TEST(HfTokenizerWriter, Stories260KMergesUnderHuggingFaceRules) {
  REQUIRE_FILE(kStoriesGguf);
  REQUIRE_FILE(kWiki);
  TempDir dir;
  const TokenizerSpec spec = gguf_spec(kStoriesGguf);
  write_and_read(spec, dir);
  const json doc = json::parse(mpq::test::slurp(dir.file("tokenizer.json")));
  const json config = json::parse(mpq::test::slurp(dir.file("tokenizer_config.json")));
  // transformers' own GGUF converter derives these 165 merges from the same vocabulary.
  EXPECT_EQ(doc.at("model").at("merges").size(), 165u);
  EXPECT_EQ(doc.at("model").at("merges")[0], json::array({"\xE2\x96\x81", "t"}));
  const HfSentencePieceReference hf(doc, config);
  const Tokenizer source(spec, kStoriesGguf);
  std::vector<std::pair<std::string, std::string>> texts = {{"wiki.test.raw", text_head(kWiki, 300000)}};
  if (fs::exists(kTiny)) texts.emplace_back("tiny.txt", mpq::test::slurp(kTiny));
  for (const std::string& text : kEdgeCases) texts.emplace_back("edge case " + text, text);
  for (const auto& [what, text] : texts) {
    // Hugging Face always cuts special tokens out of the text: mpq with parse_special.
    const Ids want = source.encode(text, false, true);
    const Ids got = hf.encode(text);
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << what << ": token " << i;
  }
}

TEST(HfTokenizerWriter, SmolLM2ByteLevelReadsBackIdentically) {
  if (!fs::exists(kSmolGguf)) GTEST_SKIP() << "SmolLM2 GGUF not present: " << kSmolGguf;
  REQUIRE_FILE(kWiki);
  TempDir dir;
  const TokenizerSpec spec = gguf_spec(kSmolGguf);
  ASSERT_FALSE(spec.chat_template.empty());
  const TokenizerSpec back_spec = write_and_read(spec, dir, 8192);
  expect_same_spec(spec, back_spec);
  const Tokenizer source(spec, kSmolGguf), back(back_spec, dir.file("tokenizer.json"));
  expect_same_encoding(source, back, text_head(kWiki, 300000), "wiki.test.raw");
  if (fs::exists(kTiny)) expect_same_encoding(source, back, mpq::test::slurp(kTiny), "tiny.txt");
  for (const std::string& text : kEdgeCases) expect_same_encoding(source, back, text, "edge case " + text);

  // The pre-tokenizer in the form of SmolLM2's own tokenizer.json: each digit alone, then GPT-2.
  const json doc = json::parse(mpq::test::slurp(dir.file("tokenizer.json")));
  const json pre = {{"type", "Sequence"},
                    {"pretokenizers",
                     {{{"type", "Digits"}, {"individual_digits", true}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                       {"use_regex", true}}}}};
  EXPECT_EQ(doc.at("pre_tokenizer"), pre);
  EXPECT_EQ(doc.at("post_processor").at("type"), "ByteLevel");  // adds no BOS/EOS
  EXPECT_EQ(doc.at("model").at("merges").size(), spec.merges.size());
  EXPECT_EQ(doc.at("added_tokens").size(), 17u);
  const json config = json::parse(mpq::test::slurp(dir.file("tokenizer_config.json")));
  EXPECT_EQ(config.at("tokenizer_class"), "PreTrainedTokenizerFast");
  EXPECT_EQ(config.at("bos_token"), "<|im_start|>");
  EXPECT_EQ(config.at("eos_token"), "<|im_end|>");
  EXPECT_EQ(config.at("pad_token"), "<|im_end|>");
  EXPECT_EQ(config.at("unk_token"), "<|endoftext|>");
  EXPECT_EQ(config.at("add_bos_token"), false);
  EXPECT_EQ(config.at("model_max_length"), 8192);
  EXPECT_EQ(config.at("chat_template"), spec.chat_template);
  EXPECT_EQ(config.at("added_tokens_decoder").size(), 17u);
  EXPECT_EQ(json::parse(mpq::test::slurp(dir.file("generation_config.json"))),
            json({{"bos_token_id", 1}, {"eos_token_id", 2}, {"pad_token_id", 2}}));
}

// The larger models scripts/fetch_models.sh fetches, when present: Qwen2.5 (byte-level, qwen2
// regex as a Split step) and Gemma 3 (SentencePiece without the space prefix, 262k tokens, 6k
// added tokens; a good test of the merges).
TEST(HfTokenizerWriter, FetchedModelsReadBackIdentically) {
  REQUIRE_FILE(kWiki);
  const std::string wiki = text_head(kWiki, 100000);
  int present = 0;
  for (const char* name : {"Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M.gguf", "gemma-3-270m.Q4_K_M.gguf"}) {
    const std::string path = mpq::test::models_dir() + "/" + name;
    if (!fs::exists(path)) continue;
    ++present;
    TempDir dir;
    const TokenizerSpec spec = gguf_spec(path);
    const TokenizerSpec back_spec = write_and_read(spec, dir);
    expect_same_spec(spec, back_spec);
    const Tokenizer source(spec, path), back(back_spec, dir.file("tokenizer.json"));
    expect_same_encoding(source, back, wiki, std::string(name) + " wiki.test.raw");
    for (const std::string& text : kEdgeCases) expect_same_encoding(source, back, text, name);
    if (spec.kind == TokenizerSpec::Kind::SentencePiece) {
      const HfSentencePieceReference hf(json::parse(mpq::test::slurp(dir.file("tokenizer.json"))),
                                        json::parse(mpq::test::slurp(dir.file("tokenizer_config.json"))));
      EXPECT_TRUE(hf.encode(wiki) == source.encode(wiki, false, true)) << name;
      for (const std::string& text : kEdgeCases) EXPECT_EQ(hf.encode(text), source.encode(text, false, true)) << name;
    }
  }
  if (present == 0) GTEST_SKIP() << "no fetched model in " << mpq::test::models_dir();
}

// ---------------------------------------------------------------------------------------------
// Small tokenizers: the checked-in fixtures and synthetic specs

TEST(HfTokenizerWriter, SmallFixturesReadBackIdentically) {
  for (const char* name : {"tok_bpe_small", "tok_spm_small"}) {
    TempDir dir;
    const TokenizerSpec spec = mpq::tokenizer_spec_from_hf_json(kData + "/" + name + "/tokenizer.json");
    const TokenizerSpec back_spec = write_and_read(spec, dir);
    expect_same_spec(spec, back_spec);
    const Tokenizer source(spec, name), back(back_spec, dir.file("tokenizer.json"));
    for (const std::string& text : kEdgeCases) expect_same_encoding(source, back, text, name);
    for (const std::string& text : {"hello the hell ohello", "ab abab \u00e9 a b c <user>x<user>"}) {
      expect_same_encoding(source, back, text, name);
    }
  }
}

TEST(HfTokenizerWriter, SyntheticSpecsReadBackIdentically) {
  TokenizerSpec bpe = byte_level_spec();
  bpe.add_eos = true;
  bpe.ignore_merges = true;
  bpe.pre_regexes = {R"(\p{N}+)", R"( ?\p{L}+|[^\p{L}]+)"};  // Digits (groups), then a Split
  TokenizerSpec spm = sentencepiece_spec();
  TokenizerSpec spm_no_prefix = sentencepiece_spec();
  spm_no_prefix.add_space_prefix = false;
  spm_no_prefix.chat_template = "{{ messages[0]['content'] }}";
  // Byte 0x04 without a token: the unknown token stands for it (a control token, as SmolLM2's
  // <|endoftext|>), or with no unknown token it is dropped.
  TokenizerSpec bpe_unk = byte_level_spec();
  bpe_unk.tokens[0x04] = "<|four|>";
  bpe_unk.token_types[0x04] = TokenType::Control;
  bpe_unk.unk_id = 260;
  TokenizerSpec bpe_drop = bpe_unk;
  bpe_drop.unk_id = -1;
  // Tokens with a plain space (Gemma has some): never formed, but their merges are written as
  // ["a", " b"], which must read back.
  TokenizerSpec spm_spaces = sentencepiece_spec();
  for (const char* t : {" b", "a b"}) {
    spm_spaces.tokens.push_back(t);
    spm_spaces.scores.push_back(-20);
    spm_spaces.token_types.push_back(TokenType::Normal);
  }
  for (const TokenizerSpec* spec : {&bpe, &spm, &spm_no_prefix, &bpe_unk, &bpe_drop, &spm_spaces}) {
    TempDir dir;
    const TokenizerSpec back_spec = write_and_read(*spec, dir);
    expect_same_spec(*spec, back_spec);
    const Tokenizer source(*spec, "synthetic"), back(back_spec, dir.file("tokenizer.json"));
    for (const std::string& text : kEdgeCases) expect_same_encoding(source, back, text, "synthetic");
    for (const std::string& text : {"hello hellohello 12345 hell<|end|>o", " ab abc bca  cab\u00e9", "a\x04\x04" "b",
                                    "a b  a  b"}) {
      expect_same_encoding(source, back, text, "synthetic");
    }
  }
  // The Split step is written as such; \p{N}+ as grouped Digits.
  TempDir dir;
  write_and_read(bpe, dir);
  const json doc = json::parse(mpq::test::slurp(dir.file("tokenizer.json")));
  const json& steps = doc.at("pre_tokenizer").at("pretokenizers");
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0], json({{"type", "Digits"}, {"individual_digits", false}}));
  EXPECT_EQ(steps[1].at("type"), "Split");
  EXPECT_EQ(steps[1].at("pattern").at("Regex"), bpe.pre_regexes[1]);
  EXPECT_EQ(steps[2].at("use_regex"), false);
  EXPECT_EQ(doc.at("model").at("ignore_merges"), true);
  EXPECT_EQ(doc.at("post_processor").at("type"), "TemplateProcessing");
  EXPECT_EQ(doc.at("model").at("unk_token"), nullptr);
  // The unknown token is written as BPE's unk_token when a byte needs it, and keeps its type.
  TempDir dir_unk;
  EXPECT_EQ(write_and_read(bpe_unk, dir_unk).token_types[260], TokenType::Control);
  const json doc_unk = json::parse(mpq::test::slurp(dir_unk.file("tokenizer.json")));
  EXPECT_EQ(doc_unk.at("model").at("unk_token"), "<|end|>");
  EXPECT_EQ(Tokenizer(bpe_unk, "synthetic").encode("a\x04" "b", false), (Ids{'a', 260, 'b'}));
  TempDir dir_spaces;
  write_and_read(spm_spaces, dir_spaces);
  const json doc_spaces = json::parse(mpq::test::slurp(dir_spaces.file("tokenizer.json")));
  EXPECT_EQ(doc_spaces.at("model").at("merges").back(), json::array({"a", " b"}));
}

TEST(HfTokenizerWriter, SentencePieceMergesFromScores) {
  TempDir dir;
  write_and_read(sentencepiece_spec(), dir);
  const json doc = json::parse(mpq::test::slurp(dir.file("tokenizer.json")));
  // By the merged token's score (▁a -1, ab -2, ▁ab -3, bc -4); ▁ab's two splits by ids.
  const json merges = json::array({json::array({"\xE2\x96\x81", "a"}), json::array({"a", "b"}),
                                   json::array({"\xE2\x96\x81", "ab"}), json::array({"\xE2\x96\x81" "a", "b"}),
                                   json::array({"b", "c"})});
  EXPECT_EQ(doc.at("model").at("merges"), merges);
  EXPECT_EQ(doc.at("model").at("byte_fallback"), true);
  EXPECT_EQ(doc.at("model").at("unk_token"), "<unk>");
  EXPECT_EQ(doc.at("pre_tokenizer"), nullptr);
  EXPECT_EQ(doc.at("normalizer").at("normalizers")[0].at("type"), "Prepend");
  EXPECT_EQ(doc.at("post_processor").at("single")[0].at("SpecialToken").at("id"), "<s>");
  const json config = json::parse(mpq::test::slurp(dir.file("tokenizer_config.json")));
  EXPECT_EQ(config.at("add_bos_token"), true);
  EXPECT_EQ(config.at("pad_token"), nullptr);
  EXPECT_FALSE(config.contains("model_max_length"));  // no context given
  EXPECT_FALSE(config.contains("chat_template"));
  EXPECT_EQ(json::parse(mpq::test::slurp(dir.file("generation_config.json"))),
            json({{"bos_token_id", 1}, {"eos_token_id", 2}}));
  // The reference BPE agrees with mpq's SentencePiece encoder on text that exercises ties of
  // position (abab) and the byte fallback (é).
  const HfSentencePieceReference hf(doc, config);
  const Tokenizer source(sentencepiece_spec(), "synthetic");
  for (const std::string text : {"ab abab abc  bcab \u00e9a", " a", "abcabcab", "<s>ab</s>", "x<unk>ab"}) {
    EXPECT_EQ(hf.encode(text), source.encode(text, false, true)) << text;
  }
}

// ---------------------------------------------------------------------------------------------
// What the JSON forms cannot express is refused, naming the source

TEST(HfTokenizerWriter, RefusesWhatTheJsonCannotExpress) {
  auto write = [](const TokenizerSpec& spec) {
    TempDir dir;
    mpq::write_hf_tokenizer_files(spec, "model.gguf", 0, [&](const std::string& n) { return dir.file(n); });
  };
  {
    TokenizerSpec s = byte_level_spec();
    s.tokens.push_back("he");  // a second "he"
    s.token_types.push_back(TokenType::Normal);
    expect_error([&] { write(s); }, {"model.gguf", "token 261 \"he\" repeats token 256"});
  }
  {
    TokenizerSpec s = byte_level_spec();
    s.bos_id = 256;  // "he", a plain token
    expect_error([&] { write(s); }, {"model.gguf", "bos is token 256 \"he\", a plain token"});
  }
  {
    TokenizerSpec s = byte_level_spec();
    s.tokens[0x41] = "\xC3";  // not UTF-8
    expect_error([&] { write(s); }, {"model.gguf", "token 65 is not valid UTF-8"});
  }
  {
    TokenizerSpec s = sentencepiece_spec();
    s.tokens.push_back("<unk2>");
    s.scores.push_back(0);
    s.token_types.push_back(TokenType::Unknown);
    expect_error([&] { write(s); }, {"model.gguf", "token 267 \"<unk2>\" has the unknown type"});
  }
  {
    TokenizerSpec s = sentencepiece_spec();
    s.tokens.push_back("z\xE2\x96\x81");  // "z" is not a token
    s.scores.push_back(-5);
    s.token_types.push_back(TokenType::Normal);
    expect_error([&] { write(s); }, {"model.gguf", "joins the character \"z\", which is not a token"});
  }
  {
    TokenizerSpec s = sentencepiece_spec();
    s.scores.back() = -3;  // bc now ties with ▁ab
    expect_error([&] { write(s); }, {"model.gguf", "share the score"});
  }
  {
    TokenizerSpec s = sentencepiece_spec();
    s.scores.back() = std::numeric_limits<float>::quiet_NaN();
    expect_error([&] { write(s); }, {"model.gguf", "NaN score"});
  }
  {
    TokenizerSpec s = sentencepiece_spec();
    s.tokens[3 + 0x41] = "<0x41";  // 255 of the 256 byte tokens
    expect_error([&] { write(s); }, {"model.gguf", "255 of 256"});
  }
  // A user-defined token without "▁" never reaches the merges: its score does not matter.
  TokenizerSpec s = sentencepiece_spec();
  s.tokens.push_back("abc");
  s.scores.push_back(-4);  // the score of bc
  s.token_types.push_back(TokenType::UserDefined);
  EXPECT_NO_THROW(write(s));
}

TEST(HfTokenizerWriter, WritesOnlyTheThreeFiles) {
  TempDir dir;
  std::vector<std::string> asked;
  mpq::write_hf_tokenizer_files(sentencepiece_spec(), "model.gguf", 512, [&](const std::string& name) {
    asked.push_back(name);
    return dir.file(name);
  });
  EXPECT_EQ(asked, (std::vector<std::string>{"tokenizer.json", "tokenizer_config.json", "generation_config.json"}));
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_TRUE(json::parse(mpq::test::slurp(e.path().string())).is_object()) << e.path();
  }
  EXPECT_EQ(entries, 3u);  // no temporaries left behind
}

// ---------------------------------------------------------------------------------------------
// The chat template through every loader

TEST(HfTokenizerWriter, ChatTemplateSurvivesEveryLoader) {
  TempDir dir;
  TokenizerSpec spec = sentencepiece_spec();
  spec.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}\n\u00e9";
  // GGUF (tokenizer.gguf in mpq's model directories) and back.
  mpq::write_tokenizer_gguf(spec, dir.file("tokenizer.gguf"));
  EXPECT_EQ(gguf_spec(dir.file("tokenizer.gguf")).chat_template, spec.chat_template);
  // tokenizer_config.json's chat_template.
  EXPECT_EQ(write_and_read(spec, dir).chat_template, spec.chat_template);
  // chat_template.jinja beside it wins (transformers 5 writes the template there).
  write_text(dir.file("chat_template.jinja"), "jinja file");
  EXPECT_EQ(mpq::tokenizer_spec_from_hf_json(dir.file("tokenizer.json")).chat_template, "jinja file");
  fs::remove(dir.file("chat_template.jinja"));
  // transformers 4's list of named templates: "default" is kept.
  json config = json::parse(mpq::test::slurp(dir.file("tokenizer_config.json")));
  config["chat_template"] = json::array({{{"name", "tool_use"}, {"template", "tools"}},
                                         {{"name", "default"}, {"template", "plain"}}});
  write_text(dir.file("tokenizer_config.json"), config.dump());
  EXPECT_EQ(mpq::tokenizer_spec_from_hf_json(dir.file("tokenizer.json")).chat_template, "plain");
  config["chat_template"] = 3;
  write_text(dir.file("tokenizer_config.json"), config.dump());
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(dir.file("tokenizer.json")); },
               {"tokenizer_config.json", "chat_template"});
}

// ---------------------------------------------------------------------------------------------
// mpq tokenize SOURCE --hf-out DIR

TEST(HfTokenizerWriterCli, TokenizeHfOutWritesADirectory) {
  REQUIRE_FILE(kStoriesGguf);
  REQUIRE_FILE(kTiny);
  TempDir tmp;
  const std::string out = tmp.file("tok");
  auto r = mpq::test::run_mpq("tokenize '" + kStoriesGguf + "' --hf-out '" + out + "' --max-context 512", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    EXPECT_TRUE(fs::exists(out + "/" + name)) << name;
  }
  EXPECT_EQ(json::parse(mpq::test::slurp(out + "/tokenizer_config.json")).at("model_max_length"), 512);
  // mpq reads the directory back (tokenizer.json) to the GGUF's ids.
  r = mpq::test::run_mpq("tokenize '" + out + "' --file '" + kTiny + "' --json", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const Ids from_dir = json::parse(r.out).at("ids").get<Ids>();
  EXPECT_EQ(from_dir, Tokenizer(gguf_spec(kStoriesGguf), kStoriesGguf).encode(mpq::test::slurp(kTiny), true));
  // An earlier mpq output is replaced; a directory mpq did not write is not.
  r = mpq::test::run_mpq("tokenize '" + kStoriesGguf + "' --hf-out '" + out + "'", tmp);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(json::parse(mpq::test::slurp(out + "/tokenizer_config.json")).contains("model_max_length"));
  const std::string theirs = tmp.file("theirs");
  fs::create_directories(theirs);
  write_text(theirs + "/notes.txt", "mine");
  r = mpq::test::run_mpq("tokenize '" + kStoriesGguf + "' --hf-out '" + theirs + "'", tmp);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(mpq::test::slurp(theirs + "/notes.txt"), "mine");
  EXPECT_FALSE(fs::exists(theirs + "/tokenizer.json"));
}

// Tokenizer tests: golden ids (stories260K, SmolLM2), hand-checked merges on small fixtures,
// pre-tokenizer splits, round trips and malformed inputs.
//
// Fixtures (tests/data/tok_*) are tiny tokenizer.json files that HF `tokenizers` also loads and
// encodes identically:
//   tok_bpe_small: byte-level BPE, the 256 GPT-2 byte characters (id = byte) + merges
//     0 "h e", 1 "l l", 2 "Ġ t", 3 "Ġt he", 4 "he ll", 5 "hell o", 6 "Ġ h" as [a, b] pairs
//     -> he 256, ll 257, Ġt 258, Ġthe 259, hell 260, hello 261, Ġh 262;
//     added <|endoftext|> 263 (special), <user> 264 (not special); config add_eos_token=true.
//   tok_spm_small: Llama-2 layout: <unk> <s> </s>, <0x00>..<0xFF> at 3..258, then
//     ▁ 259, a 260, b 261, c 262, ▁a 263, ab 264, ▁ab 265; merges "▁ a", "a b", "▁a b";
//     normalizer Prepend ▁ + Replace " " -> ▁, byte_fallback; config add_bos_token=true.
#include "test_util.h"
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/tokenizer_internal.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace fs = std::filesystem;
using mpq::Tokenizer;
using mpq::TokenizerSpec;
using Ids = std::vector<int32_t>;

using mpq::test::TempDir;

namespace {

const std::string kShared = MPQ_SHARED_DIR;
const std::string kData = MPQ_TEST_DATA_DIR;
const std::string kStories = kShared + "/models/stories260K";
// The project's default model (repo root /models), not in git: tests needing it skip without it.
const std::string kSmol = kData + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}


// Runs `f`, expecting an mpq::Error whose message contains every one of `needles`.
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

#define REQUIRE_FILE(path)                                                \
  do {                                                                    \
    if (!fs::exists(path)) GTEST_SKIP() << "missing " << (path);          \
  } while (0)

Ids golden_stories_ids(std::string* text) {
  const auto golden = nlohmann::json::parse(read_file(kStories + "/golden_tinystories.json"));
  *text = golden.at("tinystories_like").at("text").get<std::string>();
  return golden.at("tinystories_like").at("ids").get<Ids>();
}

// Text that exercises the awkward corners of both algorithms.
const std::string kUnicodeText =
    "Hello world! 123 4567.89\r\n\tTabs\t\tand  multiple   spaces   \n\n\n"
    "Café déjà vu — naïve façade Ångström\n你好，世界！日本語のテキスト 한국어\n"
    "Emoji: 😀👍🏽🇺🇸 and ❤️ ok\nI'M SURE they'll say it's fine, don't you?\n"
    "  lead\u00a0nbsp\u2003em ½ x² \u0661\u0662  trailing  ";

std::unique_ptr<Tokenizer> small_bpe() { return mpq::load_tokenizer(kData + "/tok_bpe_small"); }
std::unique_ptr<Tokenizer> small_spm() { return mpq::load_tokenizer(kData + "/tok_spm_small"); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Golden ids

TEST(TokenizerGolden, Stories260KFromLlama2c) {
  REQUIRE_FILE(kStories + "/llama2c/tok512.bin");
  std::string text;
  const Ids expected = golden_stories_ids(&text);
  Tokenizer tok(mpq::tokenizer_spec_from_llama2c(kStories + "/llama2c/tok512.bin", 512), "tok512");
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.spec().bos_id, 1);
  EXPECT_EQ(tok.spec().eos_id, 2);
  EXPECT_EQ(tok.spec().token_types[3], mpq::TokenType::Byte);
  EXPECT_EQ(tok.encode(text, true), expected);
  EXPECT_EQ(tok.decode(expected), text);
}

TEST(TokenizerGolden, Stories260KFromGguf) {
  REQUIRE_FILE(kStories + "/gguf/stories260K.gguf");
  std::string text;
  const Ids expected = golden_stories_ids(&text);
  mpq::GgufFile gguf(kStories + "/gguf/stories260K.gguf");
  TokenizerSpec spec = mpq::tokenizer_spec_from_gguf(gguf);
  EXPECT_EQ(spec.kind, TokenizerSpec::Kind::SentencePiece);
  EXPECT_TRUE(spec.add_bos);
  EXPECT_EQ(spec.pad_id, -1);  // stored as UINT32_MAX
  Tokenizer tok(std::move(spec), gguf.path());
  EXPECT_EQ(tok.encode(text, true), expected);
}

TEST(TokenizerGolden, LoadTokenizerDetectsEveryStoriesForm) {
  REQUIRE_FILE(kStories + "/llama2c/stories260K.bin");
  std::string text;
  const Ids expected = golden_stories_ids(&text);
  // tokenizer file alone (entry count found by walking the file), GGUF, checkpoint + tokenizer
  EXPECT_EQ(mpq::load_tokenizer(kStories + "/llama2c/tok512.bin")->encode(text, true), expected);
  EXPECT_EQ(mpq::load_tokenizer(kStories + "/gguf/stories260K.gguf")->encode(text, true), expected);
  EXPECT_EQ(mpq::load_tokenizer(kStories + "/llama2c/stories260K.bin",
                                kStories + "/llama2c/tok512.bin")
                ->encode(text, true),
            expected);
  // a checkpoint alone has no tokenizer
  expect_error([] { mpq::load_tokenizer(kStories + "/llama2c/stories260K.bin"); },
               {"stories260K.bin", "tokenizer file"});
}

// Ids produced by tools/check_tokenizer.py's reference (HF tokenizers over the GGUF vocabulary
// with SmolLM's Digits + ByteLevel pre-tokenizer).
TEST(TokenizerGolden, SmolLM2MatchesReference) {
  if (!fs::exists(kSmol)) GTEST_SKIP() << "SmolLM2 GGUF not present: " << kSmol;
  const auto tok = mpq::load_tokenizer(kSmol);
  EXPECT_EQ(tok->spec().kind, TokenizerSpec::Kind::ByteLevelBpe);
  EXPECT_EQ(tok->spec().pre_name, "smollm");
  EXPECT_FALSE(tok->spec().add_bos);
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"The capital of France is Paris.", {504, 3575, 282, 4649, 314, 7042, 30}},
      {"Hello world! 123 4567.89", {19556, 905, 17, 216, 33, 34, 35, 216, 36, 37, 38, 39, 30, 40, 41}},
      {"I'M SURE they'll say it's fine, don't you?",
       {57, 23, 61, 334, 15672, 502, 3060, 1643, 357, 506, 4979, 28, 1326, 982, 346, 47}},
      {"Café déjà vu — 你好，世界！😀👍🏽",
       {51, 1939, 2756, 32564, 90, 16739, 386, 101, 1841, 216, 18645, 250, 48392, 138, 12831, 7906,
        240, 178, 239, 230, 8083, 219, 10813, 242, 218, 10813, 235, 231, 10813, 233, 138}},
      {"  multiple   spaces\n\n\ttab\r\nend  ", {216, 2701, 256, 5600, 1116, 197, 15999, 201, 198, 486, 256}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(tok->encode(text, true), ids) << text;
    EXPECT_EQ(tok->decode(ids), text);
  }
}

TEST(TokenizerGolden, SmolLM2ParseSpecial) {
  if (!fs::exists(kSmol)) GTEST_SKIP() << "SmolLM2 GGUF not present: " << kSmol;
  const auto tok = mpq::load_tokenizer(kSmol);
  const std::string chat = "<|im_start|>user\nhi<|im_end|>";
  const Ids special = tok->encode(chat, false, true);
  ASSERT_GE(special.size(), 3u);
  EXPECT_EQ(special.front(), 1);  // <|im_start|>
  EXPECT_EQ(special.back(), 2);   // <|im_end|>
  const Ids plain = tok->encode(chat, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_GT(plain.size(), special.size());
  EXPECT_EQ(tok->decode(plain), chat);
  EXPECT_EQ(tok->decode_token(1), "<|im_start|>");
}

// ---------------------------------------------------------------------------------------------
// Hand-checked small vocabularies

TEST(TokenizerSmall, ByteLevelMergesByRank) {
  const auto tok = small_bpe();
  // "hello": he(0) ll(1) hell(4) hello(5). " hello": Ġh (6) loses to he (0), so Ġ stays alone.
  // " the": he(0), Ġt(2), Ġthe(3). add_eos from tokenizer_config.json.
  EXPECT_EQ(tok->encode("hello the hello", false), (Ids{261, 259, 32, 261}));
  EXPECT_EQ(tok->encode("hello the hello", true), (Ids{261, 259, 32, 261, 263}));
  // Unmerged bytes map through the GPT-2 table: '\n' is id 10 (U+010A in the vocabulary).
  EXPECT_EQ(tok->encode("h\n", false), (Ids{104, 10}));
  EXPECT_EQ(tok->decode_token(32), " ");
  EXPECT_EQ(tok->decode_token(259), " the");
}

TEST(TokenizerSmall, ByteLevelSpecialTokensOnlyWhenParsed) {
  const auto tok = small_bpe();
  EXPECT_EQ(tok->encode("hello<user>x<|endoftext|>", false, true), (Ids{261, 264, 120, 263}));
  const Ids plain = tok->encode("hello<|endoftext|>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 263), 0);
  EXPECT_EQ(tok->decode(plain), "hello<|endoftext|>");
}

TEST(TokenizerSmall, ByteLevelRoundTripsArbitraryBytes) {
  const auto tok = small_bpe();
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  all += "\xC3(\xE2\x82 broken \xF0\x9F utf8 \xFF\xFE";
  EXPECT_EQ(tok->decode(tok->encode(all, false)), all);
  EXPECT_EQ(tok->decode(tok->encode(kUnicodeText, false)), kUnicodeText);
}

TEST(TokenizerSmall, SentencePieceByScoreWithByteFallback) {
  const auto tok = small_spm();
  EXPECT_EQ(tok->spec().kind, TokenizerSpec::Kind::SentencePiece);
  // "ab c" -> "▁ab▁c": ▁a (score 0) first, then ▁a+b = ▁ab; c alone.
  EXPECT_EQ(tok->encode("ab c", true), (Ids{1, 265, 259, 262}));
  // é is not in the vocabulary: its bytes C3 A9 fall back to <0xC3> <0xA9> (3 + byte).
  EXPECT_EQ(tok->encode("é", false), (Ids{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode(tok->encode("ab cé", true)), "ab cé");
  EXPECT_EQ(tok->decode_token(265), " ab");
  EXPECT_EQ(tok->decode_token(3 + 'x'), "x");
  EXPECT_TRUE(tok->encode("", true) == Ids{1});
}

TEST(TokenizerSmall, UnknownTokenTextParsedOnlyWithParseSpecial) {
  // As llama.cpp (and Hugging Face, which always parses special tokens): "<unk>" in the text is
  // the unknown token only when special tokens are parsed; otherwise it is plain text.
  TokenizerSpec spec = small_spm()->spec();
  spec.token_types[0] = mpq::TokenType::Unknown;  // <unk>, as in a SentencePiece GGUF
  const Tokenizer tok(spec, "tok_spm_small");
  EXPECT_EQ(tok.encode("a<unk>", false, true), (Ids{263, 0}));
  const Ids plain = tok.encode("a<unk>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 0), 0);
  EXPECT_EQ(tok.decode(plain), "a<unk>");
}

TEST(TokenizerSmall, SentencePieceRoundTripsUnicode) {
  const auto tok = small_spm();
  for (const std::string& text : {kUnicodeText, std::string(" leading space"), std::string("  two")}) {
    EXPECT_EQ(tok->decode(tok->encode(text, true)), text);
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer splits (expected pieces from HF tokenizers' pre_tokenize_str, byte-decoded)

namespace {
std::vector<std::string> split_with(const std::string& pre, const std::string& text) {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  EXPECT_TRUE(mpq::tok::pre_regexes_for(pre, regexes, ignore_merges)) << pre;
  mpq::tok::RegexSplitter splitter(regexes, pre);
  std::vector<std::string> out;
  for (auto piece : splitter.split(text)) out.emplace_back(piece);
  return out;
}
using Pieces = std::vector<std::string>;
}  // namespace

TEST(TokenizerPreSplit, SmolLM) {
  EXPECT_EQ(split_with("smollm", "Hello world! 12345 x2y"),
            (Pieces{"Hello", " world", "!", " ", "1", "2", "3", "4", "5", " x", "2", "y"}));
  EXPECT_EQ(split_with("smollm", "I'M  sure\t\tit's 3.14159\r\n\r\n  ok"),
            (Pieces{"I", "'", "M", " ", " sure", "\t", "\t", "it", "'s", " ", "3", ".", "1", "4",
                    "1", "5", "9", "\r\n\r\n ", " ok"}));
  EXPECT_EQ(split_with("smollm", "  lead\n\n end   "), (Pieces{" ", " lead", "\n\n", " end", "   "}));
  EXPECT_EQ(split_with("smollm", "你好，世界！😀 abc's"),
            (Pieces{"你好", "，", "世界", "！😀", " abc", "'s"}));
}

TEST(TokenizerPreSplit, Llama3) {
  EXPECT_EQ(split_with("llama-bpe", "Hello world! 12345 x2y"),
            (Pieces{"Hello", " world", "!", " ", "123", "45", " x", "2", "y"}));
  EXPECT_EQ(split_with("llama3", "I'M  sure\t\tit's 3.14159\r\n\r\n  ok"),
            (Pieces{"I", "'M", " ", " sure", "\t", "\tit", "'s", " ", "3", ".", "141", "59",
                    "\r\n\r\n", " ", " ok"}));
  EXPECT_EQ(split_with("llama3", "你好，世界！😀 abc's"), (Pieces{"你好", "，世界", "！😀", " abc", "'s"}));
}

TEST(TokenizerPreSplit, Qwen2) {
  EXPECT_EQ(split_with("qwen2", "Hello world! 12345 x2y"),
            (Pieces{"Hello", " world", "!", " ", "1", "2", "3", "4", "5", " x", "2", "y"}));
  EXPECT_EQ(split_with("qwen2", "I'M  sure\t\tit's 3.14159\r\n\r\n  ok"),
            (Pieces{"I", "'M", " ", " sure", "\t", "\tit", "'s", " ", "3", ".", "1", "4", "1", "5",
                    "9", "\r\n\r\n", " ", " ok"}));
  EXPECT_EQ(split_with("qwen2", "  lead\n\n end   "), (Pieces{" ", " lead", "\n\n", " end", "   "}));
}

TEST(TokenizerPreSplit, InvalidUtf8StaysCovered) {
  const std::string text = "ab\xFF\xC3 12\xE2\x82";
  std::string joined;
  for (const auto& p : split_with("smollm", text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(TokenizerPreSplit, EveryTableEntryCompiles) {
  for (const char* name : {"default", "gpt2", "llama3", "qwen2", "smollm", "starcoder", "refact",
                           "deepseek-llm", "dbrx", "stablelm2"}) {
    EXPECT_FALSE(split_with(name, kUnicodeText).empty()) << name;
  }
  std::vector<std::string> regexes;
  bool ignore = false;
  EXPECT_FALSE(mpq::tok::pre_regexes_for("no-such-pre", regexes, ignore));
}

// ---------------------------------------------------------------------------------------------
// Round trips on real text

TEST(TokenizerRoundTrip, WikiTextAndUnicode) {
  const std::string wiki_path = kShared + "/text/wikitext-2-raw-v1/wiki.test.raw";
  REQUIRE_FILE(wiki_path);
  const std::string wiki = read_file(wiki_path).substr(0, 200000);
  std::vector<std::unique_ptr<Tokenizer>> toks;
  if (fs::exists(kStories + "/gguf/stories260K.gguf")) {
    toks.push_back(mpq::load_tokenizer(kStories + "/gguf/stories260K.gguf"));
  }
  if (fs::exists(kSmol)) toks.push_back(mpq::load_tokenizer(kSmol));
  toks.push_back(small_bpe());
  for (const auto& tok : toks) {
    for (const std::string& text : {wiki, kUnicodeText}) {
      const Ids ids = tok->encode(text, true);
      EXPECT_EQ(tok->decode(ids), text) << tok->spec().pre_name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Malformed inputs: every error names the file

TEST(TokenizerErrors, BadTokenizerJson) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "invalid JSON"});
  write_file(path, R"({"model": {"type": "Unigram", "vocab": []}})");
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "unsupported model type 'Unigram'"});
  write_file(path, R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                       "pre_tokenizer": {"type": "Whitespace"}})");
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); },
               {path, "unsupported pre_tokenizer type 'Whitespace'"});
  write_file(path, R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 2}, "merges": []},
                       "pre_tokenizer": {"type": "ByteLevel"}})");
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "gaps"});
  write_file(path, R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})");
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "model.vocab id of \"a\" must be an integer"});
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(dir.file("absent.json")); }, {"absent.json"});
}

TEST(TokenizerErrors, MergesNamingUnknownTokens) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  auto root = nlohmann::json::parse(read_file(kData + "/tok_bpe_small/tokenizer.json"));
  root["model"]["merges"].push_back({"he", "zz"});
  write_file(path, root.dump());
  expect_error([&] { mpq::load_tokenizer(path); }, {path, "unknown token 'zz'"});
  // SentencePiece-style: checked by the loader
  root = nlohmann::json::parse(read_file(kData + "/tok_spm_small/tokenizer.json"));
  root["model"]["merges"].push_back("q ab");
  write_file(path, root.dump());
  expect_error([&] { mpq::load_tokenizer(path); }, {path, "unknown token 'q'"});
}

TEST(TokenizerErrors, TruncatedLlama2c) {
  REQUIRE_FILE(kStories + "/llama2c/tok512.bin");
  TempDir dir;
  const std::string data = read_file(kStories + "/llama2c/tok512.bin");
  const std::string path = dir.file("tok_truncated.bin");
  write_file(path, data.substr(0, data.size() - 3));
  expect_error([&] { mpq::tokenizer_spec_from_llama2c(path, 512); }, {path, "truncated"});
  expect_error([&] { mpq::tokenizer_spec_from_llama2c(kStories + "/llama2c/tok512.bin", 32000); },
               {"tok512.bin", "truncated"});
  expect_error([&] { mpq::tokenizer_spec_from_llama2c(kStories + "/llama2c/tok512.bin", 100); },
               {"tok512.bin", "wrong vocabulary size"});
  write_file(path, "ab");
  expect_error([&] { mpq::load_tokenizer(path); }, {path});
}

TEST(TokenizerErrors, IdsOutOfRange) {
  TokenizerSpec spec = mpq::tokenizer_spec_from_hf_json(kData + "/tok_spm_small/tokenizer.json");
  spec.bos_id = 999;
  expect_error([&] { Tokenizer(spec, "model.gguf"); }, {"model.gguf", "BOS id 999 is out of range"});
  spec.bos_id = 1;
  spec.scores.pop_back();
  expect_error([&] { Tokenizer(spec, "model.gguf"); }, {"model.gguf", "scores"});
  const auto tok = small_spm();
  expect_error([&] { tok->decode_token(266); }, {"tokenizer.json", "token id 266 is out of range"});
  expect_error([&] { tok->decode(Ids{1, -5}); }, {"token id -5"});
}

TEST(TokenizerErrors, GgufUnsupportedPreAndModel) {
  TempDir dir;
  const std::string path = dir.file("tok.gguf");
  auto write = [&](const std::string& model, const std::string& pre) {
    mpq::GgufWriter w(path);
    w.set("tokenizer.ggml.model", mpq::gguf_string(model));
    w.set("tokenizer.ggml.pre", mpq::gguf_string(pre));
    w.set("tokenizer.ggml.tokens", mpq::gguf_string_array({"a", "b", "ab"}));
    w.set("tokenizer.ggml.merges", mpq::gguf_string_array({"a b"}));
    w.finish();
  };
  write("gpt2", "no-such-pre");
  expect_error([&] { mpq::load_tokenizer(path); }, {path, "unsupported tokenizer.ggml.pre 'no-such-pre'"});
  write("bert", "default");
  expect_error([&] { mpq::load_tokenizer(path); }, {path, "unsupported tokenizer.ggml.model 'bert'"});
  write("gpt2", "gpt2");
  const auto tok = mpq::load_tokenizer(path);
  EXPECT_EQ(tok->encode("ab", true), (Ids{2}));
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json variants and the CLI

TEST(TokenizerHfJson, SplitDigitsSequenceAndTemplateBos) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  auto root = nlohmann::json::parse(read_file(kData + "/tok_bpe_small/tokenizer.json"));
  // Llama 3 layout: Split(regex, Isolated) + ByteLevel without its own regex; BOS from the
  // post-processor's template since there is no tokenizer_config.json here.
  root["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}| ?\\p{L}+|\\s+"}}},
         {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "Digits"}, {"individual_digits", true}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  root["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  write_file(path, root.dump());
  const TokenizerSpec spec = mpq::tokenizer_spec_from_hf_json(path);
  EXPECT_EQ(spec.pre_regexes, (std::vector<std::string>{"\\p{N}{1,3}| ?\\p{L}+|\\s+", "\\p{N}"}));
  EXPECT_TRUE(spec.add_bos);
  EXPECT_FALSE(spec.add_eos);
  EXPECT_EQ(spec.bos_id, 263);
  Tokenizer tok(spec, path);
  EXPECT_EQ(tok.encode("hello 12", true), (Ids{263, 261, 32, '1', '2'}));

  root["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  write_file(path, root.dump());
  expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "behavior 'Removed'"});
}

TEST(TokenizerCli, TokenizePrintsIds) {
  const std::string cmd = std::string(MPQ_BINARY) + " tokenize " + kData +
                          "/tok_spm_small --text 'ab c' --json";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, pipe)) out += buf;
  ASSERT_EQ(pclose(pipe), 0) << out;
  const auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json.at("ids").get<Ids>(), (Ids{1, 265, 259, 262}));
  EXPECT_EQ(json.at("n_tokens").get<int>(), 4);
}

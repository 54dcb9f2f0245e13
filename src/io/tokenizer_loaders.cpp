// TokenizerSpec loaders for GGUF metadata and llama2.c tokenizer files, and load_tokenizer(),
// which recognises what a model path holds. The tokenizer.json loader is in tokenizer_hf.cpp.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "io/gguf.h"
#include "io/read_file.h"
#include "io/tokenizer_internal.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace mpq {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// GGUF

namespace {

// GGUF stores absent special ids as UINT32_MAX (or -1 when signed); anything else out of range
// is kept and refused by the Tokenizer's validation.
int32_t special_id(const GgufFile& gguf, const std::string& key, int32_t fallback) {
  if (!gguf.has(key)) return fallback;
  const int64_t v = gguf.get_int(key);
  if (v == -1 || v == 0xFFFFFFFFLL) return -1;
  if (v < -1 || v > INT32_MAX) fail(gguf.path(), key + " = " + std::to_string(v) + " is out of range");
  return static_cast<int32_t>(v);
}

}  // namespace

TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  TokenizerSpec spec;
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  spec.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const size_t n = spec.tokens.size();
  if (gguf.has("tokenizer.ggml.scores")) {
    const std::vector<double> scores = gguf.get_float_array("tokenizer.ggml.scores");
    if (scores.size() != n) {
      fail(path, "tokenizer.ggml.scores has " + std::to_string(scores.size()) + " entries for " +
                     std::to_string(n) + " tokens");
    }
    spec.scores.assign(scores.begin(), scores.end());
  }
  if (gguf.has("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> types = gguf.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != n) {
      fail(path, "tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                     " entries for " + std::to_string(n) + " tokens");
    }
    spec.token_types.reserve(n);
    for (int64_t t : types) {
      if (t < 0 || t > static_cast<int64_t>(TokenType::Byte)) {
        fail(path, "tokenizer.ggml.token_type holds unknown type " + std::to_string(t));
      }
      spec.token_types.push_back(static_cast<TokenType>(t));
    }
  }

  if (model == "llama") {
    // Defaults as llama.cpp for SentencePiece vocabularies.
    spec.kind = TokenizerSpec::Kind::SentencePiece;
    spec.bos_id = special_id(gguf, "tokenizer.ggml.bos_token_id", 1);
    spec.eos_id = special_id(gguf, "tokenizer.ggml.eos_token_id", 2);
    spec.unk_id = special_id(gguf, "tokenizer.ggml.unknown_token_id", 0);
    spec.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token", true);
    spec.add_space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix", true);
    spec.pre_name = gguf.get_string("tokenizer.ggml.pre", "default");
  } else if (model == "gpt2") {
    spec.kind = TokenizerSpec::Kind::ByteLevelBpe;
    spec.merges = gguf.get_string_array("tokenizer.ggml.merges");
    spec.bos_id = special_id(gguf, "tokenizer.ggml.bos_token_id", -1);
    spec.eos_id = special_id(gguf, "tokenizer.ggml.eos_token_id", -1);
    spec.unk_id = special_id(gguf, "tokenizer.ggml.unknown_token_id", -1);
    spec.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token", false);
    spec.add_space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix", false);
    spec.pre_name = gguf.get_string("tokenizer.ggml.pre", "default");
    // Tokenizer files written by mpq carry their regexes explicitly (a tokenizer.json source may
    // have a pre-tokenizer without a llama.cpp name). Otherwise unknown names are refused rather
    // than guessed: a wrong split silently changes every token count and so every perplexity.
    if (gguf.has("tokenizer.mpq.pre_regexes")) {
      spec.pre_regexes = gguf.get_string_array("tokenizer.mpq.pre_regexes");
      spec.ignore_merges = gguf.get_bool("tokenizer.mpq.ignore_merges", false);
    } else if (!tok::pre_regexes_for(spec.pre_name, spec.pre_regexes, spec.ignore_merges)) {
      fail(path, "unsupported tokenizer.ggml.pre '" + spec.pre_name +
                     "' (known: default, gpt2, llama3/llama-bpe, qwen2, smollm, starcoder, "
                     "refact, deepseek-llm and their aliases)");
    }
  } else {
    fail(path, "unsupported tokenizer.ggml.model '" + model + "' (supported: llama, gpt2)");
  }
  spec.pad_id = special_id(gguf, "tokenizer.ggml.padding_token_id", -1);
  spec.add_eos = gguf.get_bool("tokenizer.ggml.add_eos_token", false);
  spec.chat_template = gguf.get_string("tokenizer.chat_template", "");
  return spec;
}

// ---------------------------------------------------------------------------------------------
// llama2.c

namespace {

struct Llama2cEntry {
  float score;
  std::string text;
};

// Walks the entries of a llama2.c tokenizer file. Returns the error (empty on success); stops
// after `limit` entries when limit > 0, else at the end of the file.
std::string parse_llama2c(const std::string& data, int32_t limit, std::vector<Llama2cEntry>& out) {
  if (data.size() < 4) return "file too short for a llama2.c tokenizer header";
  int32_t max_len = 0;
  std::memcpy(&max_len, data.data(), 4);
  if (max_len <= 0 || max_len > 1 << 16) {
    return "max_token_length " + std::to_string(max_len) + " is not plausible";
  }
  size_t off = 4;
  while (limit > 0 ? static_cast<int32_t>(out.size()) < limit : off < data.size()) {
    const std::string at = "token " + std::to_string(out.size()) + " at offset " + std::to_string(off);
    if (data.size() - off < 8) return "truncated at " + at;
    float score = 0;
    int32_t len = 0;
    std::memcpy(&score, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    off += 8;
    if (len < 0 || len > max_len) {
      return at + " has length " + std::to_string(len) + " (max_token_length " +
             std::to_string(max_len) + ")";
    }
    if (!std::isfinite(score)) return at + " has a non-finite score";
    if (data.size() - off < static_cast<size_t>(len)) return "truncated in " + at;
    out.push_back({score, data.substr(off, len)});
    off += len;
  }
  if (off != data.size()) {
    return "holds more than " + std::to_string(limit) + " tokens (" +
           std::to_string(data.size() - off) + " bytes left); wrong vocabulary size?";
  }
  return "";
}

TokenizerSpec llama2c_spec(std::vector<Llama2cEntry> entries) {
  // llama2.c's exporter writes SentencePiece pieces with U+2581 turned into ' ' and BOS/EOS as
  // "\n<s>\n" / "\n</s>\n"; undo both so the spec looks like any SentencePiece vocabulary.
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::SentencePiece;
  spec.pre_name = "llama2.c";
  for (size_t id = 0; id < entries.size(); ++id) {
    std::string text;
    for (char c : entries[id].text) {
      if (c == ' ') {
        text += "\xE2\x96\x81";
      } else {
        text += c;
      }
    }
    TokenType type = TokenType::Normal;
    if (text == "\n<s>\n" || text == "\n</s>\n") {
      text = text.substr(1, text.size() - 2);
      type = TokenType::Control;
    } else if (text == "<unk>") {
      type = TokenType::Unknown;
    } else if (text.size() == 6 && text.starts_with("<0x") && text[5] == '>') {
      type = TokenType::Byte;
    }
    spec.tokens.push_back(std::move(text));
    spec.scores.push_back(entries[id].score);
    spec.token_types.push_back(type);
  }
  // llama2.c hard-codes these (run.c: BOS=1, EOS=2; SentencePiece's <unk> is 0).
  const int32_t n = static_cast<int32_t>(spec.tokens.size());
  spec.unk_id = n > 0 ? 0 : -1;
  spec.bos_id = n > 1 ? 1 : -1;
  spec.eos_id = n > 2 ? 2 : -1;
  spec.add_bos = spec.bos_id >= 0;
  spec.add_space_prefix = true;
  return spec;
}

bool is_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

TokenizerSpec tokenizer_spec_from_llama2c(const std::string& path, int32_t vocab_size) {
  std::vector<Llama2cEntry> entries;
  const std::string error = parse_llama2c(read_file(path, "llama2.c tokenizer"), vocab_size, entries);
  if (!error.empty()) fail(path, "not a valid llama2.c tokenizer: " + error);
  if (entries.empty()) fail(path, "llama2.c tokenizer holds no tokens");
  return llama2c_spec(std::move(entries));
}

// ---------------------------------------------------------------------------------------------
// load_tokenizer

namespace {

std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path, int32_t vocab_size) {
  if (fs::is_directory(path)) {
    // A Hugging Face directory has tokenizer.json; one written by mpq from a GGUF or llama2.c
    // source has tokenizer.gguf (the exact vocabulary, merges and regexes, see
    // write_tokenizer_gguf).
    const std::string json = (fs::path(path) / "tokenizer.json").string();
    const std::string gguf_path = (fs::path(path) / "tokenizer.gguf").string();
    if (fs::exists(json)) return std::make_unique<Tokenizer>(tokenizer_spec_from_hf_json(json), json);
    if (fs::exists(gguf_path)) {
      GgufFile gguf(gguf_path);
      return std::make_unique<Tokenizer>(tokenizer_spec_from_gguf(gguf), gguf_path);
    }
    fail(path, "directory has no tokenizer.json (nor an mpq tokenizer.gguf)");
  }
  if (!fs::exists(path)) fail(path, "no such file or directory");
  if (is_gguf(path)) {
    GgufFile gguf(path);
    return std::make_unique<Tokenizer>(tokenizer_spec_from_gguf(gguf), path);
  }
  if (fs::path(path).extension() == ".json") {
    return std::make_unique<Tokenizer>(tokenizer_spec_from_hf_json(path), path);
  }
  // A llama2.c tokenizer has no magic number; it is recognised by its entries covering the file
  // exactly. A llama2.c checkpoint (or anything else) fails that walk.
  std::vector<Llama2cEntry> entries;
  const std::string error = parse_llama2c(read_file(path, "llama2.c tokenizer"), vocab_size, entries);
  if (error.empty() && !entries.empty()) {
    return std::make_unique<Tokenizer>(llama2c_spec(std::move(entries)), path);
  }
  fail(path, "not a GGUF file, a tokenizer.json or a llama2.c tokenizer (" + error +
                 "); a llama2.c checkpoint needs its tokenizer file given separately");
}

// Vocabulary size from a llama2.c checkpoint header (7 x i32: dim, hidden_dim, n_layers,
// n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size flags unshared classifier
// weights). 0 when the file does not look like one.
int32_t llama2c_checkpoint_vocab(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t header[7] = {};
  if (!in.read(reinterpret_cast<char*>(header), sizeof header)) return 0;
  for (int i = 0; i < 5; ++i) {
    if (header[i] <= 0 || header[i] > 1 << 20) return 0;
  }
  // In 64 bits: -INT32_MIN does not fit an int32.
  const int64_t v = header[5] < 0 ? -int64_t{header[5]} : header[5];
  return v > 0 && v <= 1 << 22 ? static_cast<int32_t>(v) : 0;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_path,
                                          const std::string& tokenizer_path,
                                          int32_t llama2c_vocab_size) {
  if (tokenizer_path.empty()) return load_tokenizer_file(model_path, llama2c_vocab_size);
  if (llama2c_vocab_size <= 0 && fs::is_regular_file(model_path) && !is_gguf(model_path)) {
    llama2c_vocab_size = llama2c_checkpoint_vocab(model_path);
  }
  return load_tokenizer_file(tokenizer_path, llama2c_vocab_size);
}

// ---------------------------------------------------------------------------------------------
// Writing a tokenizer as GGUF metadata

void write_tokenizer_gguf(const TokenizerSpec& spec, const std::string& path) {
  GgufWriter w(path);
  w.set("general.architecture", gguf_string("tokenizer"));
  add_tokenizer_metadata(w, spec);
  // mpq's own keys: the exact pre-tokenizer of specs llama.cpp has no name for.
  if (spec.kind == TokenizerSpec::Kind::ByteLevelBpe) {
    w.set("tokenizer.mpq.pre_regexes", gguf_string_array(spec.pre_regexes));
    w.set("tokenizer.mpq.ignore_merges", gguf_bool(spec.ignore_merges));
  }
  w.finish();
}

void add_tokenizer_metadata(GgufWriter& w, const TokenizerSpec& spec) {
  const bool spm = spec.kind == TokenizerSpec::Kind::SentencePiece;
  w.set("tokenizer.ggml.model", gguf_string(spm ? "llama" : "gpt2"));
  w.set("tokenizer.ggml.tokens", gguf_string_array(spec.tokens));
  if (!spec.scores.empty()) w.set("tokenizer.ggml.scores", gguf_f32_array(spec.scores));
  std::vector<int32_t> types;
  for (TokenType t : spec.token_types) types.push_back(static_cast<int32_t>(t));
  w.set("tokenizer.ggml.token_type", gguf_i32_array(types));
  if (!spm) {
    w.set("tokenizer.ggml.merges", gguf_string_array(spec.merges));
    w.set("tokenizer.ggml.pre", gguf_string(spec.pre_name.empty() ? "default" : spec.pre_name));
  }
  auto set_id = [&](const char* key, int32_t id) {
    if (id >= 0) w.set(key, gguf_u32(static_cast<uint32_t>(id)));
  };
  set_id("tokenizer.ggml.bos_token_id", spec.bos_id);
  set_id("tokenizer.ggml.eos_token_id", spec.eos_id);
  set_id("tokenizer.ggml.unknown_token_id", spec.unk_id);
  set_id("tokenizer.ggml.padding_token_id", spec.pad_id);
  w.set("tokenizer.ggml.add_bos_token", gguf_bool(spec.add_bos));
  w.set("tokenizer.ggml.add_eos_token", gguf_bool(spec.add_eos));
  w.set("tokenizer.ggml.add_space_prefix", gguf_bool(spec.add_space_prefix));
  if (!spec.chat_template.empty()) w.set("tokenizer.chat_template", gguf_string(spec.chat_template));
}

}  // namespace mpq

// Tokenizers: SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, llama2.c) and
// byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM). Both are built from a TokenizerSpec that the
// loaders fill from GGUF metadata, a Hugging Face tokenizer.json or a llama2.c tokenizer file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mpq {

class GgufFile;

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct TokenizerSpec {
  enum class Kind { SentencePiece, ByteLevelBpe };
  Kind kind = Kind::SentencePiece;
  std::vector<std::string> tokens;     // token text as stored: SentencePiece pieces use U+2581 for
                                       // a space; byte-level BPE tokens use the GPT-2 byte->unicode
                                       // mapping
  std::vector<float> scores;           // SentencePiece: merge priority per token (higher first)
  std::vector<TokenType> token_types;  // per token; Normal when the source has none
  std::vector<std::string> merges;     // byte-level BPE: "left right", rank = position
  std::string pre_name;                // pre-tokenizer name (GGUF tokenizer.ggml.pre), informative
  std::vector<std::string> pre_regexes;  // byte-level BPE: split regexes applied in sequence
                                         // (PCRE2 syntax, Unicode properties)
  bool add_space_prefix = true;        // SentencePiece: prepend a space to the text
  bool ignore_merges = false;          // byte-level BPE: a pre-tokenized word that is itself a
                                       // token is emitted whole, without merging (Llama 3)
  int32_t bos_id = -1;                 // -1 when the model has none
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = false;                // prepend BOS when encoding with add_special
  bool add_eos = false;                // append EOS when encoding with add_special
  std::string chat_template;           // Jinja chat template (GGUF tokenizer.chat_template,
                                       // tokenizer_config.json / chat_template.jinja); empty
                                       // when the model has none. Not used by mpq itself: kept
                                       // so that every directory mpq writes carries it on.
};

class Tokenizer {
 public:
  // Validates the spec (sizes agree, ids in range, merges name known tokens, regexes compile);
  // throws mpq::Error naming `source` (the file the spec came from) otherwise.
  Tokenizer(TokenizerSpec spec, std::string source);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: add BOS/EOS as the model declares. parse_special: treat the text of control and
  // unknown tokens inside `text` as those tokens (for chat templates); off for plain text.
  // User-defined tokens are always matched as whole tokens.
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special = false) const;
  // The bytes a token stands for (byte tokens and byte-level BPE decoded to raw bytes).
  std::string decode_token(int32_t id) const;
  std::string decode(std::span<const int32_t> ids) const;

  int32_t vocab_size() const;
  const TokenizerSpec& spec() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Loaders. Each throws mpq::Error naming the file and the problem.
TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& gguf);
// `path` is a tokenizer.json; a tokenizer_config.json beside it, when present, supplies
// add_bos/add_eos, the BOS/EOS tokens and the chat template (a chat_template.jinja beside it,
// which transformers 5 writes instead, takes precedence, as in transformers).
TokenizerSpec tokenizer_spec_from_hf_json(const std::string& path);
// llama2.c tokenizer file: i32 max_token_length, then per token f32 score, i32 length, bytes.
// vocab_size <= 0: take every entry up to the end of the file (the count is not stored).
TokenizerSpec tokenizer_spec_from_llama2c(const std::string& path, int32_t vocab_size);

// Loads the tokenizer that goes with a model, whatever its layout:
//   - a GGUF file: its tokenizer.ggml.* metadata;
//   - a directory: its tokenizer.json (and tokenizer_config.json);
//   - a tokenizer.json file;
//   - a llama2.c tokenizer file (tokenizer.bin, tok512.bin): recognised by its layout;
//   - a llama2.c checkpoint: has no tokenizer, so `tokenizer_path` is required; the vocabulary
//     size is then read from the checkpoint header.
// A non-empty `tokenizer_path` (any of the tokenizer forms above) overrides what `model_path`
// holds. `llama2c_vocab_size` > 0 fixes the entry count of a llama2.c tokenizer file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_path,
                                          const std::string& tokenizer_path = "",
                                          int32_t llama2c_vocab_size = 0);

// Writes `spec` as a GGUF file holding only tokenizer metadata (tokenizer.ggml.* keys, plus
// tokenizer.mpq.pre_regexes so that any pre-tokenizer round-trips). Quantized model directories
// made from GGUF or llama2.c sources carry their tokenizer this way. Written atomically.
void write_tokenizer_gguf(const TokenizerSpec& spec, const std::string& path);
// The tokenizer.ggml.* (and tokenizer.chat_template) keys of `spec`, as llama.cpp reads them.
class GgufWriter;
void add_tokenizer_metadata(GgufWriter& writer, const TokenizerSpec& spec);

}  // namespace mpq

// Hugging Face tokenizer files from a TokenizerSpec: tokenizer.json (the `tokenizers` library's
// serialization), tokenizer_config.json and generation_config.json, so that
// transformers' AutoTokenizer.from_pretrained(dir) gives the token ids mpq's own Tokenizer gives
// (checked on WikiText-2, docs/INTEROP.md). Used for model directories made from sources that have
// no tokenizer.json (GGUF, llama2.c).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "io/output.h"
#include "mpq/tokenizer.h"

namespace mpq {

struct HfTokenizerFiles {
  std::string tokenizer_json;          // tokenizer.json
  std::string tokenizer_config_json;   // tokenizer_config.json
  std::string generation_config_json;  // generation_config.json
};

// The three documents for `spec`. `max_context` (> 0) becomes model_max_length; 0 leaves it out.
// Anything the JSON forms cannot express exactly (the tokenizer transformers would build would
// give other ids for some text) is refused: throws mpq::Error naming `source` (the file the
// tokenizer came from) and the reason. Pure: writes nothing, so a caller can check a source
// before doing any long work.
HfTokenizerFiles hf_tokenizer_files(const TokenizerSpec& spec, const std::string& source,
                                    int64_t max_context);

// hf_tokenizer_files(), then each document written atomically (io/output.h) to
// path_of("tokenizer.json"), path_of("tokenizer_config.json") and
// path_of("generation_config.json").
void write_hf_tokenizer_files(const TokenizerSpec& spec, const std::string& source,
                              int64_t max_context,
                              const std::function<std::string(const std::string& name)>& path_of);

// The three files as an mpq output directory of their own (staged and moved into place with its
// manifest, under `rules`: io/output.h), for exporting a tokenizer (mpq tokenize --hf-out).
void write_hf_tokenizer_dir(const TokenizerSpec& spec, const std::string& source, int64_t max_context,
                            const std::string& dir, const OutputRules& rules);

}  // namespace mpq

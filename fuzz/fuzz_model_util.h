// What the model harnesses do with a model that loaded: a short forward pass (the config's numbers
// reach the kernels: head sizes, RoPE scaling, sliding window, experts), and, with a tokenizer, a
// few encodes and decodes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "mpq/model.h"
#include "mpq/tokenizer.h"

namespace mpq::fuzz {

// Three tokens in a cache of four positions (so a decode step follows the prompt).
inline void run_short_forward(Model& model) {
  const int32_t vocab = model.config.vocab_size;
  std::vector<int32_t> tokens = {0, 1 % vocab, 2 % vocab};
  KVCache cache = model.make_cache(4);
  model.forward_all(tokens, cache);
  const int32_t next = 3 % vocab;
  model.forward_last(std::vector<int32_t>{next}, cache);
}

// Texts that reach every branch of the pre-tokenizers and byte fallbacks: ASCII words, digits,
// whitespace runs, multi-byte UTF-8, an invalid UTF-8 byte, and special-token look-alikes.
inline void exercise_tokenizer(const Tokenizer& tok) {
  static const char* const kTexts[] = {
      "Hello world, it's 2024!",
      "  two  spaces\tand\ttabs\n\nnew lines  ",
      "caf\xC3\xA9 \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82 \xE2\x96\x81x",
      "bad \xFF\xFE utf-8 \xC3",
      "<s>[INST] hi [/INST]</s><|endoftext|><|im_start|>user",
      "",
  };
  for (const char* text : kTexts) {
    for (bool add_special : {false, true}) {
      for (bool parse_special : {false, true}) {
        const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
        tok.decode(ids);
      }
    }
  }
  const int32_t n = std::min<int32_t>(tok.vocab_size(), 4096);
  for (int32_t id = 0; id < n; ++id) tok.decode_token(id);
}

}  // namespace mpq::fuzz

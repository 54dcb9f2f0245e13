// libFuzzer harness: a Hugging Face tokenizer.json, optionally with a tokenizer_config.json beside
// it. Input: tokenizer.json [SEPARATOR tokenizer_config.json] (fuzz_util.h). Exercised: the JSON
// reader (model, vocab, merges, added tokens, normalizer, pre-tokenizer, decoder, the special
// tokens of tokenizer_config.json), the Tokenizer built from the spec (regexes compiled, ids and
// merges checked), then encoding and decoding fixed texts and decoding every token.
#include <cstdint>
#include <string>

#include "fuzz_model_util.h"
#include "fuzz_util.h"
#include "json_mutator.h"
#include "mpq/tokenizer.h"

using namespace mpq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_files(data, size, 2);
  const std::string path = fuzz::scratch().file("tokenizer.json");
  const std::string config_path = fuzz::scratch().file("tokenizer_config.json");
  fuzz::write_file(path, parts[0]);
  if (parts.size() > 1) fuzz::write_file(config_path, parts[1]);
  else fuzz::remove_file(config_path);

  fuzz::accepts([&] {
    const Tokenizer tok(tokenizer_spec_from_hf_json(path), path);
    fuzz::exercise_tokenizer(tok);
  });
  return 0;
}

// JSON-aware mutations (json_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  using mpq::fuzz::FileKind;
  return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Json, FileKind::Json});
}

// libFuzzer harness: a llama2.c checkpoint and its tokenizer file (`mpq ppl model.bin --tokenizer
// tok.bin`). Input: checkpoint [SEPARATOR tokenizer] (fuzz_util.h). Exercised: the checkpoint
// header and tensor layout (shared or separate classifier), the tokenizer file walk, then the
// tokenizer (encode/decode) and a short forward pass.
#include <cstdint>
#include <string>

#include "fuzz_model_util.h"
#include "fuzz_util.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"

using namespace mpq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_files(data, size, 2);
  const std::string path = fuzz::scratch().file("model.bin");
  const std::string tok_path = fuzz::scratch().file("tok.bin");
  fuzz::write_file(path, parts[0]);
  fuzz::write_file(tok_path, parts.size() > 1 ? parts[1] : std::string_view());

  fuzz::accepts([&] {
    const auto tok = load_tokenizer(path, tok_path);
    fuzz::exercise_tokenizer(*tok);
  });
  fuzz::accepts([&] {
    LoadOptions options;
    options.tokenizer_path = tok_path;
    Model model = load_model(path, options);
    fuzz::run_short_forward(model);
  });
  return 0;
}

// libFuzzer harness: a GGUF file, as `mpq info|ppl|quantize MODEL.gguf` read it. The input is
// the whole file. Exercised: GgufFile (header, key/values, tensor infos, bounds), every typed
// getter on every key, the tokenizer from the tokenizer.ggml.* metadata (built, then encoding and
// decoding), and load_model (metadata -> config, tensors decoded to fp32, a short forward pass).
#include <cstdint>
#include <string>

#include "fuzz_model_util.h"
#include "fuzz_util.h"
#include "io/gguf.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"

using namespace mpq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch().file("model.gguf");
  fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});

  fuzz::accepts([&] {
    const GgufFile gguf(path);
    for (const auto& kv : gguf.metadata()) {
      const std::string& key = kv.first;
      // Each getter either returns or refuses the kind with an mpq::Error.
      fuzz::accepts([&] { gguf.get_string(key); });
      fuzz::accepts([&] { gguf.get_int(key); });
      fuzz::accepts([&] { gguf.get_float(key); });
      fuzz::accepts([&] { gguf.get_bool(key); });
      fuzz::accepts([&] { gguf.get_string_array(key); });
      fuzz::accepts([&] { gguf.get_int_array(key); });
      fuzz::accepts([&] { gguf.get_float_array(key); });
    }
    for (const TensorRecord& t : gguf.tensors()) {
      if (gguf.find_tensor(t.name) == nullptr) __builtin_trap();  // the index must find every tensor
    }
    fuzz::accepts([&] {
      const Tokenizer tok(tokenizer_spec_from_gguf(gguf), path);
      fuzz::exercise_tokenizer(tok);
    });
  });

  fuzz::accepts([&] {
    LoadOptions options;
    options.need_tokenizer = false;
    Model model = load_model(path, options);
    fuzz::run_short_forward(model);
  });
  return 0;
}

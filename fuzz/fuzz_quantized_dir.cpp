// libFuzzer harness: a quantized model directory as `mpq quantize --out DIR` writes it.
// Input: config.json SEPARATOR model.safetensors (fuzz_util.h). Exercised: the config with its
// quantization_config (mpq module list, formats, channel splits), the compressed-tensors modules
// (packed codes, scales, zero points, global scales, high-channel indices) decoded by
// decode_module, the quantized output head, then the model run both ways a user can run it:
// from the decoded fp32 copy and from packed weights (the runtime kernels), with a short forward
// pass each.
#include <cstdint>
#include <string>

#include "fuzz_model_util.h"
#include "fuzz_util.h"
#include "json_mutator.h"
#include "mpq/model.h"

using namespace mpq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_files(data, size, 2);
  const std::string dir = fuzz::scratch().file("quantized");
  static const bool made = std::filesystem::create_directories(dir);
  (void)made;
  fuzz::write_file(dir + "/config.json", parts[0]);
  fuzz::write_file(dir + "/model.safetensors", parts.size() > 1 ? parts[1] : std::string_view());

  for (const bool packed : {false, true}) {
    const bool loaded = fuzz::accepts([&] {
      LoadOptions options;
      options.need_tokenizer = false;
      options.runtime.packed = packed;
      Model model = load_model(dir, options);
      fuzz::run_short_forward(model);
    });
    if (!loaded) break;  // the packed runtime reads the same tensors: it would refuse them too
  }
  return 0;
}

// JSON-aware mutations (json_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  using mpq::fuzz::FileKind;
  return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Json, FileKind::Safetensors});
}

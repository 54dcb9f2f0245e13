// libFuzzer harness: a Hugging Face config.json. The input is the file; the weights beside it are
// fixed: at start-up the harness writes one small synthetic checkpoint per supported model_type
// (tests/synthetic_model.h), and each input is loaded against the one its "model_type" names (the
// llama one when it names none), so that a config can get past the tensor checks and reach the
// forward pass. Exercised: the JSON reader, model_config_from_hf (every field, rope_scaling, MoE
// keys), the loader's shape checks and a short forward pass with the config's numbers.
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_model_util.h"
#include "fuzz_util.h"
#include "json_mutator.h"
#include "mpq/model.h"
#include "fuzz_specs.h"

using namespace mpq;

namespace {

// model_type -> directory holding model.safetensors (its config.json is the fuzz input).
const std::map<std::string, std::string>& weight_dirs() {
  static const std::map<std::string, std::string> dirs = [] {
    std::map<std::string, std::string> out;
    for (const char* type : fuzz::kHfConfigModelTypes) {
      const std::string dir = fuzz::scratch().file(std::string("weights-") + type);
      synth::write_model(synth::make_model(fuzz::hf_config_spec(type)), dir);
      out[type] = dir;
    }
    return out;
  }();
  return dirs;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  weight_dirs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string dir = weight_dirs().at("llama");
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("model_type") && j["model_type"].is_string()) {
    const auto it = weight_dirs().find(j["model_type"].get<std::string>());
    if (it != weight_dirs().end()) dir = it->second;
  }
  fuzz::write_file(dir + "/config.json", text);
  fuzz::accepts([&] {
    LoadOptions options;
    options.need_tokenizer = false;
    Model model = load_model(dir, options);
    fuzz::run_short_forward(model);
  });
  return 0;
}

// JSON-aware mutations (json_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  using mpq::fuzz::FileKind;
  return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Json});
}

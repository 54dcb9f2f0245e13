// The synthetic models behind the harnesses and their seeds (tests/synthetic_model.h), in one
// place so that the seeds match what the harnesses load against.
#pragma once

#include <string>

#include "synthetic_model.h"

namespace mpq::fuzz {

// The weights fuzz_hf_config loads each config.json against, one per model_type (and the
// config.json seeds written for them): small, GQA, MoE types with 3 experts of which 2 are used.
inline synth::Spec hf_config_spec(const std::string& model_type) {
  synth::Spec s;
  s.model_type = model_type;
  s.dim = 16, s.ffn = 24, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 4, s.vocab = 19;
  s.max_pos = 16;
  if (model_type == "mistral" || model_type == "gemma3_text") s.sliding_window = 2;
  if (model_type == "mixtral" || model_type == "qwen3_moe") s.experts = 3, s.experts_per_token = 2;
  return s;
}

inline constexpr const char* kHfConfigModelTypes[] = {"llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen3_moe",
                                                       "gemma3_text"};

}  // namespace mpq::fuzz

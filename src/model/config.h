// Hugging Face config.json -> ModelConfig. GGUF metadata and llama2.c headers are first
// translated into the same keys by their checkpoint readers, so this is the one place that
// decides what a model looks like.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "mpq/model.h"

namespace mpq {

// Throws mpq::Error("<where>: ...") for a missing or invalid field or an unsupported
// architecture.
ModelConfig model_config_from_hf(const nlohmann::json& config, const std::string& where);

// Llama-3 style frequency scaling ("rope_type": "llama3"): per-frequency divisors.
std::vector<float> llama3_rope_divisors(int head_dim, float theta, float factor,
                                        float low_freq_factor, float high_freq_factor,
                                        int original_max_position);

}  // namespace mpq

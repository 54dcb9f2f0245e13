// RoPE settings of config.json as transformers 4 ("rope_theta", "rope_scaling") and transformers 5
// ("rope_parameters") write them: read the same way, and anything mpq does not implement refused
// by name, never defaulted (a wrong RoPE base runs without error and gives another model).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "mpq/error.h"

namespace {

using nlohmann::json;

json base_config() {
  return {{"model_type", "llama"}, {"hidden_size", 64},       {"intermediate_size", 128},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"vocab_size", 100},      {"rms_norm_eps", 1e-5}};
}

std::string error_of(const json& config) {
  try {
    mpq::model_config_from_hf(config, "config.json");
  } catch (const mpq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ConfigRope, Transformers4And5LayoutsGiveTheSameModel) {
  json v4 = base_config();
  v4["rope_theta"] = 100000.0;
  json v5 = base_config();
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 100000.0}};
  EXPECT_FLOAT_EQ(mpq::model_config_from_hf(v4, "a").rope_theta, 100000.f);
  EXPECT_FLOAT_EQ(mpq::model_config_from_hf(v5, "b").rope_theta, 100000.f);
  // Both keys, agreeing (a converted config): fine.
  json both = v5;
  both["rope_theta"] = 100000.0;
  EXPECT_FLOAT_EQ(mpq::model_config_from_hf(both, "c").rope_theta, 100000.f);
  // Without any: the Llama default.
  EXPECT_FLOAT_EQ(mpq::model_config_from_hf(base_config(), "d").rope_theta, 10000.f);
}

TEST(ConfigRope, ScalingInEitherLayout) {
  const json llama3 = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  json v4 = base_config();
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = llama3;
  json v5 = base_config();
  v5["rope_parameters"] = llama3;
  v5["rope_parameters"]["rope_theta"] = 500000.0;
  const auto a = mpq::model_config_from_hf(v4, "a"), b = mpq::model_config_from_hf(v5, "b");
  ASSERT_FALSE(a.rope_freq_divisors.empty());
  EXPECT_EQ(a.rope_freq_divisors, b.rope_freq_divisors);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  json linear = base_config();
  linear["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 10000.0}};
  EXPECT_FLOAT_EQ(mpq::model_config_from_hf(linear, "l").rope_linear_factor, 2.f);
}

TEST(ConfigRope, WhatMpqDoesNotImplementIsRefusedByName) {
  json c = base_config();
  c["rope_theta"] = 10000.0;
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  EXPECT_NE(error_of(c).find("disagree"), std::string::npos) << error_of(c);
  c = base_config();
  c["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 10000.0}};
  EXPECT_NE(error_of(c).find("yarn"), std::string::npos) << error_of(c);
  c = base_config();
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}, {"mscale", 1.0}};
  EXPECT_NE(error_of(c).find("rope_parameters.mscale"), std::string::npos) << error_of(c);
  c = base_config();
  c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  EXPECT_NE(error_of(c).find("dynamic"), std::string::npos) << error_of(c);
  c = base_config();
  c["partial_rotary_factor"] = 0.5;
  EXPECT_NE(error_of(c).find("partial_rotary_factor"), std::string::npos) << error_of(c);
  c = base_config();
  c["rope_parameters"] = {{"rope_type", "default"}, {"factor", 2.0}};
  EXPECT_NE(error_of(c).find("factor"), std::string::npos) << error_of(c);
}

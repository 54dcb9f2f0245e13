// Mixture-of-experts readiness (no MoE model is available to this project yet): synthetic
// mixtral / qwen3_moe checkpoints load and run, routing follows the Hugging Face definition,
// calibration statistics are kept per expert, the sensitivity analysis (output method) covers
// every expert and reports the experts no calibration token reached, and the steps that do not
// handle experts refuse them clearly.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "calib/sensitivity_file.h"
#include "model/moe.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/quantize_model.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace {

using mpq::synth::Spec;
using mpq::synth::SynthModel;
using mpq::test::TempDir;

mpq::Model load(const std::string& dir) { return mpq::load_model(dir, {.tokenizer_path = {}, .need_tokenizer = false}); }

using mpq::test::random_ids;

std::vector<float> logits(mpq::Model& m, const std::vector<int32_t>& ids) {
  mpq::KVCache cache = m.make_cache(static_cast<int>(ids.size()));
  return m.forward_all(ids, cache);
}

Spec moe_spec(const std::string& type, int experts, int k) {
  Spec s;
  s.model_type = type;
  s.experts = experts;
  s.experts_per_token = k;
  return s;
}

// A calibration set of seeded random token ids (synthetic models have no tokenizer).
mpq::CalibrationSet random_set(int n_samples, int seq_len, int vocab) {
  mpq::CalibrationSet set;
  set.options.n_samples = n_samples;
  set.options.seq_len = seq_len;
  set.options.micro_batch = 2;
  for (int i = 0; i < n_samples; ++i) set.sequences.push_back(random_ids(seq_len, vocab, 100 + i));
  return set;
}

}  // namespace

TEST(MoeRouting, TopKAndWeightsFollowTheSoftmax) {
  const float logits[4] = {0.5f, 2.f, -1.f, 2.f};  // a tie between experts 1 and 3
  int experts[2];
  float weights[2];
  double p[4], sum = 0;
  for (int e = 0; e < 4; ++e) sum += p[e] = std::exp(static_cast<double>(logits[e]));
  // Without renormalization: the plain softmax weights of the two best (ties: lower index first).
  mpq::route_token(logits, 4, 2, false, experts, weights);
  EXPECT_EQ(experts[0], 1);
  EXPECT_EQ(experts[1], 3);
  EXPECT_NEAR(weights[0], p[1] / sum, 1e-7);
  EXPECT_NEAR(weights[1], p[3] / sum, 1e-7);
  // Renormalized over the chosen two (Mixtral, Qwen3-MoE with norm_topk_prob).
  mpq::route_token(logits, 4, 2, true, experts, weights);
  EXPECT_NEAR(weights[0], 0.5, 1e-7);
  EXPECT_NEAR(weights[1], 0.5, 1e-7);
  mpq::route_token(logits, 4, 1, true, experts, weights);
  EXPECT_EQ(experts[0], 1);
  EXPECT_FLOAT_EQ(weights[0], 1.f);
}

// A MoE layer with one expert chosen with weight 1 is the dense SwiGLU MLP with that expert's
// weights: a mixtral model built from a llama model this way gives the same logits, bit for bit.
TEST(MoeModel, OneExpertEqualsTheDenseModel) {
  TempDir tmp;
  Spec dense;
  SynthModel d = mpq::synth::make_model(dense);
  mpq::synth::write_model(d, tmp.path() + "/dense");
  SynthModel moe = d;
  moe.spec.model_type = "mixtral";
  moe.config["model_type"] = "mixtral";
  moe.config["num_local_experts"] = 1;
  moe.config["num_experts_per_tok"] = 1;
  for (int l = 0; l < dense.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      moe.tensors[p + "experts.0." + proj + ".weight"] = moe.tensors.at(p + proj + ".weight");
      moe.tensors.erase(p + proj + ".weight");
    }
    moe.tensors[p + "gate.weight"] = {{1, dense.dim}, std::vector<float>(dense.dim, 0.3f)};
  }
  mpq::synth::write_model(moe, tmp.path() + "/moe");
  mpq::Model a = load(tmp.path() + "/dense");
  mpq::Model b = load(tmp.path() + "/moe");
  EXPECT_TRUE(b.config.is_moe());
  EXPECT_EQ(b.parameter_count(), a.parameter_count() + dense.layers * dense.dim);  // + routers
  const auto ids = random_ids(12, dense.vocab, 3);
  EXPECT_EQ(logits(a, ids), logits(b, ids));
}

// Relabelling the experts (their weights and router rows together) changes nothing but the
// order in which their contributions are added.
TEST(MoeModel, ExpertOrderDoesNotMatter) {
  TempDir tmp;
  Spec s = moe_spec("qwen3_moe", 4, 2);
  SynthModel m = mpq::synth::make_model(s);
  mpq::synth::write_model(m, tmp.path() + "/a");
  const int perm[4] = {2, 0, 3, 1};
  SynthModel q = m;
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    auto& router = q.tensors.at(p + "gate.weight").values;
    const auto& src_router = m.tensors.at(p + "gate.weight").values;
    for (int e = 0; e < 4; ++e) {
      std::copy_n(&src_router[perm[e] * s.dim], s.dim, &router[e * s.dim]);
      for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
        q.tensors[p + "experts." + std::to_string(e) + "." + proj + ".weight"] =
            m.tensors.at(p + "experts." + std::to_string(perm[e]) + "." + proj + ".weight");
      }
    }
  }
  mpq::synth::write_model(q, tmp.path() + "/b");
  mpq::Model a = load(tmp.path() + "/a");
  mpq::Model b = load(tmp.path() + "/b");
  const auto ids = random_ids(10, s.vocab, 5);
  const auto la = logits(a, ids), lb = logits(b, ids);
  ASSERT_EQ(la.size(), lb.size());
  // Only the fp32 summation order of two expert outputs differs: a few ulps of the logits.
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-5 * (1 + std::fabs(la[i]))) << i;
  // Decoding token by token gives the prompt's logits (routing per token, cache consistent).
  mpq::KVCache cache = a.make_cache(static_cast<int>(ids.size()));
  for (size_t t = 0; t < ids.size(); ++t) {
    const auto step = a.forward_last(std::span(&ids[t], 1), cache);
    for (int v = 0; v < s.vocab; ++v) EXPECT_NEAR(step[v], la[t * s.vocab + v], 1e-4) << t << "," << v;
  }
}

// Router rows +u, −u, 0 with top-1: expert 2's logit is 0 ≤ max(u·x, −u·x), so it never wins
// (ties go to the lower index). Calibration keeps statistics per expert and the sensitivity file
// reports expert 2 of every layer as having received no tokens.
TEST(MoeCalibration, PerExpertStatisticsAndTheNoTokenReport) {
  TempDir tmp;
  Spec s = moe_spec("mixtral", 3, 1);
  SynthModel m = mpq::synth::make_model(s);
  for (int l = 0; l < s.layers; ++l) {
    auto& router = m.tensors.at("model.layers." + std::to_string(l) + ".mlp.gate.weight").values;
    for (int d = 0; d < s.dim; ++d) {
      router[d] = 0.1f * static_cast<float>(d % 5 - 2);
      router[s.dim + d] = -router[d];
      router[2 * s.dim + d] = 0.f;
    }
  }
  mpq::synth::write_model(m, tmp.path() + "/moe");
  mpq::Model model = load(tmp.path() + "/moe");
  const mpq::CalibrationSet set = random_set(4, 16, s.vocab);

  int layers_seen = 0;
  mpq::run_sequential_calibration(model, set, [&](int, const mpq::LayerStats& stats) {
    ++layers_seen;
    ASSERT_EQ(stats.experts.size(), 3u);
    int64_t total = 0;
    for (const mpq::ExpertStats& e : stats.experts) {
      total += e.tokens;
      EXPECT_EQ(e.mlp.n_rows, e.tokens);
      EXPECT_EQ(e.down.n_rows, e.tokens);
      if (e.tokens > 0) {
        EXPECT_EQ(e.mlp.in_features, s.dim);
        EXPECT_EQ(e.down.in_features, s.ffn);
      }
    }
    EXPECT_EQ(total, 4 * 16);  // every token reaches exactly one expert
    EXPECT_EQ(stats.experts[2].tokens, 0);
    EXPECT_GT(stats.experts[0].tokens, 0);
    EXPECT_GT(stats.experts[1].tokens, 0);
  });
  EXPECT_EQ(layers_seen, s.layers);

  mpq::SensitivityOptions options;
  options.methods.output = true;
  options.formats = {mpq::WeightFormatId::Int4_G128, mpq::WeightFormatId::Int8_Channel};
  options.progress = false;
  const mpq::SensitivityResult r = mpq::analyze_sensitivity(model, set, options);
  ASSERT_EQ(r.tensors.size(), static_cast<size_t>(s.layers * (4 + 3 * 3)));  // q/k/v/o + 3 per expert
  ASSERT_EQ(r.expert_tokens.size(), static_cast<size_t>(s.layers));
  for (const mpq::TensorSensitivity& t : r.tensors) {
    SCOPED_TRACE(t.name);
    if (t.expert < 0) {
      EXPECT_EQ(t.output.size(), 2u);
      continue;
    }
    EXPECT_EQ(t.name.find("model.layers." + std::to_string(t.layer) + ".mlp.experts." + std::to_string(t.expert)), 0u);
    EXPECT_EQ(t.expert_tokens, r.expert_tokens[t.layer][t.expert]);
    if (t.expert == 2) {
      EXPECT_TRUE(t.output.empty()) << "no tokens: no evidence, no cost";
    } else {
      ASSERT_EQ(t.output.size(), 2u);
      EXPECT_GT(t.output[0], t.output[1]) << "int4 errs more than int8 on the routed tokens";
    }
  }
  const std::vector<std::string> unused = mpq::experts_without_tokens(r);
  ASSERT_EQ(unused.size(), static_cast<size_t>(s.layers));
  EXPECT_EQ(unused[0], "model.layers.0.mlp.experts.2");

  const std::string path = tmp.path() + "/s.json";
  mpq::write_sensitivity_file(r, mpq::sensitivity_model_identity(model, tmp.path() + "/moe"), set.options, path);
  const auto j = nlohmann::json::parse(mpq::test::slurp(path));
  EXPECT_EQ(j["calibration"]["experts_without_tokens"].size(), static_cast<size_t>(s.layers));
  EXPECT_EQ(j["calibration"]["expert_tokens"][0][2], 0);
  bool found_expert = false;
  for (const auto& t : j["tensors"]) found_expert |= t.contains("expert");
  EXPECT_TRUE(found_expert);
}

// What does not handle experts yet says so, naming the step.
TEST(MoeModel, UnsupportedStepsRefuseClearly) {
  TempDir tmp;
  Spec s = moe_spec("qwen3_moe", 2, 1);
  mpq::synth::write_model(mpq::synth::make_model(s), tmp.path() + "/moe");
  mpq::Model model = load(tmp.path() + "/moe");
  mpq::QuantizeOptions qo;
  qo.progress = false;
  auto int4 = [](const std::string&, int, mpq::LinearKind) {
    return mpq::ModuleChoice::whole(mpq::WeightFormatId::Int4_G128, mpq::Quantizer::Rtn);
  };
  try {
    mpq::quantize_model(model, int4, qo);
    FAIL() << "quantizing a MoE model should throw";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixture-of-experts"), std::string::npos) << e.what();
  }
  mpq::SensitivityOptions so;
  so.methods.fisher = true;
  so.progress = false;
  EXPECT_THROW(mpq::analyze_sensitivity(model, random_set(1, 8, s.vocab), so), mpq::Error);
  // A bad MoE config: more experts per token than experts.
  SynthModel bad = mpq::synth::make_model(s);
  bad.config["num_experts_per_tok"] = 3;
  mpq::synth::write_model(bad, tmp.path() + "/bad");
  try {
    load(tmp.path() + "/bad");
    FAIL() << "should throw";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_experts_per_tok"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

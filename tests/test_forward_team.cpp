// A decode step's layers in one parallel region (model/forward_team.cpp) against the
// fork-per-operation path (Model::run_layer): bit for bit the same hidden states, logits and KV
// caches, for packed models of every architecture feature the decoder has (GQA with head counts
// that do not split evenly, q/k/v and MLP biases, q/k norms, a sliding window, hidden widths that
// are not a multiple of the vector width), integer formats with int8 and fp32 activations, an fp
// format, channel-split layers, both KV cache types, 1-4 new tokens and batches of sequences at
// different positions. And the SpinBarrier it is built on.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <vector>

#include "format/dtype.h"
#include "kernel/attention.h"
#include "kernel/threads.h"
#include "model/forward_internal.h"
#include "mpq/model.h"
#include "quant/quantize_model.h"
#include "packed_runtime_util.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace {

using namespace mpq;
using mpq::test::TempDir;

TEST(SpinBarrier, PhasesSeeEveryThreadsWrites) {
  const int threads = std::min(4, std::max(2, omp_get_max_threads()));
  constexpr int kPhases = 2000;
  SpinBarrier barrier(threads);
  std::vector<int> slots(threads, -1);
  std::atomic<int> errors{0};
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    for (int phase = 0; phase < kPhases; ++phase) {
      slots[t] = phase;  // plain writes: the barrier must publish them
      barrier.wait();
      for (int other = 0; other < threads; ++other) {
        if (slots[other] != phase) errors.fetch_add(1);
      }
      barrier.wait();  // nobody writes the next phase before everyone has read this one
    }
  }
  if (omp_get_max_threads() < 2) GTEST_SKIP() << "one OpenMP thread: the barrier was not shared";
  EXPECT_EQ(errors.load(), 0);
}

// What a synthetic model's decoder Linears become.
enum class Weights { Int4, Nvfp4, Split };

struct Case {
  const char* name;
  synth::Spec spec;
  Weights weights;
  bool int8_activations;
  KvCacheType kv_cache;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Model packed_model(const Case& c, const TempDir& dir) {
  synth::write_model(synth::make_model(c.spec), dir.path());
  Model model = load_model(dir.path(), {.tokenizer_path = {}, .need_tokenizer = false});
  ModuleChoice choice = ModuleChoice::whole(
      c.weights == Weights::Nvfp4 ? WeightFormatId::NVFP4 : WeightFormatId::Int4_G128, Quantizer::Rtn);
  if (c.weights == Weights::Split) {
    choice.split = true;
    // Rows 0, 3, 6, ... of every layer: below the narrowest layer's width.
    for (int32_t r = 0; r < std::min(c.spec.kv_dim(), c.spec.dim); r += 3) choice.high_rows.push_back(r);
  }
  QuantizeOptions options;
  options.progress = false;
  quantize_model(model, [&](const std::string&, int, LinearKind) { return choice; }, options);
  RuntimeOptions runtime;
  runtime.packed = true;
  runtime.int8_activations = c.int8_activations;
  test::set_runtime(model, runtime);
  model.kv_cache_type = c.kv_cache;
  return model;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_caches(const KVCache& a, const KVCache& b) {
  return a.n_past == b.n_past && a.k == b.k && a.v == b.v && a.k16 == b.k16 && a.v16 == b.v16;
}

// One decode step of `batch` (each sequence's tokens appended to its cache) both ways: the
// layers in one region on the caches `team`, layer by layer on `reference`.
void expect_same_step(const Model& model, std::span<const SequenceInput> team, std::span<const SequenceInput> reference,
                      const std::string& what) {
  const BatchPlan team_plan = model.plan_batch(team), reference_plan = model.plan_batch(reference);
  std::vector<float> x = model.embed(team_plan), want = model.embed(reference_plan);
  ASSERT_TRUE(run_layers_in_one_region(model, team_plan, x.data(), nullptr)) << what;
  for (int l = 0; l < model.config.n_layers; ++l) model.run_layer(l, reference_plan, want.data());
  model.commit_batch(team_plan);
  model.commit_batch(reference_plan);
  EXPECT_TRUE(same_bits(x, want)) << what;
  for (size_t s = 0; s < team.size(); ++s) EXPECT_TRUE(same_caches(*team[s].cache, *reference[s].cache)) << what;
}

class ForwardTeam : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardTeam, SameBitsAsLayerByLayer) {
  if (omp_get_max_threads() < 2 || usable_cpus() < 2) GTEST_SKIP() << "needs two threads on two CPUs";
  const Case& c = GetParam();
  TempDir dir;
  Model model = packed_model(c, dir);
  const int vocab = c.spec.vocab;
  // Two sequences with prompts of different lengths (prompt batches take the usual path), then
  // steps of 1-4 new tokens each; the second sequence joins the batch from step 2 on.
  KVCache team_a = model.make_cache(48), team_b = model.make_cache(48);
  KVCache ref_a = model.make_cache(48), ref_b = model.make_cache(48);
  const std::vector<int32_t> prompt_a = test::random_ids(9, vocab, 1), prompt_b = test::random_ids(14, vocab, 2);
  model.forward_last(prompt_a, team_a);
  model.forward_last(prompt_a, ref_a);
  model.forward_last(prompt_b, team_b);
  model.forward_last(prompt_b, ref_b);
  for (int step = 0; step < 8; ++step) {
    const std::vector<int32_t> a = test::random_ids(1 + step % 4, vocab, 10 + step);
    const std::vector<int32_t> b = test::random_ids(1, vocab, 20 + step);
    const std::string what = std::string(c.name) + " step " + std::to_string(step);
    if (step < 2) {
      const SequenceInput team{a.data(), static_cast<int>(a.size()), &team_a};
      const SequenceInput reference{a.data(), static_cast<int>(a.size()), &ref_a};
      expect_same_step(model, std::span(&team, 1), std::span(&reference, 1), what);
    } else if (a.size() + b.size() <= static_cast<size_t>(kMaxDecodeTokens)) {
      const SequenceInput team[2] = {{a.data(), static_cast<int>(a.size()), &team_a}, {b.data(), 1, &team_b}};
      const SequenceInput reference[2] = {{a.data(), static_cast<int>(a.size()), &ref_a}, {b.data(), 1, &ref_b}};
      expect_same_step(model, team, reference, what + " (batch of two)");
    }
  }
  // Through Model::forward, with the option on and off: the same logits.
  const std::vector<int32_t> next = test::random_ids(2, vocab, 99);
  model.decode_in_one_region = true;
  const std::vector<float> team_logits = model.forward_last(next, team_a);
  model.decode_in_one_region = false;
  const std::vector<float> ref_logits = model.forward_last(next, ref_a);
  EXPECT_TRUE(same_bits(team_logits, ref_logits));
  EXPECT_FALSE(run_layers_in_one_region(model, model.plan_batch(std::span<const SequenceInput>()), nullptr, nullptr))
      << "an empty batch does not qualify";
}

synth::Spec spec_of(const char* type, int heads, int kv_heads, int ffn) {
  synth::Spec s;
  s.model_type = type;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.ffn = ffn;
  s.max_pos = 64;
  return s;
}

synth::Spec with_biases(synth::Spec s) {
  s.attention_bias = true;
  s.mlp_bias = true;
  return s;
}

synth::Spec windowed(synth::Spec s) {
  s.sliding_window = 5;
  return s;
}

// gemma3: local layers 0 and 2 (window 5, own RoPE base), global layer 1, post norms, GeGLU.
synth::Spec gemma3(synth::Spec s) {
  s.layers = 3;
  s.sliding_window = 5;
  s.theta = 1e6;
  s.tied = true;
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, ForwardTeam,
    ::testing::Values(
        Case{"llama_gqa_int4_int8act", spec_of("llama", 4, 2, 48), Weights::Int4, true, KvCacheType::F32},
        Case{"llama_gqa_int4_fp32act", spec_of("llama", 4, 2, 48), Weights::Int4, false, KvCacheType::F32},
        Case{"llama_3_kv_heads_f16", spec_of("llama", 6, 3, 40), Weights::Int4, true, KvCacheType::F16},
        Case{"qwen2_bias_nvfp4", spec_of("qwen2", 4, 2, 40), Weights::Nvfp4, false, KvCacheType::F32},
        Case{"qwen3_qk_norm_split", spec_of("qwen3", 4, 1, 48), Weights::Split, true, KvCacheType::F16},
        Case{"llama_all_biases_split", with_biases(spec_of("llama", 5, 5, 40)), Weights::Split, false,
             KvCacheType::F32},
        Case{"mistral_window", windowed(spec_of("mistral", 4, 2, 48)), Weights::Int4, true, KvCacheType::F32},
        Case{"gemma3_local_global", gemma3(spec_of("gemma3_text", 4, 1, 48)), Weights::Int4, true, KvCacheType::F16}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// A long context, where attention splits every KV head's keys between the threads (the other
// tests' contexts are short enough for one stretch, split by KV heads): caches filled with the
// same random keys and values up to position 2100, then steps of 1-3 new tokens.
TEST(ForwardTeamLongContext, SameBitsWhenTheKeysAreSplit) {
  if (omp_get_max_threads() < 2 || usable_cpus() < 2) GTEST_SKIP() << "needs two threads on two CPUs";
  synth::Spec spec = spec_of("llama", 8, 2, 48);
  spec.head_dim = 64;
  spec.max_pos = 4096;
  for (KvCacheType type : {KvCacheType::F32, KvCacheType::F16}) {
    TempDir dir;
    Model model = packed_model({"long", spec, Weights::Int4, true, type}, dir);
    constexpr int kPast = 2100;
    const DecodeAttentionShape shape{spec.heads, spec.kv_heads, spec.head_dim, 0};
    ASSERT_EQ(decode_attention_parts(shape, 1, kPast, 2), 2) << "the keys must be split here";
    KVCache team = model.make_cache(kPast + 8);
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (int l = 0; l < spec.layers; ++l) {
      // The pair of the cache's type (the other pair has no layers).
      for (auto* block : {&team.k, &team.v}) {
        if (!block->empty()) for (float& value : (*block)[l]) value = normal(rng);
      }
      for (auto* block : {&team.k16, &team.v16}) {
        if (!block->empty()) for (uint16_t& value : (*block)[l]) value = f32_to_f16(normal(rng));
      }
    }
    team.n_past = kPast;
    KVCache reference = team;
    for (int step = 0; step < 3; ++step) {
      const std::vector<int32_t> tokens = test::random_ids(1 + step, spec.vocab, 30 + step);
      const SequenceInput t{tokens.data(), static_cast<int>(tokens.size()), &team};
      const SequenceInput r{tokens.data(), static_cast<int>(tokens.size()), &reference};
      expect_same_step(model, std::span(&t, 1), std::span(&r, 1), "long context step " + std::to_string(step));
    }
  }
}

// Steps that must take the usual path: a prompt batch, hooks, a model whose weights are not
// packed (fp32 here), the option off.
TEST(ForwardTeamEligibility, OnlyPackedDecodeStepsWithoutHooks) {
  if (omp_get_max_threads() < 2 || usable_cpus() < 2) GTEST_SKIP() << "needs two threads on two CPUs";
  TempDir dir;
  Model model = packed_model({"llama", spec_of("llama", 4, 2, 48), Weights::Int4, true, KvCacheType::F32}, dir);
  KVCache cache = model.make_cache(16);
  const std::vector<int32_t> one = {3}, prompt = test::random_ids(kMaxDecodeTokens + 1, 61, 5);
  const SequenceInput step{one.data(), 1, &cache}, batch{prompt.data(), static_cast<int>(prompt.size()), &cache};
  std::vector<float> x(model.config.dim * (kMaxDecodeTokens + 1));
  EXPECT_TRUE(run_layers_in_one_region(model, model.plan_batch(std::span(&step, 1)), x.data(), nullptr));
  EXPECT_FALSE(run_layers_in_one_region(model, model.plan_batch(std::span(&batch, 1)), x.data(), nullptr));
  ForwardHooks hooks;
  EXPECT_FALSE(run_layers_in_one_region(model, model.plan_batch(std::span(&step, 1)), x.data(), &hooks));
  model.decode_in_one_region = false;
  EXPECT_FALSE(run_layers_in_one_region(model, model.plan_batch(std::span(&step, 1)), x.data(), nullptr));
  Model fp32 = load_model(dir.path(), {.tokenizer_path = {}, .need_tokenizer = false});
  KVCache fp32_cache = fp32.make_cache(16);
  const SequenceInput fp32_step{one.data(), 1, &fp32_cache};
  EXPECT_FALSE(run_layers_in_one_region(fp32, fp32.plan_batch(std::span(&fp32_step, 1)), x.data(), nullptr));
}

}  // namespace

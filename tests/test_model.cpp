// The real tiny model (stories260K) end to end: the three layouts give identical logits, the
// golden float64 reference is reproduced, and the perplexity / KL machinery is consistent.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/logit_store.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"

namespace fs = std::filesystem;

namespace {

const std::string kStories = std::string(MPQ_SHARED_DIR) + "/models/stories260K";
const std::string kTinyText = std::string(MPQ_SHARED_DIR) + "/text/tinystories-sample/tiny.txt";

#define REQUIRE_SHARED()                                                                      \
  if (!fs::exists(kStories)) GTEST_SKIP() << "shared data not found at " << kStories \
                                          << " (tests read ../shared beside the repository)"

nlohmann::json golden() {
  std::ifstream in(kStories + "/golden_tinystories.json");
  return nlohmann::json::parse(in)["tinystories_like"];
}

mpq::Model load(const std::string& layout) {
  mpq::LoadOptions options;
  if (layout == "llama2c") {
    options.tokenizer_path = kStories + "/llama2c/tok512.bin";
    return mpq::load_model(kStories + "/llama2c/stories260K.bin", options);
  }
  if (layout == "gguf") return mpq::load_model(kStories + "/gguf/stories260K.gguf", options);
  options.need_tokenizer = false;  // the HF layout has no tokenizer.json
  return mpq::load_model(kStories + "/hf", options);
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("mpq_test_model_" + std::to_string(::getpid()) + "_" + name)).string();
}

}  // namespace

TEST(StoriesGolden, AllLayoutsGiveIdenticalLogits) {
  REQUIRE_SHARED();
  const std::vector<int32_t> ids = golden()["ids"].get<std::vector<int32_t>>();
  std::vector<std::vector<float>> logits;
  for (const char* layout : {"hf", "gguf", "llama2c"}) {
    mpq::Model model = load(layout);
    EXPECT_EQ(model.config.n_layers, 5);
    EXPECT_EQ(model.config.n_kv_heads, 4);
    EXPECT_EQ(model.parameter_count(), 260032) << layout;
    mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
    logits.push_back(model.forward_all(ids, cache));
  }
  // Same fp32 weights, same code path: the results must be bit-identical, not merely close.
  EXPECT_EQ(logits[0], logits[1]) << "GGUF differs from HF";
  EXPECT_EQ(logits[0], logits[2]) << "llama2.c differs from HF";
}

TEST(StoriesGolden, TokenIdsAndNllMatchFloat64Reference) {
  REQUIRE_SHARED();
  const nlohmann::json g = golden();
  const std::vector<int32_t> ids = g["ids"].get<std::vector<int32_t>>();
  for (const char* layout : {"gguf", "llama2c"}) {
    mpq::Model model = load(layout);
    EXPECT_EQ(model.tokenizer->encode(g["text"].get<std::string>(), true), ids) << layout;
    mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
    const std::vector<float> logits = model.forward_all(ids, cache);
    const int vocab = model.config.vocab_size;
    double sum = 0;
    const auto expected_nll = g["nll_per_token"].get<std::vector<double>>();
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const float* row = &logits[i * vocab];
      double max_logit = *std::max_element(row, row + vocab), s = 0;
      for (int k = 0; k < vocab; ++k) s += std::exp(row[k] - max_logit);
      const double nll = max_logit + std::log(s) - row[ids[i + 1]];
      // The golden values are printed with 6 decimals; fp32 vs float64 adds far less.
      EXPECT_NEAR(nll, expected_nll[i], 2e-6 + 1e-4 * expected_nll[i]) << "position " << i;
      sum += nll;
    }
    const double mean = sum / (ids.size() - 1);
    EXPECT_NEAR(mean, g["mean_nll"].get<double>(), 1e-4 * g["mean_nll"].get<double>()) << layout;
    const auto first8 = g["logits_pos0_first8"].get<std::vector<double>>();
    for (int k = 0; k < 8; ++k) EXPECT_NEAR(logits[k], first8[k], 1e-4) << "logit " << k;
  }
}

TEST(StoriesGolden, GreedyGenerationFollowsArgmax) {
  REQUIRE_SHARED();
  const nlohmann::json g = golden();
  mpq::Model model = load("gguf");
  const auto argmax = g["argmax_per_pos"].get<std::vector<int32_t>>();
  // With the first 10 golden ids as prompt, greedy decoding must produce the golden argmax at
  // position 9 first; later tokens follow the model's own outputs.
  std::vector<int32_t> prompt(g["ids"].begin(), g["ids"].begin() + 10);
  const auto out = mpq::generate(model, prompt, 5, mpq::SamplerOptions{});
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0], argmax[9]);
  // Sampling is seeded: same seed, same tokens; another seed, (almost surely) other tokens.
  mpq::SamplerOptions hot{1.0f, 0.95f, 7};
  EXPECT_EQ(mpq::generate(model, prompt, 20, hot), mpq::generate(model, prompt, 20, hot));
}

TEST(StoriesPerplexity, SelfKlIsZeroAndFilesRoundTrip) {
  REQUIRE_SHARED();
  mpq::Model model = load("gguf");
  std::ifstream in(kTinyText);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  mpq::PplOptions options;
  options.ctx = 128;
  options.max_chunks = 4;
  options.progress = false;
  options.save_logits_path = temp_path("base.logits");
  const mpq::PplResult base = mpq::evaluate_perplexity(model, text, kTinyText, options);
  EXPECT_EQ(base.n_chunks, 4);
  EXPECT_EQ(base.n_tokens, 4 * (128 / 2 - 1));  // llama.cpp scores the second half of each chunk
  EXPECT_GT(base.ppl, 1.0);
  EXPECT_LT(base.ppl, 20.0);  // a model trained on TinyStories reads TinyStories text well

  options.save_logits_path.clear();
  options.kl_base_path = temp_path("base.logits");
  const mpq::PplResult self = mpq::evaluate_perplexity(model, text, kTinyText, options);
  ASSERT_TRUE(self.has_kl);
  EXPECT_NEAR(self.kld_mean, 0.0, 1e-6);
  EXPECT_DOUBLE_EQ(self.top1_agree, 1.0);
  EXPECT_NEAR(self.ppl_ratio, 1.0, 1e-6);
  EXPECT_NEAR(self.ppl_base, base.ppl, 1e-4 * base.ppl);

  // A different context length does not match the saved logits: refused, naming the file.
  options.ctx = 64;
  try {
    mpq::evaluate_perplexity(model, text, kTinyText, options);
    FAIL() << "mismatched kl-base accepted";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find(options.kl_base_path), std::string::npos) << e.what();
  }
  // A truncated logits file is refused.
  fs::resize_file(options.kl_base_path, fs::file_size(options.kl_base_path) - 3);
  options.ctx = 128;
  EXPECT_THROW(mpq::evaluate_perplexity(model, text, kTinyText, options), mpq::Error);
  fs::remove(options.kl_base_path);
}

TEST(StoriesPerplexity, GptqProtocolScoresEveryToken) {
  REQUIRE_SHARED();
  mpq::Model model = load("gguf");
  std::ifstream in(kTinyText);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  mpq::PplOptions options;
  options.protocol = mpq::PplProtocol::Gptq;
  options.ctx = 256;
  options.max_chunks = 2;
  options.progress = false;
  const mpq::PplResult r = mpq::evaluate_perplexity(model, text, kTinyText, options);
  EXPECT_EQ(r.n_tokens, 2 * 255);
  // Scoring positions near the start of a window (little context) costs perplexity compared with
  // the llama.cpp protocol, which scores only the second half.
  options.protocol = mpq::PplProtocol::LlamaCpp;
  const mpq::PplResult half = mpq::evaluate_perplexity(model, text, kTinyText, options);
  EXPECT_GT(r.ppl, half.ppl);
}

TEST(KlFromTopK, MatchesExactKlWhenTopKCoversTheDistribution) {
  // Two distributions over 5 tokens; top-k = 5 covers everything, so the value is exact.
  const std::vector<float> p = {0.5f, 0.2f, 0.15f, 0.1f, 0.05f}, q = {0.4f, 0.3f, 0.1f, 0.1f, 0.1f};
  std::vector<int32_t> ids = {0, 1, 2, 3, 4};
  std::vector<float> lp(5), lq(5);
  double exact = 0;
  for (int i = 0; i < 5; ++i) {
    lp[i] = std::log(p[i]);
    lq[i] = std::log(q[i]);
    exact += p[i] * (std::log(p[i]) - std::log(q[i]));
  }
  EXPECT_NEAR(mpq::kl_from_topk(ids.data(), lp.data(), 5, lq.data()), exact, 1e-6);
  // With top-2 the bound is below the exact value but counts the rest as one bucket.
  const double top2 = mpq::kl_from_topk(ids.data(), lp.data(), 2, lq.data());
  const double bucket = 0.3 * std::log(0.3 / 0.3);
  EXPECT_NEAR(top2, 0.5 * std::log(0.5 / 0.4) + 0.2 * std::log(0.2 / 0.3) + bucket, 1e-6);
  EXPECT_LE(top2, exact + 1e-9);
}

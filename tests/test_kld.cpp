// The held-out KL divergence behind the kld and shapley methods (calib/kld_eval.h), the held-out
// token set (sample_calibration with `avoid`), the kld method of analyze_sensitivity and its
// resumption.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "calib/kld_eval.h"
#include "calib/sensitivity.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"
#include "quant/rtn.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

#define SKIP_WITHOUT_DATA()                                                   \
  if (!fs::exists(kGguf) || !fs::exists(kTiny)) GTEST_SKIP() << "shared data not found: " << kGguf

mpq::CalibrationOptions tiny_options(int samples, int len, uint64_t seed) {
  mpq::CalibrationOptions o;
  o.text_paths = {kTiny};
  o.n_samples = samples;
  o.seq_len = len;
  o.seed = seed;
  return o;
}

// Quantizes one tensor of the model in place with RTN; returns the original weights.
std::unique_ptr<mpq::LinearWeights> quantize_one(mpq::Linear& lin, mpq::WeightFormatId f) {
  std::vector<float> w(lin.weights->out_features() * lin.weights->in_features());
  lin.weights->to_f32(w.data());
  auto saved = std::move(lin.weights);
  lin.weights = mpq::make_quantized_weights(
      mpq::quantize_rtn(f, w.data(), saved->out_features(), saved->in_features()));
  return saved;
}

// KL(p ‖ q) per position from two full forward passes, in double: the independent reference.
double direct_mean_kl(mpq::Model& ref, mpq::Model& cur, const std::vector<std::vector<int32_t>>& seqs) {
  double sum = 0;
  int64_t count = 0;
  const int64_t vocab = ref.config.vocab_size;
  for (const auto& s : seqs) {
    mpq::KVCache c1 = ref.make_cache(static_cast<int>(s.size()));
    mpq::KVCache c2 = cur.make_cache(static_cast<int>(s.size()));
    const std::vector<float> a = ref.forward_all(s, c1), b = cur.forward_all(s, c2);
    for (size_t t = 0; t < s.size(); ++t) {
      auto lse = [&](const float* row) {
        double m = row[0], z = 0;
        for (int64_t i = 0; i < vocab; ++i) m = std::max(m, static_cast<double>(row[i]));
        for (int64_t i = 0; i < vocab; ++i) z += std::exp(row[i] - m);
        return m + std::log(z);
      };
      const float* pa = a.data() + t * vocab;
      const float* pb = b.data() + t * vocab;
      const double la = lse(pa), lb = lse(pb);
      double kl = 0;
      for (int64_t i = 0; i < vocab; ++i) {
        const double lp = pa[i] - la;
        kl += std::exp(lp) * (lp - (pb[i] - lb));
      }
      sum += kl;
      ++count;
    }
  }
  return sum / count;
}

}  // namespace

TEST(KldEval, ZeroForTheReferenceAndEqualToDirectForwardPasses) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  mpq::Model reference = mpq::load_model(kGguf);
  const auto set = mpq::sample_calibration(model, tiny_options(3, 40, 11));
  mpq::KldEvaluator eval(model, set.sequences);
  EXPECT_EQ(eval.n_tokens(), 120);
  EXPECT_LT(std::abs(eval.evaluate(0)), 1e-6);
  // Quantize a tensor of layer 2: re-running from layer 2 on cached states must give exactly what a
  // full re-run gives, and both must match two independent forward passes.
  auto saved = quantize_one(model.layers[2].at(mpq::LinearKind::Down), mpq::WeightFormatId::Int2_G64);
  const double partial = eval.evaluate(2), full = eval.evaluate(0);
  EXPECT_EQ(partial, full);
  EXPECT_GT(full, 1e-4);
  const double direct = direct_mean_kl(reference, model, set.sequences);
  // Both sides sum ~512-term softmaxes of fp32 logits: agreement to ~1e-5 relative.
  EXPECT_NEAR(full, direct, 1e-5 * direct + 1e-7);
  model.layers[2].at(mpq::LinearKind::Down).weights = std::move(saved);
  EXPECT_LT(std::abs(eval.evaluate(0)), 1e-6);
}

TEST(KldEval, CommittedStatesFollowTheModel) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  const auto set = mpq::sample_calibration(model, tiny_options(2, 32, 3));
  mpq::KldEvaluator eval(model, set.sequences);
  const auto fp_states = eval.hidden();
  auto s1 = quantize_one(model.layers[1].at(mpq::LinearKind::Q), mpq::WeightFormatId::Int2_G64);
  const double after_one = eval.evaluate(1, /*commit=*/true);
  // Layer 3 changes next: with layer 1's change committed, running from 3 equals running from 0.
  auto s3 = quantize_one(model.layers[3].at(mpq::LinearKind::Up), mpq::WeightFormatId::Int2_G64);
  EXPECT_EQ(eval.evaluate(3), eval.evaluate(0));
  EXPECT_GT(eval.evaluate(0), 0.0);
  EXPECT_GT(after_one, 0.0);
  eval.set_hidden(fp_states);
  model.layers[1].at(mpq::LinearKind::Q).weights = std::move(s1);
  model.layers[3].at(mpq::LinearKind::Up).weights = std::move(s3);
  EXPECT_LT(std::abs(eval.evaluate(0)), 1e-6);
}

TEST(KldEval, HeldoutWindowsAvoidTheCalibrationWindows) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  const auto calib = mpq::sample_calibration(model, tiny_options(8, 64, 1));
  const auto held = mpq::sample_calibration(model, tiny_options(8, 64, 2), &calib);
  ASSERT_EQ(held.windows.size(), 8u);
  for (const auto& h : held.windows) {
    for (const auto& c : calib.windows) {
      const bool overlap = h.file == c.file && h.offset < c.offset + c.length && c.offset < h.offset + h.length;
      EXPECT_FALSE(overlap) << h.offset << " vs " << c.offset;
    }
  }
  // A text that cannot hold the held-out windows is an error, not a hang: two windows of 60% of
  // a short text always overlap.
  mpq::test::TempDir tmp;
  const std::string short_text = tmp.file("short.txt");
  {
    std::ofstream f(short_text);
    for (int i = 0; i < 20; ++i) f << "Once upon a time there was a little dog. ";
  }
  const int64_t n_tokens = static_cast<int64_t>(model.tokenizer->encode(mpq::test::slurp(short_text), false).size());
  mpq::CalibrationOptions narrow = tiny_options(1, static_cast<int>(n_tokens * 6 / 10), 1);
  narrow.text_paths = {short_text};
  const auto one = mpq::sample_calibration(model, narrow);
  narrow.seed = 2;
  try {
    mpq::sample_calibration(model, narrow, &one);
    ADD_FAILURE() << "expected an error";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
  }
}

TEST(KldEval, AnalyzeKldMatchesSingleTensorEvaluationAndResumes) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  const auto calib = mpq::sample_calibration(model, tiny_options(2, 24, 5));
  mpq::SensitivityOptions options;
  options.methods.kld = true;
  options.formats = {mpq::WeightFormatId::Int4_G128, mpq::WeightFormatId::Int2_G64};
  options.heldout = mpq::sample_calibration(model, tiny_options(2, 32, 6), &calib).sequences;
  options.progress = false;
  const mpq::SensitivityResult full = mpq::analyze_sensitivity(model, calib, options);
  ASSERT_EQ(full.tensors.size(), 35u);
  // Independent check of one entry: quantize that tensor alone and evaluate from layer 0.
  {
    mpq::KldEvaluator eval(model, options.heldout);
    auto saved = quantize_one(model.layers[4].at(mpq::LinearKind::V), mpq::WeightFormatId::Int2_G64);
    EXPECT_EQ(eval.evaluate(0), full.tensors[4 * 7 + 2].kld[1]);
    model.layers[4].at(mpq::LinearKind::V).weights = std::move(saved);
  }
  for (const auto& t : full.tensors) EXPECT_GT(t.kld[1], t.kld[0]) << t.name;  // 2 bits hurt more than 4

  // Interrupt after 5 tensors (the checkpoint callback throws), then resume from the last
  // checkpoint: the result must equal the uninterrupted one, and finished tensors must be taken
  // from the checkpoint (a marked value survives).
  nlohmann::json last;
  int saved_units = 0;
  options.checkpoint = [&](const nlohmann::json& state) {
    last = state;
    if (++saved_units == 5) throw std::runtime_error("interrupted");
  };
  EXPECT_THROW(mpq::analyze_sensitivity(model, calib, options), std::runtime_error);
  ASSERT_EQ(last["kld"].size(), 5u);
  last["kld"][full.tensors[0].name] = std::vector<double>{123.0, 456.0};
  options.resume = last;
  options.checkpoint = nullptr;
  const mpq::SensitivityResult resumed = mpq::analyze_sensitivity(model, calib, options);
  EXPECT_EQ(resumed.tensors[0].kld, (std::vector<double>{123.0, 456.0}));
  for (size_t t = 1; t < full.tensors.size(); ++t) EXPECT_EQ(resumed.tensors[t].kld, full.tensors[t].kld);
}

TEST(KldEval, CliResumeRefusesAProgressFileOfOtherSettings) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  const std::string out = tmp.file("s.json");
  {
    std::ofstream f(out + ".progress.json");
    f << R"({"settings": {"model": "something else"}, "state": {}})";
  }
  const std::string args = "analyze '" + kGguf + "' --calib '" + kTiny +
                           "' --calib-samples 2 --calib-len 24 --heldout-samples 2 --heldout-len 24 "
                           "--methods kld --formats int4_g128 --threads 1 --out '" + out + "'";
  const auto r = mpq::test::run_mpq(args + " --resume", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("progress file is from a run with other settings"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // Without --resume the stale file is ignored, replaced while running, and removed at the end.
  const auto ok = mpq::test::run_mpq(args, tmp);
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_FALSE(fs::exists(out + ".progress.json"));
  const nlohmann::json j = nlohmann::json::parse(mpq::test::slurp(out));
  EXPECT_EQ(j["heldout"]["tokens"], 48);
  EXPECT_TRUE(j["tensors"][0]["kld"].contains("int4_g128"));
}

// Calibration sampling and the sequential layer-by-layer statistics.
#include <gtest/gtest.h>

#include <filesystem>

#include "calib/calibration.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

mpq::CalibrationOptions small_options(uint64_t seed) {
  mpq::CalibrationOptions o;
  o.text_paths = {kTiny};
  o.n_samples = 5;
  o.seq_len = 48;
  o.seed = seed;
  o.micro_batch = 2;  // 5 samples in batches of 2, 2 and 1
  return o;
}

// Per-layer statistics gathered during one ordinary forward pass over the same sequences.
struct CollectAll final : mpq::ForwardHooks {
  std::vector<mpq::LayerStats> layers;
  void on_linear_input(int l, mpq::LinearKind kind, const float* x, int64_t n, int64_t width) override {
    if (static_cast<int>(layers.size()) <= l) layers.resize(l + 1);
    mpq::LayerStats& s = layers[l];
    if (kind == mpq::LinearKind::Q) s.qkv.accumulate(x, n, width);
    if (kind == mpq::LinearKind::O) s.o.accumulate(x, n, width);
    if (kind == mpq::LinearKind::Gate) s.mlp.accumulate(x, n, width);
    if (kind == mpq::LinearKind::Down) s.down.accumulate(x, n, width);
  }
};

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(b[i]));
    max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
  }
  return max_diff / max_abs;
}

}  // namespace

TEST(Calibration, SamplingIsSeededAndStartsWithBos) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  mpq::Model model = mpq::load_model(kGguf);
  const auto a = mpq::sample_calibration(model, small_options(1));
  const auto b = mpq::sample_calibration(model, small_options(1));
  const auto c = mpq::sample_calibration(model, small_options(2));
  EXPECT_EQ(a.sequences, b.sequences);
  EXPECT_NE(a.sequences, c.sequences);
  ASSERT_EQ(a.sequences.size(), 5u);
  for (const auto& seq : a.sequences) {
    ASSERT_EQ(seq.size(), 48u);
    EXPECT_EQ(seq[0], model.tokenizer->spec().bos_id);  // the model adds BOS
  }
  auto bad = small_options(1);
  bad.text_paths = {"/nonexistent/calib.txt"};
  EXPECT_THROW(mpq::sample_calibration(model, bad), mpq::Error);
}

TEST(Calibration, UnchangedWeightsGiveTheStatisticsOfAPlainForward) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  mpq::Model model = mpq::load_model(kGguf);
  const auto set = mpq::sample_calibration(model, small_options(3));
  CollectAll plain;
  for (const auto& seq : set.sequences) {
    mpq::KVCache cache = model.make_cache(static_cast<int>(seq.size()));
    model.forward_all(seq, cache, &plain);
  }
  int seen = 0;
  mpq::run_sequential_calibration(model, set, [&](int l, const mpq::LayerStats& stats) {
    ++seen;
    EXPECT_EQ(stats.qkv.n_rows, 5 * 48);
    // Same inputs in another batching: equal up to fp32 summation order.
    EXPECT_LT(max_rel_diff(stats.qkv.xtx, plain.layers[l].qkv.xtx), 1e-5) << "layer " << l;
    EXPECT_LT(max_rel_diff(stats.o.xtx, plain.layers[l].o.xtx), 1e-5) << "layer " << l;
    EXPECT_LT(max_rel_diff(stats.down.xtx, plain.layers[l].down.xtx), 1e-5) << "layer " << l;
    EXPECT_EQ(&stats.of(mpq::LinearKind::Up), &stats.mlp);
  });
  EXPECT_EQ(seen, model.config.n_layers);
}

TEST(Calibration, LaterLayersSeeTheChangesOfEarlierOnes) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  mpq::Model model = mpq::load_model(kGguf);
  const auto set = mpq::sample_calibration(model, small_options(4));
  std::vector<double> layer1_plain, layer1_changed;
  mpq::run_sequential_calibration(model, set, [&](int l, const mpq::LayerStats& s) {
    if (l == 1) layer1_plain = s.qkv.xtx;
  });
  // Zeroing layer 0's MLP output (down_proj) inside the callback must change what layer 1 sees.
  mpq::run_sequential_calibration(model, set, [&](int l, const mpq::LayerStats& s) {
    if (l == 0) {
      mpq::Linear& down = model.layers[0].at(mpq::LinearKind::Down);
      const int64_t out = down.weights->out_features(), in = down.weights->in_features();
      down.weights = mpq::make_dense_f32_weights(std::make_shared<std::vector<float>>(out * in, 0.f), out, in);
    }
    if (l == 1) layer1_changed = s.qkv.xtx;
  });
  EXPECT_GT(max_rel_diff(layer1_changed, layer1_plain), 1e-2);
}

// GPTQ: against brute force on a tiny layer, equality with RTN when H = I, better output error
// than RTN on correlated inputs for every lossy format, and on real layers (stories260K, and
// SmolLM2-135M's layer 0 down_proj when the model is present).
#include <gtest/gtest.h>

#include <cblas.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "calib/calibration.h"
#include "format/weight_format.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/gptq.h"
#include "quant/rtn.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::WeightFormatId;

namespace {

using mpq::test::gaussian;

// XᵀX of X = Z·A: Z [n, cols] Gaussian, A [cols, cols] = I + a random mixing, with a few columns
// scaled up (outlier channels) so that H is far from diagonal and uneven.
std::vector<double> correlated_xtx(int64_t n, int64_t cols, uint64_t seed) {
  const std::vector<float> z = gaussian(static_cast<size_t>(n * cols), seed);
  std::vector<float> a = gaussian(static_cast<size_t>(cols * cols), seed + 1,
                                  1.f / std::sqrt(static_cast<float>(cols)));
  for (int64_t i = 0; i < cols; ++i) a[i * cols + i] += 1.f;
  for (int64_t j = 0; j < cols; j += 7) {
    for (int64_t i = 0; i < cols; ++i) a[i * cols + j] *= 4.f;
  }
  std::vector<float> x(static_cast<size_t>(n * cols));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), static_cast<int>(cols),
              static_cast<int>(cols), 1.f, z.data(), static_cast<int>(cols), a.data(),
              static_cast<int>(cols), 0.f, x.data(), static_cast<int>(cols));
  mpq::InputStats s;
  s.accumulate(x.data(), n, cols);
  return s.xtx;
}

double rtn_error(WeightFormatId f, const std::vector<float>& w, int64_t rows, int64_t cols,
                 const std::vector<double>& xtx) {
  return mpq::layer_output_error(w.data(), mpq::quantize_rtn(f, w.data(), rows, cols), xtx);
}

const std::vector<WeightFormatId> kLossy = {
    WeightFormatId::Int4_G128, WeightFormatId::Int3_G128,        WeightFormatId::Int2_G64,
    WeightFormatId::NVFP4,     WeightFormatId::MXFP4,            WeightFormatId::FP8_E4M3_Channel,
    WeightFormatId::Int8_Channel, WeightFormatId::Int4Sym_G128, WeightFormatId::FP8_E4M3_B128,
    WeightFormatId::Int4_G32,  WeightFormatId::Int2_G32};

}  // namespace

// The error proxy is tr(ΔW H ΔWᵀ), checked against the explicit ‖ΔW Xᵀ‖².
TEST(Gptq, OutputErrorIsTraceOfDeltaHDelta) {
  const int64_t rows = 5, cols = 9, n = 31;
  const std::vector<float> x = gaussian(static_cast<size_t>(n * cols), 3);
  mpq::InputStats s;
  s.accumulate(x.data(), n, cols);
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 4);
  const std::vector<float> wh = gaussian(static_cast<size_t>(rows * cols), 5);
  double direct = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double y = 0;
      for (int64_t c = 0; c < cols; ++c) y += (double(w[r * cols + c]) - wh[r * cols + c]) * x[t * cols + c];
      direct += y * y;
    }
  }
  EXPECT_NEAR(mpq::layer_output_error(w.data(), wh.data(), rows, cols, s.xtx), direct, 1e-5 * direct);  // xtx: fp32 blocks
}

// Tiny layer, one int2 group of 4 per row: GPTQ's params are RTN's (the only group starts at
// column 0), so the brute-force optimum over the 4^4 code vectors under those params bounds GPTQ
// from below, and GPTQ should beat RTN.
TEST(Gptq, BetweenBruteForceOptimumAndRtnOnTinyLayer) {
  const auto fmt = WeightFormatId::Int2_G32;
  const auto& f = mpq::weight_format(fmt);
  const int64_t rows = 3, cols = 4;
  double total_gptq = 0, total_rtn = 0, total_best = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<double> h = correlated_xtx(64, cols, 100 + seed);
    const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 200 + seed);
    mpq::GptqOptions o;
    o.damp_percent = 1e-4;
    const mpq::QuantizedMatrix q = mpq::quantize_gptq(fmt, w.data(), rows, cols, h, o);
    const mpq::QuantizedMatrix qr = mpq::quantize_rtn(fmt, w.data(), rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const mpq::GroupParams p = q.params(r, 0);
      ASSERT_EQ(p.scale_bits, qr.params(r, 0).scale_bits);
      ASSERT_EQ(p.zero, qr.params(r, 0).zero);
      auto row_error = [&](const float* wh) {
        return mpq::layer_output_error(w.data() + r * cols, wh, 1, cols, h);
      };
      double best = INFINITY;
      for (int combo = 0; combo < 256; ++combo) {
        float wh[4];
        for (int c = 0; c < 4; ++c) wh[c] = f.decode(f, static_cast<uint16_t>((combo >> (2 * c)) & 3), p);
        best = std::min(best, row_error(wh));
      }
      float wg[4], wr[4];
      for (int c = 0; c < 4; ++c) {
        wg[c] = f.decode(f, q.code(r, c), p);
        wr[c] = f.decode(f, qr.code(r, c), p);
      }
      const double eg = row_error(wg), er = row_error(wr);
      EXPECT_GE(eg, best * (1 - 1e-9)) << "seed " << seed << " row " << r;
      EXPECT_GE(er, best * (1 - 1e-9));
      total_gptq += eg;
      total_rtn += er;
      total_best += best;
    }
  }
  std::printf("tiny int2: brute-force optimum %.4g <= GPTQ %.4g <= RTN %.4g (60 rows)\n",
              total_best, total_gptq, total_rtn);
  EXPECT_LT(total_gptq, total_rtn);
  EXPECT_LE(total_best, total_gptq);
}

// With H = I there is nothing to compensate: GPTQ is exactly RTN, for every element format (the
// ggml block formats: test_ggml_runtime.cpp).
TEST(Gptq, IdentityHessianGivesExactlyRtn) {
  const int64_t rows = 6, cols = 150;  // not a multiple of any group size
  std::vector<double> eye(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) eye[i * cols + i] = 1.0;
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 7, 0.05f);
  for (const auto& f : mpq::weight_formats()) {
    if (mpq::is_ggml_format(f)) continue;
    for (const bool act_order : {false, true}) {
      mpq::GptqOptions o;
      o.act_order = act_order;
      o.block_size = 32;
      const mpq::QuantizedMatrix g = mpq::quantize_gptq(f.id, w.data(), rows, cols, eye, o);
      const mpq::QuantizedMatrix r = mpq::quantize_rtn(f.id, w.data(), rows, cols);
      EXPECT_EQ(g.codes, r.codes) << f.name;
      EXPECT_EQ(g.scales, r.scales) << f.name;
      EXPECT_EQ(g.zeros, r.zeros) << f.name;
      EXPECT_EQ(g.tensor_scale, r.tensor_scale) << f.name;
    }
  }
}

TEST(Gptq, BeatsRtnOnCorrelatedInputsForEveryLossyFormat) {
  const int64_t rows = 48, cols = 320, n = 1024;  // cols: 2.5 groups of 128, 5 of 64
  const std::vector<double> h = correlated_xtx(n, cols, 11);
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 12, 0.02f);
  for (const WeightFormatId fmt : kLossy) {
    const double rtn = rtn_error(fmt, w, rows, cols, h);
    for (const bool act_order : {false, true}) {
      mpq::GptqOptions o;
      o.act_order = act_order;
      o.block_size = 64;  // blocks that do not line up with 128-groups
      mpq::GptqStats st;
      const mpq::QuantizedMatrix q = mpq::quantize_gptq(fmt, w.data(), rows, cols, h, o, &st);
      EXPECT_NEAR(st.output_error, mpq::layer_output_error(w.data(), q, h), 1e-9 * st.output_error);
      EXPECT_EQ(st.damp_retries, 0);
      std::printf("%-17s act_order=%d  GPTQ/RTN output error = %.3f\n",
                  mpq::weight_format(fmt).name, act_order, st.output_error / rtn);
      EXPECT_LT(st.output_error, rtn) << mpq::weight_format(fmt).name << " act_order " << act_order;
    }
  }
}

// Block size is an implementation detail: the result must not depend on it (up to the GEMM's
// rounding, which can flip a code now and then; compare the output errors).
TEST(Gptq, BlockSizeDoesNotChangeTheResult) {
  const int64_t rows = 16, cols = 200;
  const std::vector<double> h = correlated_xtx(512, cols, 21);
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 22);
  for (const bool act_order : {false, true}) {
    mpq::GptqOptions a, b;
    a.block_size = 1;
    b.block_size = 128;
    a.act_order = b.act_order = act_order;
    mpq::GptqStats sa, sb;
    const auto qa = mpq::quantize_gptq(WeightFormatId::Int3_G32, w.data(), rows, cols, h, a, &sa);
    const auto qb = mpq::quantize_gptq(WeightFormatId::Int3_G32, w.data(), rows, cols, h, b, &sb);
    size_t diff = 0;
    for (size_t i = 0; i < qa.codes.size(); ++i) diff += qa.codes[i] != qb.codes[i];
    std::printf("block 1 vs 128, act_order=%d: %zu of %zu codes differ, errors %.6g vs %.6g\n", act_order, diff, qa.codes.size(), sa.output_error, sb.output_error);
    EXPECT_LE(diff, 3u) << "act_order " << act_order;  // rounding of the GEMM may flip a rare tie
    EXPECT_NEAR(sa.output_error, sb.output_error, 1e-3 * sa.output_error);
  }
}

TEST(Gptq, DeadColumnsAndSingularHessian) {
  const int64_t rows = 4, cols = 40, n = 8;  // n < cols: XᵀX is singular
  std::vector<float> x = gaussian(static_cast<size_t>(n * cols), 31);
  for (int64_t t = 0; t < n; ++t) x[t * cols + 5] = x[t * cols + 17] = 0.f;  // dead inputs
  mpq::InputStats s;
  s.accumulate(x.data(), n, cols);
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 32);
  mpq::GptqStats st;
  const auto q = mpq::quantize_gptq(WeightFormatId::Int4_G32, w.data(), rows, cols, s.xtx, {}, &st);
  EXPECT_EQ(st.dead_columns, 2);
  std::vector<float> wh(static_cast<size_t>(rows * cols));
  mpq::dequantize(q, wh.data());
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(wh[r * cols + 5], 0.f);
    EXPECT_EQ(wh[r * cols + 17], 0.f);
  }
  EXPECT_LT(st.output_error, rtn_error(WeightFormatId::Int4_G32, w, rows, cols, s.xtx));
  // Errors: wrong xtx size, non-finite weights.
  EXPECT_THROW(mpq::quantize_gptq(WeightFormatId::Int4_G32, w.data(), rows, cols - 1, s.xtx),
               mpq::Error);
  std::vector<float> bad = w;
  bad[3] = NAN;
  EXPECT_THROW(mpq::quantize_gptq(WeightFormatId::Int4_G32, bad.data(), rows, cols, s.xtx),
               mpq::Error);
}

// An indefinite "Hessian" (not XᵀX) fails the first Cholesky; dampening is raised and reported.
TEST(Gptq, RaisesDampeningWhenCholeskyFails) {
  const int64_t rows = 3, cols = 8;
  std::vector<double> h(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0;
  h[0 * cols + 1] = h[1 * cols + 0] = 1.05;  // [[1, 1.05], [1.05, 1]] has eigenvalue -0.05
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), 41);
  mpq::GptqOptions o;
  o.damp_percent = 0.001;
  mpq::GptqStats st;
  mpq::quantize_gptq(WeightFormatId::Int4_G32, w.data(), rows, cols, h, o, &st);
  EXPECT_GT(st.damp_retries, 0);
  EXPECT_GT(st.damp_percent_used, o.damp_percent);
}

// ---- real layers

namespace {

struct RealLayer {
  std::vector<float> w;
  int64_t rows = 0, cols = 0;
  std::vector<double> xtx;
};

RealLayer real_layer(const mpq::Model& m, int l, mpq::LinearKind kind, const mpq::InputStats& s) {
  RealLayer r;
  const mpq::LinearWeights& lw = *m.layers[l].at(kind).weights;
  r.rows = lw.out_features();
  r.cols = lw.in_features();
  r.w.resize(static_cast<size_t>(r.rows * r.cols));
  lw.to_f32(r.w.data());
  r.xtx = s.xtx;
  return r;
}

void expect_gptq_beats_rtn(const RealLayer& L, WeightFormatId fmt, const std::string& what) {
  const double rtn = rtn_error(fmt, L.w, L.rows, L.cols, L.xtx);
  for (const bool act_order : {false, true}) {
    mpq::GptqOptions o;
    o.act_order = act_order;
    mpq::GptqStats st;
    mpq::quantize_gptq(fmt, L.w.data(), L.rows, L.cols, L.xtx, o, &st);
    std::printf("%-28s %-10s act_order=%d  GPTQ/RTN output error = %.3f\n", what.c_str(),
                mpq::weight_format(fmt).name, act_order, st.output_error / rtn);
    EXPECT_LT(st.output_error, rtn) << what << " " << mpq::weight_format(fmt).name;
  }
}

}  // namespace

TEST(GptqReal, Stories260KLayers0And3) {
  const std::string gguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  const std::string text = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";
  if (!fs::exists(gguf) || !fs::exists(text)) GTEST_SKIP() << "shared data not found: " << gguf;
  mpq::Model model = mpq::load_model(gguf);
  mpq::CalibrationOptions co;
  co.text_paths = {text};
  co.n_samples = 8;
  co.seq_len = 64;
  const mpq::CalibrationSet set = mpq::sample_calibration(model, co);
  std::vector<mpq::LayerStats> stats(model.layers.size());
  mpq::run_sequential_calibration(model, set, [&](int l, const mpq::LayerStats& s) {
    if (l == 0 || l == 3) stats[l] = s;  // record only; weights stay fp32
  });
  for (const int l : {0, 3}) {
    for (const auto kind : {mpq::LinearKind::Q, mpq::LinearKind::Down}) {
      const RealLayer L = real_layer(model, l, kind, stats[l].of(kind));
      const std::string what = "stories260K L" + std::to_string(l) + " " +
                               mpq::linear_kind_name(kind) + " " + std::to_string(L.rows) + "x" +
                               std::to_string(L.cols);
      for (const auto fmt : {WeightFormatId::Int4_G32, WeightFormatId::Int2_G32}) {
        expect_gptq_beats_rtn(L, fmt, what);
      }
    }
  }
}

namespace {

// Statistics of layer 0's Linear inputs only (layer-by-layer API: the rest of the model is not
// run, which keeps this test short on the 135M model).
struct Layer0Hooks final : mpq::ForwardHooks {
  mpq::LayerStats s;
  void on_linear_input(int l, mpq::LinearKind kind, const float* x, int64_t n, int64_t w) override {
    if (l != 0) return;
    if (kind == mpq::LinearKind::Down) s.down.accumulate(x, n, w);
    if (kind == mpq::LinearKind::Q) s.qkv.accumulate(x, n, w);
  }
};

}  // namespace

TEST(GptqReal, SmolLM2Layer0DownProjInt4G128) {
  const std::string path = mpq::test::default_model();
  const std::string wiki = mpq::test::shared_dir() + "/text/wikitext-2-raw-v1/wiki.valid.raw";
  if (!fs::exists(path)) GTEST_SKIP() << "default model not found: " << path;
  if (!fs::exists(wiki)) GTEST_SKIP() << "shared text not found: " << wiki;
  mpq::Model model = mpq::load_model(path);
  // The first 200 kB of wiki.valid.raw are plenty for 8 windows and tokenize quickly.
  mpq::test::TempDir tmp;
  {
    std::ifstream in(wiki, std::ios::binary);
    std::string head(200000, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
    std::ofstream(tmp.file("wiki_head.txt"), std::ios::binary) << head;
  }
  mpq::CalibrationOptions co;
  co.text_paths = {tmp.file("wiki_head.txt")};
  co.n_samples = 8;
  co.seq_len = 128;
  const mpq::CalibrationSet set = mpq::sample_calibration(model, co);
  Layer0Hooks hooks;
  std::vector<mpq::KVCache> caches;
  for (size_t i = 0; i < set.sequences.size(); ++i) caches.push_back(model.make_cache(co.seq_len));
  std::vector<mpq::SequenceInput> batch;
  for (size_t i = 0; i < set.sequences.size(); ++i) {
    batch.push_back({set.sequences[i].data(), static_cast<int>(set.sequences[i].size()), &caches[i]});
  }
  const mpq::BatchPlan plan = model.plan_batch(batch);
  std::vector<float> x = model.embed(plan);
  model.run_layer(0, plan, x.data(), &hooks);
  ASSERT_EQ(hooks.s.down.n_rows, 8 * 128);

  const RealLayer L = real_layer(model, 0, mpq::LinearKind::Down, hooks.s.down);
  const auto t0 = std::chrono::steady_clock::now();
  mpq::GptqStats st;
  mpq::quantize_gptq(WeightFormatId::Int4_G128, L.w.data(), L.rows, L.cols, L.xtx, {}, &st);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("SmolLM2 L0 down_proj %lldx%lld int4_g128: GPTQ %.3f s (incl. error proxy)\n",
              static_cast<long long>(L.rows), static_cast<long long>(L.cols), secs);
  EXPECT_EQ(st.damp_retries, 0);
  expect_gptq_beats_rtn(L, WeightFormatId::Int4_G128, "SmolLM2 L0 down_proj");
}

// RTN for every format: consistency with the per-group primitives, short last groups, and the
// clip search (never worse than plain RTN on the weighted error; better on heavy tails; the
// importance-weighted search wins on the importance-weighted error).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "format/weight_format.h"
#include "mpq/error.h"
#include "quant/rtn.h"

namespace mpq {
namespace {

using W = WeightFormatId;

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, sigma);
  std::vector<float> w(n);
  for (float& v : w) v = normal(rng);
  return w;
}

std::vector<float> student_t3(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> t3(3.f);
  std::vector<float> w(n);
  for (float& v : w) v = 0.02f * t3(rng);
  return w;
}

// Importance of each input column: mean squared activation, lognormal across columns (a few
// columns matter far more than the rest, as in real LLM activations).
std::vector<float> importance(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> lognormal(0.f, 1.5f);
  std::vector<float> imp(cols);
  for (float& v : imp) v = lognormal(rng);
  return imp;
}

// sum_ij importance_j (w_ij - q_ij)^2 per row.
std::vector<double> row_errors(const QuantizedMatrix& q, const std::vector<float>& w,
                               const float* imp) {
  std::vector<float> out(w.size());
  dequantize(q, out.data());
  std::vector<double> err(q.rows, 0.0);
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const double d = static_cast<double>(w[r * q.cols + c]) - out[r * q.cols + c];
      err[r] += (imp ? imp[c] : 1.0) * d * d;
    }
  }
  return err;
}

double total(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

TEST(Rtn, MatchesThePerGroupPrimitives) {
  const int64_t rows = 4, cols = 200;  // g128: 128 + 72; g16: 12 * 16 + 8
  const std::vector<float> w = student_t3(rows * cols, 11);
  for (const WeightFormatTraits& f : weight_formats()) {
    if (is_ggml_format(f)) continue;  // whole-block codecs: test_ggml_formats.cpp
    SCOPED_TRACE(f.name);
    const QuantizedMatrix q = quantize_rtn(f.id, w.data(), rows, cols);
    EXPECT_EQ(q.tensor_scale, compute_tensor_scale(f, w.data(), rows * cols));
    std::vector<float> out(w.size());
    dequantize(q, out.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < std::max<int64_t>(q.groups, 1); ++g) {
        const int64_t begin = q.groups ? q.group_begin(g) : 0;
        const int64_t len = q.groups ? q.group_length(g) : cols;
        // Each group's parameters come from its own values only (also the short last one).
        const GroupParams expect = q.groups ? fit_group(f, &w[r * cols + begin], len, q.tensor_scale)
                                            : GroupParams{};
        const GroupParams got = q.groups ? q.params(r, g) : GroupParams{};
        EXPECT_EQ(got.scale_bits, expect.scale_bits);
        EXPECT_EQ(got.zero, expect.zero);
        EXPECT_EQ(got.scale, expect.scale);
        for (int64_t c = begin; c < begin + len; ++c) {
          const float x = w[r * cols + c];
          ASSERT_EQ(q.code(r, c), f.encode(f, x, expect)) << r << "," << c;
          ASSERT_EQ(out[r * cols + c], quantize_value(f, x, expect)) << r << "," << c;
        }
      }
    }
  }
}

TEST(Rtn, RejectsNonFiniteWeightsAndEmptyShapes) {
  std::vector<float> w(64, 0.1f);
  w[37] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_rtn(W::Int4_G32, w.data(), 2, 32), Error);
  w[37] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_rtn(W::NVFP4, w.data(), 2, 32), Error);
  EXPECT_THROW(quantize_rtn(W::NVFP4, w.data(), 0, 32), Error);
}

TEST(Rtn, AllZeroMatrixDecodesToZero) {
  const std::vector<float> w(3 * 512, 0.f);
  for (const WeightFormatTraits& f : weight_formats()) {
    const int64_t cols = is_ggml_format(f) ? 512 : 40;  // ggml formats: whole blocks
    const QuantizedMatrix q = quantize_rtn(f.id, w.data(), 3, cols);
    std::vector<float> out(static_cast<size_t>(3 * cols), 1.f);
    dequantize(q, out.data());
    for (float v : out) ASSERT_EQ(v, 0.f) << f.name;
  }
}

TEST(RtnClip, NeverWorseThanPlainRtnOnTheWeightedError) {
  const int64_t rows = 24, cols = 520;  // not a multiple of 16, 32, 64 or 128
  const std::vector<float> imp = importance(cols, 5);
  for (int dist = 0; dist < 2; ++dist) {
    const std::vector<float> w = dist == 0 ? gaussian(rows * cols, 21) : student_t3(rows * cols, 22);
    for (const WeightFormatTraits& f : weight_formats()) {
      // ggml formats minimise their own weighted error (llama.cpp's search weights), checked
      // in test_ggml_runtime.cpp.
      if (is_ggml_format(f)) continue;
      for (const float* weights : {static_cast<const float*>(nullptr), imp.data()}) {
        SCOPED_TRACE(std::string(f.name) + (dist ? " t3" : " gaussian") + (weights ? " imp" : ""));
        RtnOptions clip;
        clip.clip_search = true;
        clip.importance = weights;
        const auto plain = row_errors(quantize_rtn(f.id, w.data(), rows, cols), w, weights);
        const auto clipped = row_errors(quantize_rtn(f.id, w.data(), rows, cols, clip), w, weights);
        for (int64_t r = 0; r < rows; ++r) {
          EXPECT_LE(clipped[r], plain[r] * (1 + 1e-12)) << "row " << r;
        }
      }
    }
  }
}

// Heavy tails: a few outliers stretch a group's range, so shrinking it trades their (larger)
// clipping error for a finer step on everything else. Minimum relative reduction of the total
// squared error with the default search (20 shrinks, 1 .. 0.5); measured values are printed.
// Fine grids (fp8, int8) gain almost nothing from clipping and are only checked for "never worse".
TEST(RtnClip, ReducesTheErrorOnHeavyTailedWeights) {
  const struct { W id; double min_reduction; } rows_[] = {
      {W::Int4_G128, 0.03}, {W::Int3_G128, 0.05}, {W::Int2_G128, 0.10}, {W::Int4Sym_G128, 0.03},
      {W::Int2_G32, 0.05},  {W::NVFP4, 0.03},     {W::MXFP4, 0.01},
  };
  const int64_t rows = 64, cols = 1024;
  const std::vector<float> w = student_t3(rows * cols, 31);
  for (const auto& row : rows_) {
    const WeightFormatTraits& f = weight_format(row.id);
    RtnOptions clip;
    clip.clip_search = true;
    // mxfp4's OCP exponent already errs low (it saturates): shrinking cannot help, the next power
    // of two up can.
    if (row.id == W::MXFP4) clip.clip_max = 2.f;
    const double plain = total(row_errors(quantize_rtn(row.id, w.data(), rows, cols), w, nullptr));
    const double clipped = total(row_errors(quantize_rtn(row.id, w.data(), rows, cols, clip), w, nullptr));
    const double reduction = 1 - clipped / plain;
    std::printf("%-13s clip search reduces squared error by %.1f%%\n", f.name, 100 * reduction);
    EXPECT_GE(reduction, row.min_reduction) << f.name;
  }
}

TEST(RtnClip, ImportanceWeightedSearchWinsOnTheWeightedError) {
  // Both searches pick among the same candidates; the weighted one minimises exactly the
  // weighted error of each group, so it can only be better on it.
  const int64_t rows = 32, cols = 384;
  const std::vector<float> w = student_t3(rows * cols, 41);
  const std::vector<float> imp = importance(cols, 42);
  for (W id : {W::Int4_G128, W::Int3_G64, W::Int2_G128, W::NVFP4, W::MXFP4, W::FP8_E4M3_Channel}) {
    RtnOptions plain_clip, weighted_clip;
    plain_clip.clip_search = weighted_clip.clip_search = true;
    weighted_clip.importance = imp.data();
    const auto a = row_errors(quantize_rtn(id, w.data(), rows, cols, plain_clip), w, imp.data());
    const auto b = row_errors(quantize_rtn(id, w.data(), rows, cols, weighted_clip), w, imp.data());
    for (int64_t r = 0; r < rows; ++r) EXPECT_LE(b[r], a[r] * (1 + 1e-12)) << weight_format(id).name;
    EXPECT_LT(total(b), total(a)) << weight_format(id).name;
  }
}

TEST(RtnClip, MxFp4CanTryTheNextPowerOfTwo) {
  // A group whose absmax is 7.9 * 2^e: the OCP exponent saturates it to 6 * 2^e; clip_max = 2
  // lets the search take 2^(e+1) when that is better.
  std::vector<float> w(32, 0.f);
  w[0] = 7.9f;
  w[1] = 7.8f;
  w[2] = 7.7f;
  RtnOptions clip;
  clip.clip_search = true;
  clip.clip_max = 2.f;
  const QuantizedMatrix plain = quantize_rtn(W::MXFP4, w.data(), 1, 32);
  const QuantizedMatrix wide = quantize_rtn(W::MXFP4, w.data(), 1, 32, clip);
  EXPECT_EQ(plain.params(0, 0).scale, 1.f);
  EXPECT_EQ(wide.params(0, 0).scale, 2.f);  // 7.9 -> 8, 7.8 -> 8, 7.7 -> 8 instead of 6
  EXPECT_LT(total(row_errors(wide, w, nullptr)), total(row_errors(plain, w, nullptr)));
}

}  // namespace
}  // namespace mpq

// HQQ: never worse than RTN in the Lp error it minimises, for every format, on Gaussian and
// heavy-tailed weights of shapes that are not multiples of the group size; the stored codes are
// exactly the format's rounding under the stored parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"
#include "format/weight_format.h"
#include "mpq/error.h"
#include "quant/hqq.h"
#include "quant/rtn.h"

using mpq::WeightFormatId;

namespace {

using mpq::test::gaussian;

using mpq::test::heavy_tailed;

// Every code is the one the format's encoder gives under the stored parameters, and it is the
// nearest representable value (no other code of the group's grid is closer to the weight).
void expect_codes_are_nearest(const float* w, const mpq::QuantizedMatrix& q) {
  const auto& f = q.traits();
  const int n_codes = f.bits >= 16 ? 0 : (1 << f.bits);
  const int64_t groups = std::max<int64_t>(q.groups, 1);
  int bad = 0;
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const mpq::GroupParams p = q.params(r, g);
      const int64_t b = q.groups ? q.group_begin(g) : 0, len = q.groups ? q.group_length(g) : q.cols;
      for (int64_t c = b; c < b + len; ++c) {
        const float x = w[r * q.cols + c];
        const uint16_t code = q.code(r, c);
        if (code != f.encode(f, x, p)) ++bad;
        const double err = std::fabs(double(x) - f.decode(f, code, p));
        for (int k = 0; k < n_codes; ++k) {
          const float v = f.decode(f, static_cast<uint16_t>(k), p);
          if (std::isnan(v)) continue;
          if (std::fabs(double(x) - v) < err * (1 - 1e-6) - 1e-30) {
            ++bad;
            break;
          }
        }
      }
    }
  }
  EXPECT_EQ(bad, 0) << f.name;
}

}  // namespace

TEST(Hqq, NeverWorseThanRtnInLpForEveryFormat) {
  const int64_t rows = 9, cols = 300;  // 300: not a multiple of 16, 32, 64 or 128
  const double p = 0.7;
  for (const auto& f : mpq::weight_formats()) {
    if (mpq::is_ggml_format(f)) continue;  // refused (test_ggml_formats.cpp)
    for (const bool heavy : {false, true}) {
      const auto w = heavy ? heavy_tailed(rows * cols, 2, 0.02f) : gaussian(rows * cols, 1, 0.02f);
      const mpq::QuantizedMatrix qr = mpq::quantize_rtn(f.id, w.data(), rows, cols);
      const double er = mpq::lp_error(w.data(), qr, p);
      for (const float guard : {1.f, 0.f}) {  // default L2 guard, and pure HQQ
        mpq::HqqOptions o;
        o.max_l2_ratio = guard;
        const mpq::QuantizedMatrix qh = mpq::quantize_hqq(f.id, w.data(), rows, cols, o);
        const double eh = mpq::lp_error(w.data(), qh, p);
        std::printf("%-17s %-6s guard=%.0f  HQQ/RTN Lp(0.7) error = %.4f\n", f.name,
                    heavy ? "heavy" : "gauss", guard, er > 0 ? eh / er : 1.0);
        EXPECT_LE(eh, er * (1 + 1e-12)) << f.name << (heavy ? " heavy" : " gauss");
        EXPECT_EQ(qh.tensor_scale, qr.tensor_scale) << f.name;
        expect_codes_are_nearest(w.data(), qh);
        if (f.scale_type == mpq::ScaleType::None) EXPECT_EQ(qh.codes, qr.codes) << f.name;
        if (guard > 0.f) {  // and, with the guard, never worse than RTN in squared error either
          std::vector<float> a(w.size()), b(w.size());
          mpq::dequantize(qh, a.data());
          mpq::dequantize(qr, b.data());
          double sh = 0, sr = 0;
          for (size_t i = 0; i < w.size(); ++i) {
            sh += (double(w[i]) - a[i]) * (double(w[i]) - a[i]);
            sr += (double(w[i]) - b[i]) * (double(w[i]) - b[i]);
          }
          EXPECT_LE(sh, sr * (1 + 1e-9)) << f.name;
        }
      }
    }
  }
}

// On the low-bit integer formats HQQ must actually find something (not just fall back to RTN).
TEST(Hqq, ImprovesLowBitIntegerFormats) {
  const int64_t rows = 16, cols = 256;
  const auto w = heavy_tailed(rows * cols, 5, 0.02f);
  for (const auto id : {WeightFormatId::Int4_G64, WeightFormatId::Int3_G128,
                        WeightFormatId::Int2_G32, WeightFormatId::Int4Sym_G128}) {
    const double eh = mpq::lp_error(w.data(), mpq::quantize_hqq(id, w.data(), rows, cols), 0.7);
    const double er = mpq::lp_error(w.data(), mpq::quantize_rtn(id, w.data(), rows, cols), 0.7);
    EXPECT_LT(eh, 0.99 * er) << mpq::weight_format(id).name;
  }
}

TEST(Hqq, OptionsAndEdgeCases) {
  const int64_t rows = 3, cols = 40;
  auto w = gaussian(rows * cols, 9, 1.f);
  // An all-zero group stays exact; a constant row works.
  for (int64_t c = 0; c < 32; ++c) w[c] = 0.f;
  for (int64_t c = 0; c < cols; ++c) w[cols + c] = 0.5f;
  for (const auto& f : mpq::weight_formats()) {
    if (mpq::is_ggml_format(f)) continue;  // refused (test_ggml_formats.cpp)
    const auto q = mpq::quantize_hqq(f.id, w.data(), rows, cols);
    std::vector<float> back(w.size());
    mpq::dequantize(q, back.data());
    for (int64_t c = 0; c < 32; ++c) EXPECT_EQ(back[c], 0.f) << f.name;
    expect_codes_are_nearest(w.data(), q);
  }
  mpq::HqqOptions o;
  o.update_scale = false;  // HQQ's reference: zero point only
  o.early_stop = false;
  const auto q = mpq::quantize_hqq(WeightFormatId::Int4_G32, w.data(), rows, cols, o);
  EXPECT_LE(mpq::lp_error(w.data(), q, 0.7),
            mpq::lp_error(w.data(), mpq::quantize_rtn(WeightFormatId::Int4_G32, w.data(), rows, cols), 0.7));
  mpq::HqqOptions bad;
  bad.lp_norm = 0.f;
  EXPECT_THROW(mpq::quantize_hqq(WeightFormatId::Int4_G32, w.data(), rows, cols, bad), mpq::Error);
  w[7] = INFINITY;
  EXPECT_THROW(mpq::quantize_hqq(WeightFormatId::Int4_G32, w.data(), rows, cols), mpq::Error);
  EXPECT_THROW(mpq::quantize_hqq(WeightFormatId::Int4_G32, w.data(), 0, cols), mpq::Error);
}

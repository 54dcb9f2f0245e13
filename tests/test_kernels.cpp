// Every optimized path of the fp32 kernels against the scalar reference, on shapes that are not
// multiples of any vector width.
#include <gtest/gtest.h>

#include <cmath>

#include "kernel/gemv_f32.h"
#include "kernel/matmul_f32.h"
#include "test_util.h"

namespace {

// Bound for a dot product of length n in fp32 against an exact (double) sum: each of the n
// additions may round by half an ulp of the running sum, so |err| <= n * eps * Σ|w_i x_i|
// (eps = 2^-24), whatever order the lanes add in.
double dot_bound(const float* w, const float* x, int64_t n) {
  double abs_sum = 0;
  for (int64_t i = 0; i < n; ++i) abs_sum += std::abs(static_cast<double>(w[i]) * x[i]);
  return n * std::ldexp(1.0, -24) * abs_sum;
}

}  // namespace

TEST(KernelGemv, EveryIsaMatchesTheExactSum) {
  for (mpq::Isa isa : {mpq::Isa::Scalar, mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) {
      std::printf("skipping %s: not supported by this CPU\n", mpq::isa_name(isa));
      continue;
    }
    for (auto [rows, in] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {37, 1000}, {16, 577}, {5, 4096}}) {
      SCOPED_TRACE(std::string(mpq::isa_name(isa)) + " " + std::to_string(rows) + "x" + std::to_string(in));
      const auto w = mpq::test::gaussian(rows * in, 11);
      const auto x = mpq::test::gaussian(in, 12);
      std::vector<float> y(rows);
      mpq::gemv_f32(isa, w.data(), x.data(), rows, in, y.data());
      for (int64_t o = 0; o < rows; ++o) {
        double exact = 0;
        for (int64_t i = 0; i < in; ++i) exact += static_cast<double>(w[o * in + i]) * x[i];
        EXPECT_LE(std::abs(y[o] - exact), dot_bound(&w[o * in], x.data(), in)) << "row " << o;
      }
    }
  }
}

TEST(KernelMatmul, DecodeAndPrefillPathsAgreeWithTheExactProduct) {
  // n < 8 takes the GEMV path, n >= 8 the sgemm slices (threaded for large products).
  for (int64_t n : {1, 3, 9, 40}) {
    const int64_t out = 301, in = 255;
    const auto w = mpq::test::gaussian(out * in, 21);
    const auto x = mpq::test::gaussian(n * in, 22);
    std::vector<float> y(n * out);
    mpq::matmul_f32(x.data(), n, w.data(), out, in, y.data());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t o = 0; o < out; ++o) {
        double exact = 0;
        for (int64_t i = 0; i < in; ++i) exact += static_cast<double>(w[o * in + i]) * x[t * in + i];
        ASSERT_LE(std::abs(y[t * out + o] - exact), dot_bound(&w[o * in], &x[t * in], in))
            << "n " << n << " token " << t << " row " << o;
      }
    }
  }
}

// Every optimized path of the fp32 kernels against the scalar reference, on shapes that are not
// multiples of any vector width.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <string>

#include "kernel/attention.h"
#include "kernel/fast_exp.h"
#include "kernel/gemv_f32.h"
#include "kernel/half.h"
#include "kernel/matmul_f32.h"
#include "kernel/swiglu.h"
#include "format/dtype.h"
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

// cpu_has_f16c reads CPUID and XCR0 itself (Clang 14's __builtin_cpu_supports does not know
// "f16c"). It must agree with what the kernel tells user space (/proc/cpuinfo lists f16c only when
// the CPU has it and the OS enabled AVX state) and, under GCC, with GCC's own answer.
TEST(KernelCpu, F16cDetectionAgreesWithTheOsAndGcc) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  bool listed = false, found_flags = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    found_flags = true;
    listed = (line + " ").find(" f16c ") != std::string::npos;
    break;
  }
  // AVX2 paths need F16C: a CPU without it must not be offered them.
  if (!mpq::cpu_has_f16c()) EXPECT_FALSE(mpq::cpu_supports(mpq::Isa::Avx2));
#if defined(__GNUC__) && !defined(__clang__)
  EXPECT_EQ(mpq::cpu_has_f16c(), __builtin_cpu_supports("f16c") != 0);
#endif
  if (!found_flags) GTEST_SKIP() << "no /proc/cpuinfo flags line to compare with";
  EXPECT_EQ(mpq::cpu_has_f16c(), listed);
}

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

// exp_approx (kernel/fast_exp.h) against exp in double on every 97th float of [-87, 88] (about
// 35 million values): relative error below 2^-23, as the header promises; and its behaviour
// outside that range.
TEST(KernelFastExp, WithinTwoUlpOfExpOverItsRange) {
  double worst = 0;
  float worst_x = 0;
  for (const uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t bits = 0; bits < 0x7f800000u; bits += 97) {
      const float x = std::bit_cast<float>(bits | sign);
      if (x < -87.f || x > 88.f) continue;
      const double exact = std::exp(static_cast<double>(x));
      const double relative = std::fabs(mpq::exp_approx(x) - exact) / exact;
      if (relative > worst) {
        worst = relative;
        worst_x = x;
      }
    }
  }
  EXPECT_LT(worst, 1.0 / (1 << 23)) << "at x = " << worst_x;
  EXPECT_EQ(mpq::exp_approx(0.f), 1.f);
  EXPECT_EQ(mpq::exp_approx(-100.f), 0.f);
  EXPECT_EQ(mpq::exp_approx(-INFINITY), 0.f);
  EXPECT_TRUE(std::isinf(mpq::exp_approx(100.f)));
  EXPECT_TRUE(std::isnan(mpq::exp_approx(NAN)));
}

// SwiGLU (kernel/swiglu.h): every vector path against the scalar reference (libm exp), on a
// length that is not a multiple of any vector width and on inputs reaching the ends of exp's
// range. Bound: exp_approx is within 2^-23 = 2ε relative (ε = 2^-24) and 1 + e, the division and
// the product round once each in both paths, so silu·up differs by at most (2 + 2·3)ε relative,
// plus an absolute 1e-30 where g < -87 (exp_approx gives ~3e38 for e^88.7, libm +inf: both
// results are ~0).
TEST(KernelSwiglu, EveryIsaMatchesTheScalarReference) {
  constexpr double kEps = 1.0 / (1 << 24);
  const int64_t n = 1013;
  auto gate = mpq::test::gaussian(n, 31);
  const auto up = mpq::test::gaussian(n, 32);
  for (int64_t i = 0; i < n; ++i) gate[i] *= 6.f;
  const float edges[] = {0.f, -0.f, 87.f, -87.f, 100.f, -100.f, 1e-20f, -1e-20f};
  for (size_t e = 0; e < std::size(edges); ++e) gate[n - 1 - e] = edges[e];
  std::vector<float> reference = gate;
  mpq::swiglu_kernel(mpq::Isa::Scalar, reference.data(), up.data(), n);
  for (mpq::Isa isa : {mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) continue;
    SCOPED_TRACE(mpq::isa_name(isa));
    std::vector<float> out = gate;
    mpq::swiglu_kernel(isa, out.data(), up.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_LE(std::fabs(out[i] - reference[i]), 8 * kEps * std::fabs(reference[i]) + 1e-30)
          << "g " << gate[i] << " up " << up[i];
    }
  }
}

// GeGLU with tanh GELU (kernel/swiglu.h, gemma3): every vector path against the scalar reference
// (libm exp), same lengths and edges as SwiGLU. Both compute g / (1 + e) · up with e = e^(-2u),
// u = c·(g + a·g³). Bound, per value (ε = 2^-24): u is rounded a few times (g³, the sum, the
// product; fused or not: 4ε relative at most), which moves e by |2u|·4ε relative, and exp_approx
// adds 2ε; 1 + e passes a relative error of e on as e/(1 + e) of it; the division and the product
// round once each in both paths. So |out − ref| ≤ ((|2u|·4 + 2)·ε·e/(1 + e) + 6ε)·|ref| (+1e-30
// where e overflows in one path and not the other: both results are ~0).
TEST(KernelGeglu, EveryIsaMatchesTheScalarReference) {
  constexpr double kEps = 1.0 / (1 << 24);
  const int64_t n = 1013;
  auto gate = mpq::test::gaussian(n, 41);
  const auto up = mpq::test::gaussian(n, 42);
  for (int64_t i = 0; i < n; ++i) gate[i] *= 3.f;
  const float edges[] = {0.f, -0.f, 30.f, -30.f, 100.f, -100.f, 1e-20f, -1e-20f};
  for (size_t e = 0; e < std::size(edges); ++e) gate[n - 1 - e] = edges[e];
  std::vector<float> reference = gate;
  mpq::geglu_tanh_kernel(mpq::Isa::Scalar, reference.data(), up.data(), n);
  // The scalar reference itself against the value in double: transformers' tanh form
  // g/2 · (1 + tanh u) where 1 + tanh u does not cancel (u > -1), else the same value as
  // g · σ(2u) (the identity (1 + tanh u)/2 = σ(2u); 1 + tanh u in double loses all its digits
  // for u below about -19).
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    const double u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
    const double e = std::exp(-2 * u);
    const double want = (u > -1 ? 0.5 * g * (1 + std::tanh(u)) : g / (1 + e)) * up[i];
    const double rel = std::isfinite(e) ? (std::fabs(2 * u) * 4 + 2) * kEps * e / (1 + e) + 6 * kEps : 0;
    ASSERT_LE(std::fabs(reference[i] - want), rel * std::fabs(want) + 1e-30) << "g " << g;
  }
  for (mpq::Isa isa : {mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) continue;
    SCOPED_TRACE(mpq::isa_name(isa));
    std::vector<float> out = gate;
    mpq::geglu_tanh_kernel(isa, out.data(), up.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      const double u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
      const double e = std::exp(-2 * u);
      const double rel = std::isfinite(e) ? (std::fabs(2 * u) * 4 + 2) * kEps * e / (1 + e) + 6 * kEps : 0;
      ASSERT_LE(std::fabs(out[i] - reference[i]), rel * std::fabs(reference[i]) + 1e-30)
          << "g " << gate[i] << " up " << up[i];
    }
  }
}

// Decode attention (kernel/attention.h): every path against the exact softmax-weighted sum in
// double, on head sizes and key counts that are not multiples of the vector width. Error bound
// from fp32 rounding (ε = 2^-24): each score s_j = scale·(q·k_j) is off by at most
// δ = scale·hd·ε·max_j Σ|q·k_j| + 2ε·max|s|; the shift by the max and exp add about as much again
// and two ε each (exp_approx of the vector paths is within 2ε, fast_exp.h), so every p_j is off
// by a relative 4δ + 6ε at most; the weighted sum of n_keys values adds n_keys·ε, merging
// partial sums (rescaled by exp of their max's difference, one more product each) another 4ε.
// Hence |out_d − exact_d| ≤ (4δ + (n_keys + 14)·ε) · Σ_j p_j·|v_jd|. Key counts cover the
// AVX-512 kernels' blocks of 16 keys with and without a tail, head sizes 64 and 128 (those
// kernels) and others (the generic body), and 1-5 query heads sharing the keys (GQA groups: the
// AVX-512 kernels run up to 4 heads of size 64, or 2 of size 128, in one pass).
namespace {

struct AttentionCase {
  int64_t n_keys;
  int head_dim;
  int n_heads;
};

// Checks out[a * hd + d] (n_heads query heads over the same keys) against the exact sums.
void expect_exact_attention(const AttentionCase& c, int64_t stride, const std::vector<float>& q,
                            const std::vector<float>& k, const std::vector<float>& v, float scale,
                            const std::vector<float>& out) {
  constexpr double kEps = 1.0 / (1 << 24);
  const int hd = c.head_dim;
  for (int a = 0; a < c.n_heads; ++a) {
    std::vector<double> s(c.n_keys), p(c.n_keys);
    double max_s = -1e300, max_abs_dot = 0, max_abs_s = 0;
    for (int64_t j = 0; j < c.n_keys; ++j) {
      double dot = 0, abs_dot = 0;
      for (int d = 0; d < hd; ++d) {
        dot += static_cast<double>(q[a * hd + d]) * k[j * stride + d];
        abs_dot += std::fabs(static_cast<double>(q[a * hd + d]) * k[j * stride + d]);
      }
      s[j] = scale * dot;
      max_s = std::max(max_s, s[j]);
      max_abs_dot = std::max(max_abs_dot, abs_dot);
      max_abs_s = std::max(max_abs_s, std::fabs(s[j]));
    }
    double sum = 0;
    for (int64_t j = 0; j < c.n_keys; ++j) sum += p[j] = std::exp(s[j] - max_s);
    for (double& pj : p) pj /= sum;
    const double delta = scale * hd * kEps * max_abs_dot + 2 * kEps * max_abs_s;
    for (int d = 0; d < hd; ++d) {
      double exact = 0, weight = 0;
      for (int64_t j = 0; j < c.n_keys; ++j) {
        exact += p[j] * v[j * stride + d];
        weight += p[j] * std::fabs(v[j * stride + d]);
      }
      EXPECT_LE(std::fabs(out[a * hd + d] - exact), (4 * delta + (c.n_keys + 14) * kEps) * weight)
          << "head " << a << " d " << d;
    }
  }
}

std::string describe(mpq::Isa isa, const AttentionCase& c) {
  return std::string(mpq::isa_name(isa)) + " keys " + std::to_string(c.n_keys) + " hd " + std::to_string(c.head_dim) +
         " heads " + std::to_string(c.n_heads);
}

const AttentionCase kAttentionCases[] = {{1, 64, 1},  {16, 64, 3},  {129, 64, 1}, {129, 64, 3}, {129, 64, 5},
                                         {37, 17, 2}, {300, 128, 1}, {47, 128, 3}, {5, 3, 1}};

}  // namespace

TEST(KernelAttention, EveryIsaMatchesTheExactSoftmaxSum) {
  for (mpq::Isa isa : {mpq::Isa::Scalar, mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) continue;
    for (const AttentionCase& c : kAttentionCases) {
      SCOPED_TRACE(describe(isa, c));
      const int hd = c.head_dim;
      const int64_t stride = hd + 5;  // rows of a wider buffer
      const auto q = mpq::test::gaussian(c.n_heads * hd, 21);
      const auto k = mpq::test::gaussian(c.n_keys * stride, 22);
      const auto v = mpq::test::gaussian(c.n_keys * stride, 23);
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      // The heads together, each normalized through merge_partials (one part).
      std::vector<float> out(c.n_heads * hd), scores(c.n_heads * c.n_keys), acc(c.n_heads * hd);
      std::vector<mpq::AttentionPartial> parts(c.n_heads);
      mpq::attend_partial(isa, q.data(), c.n_heads, k.data(), v.data(), stride, c.n_keys, hd, scale, scores.data(),
                          acc.data(), parts.data());
      for (int a = 0; a < c.n_heads; ++a) mpq::merge_partials(&parts[a], 1, 1, &acc[a * hd], hd, hd, &out[a * hd]);
      expect_exact_attention(c, stride, q, k, v, scale, out);
    }
  }
}

// Keys split into stretches (as threads split a decode step's keys), some of them empty, merged
// back: the same bound as one pass.
TEST(KernelAttention, PartialSumsOfKeyStretchesMergeToTheWholeSoftmax) {
  for (mpq::Isa isa : {mpq::Isa::Scalar, mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) continue;
    for (const AttentionCase& c : kAttentionCases) {
      for (int n_parts : {2, 3, 7}) {
        SCOPED_TRACE(describe(isa, c) + " parts " + std::to_string(n_parts));
        const int hd = c.head_dim, heads = c.n_heads;
        const int64_t stride = hd;
        const auto q = mpq::test::gaussian(heads * hd, 31);
        const auto k = mpq::test::gaussian(c.n_keys * stride, 32);
        const auto v = mpq::test::gaussian(c.n_keys * stride, 33);
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        // Part p of head a at p * heads + a, as the decode step lays them out.
        std::vector<mpq::AttentionPartial> parts(n_parts * heads);
        std::vector<float> accs(parts.size() * hd), scores(heads * c.n_keys), out(heads * hd);
        for (int p = 0; p < n_parts; ++p) {
          // Uneven stretches, the first of them empty when there are more parts than keys.
          const int64_t begin = c.n_keys * p * p / (n_parts * n_parts);
          const int64_t end = c.n_keys * (p + 1) * (p + 1) / (n_parts * n_parts);
          mpq::attend_partial(isa, q.data(), heads, k.data() + begin * stride, v.data() + begin * stride, stride,
                              end - begin, hd, scale, scores.data(), &accs[p * heads * hd], &parts[p * heads]);
        }
        for (int a = 0; a < heads; ++a) {
          mpq::merge_partials(&parts[a], n_parts, heads, &accs[a * hd], heads * hd, hd, &out[a * hd]);
        }
        expect_exact_attention(c, stride, q, k, v, scale, out);
      }
    }
  }
}

// fp32 <-> half rows: every path gives the scalar reference's bits (format/dtype.h, round to
// nearest even), on a length that is not a multiple of 8 or 16, over ordinary values, values that
// round to half subnormals, ties, the largest half, values beyond it (to inf), ±0 and ±inf; the
// way back is exact for every one of the 2^16 halves but NaNs (their payload may differ).
TEST(KernelHalf, EveryIsaMatchesTheScalarConversions) {
  auto x = mpq::test::gaussian(1013, 41);
  for (int64_t i = 0; i < 200; ++i) x[i] *= 1e-6f;  // half subnormals (below 6.1e-5)
  const float edges[] = {0.f, -0.f, 65504.f, -65504.f, 65520.f, 1e6f, -1e6f, INFINITY, -INFINITY,
                         1.f + 0x1p-11f, 1.f + 3 * 0x1p-11f, 0x1p-25f, 0x1p-24f, 0x1.8p-24f};
  for (size_t e = 0; e < std::size(edges); ++e) x[x.size() - 1 - e] = edges[e];
  std::vector<uint16_t> reference(x.size());
  mpq::f32_to_f16_row(mpq::Isa::Scalar, x.data(), static_cast<int64_t>(x.size()), reference.data());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(reference[i], mpq::f32_to_f16(x[i])) << i;
  std::vector<uint16_t> all_halves;
  for (uint32_t h = 0; h < 65536; ++h) {
    if (!std::isnan(mpq::f16_to_f32(static_cast<uint16_t>(h)))) all_halves.push_back(static_cast<uint16_t>(h));
  }
  for (mpq::Isa isa : {mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) continue;
    SCOPED_TRACE(mpq::isa_name(isa));
    std::vector<uint16_t> h(x.size());
    mpq::f32_to_f16_row(isa, x.data(), static_cast<int64_t>(x.size()), h.data());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(h[i], reference[i]) << "x " << x[i];
    std::vector<float> back(all_halves.size());
    mpq::f16_to_f32_row(isa, all_halves.data(), static_cast<int64_t>(all_halves.size()), back.data());
    for (size_t i = 0; i < all_halves.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(mpq::f16_to_f32(all_halves[i])))
          << "half " << all_halves[i];
    }
  }
}

// Attention over a half cache gives, bit for bit, what the same path gives over an fp32 cache
// holding the same (rounded) values: the AVX-512 kernels convert as they load, the other paths
// widen first; the arithmetic after the conversion is the same.
TEST(KernelAttention, HalfCacheEqualsFp32CacheOfTheRoundedValues) {
  for (mpq::Isa isa : {mpq::Isa::Scalar, mpq::Isa::Avx2, mpq::Isa::Avx512}) {
    if (!mpq::cpu_supports(isa)) continue;
    for (const AttentionCase& c : kAttentionCases) {
      SCOPED_TRACE(describe(isa, c));
      const int hd = c.head_dim;
      const int64_t stride = hd + 3, n = c.n_keys * stride;
      const auto q = mpq::test::gaussian(c.n_heads * hd, 51);
      auto k = mpq::test::gaussian(n, 52), v = mpq::test::gaussian(n, 53);
      std::vector<uint16_t> k16(n), v16(n);
      mpq::f32_to_f16_row(mpq::Isa::Scalar, k.data(), n, k16.data());
      mpq::f32_to_f16_row(mpq::Isa::Scalar, v.data(), n, v16.data());
      mpq::f16_to_f32_row(mpq::Isa::Scalar, k16.data(), n, k.data());
      mpq::f16_to_f32_row(mpq::Isa::Scalar, v16.data(), n, v.data());
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> scores(c.n_heads * c.n_keys), acc32(c.n_heads * hd), acc16(c.n_heads * hd);
      std::vector<mpq::AttentionPartial> parts32(c.n_heads), parts16(c.n_heads);
      mpq::attend_partial(isa, q.data(), c.n_heads, k.data(), v.data(), stride, c.n_keys, hd, scale,
                          scores.data(), acc32.data(), parts32.data());
      mpq::attend_partial(isa, q.data(), c.n_heads, k16.data(), v16.data(), stride, c.n_keys, hd, scale,
                          scores.data(), acc16.data(), parts16.data());
      for (int a = 0; a < c.n_heads; ++a) {
        EXPECT_EQ(parts16[a].max_score, parts32[a].max_score);
        EXPECT_EQ(parts16[a].sum, parts32[a].sum);
      }
      for (size_t i = 0; i < acc32.size(); ++i) ASSERT_EQ(acc16[i], acc32[i]) << i;
    }
  }
}

// exp(x) in plain, branch-free float arithmetic, so that a loop calling it vectorizes (under
// `#pragma omp simd`, in whatever instruction set the calling function is compiled for) where
// std::exp stays a scalar libm call per value. Used by the decode attention softmax
// (kernel/attention.h) and SwiGLU (model/ops.h), where libm's expf was a fifth of the work.
//
// Method: x = n·ln2 + r with n = round(x / ln2) and |r| <= ln2/2 (Cody-Waite: ln2 split into a
// high part whose product with any |n| <= 128 is exact, and a low part); e^r by its Taylor
// series to degree 7 (truncation error <= (ln2/2)^8 / 8! < 5e-9, below half an fp32 ulp); 2^n
// built in the exponent bits. Accuracy (tests/test_kernels.cpp checks it against std::exp):
// relative error below 2^-23 (measured: 1.7 · 2^-24 at worst) for x in [-87, 88]. Outside:
// x < -87.3 gives 0 or a tiny value (e^-87.3 ~ 1.2e-38 is the smallest normal float),
// x > 88.37 gives +inf, NaN gives NaN.
#pragma once

#include <bit>
#include <cstdint>

namespace mpq {

// `replacement` where `condition` holds, else x: a bitwise select. GCC -O2 vectorizes this, but
// not a ?: on floats whose result feeds further arithmetic ("control flow in loop").
inline float replace_if(bool condition, float replacement, float x) {
  const int32_t mask = -static_cast<int32_t>(condition);  // all ones where condition holds
  return std::bit_cast<float>((std::bit_cast<int32_t>(x) & ~mask) | (std::bit_cast<int32_t>(replacement) & mask));
}

inline float exp_approx(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;       // 16 significant bits: n·kLn2High is exact
  constexpr float kLn2Low = 1.42860682030941723212e-6f;  // ln2 - kLn2High
  constexpr float kRound = 12582912.f;                   // 1.5 · 2^23: adding it rounds to an integer
  // Clamp to where 2^n stays representable (-127 <= n <= 128; NaN passes through both tests).
  x = replace_if(x < -88.f, -88.f, x);
  x = replace_if(x > 88.7f, 88.7f, x);
  // n = round-to-nearest(x·log2 e), both as a float and, from the bits of the shifted sum, as an int.
  const float shifted = x * kLog2e + kRound;
  const float n = shifted - kRound;
  const int32_t n_int = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  const float r = (x - n * kLn2High) - n * kLn2Low;
  // e^r = 1 + r + r^2/2! + ... + r^7/7!, Horner form.
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  // 2^n: biased exponent n + 127 in bits 23..30 (n = -127 gives +0, n = 128 gives +inf).
  const float two_to_n = std::bit_cast<float>((n_int + 127) << 23);
  return p * two_to_n;
}

// values[i] = exp_approx(values[i] - shift) for i < n, in place, and their sum in double (the
// softmaxes: decode attention, ops::causal_softmax). Always inlined, so that the loop vectorizes
// in the instruction set of the function that calls it.
__attribute__((always_inline)) inline double exp_shifted_sum(float* values, int64_t n, float shift) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    values[i] = exp_approx(values[i] - shift);
    sum += values[i];
  }
  return sum;
}

}  // namespace mpq

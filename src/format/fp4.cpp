// Scalar reference codecs of E2M1, nvfp4 and mxfp4 (definitions in fp4.h).
#include "format/fp4.h"

#include <cmath>

#include "format/fp8.h"
#include "format/rounding.h"

namespace mpq {
namespace {

constexpr float kE2M1Magnitudes[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};

float group_absmax(const float* x, int64_t n) {
  float absmax = 0.f;
  for (int64_t i = 0; i < n; ++i) absmax = std::fmax(absmax, std::fabs(x[i]));
  return absmax;
}

}  // namespace

float e2m1_to_f32(uint8_t code) {
  const float magnitude = kE2M1Magnitudes[code & 0x07];
  return (code & 0x08) ? -magnitude : magnitude;
}

uint8_t f32_to_e2m1(float x) {
  if (std::isnan(x)) return 0;
  const uint8_t sign = std::signbit(x) ? 0x08 : 0x00;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= kE2M1Max) return sign | 0x07;  // saturate
  if (a < 1.0) {
    // Subnormal range: a count of 0.5; a count of 2 is 1.0 (code 2), the smallest normal.
    return sign | static_cast<uint8_t>(round_half_even(a * 2.0));
  }
  int e2 = 0;
  const double fr = std::frexp(a, &e2);  // a = (2 fr) * 2^(e2 - 1), 2 fr in [1, 2)
  int exponent = e2 - 1;                 // 0, 1 or 2
  int mantissa = static_cast<int>(round_half_even((2.0 * fr - 1.0) * 2.0));
  if (mantissa == 2) {  // rounded up to the next power of two
    mantissa = 0;
    ++exponent;
  }
  const int code = ((exponent + 1) << 1) | mantissa;  // exponent field = exponent + bias 1
  return sign | static_cast<uint8_t>(code > 7 ? 7 : code);
}

float nvfp4_tensor_scale(const float* w, int64_t n) {
  const float amax = group_absmax(w, n);
  if (!(amax > 0.f)) return 1.f;
  return kE4M3Max * kE2M1Max / amax;
}

GroupParams fit_nvfp4_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                            float tensor_scale) {
  return group_params_from_scale(f, shrink * group_absmax(x, n) / kE2M1Max, 0, tensor_scale);
}

GroupParams fit_mxfp4_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                            float tensor_scale) {
  // 2^(floor(log2(g)) - 2) = the power of two <= g / 4 (dividing by 4 is exact); encode_scale
  // rounds E8M0 down to a power of two.
  return group_params_from_scale(f, shrink * group_absmax(x, n) / 4.f, 0, tensor_scale);
}

uint16_t encode_fp4(const WeightFormatTraits&, float x, const GroupParams& p) {
  return f32_to_e2m1(x / p.scale);
}

float decode_fp4(const WeightFormatTraits&, uint16_t code, const GroupParams& p) {
  return e2m1_to_f32(static_cast<uint8_t>(code)) * p.scale;
}

}  // namespace mpq

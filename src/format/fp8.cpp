// Scalar reference codecs of OCP E4M3 and E8M0 (see fp8.h for the definitions).
#include "format/fp8.h"

#include <cmath>
#include <limits>

#include "format/rounding.h"

namespace mpq {

float e4m3_to_f32(uint8_t code) {
  const bool negative = (code & 0x80) != 0;
  const int exponent = (code >> 3) & 0x0F;
  const int mantissa = code & 0x07;
  if (exponent == 0x0F && mantissa == 0x07) return std::numeric_limits<float>::quiet_NaN();
  const float magnitude = exponent == 0
                              ? std::ldexp(static_cast<float>(mantissa), -9)  // M/8 * 2^-6
                              : std::ldexp(1.f + mantissa / 8.f, exponent - 7);
  return negative ? -magnitude : magnitude;
}

uint8_t f32_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return sign | kE4M3NaN;
  const double a = std::fabs(static_cast<double>(x));  // exact; Inf stays Inf
  if (a >= kE4M3Max) return sign | kE4M3MaxCode;        // saturate (448 itself is exact)
  if (a < 0x1p-6) {
    // Subnormal range: an integer count of 2^-9. A count of 8 is the smallest normal (code 0x08),
    // so rounding up across the boundary needs no special case.
    return sign | static_cast<uint8_t>(round_half_even(a * 512.0));
  }
  int e2 = 0;
  const double fr = std::frexp(a, &e2);  // a = fr * 2^e2, fr in [0.5, 1)
  int exponent = e2 - 1;                 // a = (2 fr) * 2^exponent, 2 fr in [1, 2)
  int mantissa = static_cast<int>(round_half_even((2.0 * fr - 1.0) * 8.0));
  if (mantissa == 8) {  // rounded up to the next power of two
    mantissa = 0;
    ++exponent;
  }
  const int code = ((exponent + 7) << 3) | mantissa;
  // Values in [448, 464) round to 448 and above would be NaN in non-saturating mode; a >= 448 was
  // handled above, so `code` <= 0x7E here except through rounding: clamp anyway.
  return sign | static_cast<uint8_t>(code > kE4M3MaxCode ? kE4M3MaxCode : code);
}

float e8m0_to_f32(uint8_t code) {
  if (code == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.f, static_cast<int>(code) - 127);
}

uint8_t f32_to_e8m0_floor(float x) {
  if (std::isnan(x) || std::isinf(x)) return 0xFF;
  if (!(x > 0.f)) return 0x00;
  int e2 = 0;
  std::frexp(x, &e2);        // x = fr * 2^e2, fr in [0.5, 1): floor(log2 x) = e2 - 1 (exact, also
  int exponent = e2 - 1;     // for subnormal floats)
  if (exponent < -127) exponent = -127;
  if (exponent > 127) exponent = 127;
  return static_cast<uint8_t>(exponent + 127);
}

GroupParams fit_fp8_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                          float tensor_scale) {
  float absmax = 0.f;
  for (int64_t i = 0; i < n; ++i) absmax = std::fmax(absmax, std::fabs(x[i]));
  return group_params_from_scale(f, shrink * absmax / kE4M3Max, 0, tensor_scale);
}

uint16_t encode_fp8(const WeightFormatTraits&, float x, const GroupParams& p) {
  return f32_to_e4m3(x / p.scale);
}

float decode_fp8(const WeightFormatTraits&, uint16_t code, const GroupParams& p) {
  return e4m3_to_f32(static_cast<uint8_t>(code)) * p.scale;
}

}  // namespace mpq

// Scalar reference codecs of the integer weight formats (definitions in intq.h).
#include "format/intq.h"

#include <algorithm>
#include <cmath>

#include "format/rounding.h"

namespace mpq {

GroupParams fit_int_asym_group(const WeightFormatTraits& f, const float* x, int64_t n,
                               float shrink, float tensor_scale) {
  float lo = 0.f, hi = 0.f;  // the range always contains 0 (compressed-tensors, GPTQ)
  for (int64_t i = 0; i < n; ++i) {
    lo = std::fmin(lo, x[i]);
    hi = std::fmax(hi, x[i]);
  }
  lo *= shrink;
  hi *= shrink;
  const int32_t qmin = int_qmin(f.bits), qmax = int_qmax(f.bits);
  const double levels = static_cast<double>(qmax - qmin);  // 2^N - 1
  // The zero point is computed with the stored (rounded) scale, so that lo lands within half a
  // step of qmin with the scale dequantization actually uses.
  GroupParams p = group_params_from_scale(f, static_cast<float>((hi - lo) / levels), 0,
                                          tensor_scale);
  const double zero = round_half_even(qmin - static_cast<double>(lo) / p.scale);
  p.zero = static_cast<int32_t>(std::clamp(zero, static_cast<double>(qmin),
                                           static_cast<double>(qmax)));
  return p;
}

GroupParams fit_int_sym_group(const WeightFormatTraits& f, const float* x, int64_t n,
                              float shrink, float tensor_scale) {
  float absmax = 0.f;
  for (int64_t i = 0; i < n; ++i) absmax = std::fmax(absmax, std::fabs(x[i]));
  const double half_levels = (static_cast<double>(int_qmax(f.bits) - int_qmin(f.bits))) / 2.0;
  return group_params_from_scale(f, static_cast<float>(shrink * absmax / half_levels), 0,
                                 tensor_scale);
}

uint16_t encode_int(const WeightFormatTraits& f, float x, const GroupParams& p) {
  const int32_t qmin = int_qmin(f.bits), qmax = int_qmax(f.bits);
  // Clamp in double before converting: x / scale can exceed the int range for outliers.
  const double q = std::clamp(round_half_even(static_cast<double>(x) / p.scale) + p.zero,
                              static_cast<double>(qmin), static_cast<double>(qmax));
  return static_cast<uint16_t>(static_cast<int32_t>(q) - qmin);
}

float decode_int(const WeightFormatTraits& f, uint16_t code, const GroupParams& p) {
  const int32_t q = static_cast<int32_t>(code) + int_qmin(f.bits);
  return p.scale * static_cast<float>(q - p.zero);
}

}  // namespace mpq

// Kept weights: bf16 and f16. The code is the 16-bit pattern itself; there are no groups and no
// scales. Encoding rounds to nearest even (format/dtype.h's exact conversions); f16 overflows to
// Inf beyond 65504 like a plain cast, which model weights never reach.
#pragma once

#include <cstdint>

#include "format/weight_format.h"

namespace mpq {

// FitGroupFn of kept weights: scale 1, no zero (never called for real groups: there are none).
GroupParams fit_half_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                           float tensor_scale);
// Codecs of bf16 / f16 (the group params are ignored).
uint16_t encode_bf16(const WeightFormatTraits& f, float x, const GroupParams& p);
float decode_bf16(const WeightFormatTraits& f, uint16_t code, const GroupParams& p);
uint16_t encode_f16(const WeightFormatTraits& f, float x, const GroupParams& p);
float decode_f16(const WeightFormatTraits& f, uint16_t code, const GroupParams& p);

}  // namespace mpq

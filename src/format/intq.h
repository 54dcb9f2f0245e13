// Integer weight formats: N-bit codes with a per-group scale, asymmetric (with an integer zero
// point) or symmetric. Conventions are compressed-tensors' (vLLM) and GPTQ's, which agree:
//
//   q range     [qmin, qmax] = [-2^(N-1), 2^(N-1) - 1]        (signed; the stored code is the
//                                                              offset-binary q - qmin)
//   asymmetric  lo = min(shrink * min(x), 0), hi = max(shrink * max(x), 0)   (0 stays exact)
//               scale = f16((hi - lo) / (2^N - 1))
//               zero  = clamp(round_half_even(qmin - lo / scale), qmin, qmax)
//   symmetric   scale = f16(shrink * absmax(x) / ((2^N - 1) / 2))  (absmax / 7.5 for int4,
//               / 127.5 for int8: the grid's half-step overhang lets +absmax round to qmax with
//               error <= scale/2 and uses the qmin code too); zero = 0
//   encode      q = clamp(round_half_even(x / scale) + zero, qmin, qmax)
//   decode      x = scale * (q - zero)
//
// Error bound, elementwise: |x - decode(encode(x))| <= scale/2 for every x of the group when the
// scale is exact; rounding the scale to f16 (relative error <= 2^-11) can add up to
// (2^N - 1) * |scale - f16(scale)| at the ends of the range.
//
// Storage (bits per weight): N per value + 16 (f16 scale) + N (zero point, asymmetric only) per
// group. compressed-tensors (pack_quantized) stores the zero point as an int8 tensor packed N bits
// at a time into int32 along the *output* dimension (pack_to_int32(zp, N, packed_dim=0), after
// adding 2^(N-1)); the values eight-per-int32 (int4) along the input dimension, also offset by
// 2^(N-1); weight_scale [out, groups] in the model's dtype. We store f16 scales (GPTQ / Marlin
// convention); a compressed-tensors writer for a bf16 model converts (or keeps f16: vLLM casts).
// compressed-tensors' pack_quantized only claims 4 and 8 bits; int3/int2 need our own writer.
#pragma once

#include <cstdint>

#include "format/weight_format.h"

namespace mpq {

// Code range of an N-bit format.
inline int32_t int_qmin(int bits) { return -(1 << (bits - 1)); }
inline int32_t int_qmax(int bits) { return (1 << (bits - 1)) - 1; }

// FitGroupFn of the asymmetric and the symmetric integer formats (formulas above).
GroupParams fit_int_asym_group(const WeightFormatTraits& f, const float* x, int64_t n,
                               float shrink, float tensor_scale);
GroupParams fit_int_sym_group(const WeightFormatTraits& f, const float* x, int64_t n,
                              float shrink, float tensor_scale);
// Codec of every integer format (symmetric ones have zero = 0).
uint16_t encode_int(const WeightFormatTraits& f, float x, const GroupParams& p);
float decode_int(const WeightFormatTraits& f, uint16_t code, const GroupParams& p);

}  // namespace mpq

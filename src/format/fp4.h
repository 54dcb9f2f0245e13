// OCP FP4 E2M1 and the two FP4 weight formats, nvfp4 and mxfp4.
//
// E2M1 (OCP MX spec v1.0, section 5.3.3): S.EE.M, exponent bias 1, no Inf, no NaN.
//   code & 7:   0    1    2    3    4    5    6    7
//   magnitude:  0   0.5  1.0  1.5  2.0  3.0  4.0  6.0        bit 3 (0x8) = sign
// Encoding rounds to nearest, ties to even (to the code with mantissa bit 0: 0.25 -> 0,
// 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4) and saturates: |x| > 6 -> 6,
// which is the MX spec's rule for conversion to a type without Inf/NaN. E2M1 has no NaN, so a
// NaN input encodes as +0 (quantizers reject non-finite weights before getting here).
//
// nvfp4 (NVIDIA, as stored by compressed-tensors / vLLM):
//   groups of 16 values along a row; per group an E4M3 scale; per tensor an fp32 scale.
//   Two-level scale, with amax = absmax of the whole tensor and gmax = absmax of the group:
//     tensor_scale = 448 * 6 / amax                 (compressed-tensors' weight_global_scale)
//     group scale  = e4m3(gmax / 6 * tensor_scale)  (weight_scale, float8_e4m3fn)
//     decoded      = e2m1(code) * (e4m3(group scale) / tensor_scale)
//   NOTE the direction: compressed-tensors stores the *reciprocal* of NVIDIA's "global scale"
//   amax / (6 * 448) (TensorRT-ModelOpt's weight_scale_2, a multiplier). Its _dequantize does
//   `scale = scale / global_scale`, and generate_gparam returns FP8_MAX * FP4_MAX / amax. We keep
//   the compressed-tensors divisor in QuantizedMatrix::tensor_scale so its writer copies the float;
//   a ModelOpt writer stores 1 / tensor_scale. An all-zero tensor gets tensor_scale 1.
//   The group scale uses the full E4M3 range: the group holding the tensor's absmax gets 448.
//
// mxfp4 (OCP MX v1.0): groups of 32 values along a row, one E8M0 scale per group:
//     shared_exp = floor(log2(gmax)) - emax_elem,  emax_elem = 2 (E2M1's largest exponent)
//     decoded    = e2m1(code) * 2^shared_exp
//   This is the spec's rule, followed exactly by default. Its known cost: gmax / 2^shared_exp
//   lies in [4, 8), so values in (6, 8) * 2^shared_exp saturate to 6 (up to 25% error on the
//   largest values). compressed-tensors rounds gmax to a power of two first (so its exponent is
//   sometimes one higher); the clip search with GroupFitOptions::clip_max = 2 explores that
//   exponent too. An all-zero group gets byte 0 (2^-127).
#pragma once

#include <cstdint>

#include "format/weight_format.h"

namespace mpq {

constexpr float kE2M1Max = 6.f;  // largest E2M1 magnitude (code 7)

// E2M1 code (low 4 bits used) -> float.
float e2m1_to_f32(uint8_t code);
// float -> E2M1 code: round to nearest even, saturating at +-6 (see above).
uint8_t f32_to_e2m1(float x);

// nvfp4: tensor scale 448 * 6 / absmax(w) (a divisor; 1 when w is all zero).
float nvfp4_tensor_scale(const float* w, int64_t n);

// FitGroupFn of nvfp4 (effective scale shrink * gmax / 6, stored as e4m3 of it times the tensor
// scale) and of mxfp4 (2^(floor(log2(shrink * gmax)) - 2), stored as E8M0).
GroupParams fit_nvfp4_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                            float tensor_scale);
GroupParams fit_mxfp4_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                            float tensor_scale);
// Codec shared by both: code = f32_to_e2m1(x / scale), decoded = e2m1(code) * scale.
uint16_t encode_fp4(const WeightFormatTraits& f, float x, const GroupParams& p);
float decode_fp4(const WeightFormatTraits& f, uint16_t code, const GroupParams& p);

}  // namespace mpq

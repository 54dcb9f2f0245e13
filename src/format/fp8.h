// OCP 8-bit floating point (OFP8) E4M3 and the OCP MX E8M0 scale type, and the two FP8 weight
// formats built on E4M3.
//
// E4M3 (OCP 8-bit FP spec v1.0): S.EEEE.MMM, exponent bias 7, no infinities.
//   exponent field 0: subnormal, value = M/8 * 2^-6 (smallest 2^-9)
//   otherwise:        value = (1 + M/8) * 2^(E-7); largest finite S.1111.110 = 448
//   S.1111.111 (0x7F, 0xFF) is NaN.
// Encoding (f32_to_e4m3) is the spec's *saturating* conversion, the one used for quantization:
// round to nearest, ties to even; magnitudes above 448 (including +-Inf) become +-448; NaN stays
// NaN (0x7F, or 0xFF for a negative sign bit).
//
// E8M0 (OCP MX spec v1.0): an unsigned biased exponent, value = 2^(byte - 127) for bytes 0..254
// (2^-127 .. 2^127); 0xFF is NaN. No zero, no sign.
//
// Weight formats (scale per group stored as f32, like DeepSeek-V3's / vLLM's FP8 block scales):
//   fp8_e4m3_channel  one scale per output channel: scale = absmax(row) / 448
//   fp8_e4m3_b128     one scale per 128 consecutive values of a row (1x128 blocks). DeepSeek-V3
//                     uses 128x128 blocks (one scale per 128 rows x 128 columns, 0.002 bit per
//                     weight instead of our 0.25). We chose 1x128 because every row stays
//                     independent — GPTQ/RTN work row by row and a block never mixes output
//                     channels of different magnitude, which lowers error — at +0.25 bit per
//                     weight. A 128x128 writer would need one scale shared by 128 rows, i.e. a
//                     different table row, not a re-encoding of this one.
#pragma once

#include <cstdint>

#include "format/weight_format.h"

namespace mpq {

constexpr float kE4M3Max = 448.f;      // largest finite E4M3 magnitude (S.1111.110)
constexpr uint8_t kE4M3MaxCode = 0x7E;  // its code
constexpr uint8_t kE4M3NaN = 0x7F;      // canonical NaN (either sign bit is NaN)

// E4M3 byte -> float (exact).
float e4m3_to_f32(uint8_t code);
// float -> E4M3 byte: round to nearest even, saturating (see above).
uint8_t f32_to_e4m3(float x);

// E8M0 byte -> float: 2^(byte - 127); NaN for 0xFF.
float e8m0_to_f32(uint8_t code);
// Largest power of two <= x as an E8M0 byte (x > 0 finite), clamped to [2^-127, 2^127]; 0 and
// negative values give 0x00 (2^-127); NaN and +Inf give 0xFF.
uint8_t f32_to_e8m0_floor(float x);

// Codec of fp8_e4m3_channel / fp8_e4m3_b128: scale = shrink * absmax / 448 (f32), code =
// f32_to_e4m3(x / scale), decoded = e4m3(code) * scale.
GroupParams fit_fp8_group(const WeightFormatTraits& f, const float* x, int64_t n, float shrink,
                          float tensor_scale);
uint16_t encode_fp8(const WeightFormatTraits& f, float x, const GroupParams& p);
float decode_fp8(const WeightFormatTraits& f, uint16_t code, const GroupParams& p);

}  // namespace mpq

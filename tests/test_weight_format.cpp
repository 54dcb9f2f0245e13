// Weight-format table, bit accounting, the scalar E4M3 / E2M1 / E8M0 codecs (every code),
// scale storage and the QuantizedMatrix layout. Round-trip error bounds are in
// test_weight_format_error.cpp, RTN and its clip search in test_rtn.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "format/fp4.h"
#include "format/fp8.h"
#include "format/ggml_codec.h"
#include "format/intq.h"
#include "format/rounding.h"
#include "format/weight_format.h"
#include "mpq/error.h"

namespace mpq {
namespace {

using W = WeightFormatId;
using S = ScaleType;

// ---- the table: one line per format

struct FormatRow {
  W id;
  const char* name;
  int bits;
  int group_size;
  bool symmetric;
  S scale_type;
  bool tensor_scale;
  double bpw_4096;  // bits per weight of a 4096 x 4096 matrix, by hand
};

const FormatRow kExpected[] = {
    {W::BF16, "bf16", 16, 0, true, S::None, false, 16.0},
    {W::F16, "f16", 16, 0, true, S::None, false, 16.0},
    {W::FP8_E4M3_Channel, "fp8_e4m3_channel", 8, 0, true, S::F32, false, 8 + 32.0 / 4096},
    {W::FP8_E4M3_B128, "fp8_e4m3_b128", 8, 128, true, S::F32, false, 8 + 32.0 / 128},
    {W::NVFP4, "nvfp4", 4, 16, true, S::E4M3, true, 4 + 8.0 / 16 + 32.0 / (4096.0 * 4096)},
    {W::MXFP4, "mxfp4", 4, 32, true, S::E8M0, false, 4 + 8.0 / 32},
    {W::Int8_Channel, "int8_channel", 8, 0, true, S::F16, false, 8 + 16.0 / 4096},
    {W::Int4_G32, "int4_g32", 4, 32, false, S::F16, false, 4 + 20.0 / 32},
    {W::Int4_G64, "int4_g64", 4, 64, false, S::F16, false, 4 + 20.0 / 64},
    {W::Int4_G128, "int4_g128", 4, 128, false, S::F16, false, 4 + 20.0 / 128},
    {W::Int3_G32, "int3_g32", 3, 32, false, S::F16, false, 3 + 19.0 / 32},
    {W::Int3_G64, "int3_g64", 3, 64, false, S::F16, false, 3 + 19.0 / 64},
    {W::Int3_G128, "int3_g128", 3, 128, false, S::F16, false, 3 + 19.0 / 128},
    {W::Int2_G32, "int2_g32", 2, 32, false, S::F16, false, 2 + 18.0 / 32},
    {W::Int2_G64, "int2_g64", 2, 64, false, S::F16, false, 2 + 18.0 / 64},
    {W::Int2_G128, "int2_g128", 2, 128, false, S::F16, false, 2 + 18.0 / 128},
    {W::Int4Sym_G128, "int4sym_g128", 4, 128, true, S::F16, false, 4 + 16.0 / 128},
    // ggml block types: group = values per block, bits per weight = block bytes * 8 / block values
    {W::Q8_0, "q8_0", 8, 32, true, S::F16, false, 34 * 8 / 32.0},
    {W::Q6_K, "q6_K", 6, 256, true, S::F16, false, 210 * 8 / 256.0},
    {W::Q5_K, "q5_K", 5, 256, false, S::F16, false, 176 * 8 / 256.0},
    {W::Q4_K, "q4_K", 4, 256, false, S::F16, false, 144 * 8 / 256.0},
    {W::Q3_K, "q3_K", 3, 256, true, S::F16, false, 110 * 8 / 256.0},
    {W::Q2_K, "q2_K", 2, 256, false, S::F16, false, 84 * 8 / 256.0},
    {W::Q5_0, "q5_0", 5, 32, true, S::F16, false, 22 * 8 / 32.0},
    {W::Q5_1, "q5_1", 5, 32, false, S::F16, false, 24 * 8 / 32.0},
    {W::Q4_0, "q4_0", 4, 32, true, S::F16, false, 18 * 8 / 32.0},
    {W::Q4_1, "q4_1", 4, 32, false, S::F16, false, 20 * 8 / 32.0},
    {W::IQ4_NL, "iq4_nl", 4, 32, true, S::F16, false, 18 * 8 / 32.0},
    {W::IQ4_XS, "iq4_xs", 4, 256, true, S::F16, false, 136 * 8 / 256.0},
    {W::Int4Sym_G32, "int4sym_g32", 4, 32, true, S::F16, false, 4 + 16.0 / 32},
    {W::Int4Sym_G64, "int4sym_g64", 4, 64, true, S::F16, false, 4 + 16.0 / 64},
};

TEST(WeightFormat, TableMatchesTheSpecification) {
  ASSERT_EQ(std::size(kExpected), static_cast<size_t>(W::kCount));
  ASSERT_EQ(weight_formats().size(), static_cast<size_t>(W::kCount));
  for (const FormatRow& e : kExpected) {
    const WeightFormatTraits& f = weight_format(e.id);
    SCOPED_TRACE(e.name);
    EXPECT_EQ(f.id, e.id);
    EXPECT_STREQ(f.name, e.name);
    EXPECT_EQ(weight_format_from_name(e.name), e.id);
    EXPECT_EQ(f.bits, e.bits);
    EXPECT_EQ(f.group_size, e.group_size);
    EXPECT_EQ(f.symmetric, e.symmetric);
    EXPECT_EQ(f.scale_type, e.scale_type);
    EXPECT_EQ(f.has_tensor_scale, e.tensor_scale);
    if (is_ggml_format(f)) {
      EXPECT_EQ(f.storage, Storage::GgmlBlocks);
      EXPECT_EQ(f.value_kind, ValueKind::GgmlBlock);
      ASSERT_NE(f.ggml, nullptr);
      EXPECT_EQ(f.ggml->block_values, e.group_size);
    } else {
      EXPECT_EQ(f.storage, Storage::Elements);
      EXPECT_EQ(f.ggml, nullptr);
      EXPECT_NE(f.fit, nullptr);
      EXPECT_NE(f.encode, nullptr);
      EXPECT_NE(f.decode, nullptr);
    }
    EXPECT_NEAR(bits_per_weight(e.id, 4096, 4096), e.bpw_4096, 1e-12);
  }
  EXPECT_EQ(weight_format_from_name("INT4_G128"), std::nullopt);  // names are exact
  EXPECT_EQ(weight_format_from_name("q4_k"), std::nullopt);       // ggml's own spelling: q4_K
  EXPECT_EQ(weight_format_from_name("Q4_K"), std::nullopt);
  EXPECT_EQ(weight_format_from_name("int4_g256"), std::nullopt);
  EXPECT_THROW(weight_format(W::kCount), Error);
}

TEST(WeightFormat, BitsCountAFullScaleForAShortLastGroup) {
  // cols = 200 with g128: groups of 128 and 72, two scales and two zero points per row.
  EXPECT_EQ(storage_bits(W::Int4_G128, 3, 200), 3u * (200 * 4 + 2 * (16 + 4)));
  EXPECT_DOUBLE_EQ(bits_per_weight(W::Int4_G128, 1, 200), (200.0 * 4 + 2 * 20) / 200);
  // cols = 37 with nvfp4's groups of 16: 16 + 16 + 5, three E4M3 scales, one fp32 tensor scale.
  EXPECT_EQ(storage_bits(W::NVFP4, 5, 37), 5u * (37 * 4 + 3 * 8) + 32);
  EXPECT_EQ(storage_bits(W::MXFP4, 2, 37), 2u * (37 * 4 + 2 * 8));
  EXPECT_EQ(storage_bits(W::FP8_E4M3_Channel, 7, 37), 7u * (37 * 8 + 32));
  EXPECT_EQ(storage_bits(W::BF16, 7, 37), 7u * 37 * 16);
  EXPECT_THROW(bits_per_weight(W::Int4_G128, 0, 128), Error);
}

// ---- rounding helper

TEST(WeightFormat, RoundHalfEven) {
  EXPECT_EQ(round_half_even(0.5), 0.0);
  EXPECT_EQ(round_half_even(1.5), 2.0);
  EXPECT_EQ(round_half_even(2.5), 2.0);
  EXPECT_EQ(round_half_even(-0.5), 0.0);
  EXPECT_EQ(round_half_even(-1.5), -2.0);
  EXPECT_EQ(round_half_even(-2.5), -2.0);
  EXPECT_EQ(round_half_even(2.4999999), 2.0);
  EXPECT_EQ(round_half_even(-7.6), -8.0);
}

// ---- FP8 E4M3: every code

// Independent decoder from the spec's formula (no shared code with fp8.cpp).
double e4m3_reference(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  const double mag = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

TEST(FP8E4M3, EveryCodeDecodesAndRoundTrips) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const float v = e4m3_to_f32(static_cast<uint8_t>(c));
    if ((c & 0x7F) == 0x7F) {  // S.1111.111
      EXPECT_TRUE(std::isnan(v)) << c;
      EXPECT_EQ(f32_to_e4m3(v) & 0x7F, 0x7F) << c;  // NaN stays NaN
      ++nans;
      continue;
    }
    EXPECT_EQ(v, e4m3_reference(c)) << c;
    EXPECT_EQ(std::signbit(v), c >= 0x80) << c;  // including -0 (0x80)
    EXPECT_EQ(f32_to_e4m3(v), c) << c;
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.f, -9));
  EXPECT_EQ(e4m3_to_f32(0x08), std::ldexp(1.f, -6));
  EXPECT_EQ(e4m3_to_f32(0x38), 1.f);
  EXPECT_EQ(e4m3_to_f32(0xFE), -448.f);
}

TEST(FP8E4M3, MidpointsRoundToEvenAndNeighboursToNearest) {
  for (int c = 0; c < 0x7E; ++c) {  // consecutive positive codes c, c+1
    const float lo = e4m3_to_f32(static_cast<uint8_t>(c));
    const float hi = e4m3_to_f32(static_cast<uint8_t>(c + 1));
    const float mid = (lo + hi) / 2;  // exact in fp32
    const int even = (c % 2 == 0) ? c : c + 1;
    EXPECT_EQ(f32_to_e4m3(mid), even) << "midpoint above code " << c;
    EXPECT_EQ(f32_to_e4m3(-mid), 0x80 | even) << "midpoint above code " << c;
    EXPECT_EQ(f32_to_e4m3(std::nextafter(mid, 0.f)), c) << c;
    EXPECT_EQ(f32_to_e4m3(std::nextafter(mid, 1e9f)), c + 1) << c;
  }
}

TEST(FP8E4M3, SaturatesBeyondMax) {
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {448.f, 448.1f, 463.9f, 464.f, 480.f, 1e6f, 3e38f, inf}) {
    EXPECT_EQ(f32_to_e4m3(x), 0x7E) << x;
    EXPECT_EQ(f32_to_e4m3(-x), 0xFE) << x;
  }
  EXPECT_TRUE(std::isnan(e4m3_to_f32(f32_to_e4m3(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.f, -10)), 0x00);          // half the smallest: tie to 0
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.f, -20)), 0x00);          // underflow
  EXPECT_EQ(f32_to_e4m3(std::ldexp(3.f, -11)), 0x01);          // 0.75 * 2^-9: nearest is 2^-9
  EXPECT_EQ(f32_to_e4m3(std::ldexp(3.f, -10)), 0x02);          // 1.5 * 2^-9: tie to even (2)
}

// ---- FP4 E2M1: every code

TEST(FP4E2M1, EveryCodeDecodesAndRoundTrips) {
  const float magnitudes[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  for (int c = 0; c < 16; ++c) {
    const float v = e2m1_to_f32(static_cast<uint8_t>(c));
    EXPECT_EQ(std::fabs(v), magnitudes[c & 7]) << c;
    EXPECT_EQ(std::signbit(v), c >= 8) << c;
    EXPECT_EQ(f32_to_e2m1(v), c) << c;
  }
}

TEST(FP4E2M1, MidpointsRoundToEvenAndSaturate) {
  // Ties go to the code with mantissa bit 0 (even code).
  const struct { float x; int code; } ties[] = {{0.25f, 0}, {0.75f, 2}, {1.25f, 2}, {1.75f, 4},
                                                {2.5f, 4},  {3.5f, 6},  {5.f, 6}};
  for (const auto& t : ties) {
    EXPECT_EQ(f32_to_e2m1(t.x), t.code) << t.x;
    EXPECT_EQ(f32_to_e2m1(-t.x), 8 | t.code) << t.x;
  }
  for (int c = 0; c < 7; ++c) {
    const float mid = (e2m1_to_f32(static_cast<uint8_t>(c)) + e2m1_to_f32(static_cast<uint8_t>(c + 1))) / 2;
    EXPECT_EQ(f32_to_e2m1(std::nextafter(mid, 0.f)), c);
    EXPECT_EQ(f32_to_e2m1(std::nextafter(mid, 10.f)), c + 1);
  }
  for (float x : {6.f, 6.5f, 7.f, 100.f, std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(f32_to_e2m1(x), 7) << x;
    EXPECT_EQ(f32_to_e2m1(-x), 15) << x;
  }
}

// ---- E8M0: every code

TEST(E8M0, EveryCodeDecodesAndRoundTrips) {
  for (int b = 0; b < 255; ++b) {
    const float v = e8m0_to_f32(static_cast<uint8_t>(b));
    EXPECT_EQ(v, std::ldexp(1.0f, b - 127)) << b;  // 2^-127 is an fp32 subnormal: exact
    EXPECT_EQ(f32_to_e8m0_floor(v), b) << b;
  }
  EXPECT_TRUE(std::isnan(e8m0_to_f32(0xFF)));
  EXPECT_EQ(f32_to_e8m0_floor(1.99f), 127);  // rounds down to a power of two
  EXPECT_EQ(f32_to_e8m0_floor(0.99f), 126);
  EXPECT_EQ(f32_to_e8m0_floor(1e-45f), 0);   // below 2^-127: clamped
  EXPECT_EQ(f32_to_e8m0_floor(0.f), 0);
  EXPECT_EQ(f32_to_e8m0_floor(std::numeric_limits<float>::quiet_NaN()), 0xFF);
}

// ---- scale storage

TEST(WeightFormat, ScalesNeverBecomeZeroAndSaturate) {
  EXPECT_EQ(encode_scale(S::F16, 0.f), 0x0001u);
  EXPECT_EQ(encode_scale(S::F16, 1e-12f), 0x0001u);
  EXPECT_EQ(encode_scale(S::F16, 1e9f), 0x7BFFu);
  EXPECT_EQ(encode_scale(S::E4M3, 0.f), 0x01u);
  EXPECT_EQ(encode_scale(S::E4M3, 1e9f), 0x7Eu);
  EXPECT_EQ(encode_scale(S::E8M0, 6.f), 129u);  // 4 = 2^2
  EXPECT_EQ(decode_scale(S::F32, encode_scale(S::F32, 0.1234f)), 0.1234f);
  EXPECT_EQ(decode_scale(S::BF16, encode_scale(S::BF16, 1.f)), 1.f);
  for (S type : {S::F32, S::F16, S::BF16, S::E4M3, S::E8M0}) {
    EXPECT_GT(decode_scale(type, encode_scale(type, 0.f)), 0.f);
  }
}

// ---- golden groups

TEST(WeightFormat, Int4RampIsExact) {
  const WeightFormatTraits& f = weight_format(W::Int4_G128);
  float x[16];
  for (int i = 0; i < 16; ++i) x[i] = static_cast<float>(i);
  const GroupParams p = fit_group(f, x, 16, 1.f);
  EXPECT_EQ(p.scale, 1.f);  // (15 - 0) / 15
  EXPECT_EQ(p.zero, -8);    // qmin - lo / scale
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(f.encode(f, x[i], p), i);  // offset-binary code = q + 8 = i
    EXPECT_EQ(quantize_value(f, x[i], p), x[i]);
  }
}

TEST(WeightFormat, NvFp4GroupHoldingTheTensorMaxGetsScale448) {
  const WeightFormatTraits& f = weight_format(W::NVFP4);
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = 0.01f * (i - 10);
  w[20] = -3.f;  // tensor absmax, in group 1
  const float ts = compute_tensor_scale(f, w.data(), 32);
  EXPECT_FLOAT_EQ(ts, 448.f * 6.f / 3.f);
  const GroupParams p = fit_group(f, w.data() + 16, 16, ts);
  EXPECT_EQ(p.scale_bits, 0x7Eu);  // e4m3(3 / 6 * ts) = 448
  EXPECT_FLOAT_EQ(p.scale, 448.f / ts);
  EXPECT_EQ(quantize_value(f, -3.f, p), -3.f);  // -6 * scale
}

TEST(WeightFormat, MxFp4FollowsTheOcpScaleRule) {
  const WeightFormatTraits& f = weight_format(W::MXFP4);
  float x[32] = {};
  x[3] = 5.f;  // floor(log2 5) - 2 = 0: scale 1 (byte 127)
  GroupParams p = fit_group(f, x, 32, 1.f);
  EXPECT_EQ(p.scale_bits, 127u);
  EXPECT_EQ(p.scale, 1.f);
  EXPECT_EQ(quantize_value(f, 5.f, p), 4.f);  // tie 4 | 6 -> 4 (even)
  x[3] = 7.5f;                                 // same exponent: 7.5 saturates to 6
  p = fit_group(f, x, 32, 1.f);
  EXPECT_EQ(p.scale_bits, 127u);
  EXPECT_EQ(quantize_value(f, 7.5f, p), 6.f);
  x[3] = 8.f;
  EXPECT_EQ(fit_group(f, x, 32, 1.f).scale_bits, 128u);
}

// ---- the quantized matrix

TEST(QuantizedMatrix, SizesAndAccessorsFollowTheLayout) {
  for (const WeightFormatTraits& f : weight_formats()) {
    if (is_ggml_format(f)) continue;  // block layout: test_ggml_formats.cpp
    SCOPED_TRACE(f.name);
    QuantizedMatrix q = make_quantized_matrix(f.id, 3, 200);
    const int64_t groups = groups_per_row(f, 200);
    EXPECT_EQ(q.groups, groups);
    EXPECT_EQ(q.codes.size(), static_cast<size_t>(3 * 200 * (f.bits > 8 ? 2 : 1)));
    EXPECT_EQ(q.scales.size(), static_cast<size_t>(3 * groups * scale_type_bits(f.scale_type) / 8));
    EXPECT_EQ(q.zeros.size(), f.symmetric ? 0u : static_cast<size_t>(3 * groups));
    int64_t covered = 0;
    for (int64_t g = 0; g < groups; ++g) {
      EXPECT_EQ(q.group_begin(g), covered);
      covered += q.group_length(g);
    }
    if (groups > 0) {
      EXPECT_EQ(covered, 200);
    }
    const uint16_t code = static_cast<uint16_t>((1u << f.bits) - 2);
    q.set_code(2, 199, code);
    EXPECT_EQ(q.code(2, 199), code);
    if (groups > 0) {
      const GroupParams p = group_params_from_scale(f, 0.375f, f.symmetric ? 0 : -3, 2.f);
      q.tensor_scale = 2.f;
      q.set_params(2, groups - 1, p);
      const GroupParams back = q.params(2, groups - 1);
      EXPECT_EQ(back.scale_bits, p.scale_bits);
      EXPECT_EQ(back.scale, p.scale);
      EXPECT_EQ(back.zero, p.zero);
    }
  }
}

}  // namespace
}  // namespace mpq

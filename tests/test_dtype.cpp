// Storage-type traits, sizes and the exact f16/bf16 <-> f32 conversions.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "format/dtype.h"
#include "format/gguf_blocks.h"
#include "mpq/error.h"

namespace mpq {
namespace {

bool is_f16_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0; }
bool is_bf16_nan(uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x007F) != 0; }

TEST(DType, TraitsTableFollowsTheEnum) {
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    const auto type = static_cast<DType>(i);
    const DTypeTraits& t = dtype_traits(type);
    EXPECT_EQ(t.type, type);
    EXPECT_EQ(dtype_from_name(t.name), type) << t.name;
    EXPECT_STREQ(dtype_name(type), t.name);
    EXPECT_GT(t.block_size, 0);
    EXPECT_GT(t.block_bytes, 0);
    EXPECT_EQ(t.to_f32 != nullptr, t.is_float_input) << t.name;
  }
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);  // names are matched ignoring case
  EXPECT_EQ(dtype_from_name("Q4_K_M"), std::nullopt);
  EXPECT_EQ(dtype_from_name(""), std::nullopt);
  EXPECT_THROW(dtype_traits(DType::kCount), Error);
}

TEST(DType, BlockGeometryMatchesGgml) {
  struct Row { DType type; int64_t block_size, block_bytes; };
  const Row rows[] = {
      {DType::F32, 1, 4},     {DType::F16, 1, 2},     {DType::BF16, 1, 2},   {DType::F64, 1, 8},
      {DType::I8, 1, 1},      {DType::I16, 1, 2},     {DType::I32, 1, 4},    {DType::I64, 1, 8},
      {DType::Q4_0, 32, 18},  {DType::Q4_1, 32, 20},  {DType::Q5_0, 32, 22}, {DType::Q5_1, 32, 24},
      {DType::Q8_0, 32, 34},  {DType::Q2_K, 256, 84}, {DType::Q3_K, 256, 110},
      {DType::Q4_K, 256, 144}, {DType::Q5_K, 256, 176}, {DType::Q6_K, 256, 210},
      {DType::IQ4_NL, 32, 18}, {DType::IQ4_XS, 256, 136}, {DType::MXFP4, 32, 17},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(dtype_traits(r.type).block_size, r.block_size) << dtype_name(r.type);
    EXPECT_EQ(dtype_traits(r.type).block_bytes, r.block_bytes) << dtype_name(r.type);
  }
}

TEST(DType, NbytesChecksBlocksAndOverflow) {
  EXPECT_EQ(dtype_nbytes(DType::F32, 0), 0u);
  EXPECT_EQ(dtype_nbytes(DType::F32, 10), 40u);
  EXPECT_EQ(dtype_nbytes(DType::Q4_K, 512), 288u);
  EXPECT_EQ(dtype_nbytes(DType::Q4_K, 100), std::nullopt);  // not whole blocks
  EXPECT_EQ(dtype_nbytes(DType::Q8_0, 33), std::nullopt);
  EXPECT_EQ(dtype_nbytes(DType::F32, -4), std::nullopt);
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(dtype_nbytes(DType::I8, big), static_cast<uint64_t>(big));
  EXPECT_EQ(dtype_nbytes(DType::F64, big / 8 + 1), std::nullopt);  // > int64 max bytes
  EXPECT_EQ(dtype_nbytes(DType::Q8_0, (big / 32) * 32), std::nullopt);  // 34 bytes per 32
  EXPECT_TRUE(dtype_nbytes(DType::Q6_K, (big / 256) * 256).has_value());  // 210 per 256 fits
}

TEST(DType, DequantizeRefusesIntegersAndPartialBlocks) {
  std::vector<uint8_t> bytes(256, 0);
  std::vector<float> out(256);
  try {
    dequantize_to_f32(DType::I32, bytes.data(), out.data(), 4, "t.bin");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.bin: cannot convert I32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dequantize_to_f32(DType::Q4_0, bytes.data(), out.data(), 31, "x"), Error);
  EXPECT_NO_THROW(dequantize_to_f32(DType::Q4_0, bytes.data(), out.data(), 0, "x"));
}

TEST(DType, PlainTypesDecode) {
  const double doubles[] = {1.5, -0.0, 1e300, -1e-300, std::numeric_limits<double>::infinity()};
  std::vector<float> out(5);
  dequantize_to_f32(DType::F64, reinterpret_cast<const uint8_t*>(doubles), out.data(), 5, "x");
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_TRUE(std::signbit(out[1]) && out[1] == 0.0f);
  EXPECT_EQ(out[2], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(out[3]) && out[3] == 0.0f);
  EXPECT_EQ(out[4], std::numeric_limits<float>::infinity());

  const uint16_t halves[] = {0x3C00, 0xC000, 0x7BFF, 0x0001};  // 1, -2, 65504, 2^-24
  dequantize_to_f32(DType::F16, reinterpret_cast<const uint8_t*>(halves), out.data(), 4, "x");
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], 65504.0f);
  EXPECT_EQ(out[3], std::ldexp(1.0f, -24));

  // Unaligned source: F32 and BF16 rows read through memcpy.
  std::vector<uint8_t> buf(1 + 2 * sizeof(float));
  const float f[2] = {3.25f, -7.0f};
  std::memcpy(buf.data() + 1, f, sizeof f);
  dequantize_to_f32(DType::F32, buf.data() + 1, out.data(), 2, "x");
  EXPECT_EQ(out[0], 3.25f);
  EXPECT_EQ(out[1], -7.0f);
}

// Every half code: f16 -> f32 is exact (checked against the value computed from the fields) and
// f32 -> f16 gives the code back, except NaNs, which stay NaN.
TEST(DTypeF16, ExhaustiveRoundTrip) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const auto h = static_cast<uint16_t>(code);
    const float f = f16_to_f32(h);
    const int exponent = (h >> 10) & 0x1F;
    const int mantissa = h & 0x3FF;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exponent == 0x1F) {
      if (mantissa == 0) {
        EXPECT_TRUE(std::isinf(f) && std::signbit(f) == (sign < 0)) << code;
      } else {
        EXPECT_TRUE(std::isnan(f)) << code;
        EXPECT_TRUE(is_f16_nan(f32_to_f16(f))) << code;
        EXPECT_EQ(f32_to_f16(f) & 0x8000, h & 0x8000) << code;
      }
      continue;
    }
    const double expected = exponent == 0 ? sign * std::ldexp(mantissa, -24)
                                          : sign * std::ldexp(1024 + mantissa, exponent - 25);
    ASSERT_EQ(static_cast<double>(f), expected) << code;
    ASSERT_EQ(std::signbit(f), sign < 0) << code;
    ASSERT_EQ(f32_to_f16(f), h) << code;
  }
}

// Between every two neighbouring finite halves, the exact midpoint rounds to the one with an even
// code and the fp32 values just beside the midpoint round to the nearer one.
TEST(DTypeF16, RoundsToNearestEven) {
  for (uint32_t code = 0; code < 0x7BFF; ++code) {
    for (const uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
      const auto lo = static_cast<uint16_t>(code | sign);
      const auto hi = static_cast<uint16_t>((code + 1) | sign);
      const float mid = (f16_to_f32(lo) + f16_to_f32(hi)) / 2;  // exact: 12 significant bits
      const uint16_t even = (code & 1) ? hi : lo;
      ASSERT_EQ(f32_to_f16(mid), even) << code;
      const float toward_lo = std::nextafter(mid, f16_to_f32(lo));
      const float toward_hi = std::nextafter(mid, f16_to_f32(hi));
      ASSERT_EQ(f32_to_f16(toward_lo), lo) << code;
      ASSERT_EQ(f32_to_f16(toward_hi), hi) << code;
    }
  }
  // Overflow: 65519.99 rounds down to 65504, 65520 (the midpoint to 2^16) and above to Inf.
  EXPECT_EQ(f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e30f), 0xFC00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
  // Underflow: half the smallest subnormal ties to 0 (even); just above rounds up.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  // The largest subnormal rounds up into the smallest normal.
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -14), 0.0f)), 0x0400);
}

#ifdef __FLT16_MAX__
// Cross-check against the compiler's own _Float16 conversion on random bit patterns.
TEST(DTypeF16, MatchesCompilerFloat16) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t bits = rng();
    const float f = std::bit_cast<float>(bits);
    if (std::isnan(f)) continue;
    const auto expected = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(f32_to_f16(f), expected) << std::hex << bits;
  }
}
#endif

TEST(DTypeBF16, ExhaustiveRoundTrip) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const auto h = static_cast<uint16_t>(code);
    const float f = bf16_to_f32(h);
    ASSERT_EQ(std::bit_cast<uint32_t>(f), code << 16) << code;
    if (is_bf16_nan(h)) {
      EXPECT_TRUE(is_bf16_nan(f32_to_bf16(f))) << code;
    } else {
      ASSERT_EQ(f32_to_bf16(f), h) << code;
    }
  }
}

TEST(DTypeBF16, RoundsToNearestEven) {
  for (uint32_t code = 0; code < 0x7F7F; ++code) {
    const auto lo = static_cast<uint16_t>(code);
    const auto hi = static_cast<uint16_t>(code + 1);
    const uint32_t mid_bits = (code << 16) | 0x8000u;  // exact midpoint in fp32
    const uint16_t even = (code & 1) ? hi : lo;
    ASSERT_EQ(f32_to_bf16(std::bit_cast<float>(mid_bits)), even) << code;
    ASSERT_EQ(f32_to_bf16(std::bit_cast<float>(mid_bits - 1)), lo) << code;
    ASSERT_EQ(f32_to_bf16(std::bit_cast<float>(mid_bits + 1)), hi) << code;
  }
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to Inf
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // A NaN whose payload lives only in the low 16 bits must stay NaN, not become Inf.
  EXPECT_TRUE(is_bf16_nan(f32_to_bf16(std::bit_cast<float>(0x7F800001u))));
  EXPECT_TRUE(is_f16_nan(f32_to_f16(std::bit_cast<float>(0x7F800001u))));
}

// Hand-made blocks with known values, independent of the gguf-py fixture.
TEST(GgufBlocks, HandMadeQ4_0AndQ8_0) {
  gguf::BlockQ4_0 q4{};
  q4.d = f32_to_f16(0.5f);
  for (int i = 0; i < 16; ++i) q4.qs[i] = static_cast<uint8_t>(i | ((15 - i) << 4));
  float out[32];
  dequantize_to_f32(DType::Q4_0, reinterpret_cast<const uint8_t*>(&q4), out, 32, "x");
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(out[i], 0.5f * static_cast<float>(i - 8));
    EXPECT_EQ(out[16 + i], 0.5f * static_cast<float>(7 - i));
  }
  gguf::BlockQ8_0 q8{};
  q8.d = f32_to_f16(0.25f);
  for (int i = 0; i < 32; ++i) q8.qs[i] = static_cast<int8_t>(i * 8 - 128);
  dequantize_to_f32(DType::Q8_0, reinterpret_cast<const uint8_t*>(&q8), out, 32, "x");
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.25f * static_cast<float>(i * 8 - 128));
}

TEST(GgufBlocks, KScaleMinUnpacking) {
  // Pack known 6-bit scales and mins by the layout documented on BlockQ4_K, then unpack them.
  uint8_t packed[gguf::kKScaleBytes] = {};
  const uint8_t scale[8] = {1, 63, 17, 40, 33, 2, 62, 9};
  const uint8_t min[8] = {5, 0, 63, 21, 48, 7, 31, 60};
  for (int s = 0; s < 4; ++s) {
    packed[s] = static_cast<uint8_t>(scale[s] | ((scale[s + 4] >> 4) << 6));
    packed[s + 4] = static_cast<uint8_t>(min[s] | ((min[s + 4] >> 4) << 6));
    packed[s + 8] = static_cast<uint8_t>((scale[s + 4] & 0x0F) | ((min[s + 4] & 0x0F) << 4));
  }
  for (int s = 0; s < 8; ++s) {
    const gguf::KScaleMin sm = gguf::unpack_k_scale_min(packed, s);
    EXPECT_EQ(sm.scale, scale[s]) << s;
    EXPECT_EQ(sm.min, min[s]) << s;
  }
}

}  // namespace
}  // namespace mpq

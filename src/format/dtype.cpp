// Traits table of the storage types and the exact scalar conversions between fp32 and the 16-bit
// float formats.
#include "format/dtype.h"

#include <array>
#include <bit>
#include <cctype>
#include <cstring>
#include <limits>

#include "format/gguf_blocks.h"
#include "mpq/error.h"

namespace mpq {

namespace {

// Plain scalar decoders (one value per "block").
void f32_to_f32(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void f16_row_to_f32(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, sizeof h);
    dst[i] = f16_to_f32(h);
  }
}

void bf16_row_to_f32(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, sizeof h);
    dst[i] = bf16_to_f32(h);
  }
}

// F64 rounds to nearest (the C++ conversion); values beyond the fp32 range become +-Inf.
void f64_row_to_f32(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double v;
    std::memcpy(&v, src + 8 * i, sizeof v);
    dst[i] = static_cast<float>(v);
  }
}

constexpr int64_t kQK = gguf::kLegacyBlockValues;
constexpr int64_t kQK_K = gguf::kQK_K;

// One row per DType, in enum order (checked below).
constexpr std::array<DTypeTraits, static_cast<size_t>(DType::kCount)> kTraits = {{
    // type       name    block  bytes                       float  decoder
    {DType::F32, "F32", 1, 4, true, f32_to_f32},
    {DType::F16, "F16", 1, 2, true, f16_row_to_f32},
    {DType::BF16, "BF16", 1, 2, true, bf16_row_to_f32},
    {DType::F64, "F64", 1, 8, true, f64_row_to_f32},
    {DType::I8, "I8", 1, 1, false, nullptr},
    {DType::I16, "I16", 1, 2, false, nullptr},
    {DType::I32, "I32", 1, 4, false, nullptr},
    {DType::I64, "I64", 1, 8, false, nullptr},
    {DType::Q4_0, "Q4_0", kQK, sizeof(gguf::BlockQ4_0), true, gguf::dequantize_q4_0},
    {DType::Q4_1, "Q4_1", kQK, sizeof(gguf::BlockQ4_1), true, gguf::dequantize_q4_1},
    {DType::Q5_0, "Q5_0", kQK, sizeof(gguf::BlockQ5_0), true, gguf::dequantize_q5_0},
    {DType::Q5_1, "Q5_1", kQK, sizeof(gguf::BlockQ5_1), true, gguf::dequantize_q5_1},
    {DType::Q8_0, "Q8_0", kQK, sizeof(gguf::BlockQ8_0), true, gguf::dequantize_q8_0},
    {DType::Q2_K, "Q2_K", kQK_K, sizeof(gguf::BlockQ2_K), true, gguf::dequantize_q2_k},
    {DType::Q3_K, "Q3_K", kQK_K, sizeof(gguf::BlockQ3_K), true, gguf::dequantize_q3_k},
    {DType::Q4_K, "Q4_K", kQK_K, sizeof(gguf::BlockQ4_K), true, gguf::dequantize_q4_k},
    {DType::Q5_K, "Q5_K", kQK_K, sizeof(gguf::BlockQ5_K), true, gguf::dequantize_q5_k},
    {DType::Q6_K, "Q6_K", kQK_K, sizeof(gguf::BlockQ6_K), true, gguf::dequantize_q6_k},
    {DType::IQ4_NL, "IQ4_NL", kQK, sizeof(gguf::BlockIQ4_NL), true, gguf::dequantize_iq4_nl},
    {DType::IQ4_XS, "IQ4_XS", kQK_K, sizeof(gguf::BlockIQ4_XS), true, gguf::dequantize_iq4_xs},
    {DType::MXFP4, "MXFP4", gguf::kMxfp4BlockValues, sizeof(gguf::BlockMXFP4), true, gguf::dequantize_mxfp4},
}};

constexpr bool rows_in_enum_order() {
  for (size_t i = 0; i < kTraits.size(); ++i) {
    if (static_cast<size_t>(kTraits[i].type) != i) return false;
  }
  return true;
}
static_assert(rows_in_enum_order(), "kTraits rows must follow the DType enum order");

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) !=
        std::toupper(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

const DTypeTraits& dtype_traits(DType type) {
  const auto index = static_cast<size_t>(type);
  if (index >= kTraits.size()) fail("dtype", "invalid DType value " + std::to_string(index));
  return kTraits[index];
}

const char* dtype_name(DType type) { return dtype_traits(type).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeTraits& row : kTraits) {
    if (equal_ignoring_case(name, row.name)) return row.type;
  }
  return std::nullopt;
}

std::optional<uint64_t> dtype_nbytes(DType type, int64_t n_values) {
  const DTypeTraits& t = dtype_traits(type);
  if (n_values < 0 || n_values % t.block_size != 0) return std::nullopt;
  const uint64_t blocks = static_cast<uint64_t>(n_values / t.block_size);
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  // Sizes are kept within int64 so that they also fit ptrdiff_t/off_t arithmetic downstream.
  if (blocks > limit / static_cast<uint64_t>(t.block_bytes)) return std::nullopt;
  return blocks * static_cast<uint64_t>(t.block_bytes);
}

void dequantize_to_f32(DType type, const uint8_t* src, float* dst, int64_t n_values,
                       const std::string& where) {
  const DTypeTraits& t = dtype_traits(type);
  if (t.to_f32 == nullptr) {
    fail(where, std::string("cannot convert ") + t.name + " values to f32 (not a float type)");
  }
  if (n_values < 0 || n_values % t.block_size != 0) {
    fail(where, std::to_string(n_values) + " values is not a whole number of " + t.name +
                    " blocks of " + std::to_string(t.block_size));
  }
  if (n_values > 0) t.to_f32(src, dst, n_values);
}

// ---- IEEE half: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. ----

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // Inf, or NaN keeping its payload
  } else {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t f32_to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;

  if (magnitude > 0x7F800000u) {
    // NaN: keep the top mantissa bits, force the quiet bit so the payload never becomes Inf.
    return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
  }
  // 65520 (0x477FF000) is halfway between 65504 (the largest half) and 2^16: it and everything
  // above round to Inf.
  if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);

  const uint32_t exponent = magnitude >> 23;  // biased fp32 exponent
  if (exponent < 113) {
    // Below 2^-14: the result is a half subnormal, i.e. an integer count of 2^-24. The fp32 value
    // is m * 2^(exponent - 150) with m the 24-bit significand, so the count is m >> shift.
    const uint32_t significand = (magnitude & 0x7FFFFFu) | (exponent ? 0x800000u : 0u);
    const uint32_t shift = 126 - exponent;  // >= 14
    if (shift >= 32) return sign;           // far below half the smallest subnormal
    uint32_t count = significand >> shift;
    const uint32_t remainder = significand & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (count & 1u))) ++count;
    return static_cast<uint16_t>(sign | count);  // a carry into 0x400 is the smallest normal
  }
  // Normal: rebias the exponent and round the 23-bit mantissa to 10 bits, ties to even. A carry
  // out of the mantissa correctly increments the exponent.
  uint32_t half = ((exponent - 112) << 10) | ((magnitude >> 13) & 0x3FFu);
  const uint32_t remainder = magnitude & 0x1FFFu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

// ---- bfloat16: the top 16 bits of an fp32. ----

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    // NaN: truncate and set the quiet bit so a payload in the dropped bits cannot give Inf.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  // Round to nearest even; overflow of the largest finite values correctly gives Inf.
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

}  // namespace mpq

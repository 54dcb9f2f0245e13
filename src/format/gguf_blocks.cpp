// Scalar reference decoders for the ggml block types. Layouts are documented in gguf_blocks.h.
//
// The float operations are written in the same order as the reference decoders of ggml and
// gguf-py (e.g. Q4_K computes (d * scale) * q - (dmin * min)), so results are bit-identical to
// theirs when compiled without floating-point contraction (C++20 mode: no FMA fusing).
#include "format/gguf_blocks.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "format/dtype.h"

namespace mpq::gguf {

static_assert(std::endian::native == std::endian::little, "GGUF decoders assume a little-endian host");

namespace {

// Copies block number `index` out of the (possibly unaligned) byte stream.
template <typename Block>
Block load_block(const uint8_t* src, int64_t index) {
  Block block;
  std::memcpy(&block, src + index * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return block;
}

// The 4-bit code of value i (0..31) of a legacy block: low nibbles first, then high nibbles.
int legacy_nibble(const uint8_t (&qs)[16], int i) {
  return i < 16 ? (qs[i] & 0x0F) : (qs[i - 16] >> 4);
}

// The fifth bit of value i (0..31) of a Q5_0/Q5_1 block.
int legacy_high_bit(const uint8_t (&qh)[4], int i) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  return static_cast<int>((bits >> i) & 1u);
}

// The 2-bit code of value i (0..255) of a Q2_K/Q3_K block (layout in BlockQ2_K).
int k_two_bit_code(const uint8_t (&qs)[64], int i) {
  const int half = i / 128;         // which 128-value half, each using 32 bytes
  const int shift = (i % 128) / 32;  // which 2-bit field of the byte
  const int lane = i % 32;           // which byte within the half
  return (qs[half * 32 + lane] >> (2 * shift)) & 3;
}

// Bit (i / 32) of mask[i % 32]: the extra high bit of Q3_K (hmask) and Q5_K (qh) codes.
int k_high_bit(const uint8_t (&mask)[32], int i) { return (mask[i % 32] >> (i / 32)) & 1; }

// The 4-bit code of value i (0..255) of a Q4_K/Q5_K block (layout in BlockQ4_K).
int k_nibble(const uint8_t (&qs)[128], int i) {
  const int chunk = i / 64;          // 64 values share 32 bytes
  const bool high = (i % 64) >= 32;  // second 32 values use the high nibbles
  const uint8_t byte = qs[chunk * 32 + i % 32];
  return high ? (byte >> 4) : (byte & 0x0F);
}

// The signed 6-bit scale (already minus 32) of sub-block s (0..15) of a Q3_K block.
int q3_k_scale(const uint8_t (&scales)[12], int s) {
  const int low4 = s < 8 ? (scales[s] & 0x0F) : (scales[s - 8] >> 4);
  const int high2 = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

// The 6-bit code of value i (0..255) of a Q6_K block, before subtracting 32.
int q6_k_code(const BlockQ6_K& b, int i) {
  const int half = i / 128;
  const int j = (i % 128) / 32;  // 32-value group within the half, 0..3
  const int lane = i % 32;
  const uint8_t low_byte = b.ql[half * 64 + (j % 2) * 32 + lane];
  const int low4 = j < 2 ? (low_byte & 0x0F) : (low_byte >> 4);
  const int high2 = (b.qh[half * 32 + lane] >> (2 * j)) & 3;
  return low4 | (high2 << 4);
}

// The 4-bit code of value i (0..15) of a 16-value run packed like half a legacy block: low
// nibbles of qs[0..7] first, then their high nibbles (NVFP4 sub-blocks).
int half_block_nibble(const uint8_t* qs, int i) { return i < 8 ? (qs[i] & 0x0F) : (qs[i - 8] >> 4); }

// E2M1 levels doubled (ggml's kvalues_mxfp4): integers, so level * (scale / 2) is exact.
constexpr int8_t kDoubledE2M1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Half of 2^(e - 127) as an fp32 bit pattern (2^(e - 128)): subnormal for e < 2.
float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return std::bit_cast<float>(bits);
}

// Half of the unsigned E4M3 value of an NVFP4 scale byte (sign bit ignored; 0x7F reads as 0).
float ue4m3_half(uint8_t byte) {
  if (byte == 0 || byte == 0x7F) return 0.f;
  const int exponent = (byte >> 3) & 0x0F, mantissa = byte & 0x07;
  const float raw = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                  : std::ldexp(1.f + static_cast<float>(mantissa) / 8.f, exponent - 7);
  return raw * 0.5f;
}

}  // namespace

KScaleMin unpack_k_scale_min(const uint8_t (&scales)[kKScaleBytes], int s) {
  if (s < 4) {
    return {static_cast<uint8_t>(scales[s] & 63), static_cast<uint8_t>(scales[s + 4] & 63)};
  }
  const int scale = (scales[s + 4] & 0x0F) | ((scales[s - 4] >> 6) << 4);
  const int min = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
  return {static_cast<uint8_t>(scale), static_cast<uint8_t>(min)};
}

void dequantize_q4_0(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kLegacyBlockValues; ++b) {
    const auto block = load_block<BlockQ4_0>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kLegacyBlockValues;
    for (int i = 0; i < kLegacyBlockValues; ++i) {
      out[i] = static_cast<float>(legacy_nibble(block.qs, i) - 8) * d;
    }
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kLegacyBlockValues; ++b) {
    const auto block = load_block<BlockQ4_1>(src, b);
    const float d = f16_to_f32(block.d);
    const float m = f16_to_f32(block.m);
    float* out = dst + b * kLegacyBlockValues;
    for (int i = 0; i < kLegacyBlockValues; ++i) {
      out[i] = static_cast<float>(legacy_nibble(block.qs, i)) * d + m;
    }
  }
}

void dequantize_q5_0(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kLegacyBlockValues; ++b) {
    const auto block = load_block<BlockQ5_0>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kLegacyBlockValues;
    for (int i = 0; i < kLegacyBlockValues; ++i) {
      const int code = legacy_nibble(block.qs, i) | (legacy_high_bit(block.qh, i) << 4);
      out[i] = static_cast<float>(code - 16) * d;
    }
  }
}

void dequantize_q5_1(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kLegacyBlockValues; ++b) {
    const auto block = load_block<BlockQ5_1>(src, b);
    const float d = f16_to_f32(block.d);
    const float m = f16_to_f32(block.m);
    float* out = dst + b * kLegacyBlockValues;
    for (int i = 0; i < kLegacyBlockValues; ++i) {
      const int code = legacy_nibble(block.qs, i) | (legacy_high_bit(block.qh, i) << 4);
      out[i] = static_cast<float>(code) * d + m;
    }
  }
}

void dequantize_q8_0(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kLegacyBlockValues; ++b) {
    const auto block = load_block<BlockQ8_0>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kLegacyBlockValues;
    for (int i = 0; i < kLegacyBlockValues; ++i) out[i] = static_cast<float>(block.qs[i]) * d;
  }
}

void dequantize_q2_k(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kQK_K; ++b) {
    const auto block = load_block<BlockQ2_K>(src, b);
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    float* out = dst + b * kQK_K;
    for (int s = 0; s < 16; ++s) {
      const float scale = d * static_cast<float>(block.scales[s] & 0x0F);
      const float min = dmin * static_cast<float>(block.scales[s] >> 4);
      for (int i = s * 16; i < s * 16 + 16; ++i) {
        out[i] = scale * static_cast<float>(k_two_bit_code(block.qs, i)) - min;
      }
    }
  }
}

void dequantize_q3_k(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kQK_K; ++b) {
    const auto block = load_block<BlockQ3_K>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kQK_K;
    for (int s = 0; s < 16; ++s) {
      const float scale = d * static_cast<float>(q3_k_scale(block.scales, s));
      for (int i = s * 16; i < s * 16 + 16; ++i) {
        // A clear high bit means "subtract 4": codes span -4..3.
        const int code = k_two_bit_code(block.qs, i) - (k_high_bit(block.hmask, i) ? 0 : 4);
        out[i] = scale * static_cast<float>(code);
      }
    }
  }
}

void dequantize_q4_k(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kQK_K; ++b) {
    const auto block = load_block<BlockQ4_K>(src, b);
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    float* out = dst + b * kQK_K;
    for (int s = 0; s < 8; ++s) {
      const KScaleMin sm = unpack_k_scale_min(block.scales, s);
      const float scale = d * static_cast<float>(sm.scale);
      const float min = dmin * static_cast<float>(sm.min);
      for (int i = s * 32; i < s * 32 + 32; ++i) {
        out[i] = scale * static_cast<float>(k_nibble(block.qs, i)) - min;
      }
    }
  }
}

void dequantize_q5_k(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kQK_K; ++b) {
    const auto block = load_block<BlockQ5_K>(src, b);
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    float* out = dst + b * kQK_K;
    for (int s = 0; s < 8; ++s) {
      const KScaleMin sm = unpack_k_scale_min(block.scales, s);
      const float scale = d * static_cast<float>(sm.scale);
      const float min = dmin * static_cast<float>(sm.min);
      for (int i = s * 32; i < s * 32 + 32; ++i) {
        const int code = k_nibble(block.qs, i) | (k_high_bit(block.qh, i) << 4);
        out[i] = scale * static_cast<float>(code) - min;
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kQK_K; ++b) {
    const auto block = load_block<BlockQ6_K>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kQK_K;
    for (int s = 0; s < 16; ++s) {
      const float scale = d * static_cast<float>(block.scales[s]);
      for (int i = s * 16; i < s * 16 + 16; ++i) {
        out[i] = scale * static_cast<float>(q6_k_code(block, i) - 32);
      }
    }
  }
}

}  // namespace mpq::gguf

namespace mpq::gguf {

void dequantize_iq4_nl(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kLegacyBlockValues; ++b) {
    const auto block = load_block<BlockIQ4_NL>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kLegacyBlockValues;
    for (int i = 0; i < kLegacyBlockValues; ++i) {
      out[i] = d * static_cast<float>(kIq4Levels[legacy_nibble(block.qs, i)]);
    }
  }
}

void dequantize_iq4_xs(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kQK_K; ++b) {
    const auto block = load_block<BlockIQ4_XS>(src, b);
    const float d = f16_to_f32(block.d);
    float* out = dst + b * kQK_K;
    for (int s = 0; s < 8; ++s) {
      const int low4 = (block.scales_l[s / 2] >> (4 * (s % 2))) & 0x0F;
      const int high2 = (block.scales_h >> (2 * s)) & 3;
      const float scale = d * static_cast<float>((low4 | (high2 << 4)) - 32);
      uint8_t qs[16];
      std::memcpy(qs, block.qs + 16 * s, sizeof qs);
      for (int i = 0; i < 32; ++i) {
        out[32 * s + i] = scale * static_cast<float>(kIq4Levels[legacy_nibble(qs, i)]);
      }
    }
  }
}

void dequantize_mxfp4(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kMxfp4BlockValues; ++b) {
    const auto block = load_block<BlockMXFP4>(src, b);
    const float half_scale = e8m0_half(block.e);
    float* out = dst + b * kMxfp4BlockValues;
    for (int i = 0; i < kMxfp4BlockValues; ++i) {
      out[i] = static_cast<float>(kDoubledE2M1[legacy_nibble(block.qs, i)]) * half_scale;
    }
  }
}

void dequantize_nvfp4(const uint8_t* src, float* dst, int64_t n_values) {
  for (int64_t b = 0; b < n_values / kNvfp4BlockValues; ++b) {
    const auto block = load_block<BlockNVFP4>(src, b);
    float* out = dst + b * kNvfp4BlockValues;
    for (int s = 0; s < 4; ++s) {
      const float half_scale = ue4m3_half(block.d[s]);
      for (int i = 0; i < 16; ++i) {
        out[16 * s + i] = static_cast<float>(kDoubledE2M1[half_block_nibble(block.qs + 8 * s, i)]) * half_scale;
      }
    }
  }
}

}  // namespace mpq::gguf

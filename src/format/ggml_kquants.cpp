// Codecs of q2_K, q3_K, q4_K, q5_K, q6_K (what each encoder does: format/ggml_kquants.h).
//
// Per type: code accessors for its bit layout (format/gguf_blocks.h), a fit (llama.cpp's
// quantize_row_*_ref steps 1-2 without importance, quantize_row_*_impl steps 1-2 with it) and a
// round (step 3). The encoders are fit + round over every value, as in ggml.
#include "format/ggml_kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "format/ggml_search.h"
#include "format/gguf_blocks.h"

namespace mpq {
namespace {

using ggml::load_f16;
using ggml::nearest_int;
using ggml::store_f16;

constexpr int kQK_K = gguf::kQK_K;  // 256

// ---- code layouts (byte offsets inside a block, from gguf_blocks.h)

// 2-bit field of value i (Q2_K, and the low bits of Q3_K): qs[32·(i/128) + i%32], bits
// 2·((i%128)/32).
int get_two_bits(const uint8_t* qs, int i) { return (qs[(i / 128) * 32 + i % 32] >> (2 * ((i % 128) / 32))) & 3; }
void set_two_bits(uint8_t* qs, int i, int v) {
  uint8_t& byte = qs[(i / 128) * 32 + i % 32];
  const int shift = 2 * ((i % 128) / 32);
  byte = static_cast<uint8_t>((byte & ~(3 << shift)) | ((v & 3) << shift));
}

// Bit i/32 of mask[i % 32] (Q3_K's hmask, Q5_K's qh).
int get_high_bit(const uint8_t* mask, int i) { return (mask[i % 32] >> (i / 32)) & 1; }
void set_high_bit(uint8_t* mask, int i, int bit) {
  const auto m = static_cast<uint8_t>(1u << (i / 32));
  mask[i % 32] = static_cast<uint8_t>(bit ? (mask[i % 32] | m) : (mask[i % 32] & ~m));
}

// 4-bit field of value i (Q4_K, low bits of Q5_K): qs[32·(i/64) + i%32], high nibble when
// (i % 64) >= 32.
int get_k_nibble(const uint8_t* qs, int i) {
  const uint8_t byte = qs[(i / 64) * 32 + i % 32];
  return (i % 64) >= 32 ? (byte >> 4) : (byte & 0x0F);
}
void set_k_nibble(uint8_t* qs, int i, int v) {
  uint8_t& byte = qs[(i / 64) * 32 + i % 32];
  byte = (i % 64) >= 32 ? static_cast<uint8_t>((byte & 0x0F) | ((v & 0x0F) << 4))
                        : static_cast<uint8_t>((byte & 0xF0) | (v & 0x0F));
}

// Q6_K's 6-bit code of value i: low 4 bits in ql[64·h + 32·(j%2) + l] (low nibble for j < 2),
// high 2 bits at bits 2j of qh[32·h + l], with h = i/128, j = (i%128)/32, l = i%32.
int get_q6_code(const uint8_t* ql, const uint8_t* qh, int i) {
  const int h = i / 128, j = (i % 128) / 32, l = i % 32;
  const uint8_t low_byte = ql[64 * h + 32 * (j % 2) + l];
  const int low = j < 2 ? (low_byte & 0x0F) : (low_byte >> 4);
  return low | (((qh[32 * h + l] >> (2 * j)) & 3) << 4);
}
void set_q6_code(uint8_t* ql, uint8_t* qh, int i, int code) {
  const int h = i / 128, j = (i % 128) / 32, l = i % 32;
  uint8_t& low_byte = ql[64 * h + 32 * (j % 2) + l];
  low_byte = j < 2 ? static_cast<uint8_t>((low_byte & 0xF0) | (code & 0x0F))
                   : static_cast<uint8_t>((low_byte & 0x0F) | ((code & 0x0F) << 4));
  uint8_t& high_byte = qh[32 * h + l];
  high_byte = static_cast<uint8_t>((high_byte & ~(3 << (2 * j))) | (((code >> 4) & 3) << (2 * j)));
}

// The 12 bytes of Q4_K/Q5_K's eight 6-bit scales and mins, written in ggml's order (bytes
// 0-7 hold sub-blocks 0-3 whole; sub-blocks 4-7 keep their low nibbles in bytes 8-11 and their
// top 2 bits in the top bits of bytes 0-7).
void pack_scales_mins(uint8_t* scales, const uint8_t* ls, const uint8_t* lm) {
  std::memset(scales, 0, gguf::kKScaleBytes);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<uint8_t>((ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4));
      scales[j - 4] = static_cast<uint8_t>(scales[j - 4] | ((ls[j] >> 4) << 6));
      scales[j] = static_cast<uint8_t>(scales[j] | ((lm[j] >> 4) << 6));
    }
  }
}

gguf::KScaleMin unpack_scale_min(const uint8_t* scales, int s) {
  uint8_t bytes[gguf::kKScaleBytes];
  std::memcpy(bytes, scales, sizeof bytes);
  return gguf::unpack_k_scale_min(bytes, s);
}

// Q3_K's sixteen 6-bit scales (stored + 32): low nibbles in bytes 0-7 (sub-blocks 8-15 in the
// high nibbles), top 2 bits of scale s at bits 2·(s/4) of byte 8 + s%4.
void pack_q3_scales(uint8_t* scales, const int* l) {
  std::memset(scales, 0, 12);
  for (int j = 0; j < 16; ++j) {
    if (j < 8) {
      scales[j] = static_cast<uint8_t>(l[j] & 0x0F);
    } else {
      scales[j - 8] = static_cast<uint8_t>(scales[j - 8] | ((l[j] & 0x0F) << 4));
    }
    scales[j % 4 + 8] = static_cast<uint8_t>(scales[j % 4 + 8] | ((l[j] >> 4) << (2 * (j / 4))));
  }
}

int q3_scale(const uint8_t* scales, int s) {
  const int low4 = s < 8 ? (scales[s] & 0x0F) : (scales[s - 8] >> 4);
  const int high2 = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

// Mean square of a super-block, times `factor` (ggml's σ²: 2·Σx²/256, or Σx²/256 for q2_K).
float super_block_sigma2(const float* x, float factor) {
  float sum_x2 = 0.f;
  for (int l = 0; l < kQK_K; ++l) sum_x2 += x[l] * x[l];
  return factor * sum_x2 / static_cast<float>(kQK_K);
}

// ---- q2_K: scales[16] | qs[64] | d | dmin
constexpr int kQ2Qs = 16, kQ2D = 80, kQ2Dmin = 82;

void q2_fit(const float* x, const float* imp, uint8_t* b) {
  std::memset(b, 0, 84);
  uint8_t L[kQK_K];
  float scales[16], mins[16];
  if (imp == nullptr) {
    float max_scale = 0.f, max_min = 0.f;
    for (int j = 0; j < 16; ++j) {
      float w[16];
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
      scales[j] = ggml::asymmetric_search(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0.f) {
      const float iscale = 15.f / max_scale;
      for (int j = 0; j < 16; ++j) b[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      store_f16(b + kQ2D, max_scale / 15.f);
    }
    if (max_min > 0.f) {
      const float iscale = 15.f / max_min;
      for (int j = 0; j < 16; ++j) b[j] = static_cast<uint8_t>(b[j] | (nearest_int(iscale * mins[j]) << 4));
      store_f16(b + kQ2Dmin, max_min / 15.f);
    }
  } else {
    const float sigma2 = super_block_sigma2(x, 1.f);
    float sw[16];
    for (int j = 0; j < 16; ++j) {
      float w[16];
      sw[j] = 0.f;
      for (int l = 0; l < 16; ++l) w[l] = imp[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      for (int l = 0; l < 16; ++l) sw[j] += w[l];
      scales[j] = ggml::asymmetric_search(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
    }
    uint8_t ls[16], lm[16];
    const float dm = ggml::positive_search(16, 15, scales, ls, sw);
    const float mm = ggml::positive_search(16, 15, mins, lm, sw);
    store_f16(b + kQ2D, dm);
    store_f16(b + kQ2Dmin, mm);
    for (int j = 0; j < 16; ++j) b[j] = static_cast<uint8_t>(ls[j] | (lm[j] << 4));
  }
  for (int i = 0; i < kQK_K; ++i) set_two_bits(b + kQ2Qs, i, L[i]);
}

float q2_value(const uint8_t* b, int i) {
  const uint8_t sc = b[i / 16];
  const float scale = load_f16(b + kQ2D) * static_cast<float>(sc & 0x0F);
  const float min = load_f16(b + kQ2Dmin) * static_cast<float>(sc >> 4);
  return scale * static_cast<float>(get_two_bits(b + kQ2Qs, i)) - min;
}

float q2_round(uint8_t* b, int i, float x) {
  const uint8_t sc = b[i / 16];
  const float d = load_f16(b + kQ2D) * static_cast<float>(sc & 0x0F);
  if (d != 0.f) {
    const float dm = load_f16(b + kQ2Dmin) * static_cast<float>(sc >> 4);
    set_two_bits(b + kQ2Qs, i, std::clamp(nearest_int((x + dm) / d), 0, 3));
  }
  return q2_value(b, i);
}

void q2_weights(const float* x, const float* imp, float* w, int64_t n) {
  for (int64_t s = 0; s < n; s += kQK_K) {
    const float sigma2 = super_block_sigma2(x + s, 1.f);
    for (int l = 0; l < kQK_K; ++l) w[s + l] = imp[s + l] * std::sqrt(sigma2 + x[s + l] * x[s + l]);
  }
}

// ---- q3_K: hmask[32] | qs[64] | scales[12] | d
constexpr int kQ3Qs = 32, kQ3Scales = 96, kQ3D = 108;

void q3_fit(const float* x, const float* imp, uint8_t* b) {
  std::memset(b, 0, 110);
  uint8_t L[kQK_K];
  float scales[16];
  int stored[16];
  if (imp == nullptr) {
    float max_scale = 0.f, amax = 0.f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = ggml::coordinate_search(16, 4, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_scale != 0.f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const auto l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
        stored[j] = std::max(-32, std::min(31, static_cast<int>(l))) + 32;
      }
      pack_q3_scales(b + kQ3Scales, stored);
      store_f16(b + kQ3D, 1.f / iscale);
    }
  } else {
    const float sigma2 = super_block_sigma2(x, 2.f);
    float sw[16];
    for (int j = 0; j < 16; ++j) {
      float w[16];
      for (int l = 0; l < 16; ++l) w[l] = imp[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sum = 0.f;
      for (int l = 0; l < 16; ++l) sum += w[l];
      sw[j] = sum;
      scales[j] = ggml::symmetric_search(16, 4, x + 16 * j, w, L + 16 * j);
    }
    uint8_t ls[16];
    const float d_block = ggml::symmetric_search(16, 32, scales, sw, ls);
    for (int j = 0; j < 16; ++j) stored[j] = ls[j];
    pack_q3_scales(b + kQ3Scales, stored);
    store_f16(b + kQ3D, d_block);
  }
  for (int i = 0; i < kQK_K; ++i) {
    set_two_bits(b + kQ3Qs, i, L[i] & 3);
    set_high_bit(b, i, L[i] > 3);
  }
}

float q3_value(const uint8_t* b, int i) {
  const float scale = load_f16(b + kQ3D) * static_cast<float>(q3_scale(b + kQ3Scales, i / 16));
  const int code = get_two_bits(b + kQ3Qs, i) - (get_high_bit(b, i) ? 0 : 4);
  return scale * static_cast<float>(code);
}

float q3_round(uint8_t* b, int i, float x) {
  const float d = load_f16(b + kQ3D) * static_cast<float>(q3_scale(b + kQ3Scales, i / 16));
  if (d != 0.f) {
    const int code = std::clamp(nearest_int(x / d), -4, 3) + 4;
    set_two_bits(b + kQ3Qs, i, code & 3);
    set_high_bit(b, i, code > 3);
  }
  return q3_value(b, i);
}

void k_doubled_sigma_weights(const float* x, const float* imp, float* w, int64_t n) {
  for (int64_t s = 0; s < n; s += kQK_K) {
    const float sigma2 = super_block_sigma2(x + s, 2.f);
    for (int l = 0; l < kQK_K; ++l) w[s + l] = imp[s + l] * std::sqrt(sigma2 + x[s + l] * x[s + l]);
  }
}

// ---- q4_K and q5_K: d | dmin | scales[12] | (q5_K: qh[32]) | qs[128]
constexpr int kKD = 0, kKDmin = 2, kKScales = 4;

template <int kBits>
struct KQuant {
  static constexpr int kMax = (1 << kBits) - 1;        // 15 or 31
  static constexpr int kBytes = kBits == 4 ? 144 : 176;
  static constexpr int kQh = 16;                       // q5_K only
  static constexpr int kQs = kBits == 4 ? 16 : 48;

  static int code(const uint8_t* b, int i) {
    int c = get_k_nibble(b + kQs, i);
    if (kBits == 5) c |= get_high_bit(b + kQh, i) << 4;
    return c;
  }
  static void set_code(uint8_t* b, int i, int c) {
    set_k_nibble(b + kQs, i, c);
    if (kBits == 5) set_high_bit(b + kQh, i, (c >> 4) & 1);
  }

  static void fit(const float* x, const float* imp, uint8_t* b) {
    std::memset(b, 0, kBytes);
    uint8_t L[kQK_K];
    float scales[8], mins[8];
    uint8_t ls[8], lm[8];
    if (imp == nullptr) {
      float max_scale = 0.f, max_min = 0.f;
      for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0.f;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32.f);
        float w[32];
        for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = kBits == 4
                        ? ggml::asymmetric_search(32, kMax, x + 32 * j, w, L + 32 * j, &mins[j], -1.f, 0.1f, 20, false)
                        : ggml::asymmetric_search(32, kMax, x + 32 * j, w, L + 32 * j, &mins[j], -0.5f, 0.1f, 15, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      const float inv_scale = max_scale > 0.f ? 63.f / max_scale : 0.f;
      const float inv_min = max_min > 0.f ? 63.f / max_min : 0.f;
      for (int j = 0; j < 8; ++j) {
        ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
        lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
      }
      pack_scales_mins(b + kKScales, ls, lm);
      store_f16(b + kKD, max_scale / 63.f);
      store_f16(b + kKDmin, max_min / 63.f);
    } else {
      const float sigma2 = super_block_sigma2(x, 2.f);
      float sw[8];
      for (int j = 0; j < 8; ++j) {
        float w[32];
        for (int l = 0; l < 32; ++l) w[l] = imp[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sum = 0.f;
        for (int l = 0; l < 32; ++l) sum += w[l];
        sw[j] = sum;
        scales[j] = ggml::asymmetric_search(32, kMax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
      }
      const float d_block = ggml::positive_search(8, 63, scales, ls, sw);
      const float m_block = ggml::positive_search(8, 63, mins, lm, sw);
      if (kBits == 5) {  // ggml caps q5_K's (not q4_K's) stored integers at 63 here
        for (int j = 0; j < 8; ++j) {
          ls[j] = std::min<uint8_t>(63, ls[j]);
          lm[j] = std::min<uint8_t>(63, lm[j]);
        }
      }
      pack_scales_mins(b + kKScales, ls, lm);
      store_f16(b + kKD, d_block);
      store_f16(b + kKDmin, m_block);
    }
    for (int i = 0; i < kQK_K; ++i) set_code(b, i, L[i]);
  }

  static float value(const uint8_t* b, int i) {
    const gguf::KScaleMin sm = unpack_scale_min(b + kKScales, i / 32);
    const float scale = load_f16(b + kKD) * static_cast<float>(sm.scale);
    const float min = load_f16(b + kKDmin) * static_cast<float>(sm.min);
    return scale * static_cast<float>(code(b, i)) - min;
  }

  static float round(uint8_t* b, int i, float x) {
    const gguf::KScaleMin sm = unpack_scale_min(b + kKScales, i / 32);
    const float d = load_f16(b + kKD) * static_cast<float>(sm.scale);
    if (d != 0.f) {
      const float dm = load_f16(b + kKDmin) * static_cast<float>(sm.min);
      set_code(b, i, std::clamp(nearest_int((x + dm) / d), 0, kMax));
    }
    return value(b, i);
  }
};

// ---- q6_K: ql[128] | qh[64] | scales[16] (int8) | d
constexpr int kQ6Qh = 128, kQ6Scales = 192, kQ6D = 208;

void q6_fit(const float* x, const float* imp, uint8_t* b) {
  std::memset(b, 0, 210);
  uint8_t L[kQK_K];
  float scales[16];
  float max_scale = 0.f, max_abs_scale = 0.f;
  for (int s = 0; s < 16; ++s) {
    // With an importance matrix ggml weighs by it directly (no σ² term) for q6_K.
    scales[s] = ggml::symmetric_search(16, 32, x + 16 * s, imp ? imp + 16 * s : nullptr, L + 16 * s);
    if (std::fabs(scales[s]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[s]);
      max_scale = scales[s];
    }
  }
  if (max_abs_scale < ggml::kZeroRunMax) return;  // all zero: the block stays zero
  const float iscale = -128.f / max_scale;
  store_f16(b + kQ6D, 1.f / iscale);
  for (int s = 0; s < 16; ++s) {
    b[kQ6Scales + s] = static_cast<uint8_t>(static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[s]))));
  }
  for (int i = 0; i < kQK_K; ++i) set_q6_code(b, b + kQ6Qh, i, L[i]);
}

float q6_value(const uint8_t* b, int i) {
  const float scale = load_f16(b + kQ6D) * static_cast<float>(static_cast<int8_t>(b[kQ6Scales + i / 16]));
  return scale * static_cast<float>(get_q6_code(b, b + kQ6Qh, i) - 32);
}

float q6_round(uint8_t* b, int i, float x) {
  const float d = load_f16(b + kQ6D) * static_cast<float>(static_cast<int8_t>(b[kQ6Scales + i / 16]));
  if (d != 0.f) set_q6_code(b, b + kQ6Qh, i, std::clamp(nearest_int(x / d), -32, 31) + 32);
  return q6_value(b, i);
}

void q6_weights(const float* x, const float* imp, float* w, int64_t n) { std::copy(imp, imp + n, w); }

// ---- encoders: fit every super-block, then re-quantize every value on its stored grid

template <int kBytes, void (*Fit)(const float*, const float*, uint8_t*), float (*Round)(uint8_t*, int, float)>
void encode_with(const float* x, const float* imp, uint8_t* dst, int64_t n) {
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const float* xs = x + s * kQK_K;
    uint8_t* block = dst + s * kBytes;
    Fit(xs, imp ? imp + s * kQK_K : nullptr, block);
    for (int i = 0; i < kQK_K; ++i) Round(block, i, xs[i]);
  }
}

template <int kBytes, void (*Fit)(const float*, const float*, uint8_t*), float (*Round)(uint8_t*, int, float)>
void encode_plain(const float* x, uint8_t* dst, int64_t n) {
  encode_with<kBytes, Fit, Round>(x, nullptr, dst, n);
}

template <int kBytes, void (*Fit)(const float*, const float*, uint8_t*), float (*Round)(uint8_t*, int, float)>
void encode_weighted(const float* x, const float* imp, uint8_t* dst, int64_t n) {
  encode_with<kBytes, Fit, Round>(x, imp, dst, n);
}

using Q4 = KQuant<4>;
using Q5 = KQuant<5>;

}  // namespace

// ggml type id, name, values and bytes per block, then the functions.
const GgmlBlockCodec kGgmlQ2_K{10, "Q2_K", kQK_K, 84, gguf::dequantize_q2_k, encode_plain<84, q2_fit, q2_round>,
                               encode_weighted<84, q2_fit, q2_round>, q2_weights, q2_fit, q2_round};
const GgmlBlockCodec kGgmlQ3_K{11, "Q3_K", kQK_K, 110, gguf::dequantize_q3_k, encode_plain<110, q3_fit, q3_round>,
                               encode_weighted<110, q3_fit, q3_round>, k_doubled_sigma_weights, q3_fit, q3_round};
const GgmlBlockCodec kGgmlQ4_K{12, "Q4_K", kQK_K, 144, gguf::dequantize_q4_k, encode_plain<144, Q4::fit, Q4::round>,
                               encode_weighted<144, Q4::fit, Q4::round>, k_doubled_sigma_weights, Q4::fit, Q4::round};
const GgmlBlockCodec kGgmlQ5_K{13, "Q5_K", kQK_K, 176, gguf::dequantize_q5_k, encode_plain<176, Q5::fit, Q5::round>,
                               encode_weighted<176, Q5::fit, Q5::round>, k_doubled_sigma_weights, Q5::fit, Q5::round};
const GgmlBlockCodec kGgmlQ6_K{14, "Q6_K", kQK_K, 210, gguf::dequantize_q6_k, encode_plain<210, q6_fit, q6_round>,
                               encode_weighted<210, q6_fit, q6_round>, q6_weights, q6_fit, q6_round};

}  // namespace mpq

// Codecs of iq4_nl and iq4_xs (what the encoders do: format/ggml_iq4.h). One routine,
// quantize_levels, is ggml's quantize_row_iq4_nl_impl for both: a super-block of 32 (iq4_nl) or
// 256 (iq4_xs) values in sub-blocks of 32.
#include "format/ggml_iq4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/ggml_search.h"
#include "format/gguf_blocks.h"

namespace mpq {
namespace {

using ggml::get_nibble32;
using ggml::load_f16;
using ggml::nearest_int;
using ggml::set_nibble32;
using ggml::store_f16;
using gguf::kIq4Levels;

constexpr int kSub = 32;    // values per scale
constexpr int kNtry = 7;    // llama-quantize's candidate scales on each side (ggml passes 7)

float level(int q) { return static_cast<float>(kIq4Levels[q]); }

// Index of the level nearest to x (in level units); an exact midpoint goes to the upper level.
int nearest_level(float x) {
  if (x <= level(0)) return 0;
  if (x >= level(15)) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < level(mid)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return x - level(hi - 1) < level(hi) - x ? hi - 1 : hi;
}

// Where one type's fields sit.
struct Iq4 {
  int values;      // super-block values: 32 (iq4_nl) or 256 (iq4_xs)
  int bytes;       // 18 or 136
  int codes_at;    // byte offset of qs: 2 or 8
};
constexpr Iq4 kNl{32, 18, 2};
constexpr Iq4 kXs{256, 136, 8};

// iq4_xs: the stored 6-bit scale of sub-block s (0..63; the scale is d·(it − 32)).
int xs_scale(const uint8_t* b, int s) {
  const int low4 = (b[4 + s / 2] >> (4 * (s % 2))) & 0x0F;
  const int high2 = (ggml::load_u16(b + 2) >> (2 * s)) & 3;
  return low4 | (high2 << 4);
}

// ggml's quantize_row_iq4_nl_impl for one super-block (ntry = 7): writes d, the iq4_xs
// sub-block scales and the codes. `imp` nullptr: weights x².
void quantize_levels(const Iq4& t, const float* x, const float* imp, uint8_t* b) {
  std::memset(b, 0, static_cast<size_t>(t.bytes));
  float sigma2 = 0.f;
  for (int j = 0; j < t.values; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / static_cast<float>(t.values);

  uint8_t L[256];
  float scales[8];
  float max_scale = 0.f, amax_scale = 0.f;
  const int subs = t.values / kSub;
  for (int ib = 0; ib < subs; ++ib) {
    const float* xb = x + ib * kSub;
    uint8_t* Lb = L + ib * kSub;
    float w[kSub];
    for (int j = 0; j < kSub; ++j) {
      w[j] = imp ? imp[ib * kSub + j] * std::sqrt(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    }
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < kSub; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    if (amax < ggml::kZeroRunMax) {
      scales[ib] = 0.f;
      continue;
    }
    // Sums Σ w q x and Σ w q² of the nearest levels under inverse scale id.
    auto fit = [&](float id, bool store, float& sumqx, float& sumq2) {
      sumqx = 0.f;
      sumq2 = 0.f;
      for (int j = 0; j < kSub; ++j) {
        const int l = nearest_level(id * xb[j]);
        if (store) Lb[j] = static_cast<uint8_t>(l);
        const float q = level(l);
        sumqx += w[j] * q * xb[j];
        sumq2 += w[j] * q * q;
      }
    };
    float d = -max / level(0);  // the largest magnitude on level −127, with its sign
    float sumqx, sumq2;
    fit(1.f / d, true, sumqx, sumq2);
    d = sumq2 > 0.f ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -kNtry; itry <= kNtry; ++itry) {
      fit(static_cast<float>(itry + kIq4Levels[0]) / max, false, sumqx, sumq2);
      if (sumq2 > 0.f && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    if (std::fabs(d) > amax_scale) {
      amax_scale = std::fabs(d);
      max_scale = d;
    }
  }

  if (subs > 1) {
    // iq4_xs: sub-block scales onto 6-bit integers of d = −max/32; levels re-picked with the
    // fp32 d·l.
    const float d = -max_scale / 32.f;
    store_f16(b, d);
    const float id = d != 0.f ? 1.f / d : 0.f;
    uint16_t scales_h = 0;
    for (int ib = 0; ib < subs; ++ib) {
      int l = std::clamp(nearest_int(id * scales[ib]), -32, 31);
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0.f ? 1.f / dl : 0.f;
      for (int j = 0; j < kSub; ++j) L[ib * kSub + j] = static_cast<uint8_t>(nearest_level(idl * x[ib * kSub + j]));
      l += 32;
      b[4 + ib / 2] = static_cast<uint8_t>(b[4 + ib / 2] | ((l & 0x0F) << (4 * (ib % 2))));
      scales_h = static_cast<uint16_t>(scales_h | ((l >> 4) << (2 * (ib % 8))));
    }
    ggml::store_u16(b + 2, scales_h);
  } else {
    // iq4_nl: the fp16 scale stored, the levels re-picked with the fp32 scale.
    store_f16(b, scales[0]);
    const float id = scales[0] != 0.f ? 1.f / scales[0] : 0.f;
    for (int j = 0; j < kSub; ++j) L[j] = static_cast<uint8_t>(nearest_level(id * x[j]));
  }
  for (int s = 0; s < subs; ++s) {
    for (int j = 0; j < kSub; ++j) set_nibble32(b + t.codes_at + 16 * s, j, L[s * kSub + j]);
  }
}

// The scale value j of a block is multiplied by, as the decoder computes it.
float scale_of(const Iq4& t, const uint8_t* b, int j) {
  const float d = load_f16(b);
  if (t.values == kSub) return d;
  return d * static_cast<float>(xs_scale(b, j / kSub) - 32);
}

template <const Iq4& T>
float round_value(uint8_t* b, int j, float x) {
  const float scale = scale_of(T, b, j);
  uint8_t* qs = b + T.codes_at + 16 * (j / kSub);
  if (scale != 0.f) set_nibble32(qs, j % kSub, nearest_level(x / scale));
  return scale * level(get_nibble32(qs, j % kSub));
}

template <const Iq4& T>
void encode_weighted(const float* x, const float* imp, uint8_t* dst, int64_t n) {
  for (int64_t s = 0; s < n / T.values; ++s) {
    quantize_levels(T, x + s * T.values, imp ? imp + s * T.values : nullptr, dst + s * T.bytes);
  }
}

template <const Iq4& T>
void encode(const float* x, uint8_t* dst, int64_t n) {
  encode_weighted<T>(x, nullptr, dst, n);
}

template <const Iq4& T>
void fit_block(const float* x, const float* imp, uint8_t* b) {
  quantize_levels(T, x, imp, b);
}

// imp·sqrt(σ² + x²) with σ² twice the mean square of each super-block.
template <const Iq4& T>
void search_weights(const float* x, const float* imp, float* w, int64_t n) {
  for (int64_t s = 0; s < n; s += T.values) {
    float sigma2 = 0.f;
    for (int j = 0; j < T.values; ++j) sigma2 += x[s + j] * x[s + j];
    sigma2 *= 2.f / static_cast<float>(T.values);
    for (int j = 0; j < T.values; ++j) w[s + j] = imp[s + j] * std::sqrt(sigma2 + x[s + j] * x[s + j]);
  }
}

}  // namespace

// ggml type id, name, values and bytes per block, then the functions.
const GgmlBlockCodec kGgmlIQ4_NL{20, "IQ4_NL", 32, 18, gguf::dequantize_iq4_nl, encode<kNl>, encode_weighted<kNl>,
                                 search_weights<kNl>, fit_block<kNl>, round_value<kNl>};
const GgmlBlockCodec kGgmlIQ4_XS{23, "IQ4_XS", 256, 136, gguf::dequantize_iq4_xs, encode<kXs>, encode_weighted<kXs>,
                                 search_weights<kXs>, fit_block<kXs>, round_value<kXs>};

}  // namespace mpq

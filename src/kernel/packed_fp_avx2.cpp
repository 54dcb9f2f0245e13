// AVX2 + FMA + F16C path of the floating-point packed formats: the AVX-512 path's scheme
// (kernel/packed_fp_avx512.cpp) on 8-lane vectors, so one column of a 16-row block is two ymm
// (rows 0..7 and 8..15). The layout is described at the top of kernel/packed_fp.cpp.
#include <immintrin.h>

#include <algorithm>

#include "kernel/packed_fp_kernels.h"

#define MPQ_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#define MPQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace mpq {
namespace {

// The 16 rows of one column (or the 16 row scales of one group): rows 0..7 and 8..15.
struct Column {
  __m256 lo, hi;
};

// ---------------------------------------------------------------------------------------------
// Decoders (see the AVX-512 file for the formulas; only the vector width differs).

struct Bf16Decoder {
  static constexpr bool kScaleAfterSum = false;
  MPQ_AVX2_INLINE Column group_scale(const float*) const { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  MPQ_AVX2_INLINE static __m256 widen(const uint8_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  MPQ_AVX2_INLINE Column column(const uint8_t* block, int64_t k, const Column&) const {
    return {widen(block + k * 32), widen(block + k * 32 + 16)};
  }
  MPQ_AVX2_INLINE void pair(const uint8_t* block, int64_t k, const Column& s, Column& w0, Column& w1) const {
    w0 = column(block, k, s);
    w1 = column(block, k + 1, s);
  }
};

struct F16Decoder {
  static constexpr bool kScaleAfterSum = false;
  MPQ_AVX2_INLINE Column group_scale(const float*) const { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  MPQ_AVX2_INLINE static __m256 widen(const uint8_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  MPQ_AVX2_INLINE Column column(const uint8_t* block, int64_t k, const Column&) const {
    return {widen(block + k * 32), widen(block + k * 32 + 16)};
  }
  MPQ_AVX2_INLINE void pair(const uint8_t* block, int64_t k, const Column& s, Column& w0, Column& w1) const {
    w0 = column(block, k, s);
    w1 = column(block, k + 1, s);
  }
};

// E4M3 -> f16 holding 2^-8 times the value (S.EEEE.MMM -> S.0EEEE.MMM0000000), the 2^8 folded
// into the group scale; NaN codes get the f16 exponent 11111 when the matrix has any. kRowScale:
// one scale per row, applied to the row sums (as in the AVX-512 path).
template <bool kHasNan, bool kRowScale>
struct E4M3Decoder {
  static constexpr bool kScaleAfterSum = kRowScale;
  MPQ_AVX2_INLINE __m256 scaled(__m256 w, __m256 scale) const { return kRowScale ? w : _mm256_mul_ps(w, scale); }
  MPQ_AVX2_INLINE Column group_scale(const float* s) const {
    const __m256 f = _mm256_set1_ps(256.f);
    return {_mm256_mul_ps(_mm256_loadu_ps(s), f), _mm256_mul_ps(_mm256_loadu_ps(s + 8), f)};
  }
  MPQ_AVX2_INLINE Column column(const uint8_t* block, int64_t k, const Column& scale) const {
    const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k * 16)));
    __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(c, 8), 1),
                                 _mm256_set1_epi16(static_cast<short>(0xBF80)));
    if (kHasNan) {
      const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x7F)),
                                             _mm256_set1_epi16(0x7F));
      h = _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7C00)));
    }
    return {scaled(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), scale.lo),
            scaled(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), scale.hi)};
  }
  MPQ_AVX2_INLINE void pair(const uint8_t* block, int64_t k, const Column& s, Column& w0, Column& w1) const {
    w0 = column(block, k, s);
    w1 = column(block, k + 1, s);
  }
};

// E2M1: vpermps only has 8 entries on ymm, so it looks up the magnitude (code bits 0..2) and
// bit 3, shifted to bit 31, is xor-ed in as the sign. Bytes as in the AVX-512 path: the low
// nibble is column 2p, the high nibble column 2p+1.
struct E2M1Decoder {
  static constexpr bool kScaleAfterSum = false;
  __m256 magnitudes;  // |e2m1| of codes 0..7
  MPQ_AVX2_INLINE Column group_scale(const float* s) const {
    return {_mm256_loadu_ps(s), _mm256_loadu_ps(s + 8)};
  }
  // Value of the code in the low nibble of each dword lane.
  MPQ_AVX2_INLINE __m256 value(__m256i idx) const {
    const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(idx, 28), _mm256_set1_epi32(INT32_MIN));
    return _mm256_xor_ps(_mm256_permutevar8x32_ps(magnitudes, idx), _mm256_castsi256_ps(sign));
  }
  MPQ_AVX2_INLINE static __m256i bytes(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  MPQ_AVX2_INLINE void pair(const uint8_t* block, int64_t k, const Column& s, Column& w0, Column& w1) const {
    const __m256i lo = bytes(block + (k >> 1) * 16), hi = bytes(block + (k >> 1) * 16 + 8);
    w0 = {_mm256_mul_ps(value(lo), s.lo), _mm256_mul_ps(value(hi), s.hi)};
    w1 = {_mm256_mul_ps(value(_mm256_srli_epi32(lo, 4)), s.lo),
          _mm256_mul_ps(value(_mm256_srli_epi32(hi, 4)), s.hi)};
  }
  MPQ_AVX2_INLINE Column column(const uint8_t* block, int64_t k, const Column& s) const {
    // k is even here (a lone last column): its code is the low nibble.
    return {_mm256_mul_ps(value(bytes(block + (k >> 1) * 16)), s.lo),
            _mm256_mul_ps(value(bytes(block + (k >> 1) * 16 + 8)), s.hi)};
  }
};

// ---------------------------------------------------------------------------------------------
// The kernel

// 8 accumulator pairs of ymm whatever T (16 registers in all, half of them accumulators):
// kChains chains per token, each summing every kChains-th column.
template <class Decoder, int T>
MPQ_AVX2_INLINE void block_product(const PackedFpView& m, const Decoder& dec, int64_t block,
                                   const float* const* xt, Column* result) {
  constexpr int kChains = 4 / T;                      // T = 1, 2, 4 -> 4, 2, 1
  constexpr int kStep = kChains < 2 ? 2 : kChains;    // columns per step: whole pairs
  Column acc[kChains][T];
#pragma GCC unroll 4
  for (int c = 0; c < kChains; ++c) {
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[c][t] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  }
  const uint8_t* codes = m.codes + block * m.block_code_bytes;
  const float* scales = m.scales == nullptr ? nullptr : m.scales + block * m.groups * kFpBlockRows;
  const int64_t group_cols = m.groups == 0 ? m.cols : m.group_cols;
  for (int64_t k0 = 0, g = 0; k0 < m.cols; k0 += group_cols, ++g) {
    const int64_t k1 = std::min(k0 + group_cols, m.cols);
    const Column scale = dec.group_scale(scales == nullptr ? nullptr : scales + g * kFpBlockRows);
    int64_t k = k0;
    for (; k + kStep <= k1; k += kStep) {
#pragma GCC unroll 4
      for (int p = 0; p < kStep; p += 2) {
        Column w0, w1;
        dec.pair(codes, k + p, scale, w0, w1);
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const __m256 x0 = _mm256_set1_ps(xt[t][k + p]), x1 = _mm256_set1_ps(xt[t][k + p + 1]);
          Column& c0 = acc[p % kChains][t];
          c0.lo = _mm256_fmadd_ps(w0.lo, x0, c0.lo);
          c0.hi = _mm256_fmadd_ps(w0.hi, x0, c0.hi);
          Column& c1 = acc[(p + 1) % kChains][t];
          c1.lo = _mm256_fmadd_ps(w1.lo, x1, c1.lo);
          c1.hi = _mm256_fmadd_ps(w1.hi, x1, c1.hi);
        }
      }
    }
    for (; k + 2 <= k1; k += 2) {
      Column w0, w1;
      dec.pair(codes, k, scale, w0, w1);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const __m256 x0 = _mm256_set1_ps(xt[t][k]), x1 = _mm256_set1_ps(xt[t][k + 1]);
        Column& c0 = acc[0][t];
        c0.lo = _mm256_fmadd_ps(w0.lo, x0, c0.lo);
        c0.hi = _mm256_fmadd_ps(w0.hi, x0, c0.hi);
        Column& c1 = acc[1 % kChains][t];
        c1.lo = _mm256_fmadd_ps(w1.lo, x1, c1.lo);
        c1.hi = _mm256_fmadd_ps(w1.hi, x1, c1.hi);
      }
    }
    if (k < k1) {
      const Column w = dec.column(codes, k, scale);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const __m256 x0 = _mm256_set1_ps(xt[t][k]);
        acc[0][t].lo = _mm256_fmadd_ps(w.lo, x0, acc[0][t].lo);
        acc[0][t].hi = _mm256_fmadd_ps(w.hi, x0, acc[0][t].hi);
      }
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) {
    Column sum = acc[0][t];
#pragma GCC unroll 4
    for (int c = 1; c < kChains; ++c) {
      sum.lo = _mm256_add_ps(sum.lo, acc[c][t].lo);
      sum.hi = _mm256_add_ps(sum.hi, acc[c][t].hi);
    }
    if constexpr (Decoder::kScaleAfterSum) {
      const Column scale = dec.group_scale(scales);
      sum.lo = _mm256_mul_ps(sum.lo, scale.lo);
      sum.hi = _mm256_mul_ps(sum.hi, scale.hi);
    }
    result[t] = sum;
  }
}

template <class Decoder, int T>
MPQ_AVX2 void token_tile(const PackedFpView& m, const Decoder& dec, const FpMatmulCall& call,
                         int64_t block_begin, int64_t block_end, int64_t t0) {
  const float* xt[T];
  for (int t = 0; t < T; ++t) xt[t] = call.x + (t0 + t) * m.cols;
  for (int64_t b = block_begin; b < block_end; ++b) {
    Column result[T];
    block_product<Decoder, T>(m, dec, b, xt, result);
    const int64_t first = b * kFpBlockRows;
    const bool whole = call.row_to_output == nullptr && first >= call.row_begin &&
                       first + kFpBlockRows <= call.row_end;
    for (int t = 0; t < T; ++t) {
      if (whole) {
        float* y = call.y + (t0 + t) * call.ldy + first;
        _mm256_storeu_ps(y, result[t].lo);
        _mm256_storeu_ps(y + 8, result[t].hi);
      } else {
        alignas(32) float values[kFpBlockRows];
        _mm256_store_ps(values, result[t].lo);
        _mm256_store_ps(values + 8, result[t].hi);
        store_block_rows(call, b, t0 + t, values);
      }
    }
  }
}

// As in the AVX-512 path: row chunks that stay in L2 while the token tiles stream over them.
constexpr int64_t kChunkCodeBytes = 128 << 10;

template <class Decoder>
MPQ_AVX2 void run(const PackedFpView& m, const Decoder& dec, const FpMatmulCall& call) {
  const int64_t block_begin = call.row_begin / kFpBlockRows;
  const int64_t block_end = (call.row_end + kFpBlockRows - 1) / kFpBlockRows;
  const int64_t chunk = std::max<int64_t>(1, kChunkCodeBytes / m.block_code_bytes);
  for (int64_t cb = block_begin; cb < block_end; cb += chunk) {
    const int64_t ce = std::min(block_end, cb + chunk);
    int64_t t0 = 0;
    for (; t0 + 4 <= call.n_tokens; t0 += 4) token_tile<Decoder, 4>(m, dec, call, cb, ce, t0);
    const int64_t left = call.n_tokens - t0;
    if (left & 2) {
      token_tile<Decoder, 2>(m, dec, call, cb, ce, t0);
      t0 += 2;
    }
    if (left & 1) token_tile<Decoder, 1>(m, dec, call, cb, ce, t0);
  }
}

constexpr float kE2M1Magnitudes[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};

}  // namespace

MPQ_AVX2 void packed_fp_matmul_avx2(const PackedFpView& m, const FpMatmulCall& call) {
  switch (m.kind) {
    case FpCodeKind::BF16: return run(m, Bf16Decoder{}, call);
    case FpCodeKind::F16: return run(m, F16Decoder{}, call);
    case FpCodeKind::E4M3:
      if (m.groups == 1) {
        if (m.e4m3_has_nan) return run(m, E4M3Decoder<true, true>{}, call);
        return run(m, E4M3Decoder<false, true>{}, call);
      }
      if (m.e4m3_has_nan) return run(m, E4M3Decoder<true, false>{}, call);
      return run(m, E4M3Decoder<false, false>{}, call);
    case FpCodeKind::E2M1: return run(m, E2M1Decoder{_mm256_loadu_ps(kE2M1Magnitudes)}, call);
  }
}

}  // namespace mpq

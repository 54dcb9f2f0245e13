// AVX-512 (F + BW) path of the floating-point packed formats. The layout it reads is described at
// the top of kernel/packed_fp.cpp: blocks of 16 rows stored column by column, so one column of a
// block is one zmm of 16 rows.
//
// Shape of the computation: for one block and up to 8 tokens, each column k is decoded once into
// a zmm (16 rows), scaled, and multiplied by the broadcast activation x[t][k] of every token of
// the tile (vfmadd231ps with an embedded broadcast). The accumulators hold 16 finished row
// outputs per token, so there is no horizontal sum. Decoded weights are bit-identical to the
// scalar decoder; results differ from the scalar product only by the order of the fp32 sums and,
// with one scale per row (fp8_e4m3_channel), by that scale multiplying the sum instead of each
// weight (one rounding more: the tests' bound counts it).
#include <immintrin.h>

#include <algorithm>

#include "kernel/packed_fp_kernels.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused source of their unmasked
// forms, which -Wmaybe-uninitialized reports once they are inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)  // a GCC bug; Clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Every function of this file that touches a zmm. Inlined into the kernels below.
#define MPQ_AVX512_INLINE __attribute__((target("avx512f,avx512bw,fma,f16c"), always_inline)) inline
#define MPQ_AVX512 __attribute__((target("avx512f,avx512bw,fma,f16c")))

namespace mpq {
namespace {

// ---------------------------------------------------------------------------------------------
// Decoders: one column pair (k, k+1) or one column k of a block -> 16 fp32 weights per column.
// `group_scale` turns the group's 16 row scales into the multiplier the decoder needs.

// bf16: the fp32 with the same top 16 bits, so a zero-extend and a 16-bit shift.
struct Bf16Decoder {
  static constexpr bool kScaleAfterSum = false;
  MPQ_AVX512_INLINE __m512 group_scale(const float*) const { return _mm512_setzero_ps(); }
  MPQ_AVX512_INLINE __m512 column(const uint8_t* block, int64_t k, __m512) const {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + k * 32));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  MPQ_AVX512_INLINE void pair(const uint8_t* block, int64_t k, __m512 s, __m512& w0, __m512& w1) const {
    w0 = column(block, k, s);
    w1 = column(block, k + 1, s);
  }
};

// f16: vcvtph2ps (exact, subnormals, Inf and NaN included).
struct F16Decoder {
  static constexpr bool kScaleAfterSum = false;
  MPQ_AVX512_INLINE __m512 group_scale(const float*) const { return _mm512_setzero_ps(); }
  MPQ_AVX512_INLINE __m512 column(const uint8_t* block, int64_t k, __m512) const {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + k * 32)));
  }
  MPQ_AVX512_INLINE void pair(const uint8_t* block, int64_t k, __m512 s, __m512& w0, __m512& w1) const {
    w0 = column(block, k, s);
    w1 = column(block, k + 1, s);
  }
};

// E4M3 by bit manipulation into an f16 that is exactly 2^-8 times the E4M3 value:
//   code S.EEEE.MMM (in a 16-bit lane)  -> f16 S.0EEEE.MMM0000000
// E4M3 has bias 7 and f16 bias 15, so a normal 2^(E-7)(1+M/8) becomes 2^(E-15)(1+M/8), and a
// subnormal M/8 * 2^-6 becomes the f16 subnormal M/8 * 2^-14: both 2^-8 times the value, exact.
// vcvtph2ps widens it, and the 2^8 goes into the group scale (scale * 256 is exact for any scale
// below 2^120), so decoded * scale rounds once, like the scalar decoder. The NaN codes
// S.1111.111 would become the finite f16 1.875; when the matrix holds any (kHasNan), their
// lanes get the f16 exponent 11111, a NaN.
// kRowScale (one scale per row, fp8_e4m3_channel): the scale is the same for every column, so
// the decoder leaves the weights unscaled and block_product multiplies the row sums once
// (kScaleAfterSum): two multiplies fewer per 32 weights, one rounding more per result.
template <bool kHasNan, bool kRowScale>
struct E4M3Decoder {
  static constexpr bool kScaleAfterSum = kRowScale;
  MPQ_AVX512_INLINE __m512 scaled(__m512 w, __m512 scale) const {
    return kRowScale ? w : _mm512_mul_ps(w, scale);
  }
  MPQ_AVX512_INLINE __m512 group_scale(const float* s) const {
    return _mm512_mul_ps(_mm512_loadu_ps(s), _mm512_set1_ps(256.f));
  }
  // 32 codes (zero-extended to 16 bits) -> 32 f16 patterns.
  MPQ_AVX512_INLINE __m512i to_f16(__m512i c) const {
    // (c << 8) >> 1 (arithmetic) puts S at bit 15 and 14, E at 13..10, M at 9..7; clear bit 14.
    __m512i h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(c, 8), 1),
                                 _mm512_set1_epi16(static_cast<short>(0xBF80)));
    if (kHasNan) {
      const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(c, _mm512_set1_epi16(0x7F)),
                                                    _mm512_set1_epi16(0x7F));
      h = _mm512_mask_mov_epi16(h, nan, _mm512_or_si512(h, _mm512_set1_epi16(0x7C00)));
    }
    return h;
  }
  MPQ_AVX512_INLINE void pair(const uint8_t* block, int64_t k, __m512 scale, __m512& w0, __m512& w1) const {
    // Columns k and k+1 are 32 consecutive bytes: lanes 0..15 column k, 16..31 column k+1.
    const __m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + k * 16)));
    const __m512i h = to_f16(c);
    w0 = scaled(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), scale);
    w1 = scaled(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), scale);
  }
  MPQ_AVX512_INLINE __m512 column(const uint8_t* block, int64_t k, __m512 scale) const {
    // Only 16 codes may be read here (the last column of the matrix): widen 16 bytes.
    const __m512i c = _mm512_cvtepu8_epi16(
        _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k * 16))));
    return scaled(_mm512_cvtph_ps(_mm512_castsi512_si256(to_f16(c))), scale);
  }
};

// E2M1 through a 16-entry table: vpermps reads the low 4 bits of each dword lane. A byte of the
// packed block holds columns 2p (low nibble) and 2p+1 (high nibble) of one row, so the byte
// widened to a dword indexes column 2p, and the same dword shifted right by 4 column 2p+1.
struct E2M1Decoder {
  static constexpr bool kScaleAfterSum = false;
  __m512 table;  // e2m1 value of codes 0..15
  MPQ_AVX512_INLINE __m512 group_scale(const float* s) const { return _mm512_loadu_ps(s); }
  MPQ_AVX512_INLINE __m512i bytes(const uint8_t* block, int64_t k) const {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (k >> 1) * 16)));
  }
  MPQ_AVX512_INLINE void pair(const uint8_t* block, int64_t k, __m512 scale, __m512& w0, __m512& w1) const {
    const __m512i b = bytes(block, k);
    w0 = _mm512_mul_ps(_mm512_permutexvar_ps(b, table), scale);
    w1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table), scale);
  }
  MPQ_AVX512_INLINE __m512 column(const uint8_t* block, int64_t k, __m512 scale) const {
    // k is even here (a lone last column): its code is the low nibble.
    return _mm512_mul_ps(_mm512_permutexvar_ps(bytes(block, k), table), scale);
  }
};

// ---------------------------------------------------------------------------------------------
// The kernel

// result[t] = the 16 rows of `block` times token t's activations xt[t], for t < T.
// Accumulators: kChains per token, each summing every kChains-th column, so that T * kChains >= 8
// independent FMA chains cover the 4-cycle FMA latency at two FMAs per cycle (with 4 chains a
// decode GEMV ran at half speed, measured).
template <class Decoder, int T>
MPQ_AVX512_INLINE void block_product(const PackedFpView& m, const Decoder& dec, int64_t block,
                                     const float* const* xt, __m512* result) {
  constexpr int kChains = T == 1 ? 8 : T == 2 ? 4 : 2;  // even: a step covers whole column pairs
  __m512 acc[kChains][T];
#pragma GCC unroll 8
  for (int c = 0; c < kChains; ++c) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[c][t] = _mm512_setzero_ps();
  }
  const uint8_t* codes = m.codes + block * m.block_code_bytes;
  const float* scales = m.scales == nullptr ? nullptr : m.scales + block * m.groups * kFpBlockRows;
  const int64_t group_cols = m.groups == 0 ? m.cols : m.group_cols;
  for (int64_t k0 = 0, g = 0; k0 < m.cols; k0 += group_cols, ++g) {
    const int64_t k1 = std::min(k0 + group_cols, m.cols);
    const __m512 scale = dec.group_scale(scales == nullptr ? nullptr : scales + g * kFpBlockRows);
    int64_t k = k0;  // even: groups of E2M1 formats have even sizes
    for (; k + kChains <= k1; k += kChains) {
#pragma GCC unroll 4
      for (int c = 0; c < kChains; c += 2) {
        __m512 w0, w1;
        dec.pair(codes, k + c, scale, w0, w1);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          acc[c][t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xt[t][k + c]), acc[c][t]);
          acc[c + 1][t] = _mm512_fmadd_ps(w1, _mm512_set1_ps(xt[t][k + c + 1]), acc[c + 1][t]);
        }
      }
    }
    for (; k + 2 <= k1; k += 2) {
      __m512 w0, w1;
      dec.pair(codes, k, scale, w0, w1);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        acc[0][t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xt[t][k]), acc[0][t]);
        acc[1][t] = _mm512_fmadd_ps(w1, _mm512_set1_ps(xt[t][k + 1]), acc[1][t]);
      }
    }
    if (k < k1) {
      const __m512 w = dec.column(codes, k, scale);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) acc[0][t] = _mm512_fmadd_ps(w, _mm512_set1_ps(xt[t][k]), acc[0][t]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    __m512 sum = acc[0][t];
#pragma GCC unroll 4
    for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c][t]);
    if constexpr (Decoder::kScaleAfterSum) sum = _mm512_mul_ps(sum, dec.group_scale(scales));
    result[t] = sum;
  }
}

// Tokens [t0, t0 + T) times blocks [block_begin, block_end), stored into y.
template <class Decoder, int T>
MPQ_AVX512 void token_tile(const PackedFpView& m, const Decoder& dec, const FpMatmulCall& call,
                           int64_t block_begin, int64_t block_end, int64_t t0) {
  const float* xt[T];
  for (int t = 0; t < T; ++t) xt[t] = call.x + (t0 + t) * m.cols;
  for (int64_t b = block_begin; b < block_end; ++b) {
    __m512 result[T];
    block_product<Decoder, T>(m, dec, b, xt, result);
    const int64_t first = b * kFpBlockRows;
    const bool whole = call.row_to_output == nullptr && first >= call.row_begin &&
                       first + kFpBlockRows <= call.row_end;
    for (int t = 0; t < T; ++t) {
      if (whole) {
        _mm512_storeu_ps(call.y + (t0 + t) * call.ldy + first, result[t]);
      } else {
        alignas(64) float values[kFpBlockRows];
        _mm512_store_ps(values, result[t]);
        store_block_rows(call, b, t0 + t, values);
      }
    }
  }
}

// Row chunks whose codes (~128 KiB) stay in L2 while every token tile streams over them; a tile
// of up to 8 activation rows stays in L1 across the chunk's blocks.
constexpr int64_t kChunkCodeBytes = 128 << 10;

template <class Decoder>
MPQ_AVX512 void run(const PackedFpView& m, const Decoder& dec, const FpMatmulCall& call) {
  const int64_t block_begin = call.row_begin / kFpBlockRows;
  const int64_t block_end = (call.row_end + kFpBlockRows - 1) / kFpBlockRows;
  const int64_t chunk = std::max<int64_t>(1, kChunkCodeBytes / m.block_code_bytes);
  for (int64_t cb = block_begin; cb < block_end; cb += chunk) {
    const int64_t ce = std::min(block_end, cb + chunk);
    int64_t t0 = 0;
    for (; t0 + 8 <= call.n_tokens; t0 += 8) token_tile<Decoder, 8>(m, dec, call, cb, ce, t0);
    const int64_t left = call.n_tokens - t0;
    if (left & 4) {
      token_tile<Decoder, 4>(m, dec, call, cb, ce, t0);
      t0 += 4;
    }
    if (left & 2) {
      token_tile<Decoder, 2>(m, dec, call, cb, ce, t0);
      t0 += 2;
    }
    if (left & 1) token_tile<Decoder, 1>(m, dec, call, cb, ce, t0);
  }
}

constexpr float kE2M1Values[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                   -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

}  // namespace

MPQ_AVX512 void packed_fp_matmul_avx512(const PackedFpView& m, const FpMatmulCall& call) {
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
    case FpCodeKind::E2M1: return run(m, E2M1Decoder{_mm512_loadu_ps(kE2M1Values)}, call);
  }
}

}  // namespace mpq

// AVX-512 paths of the integer packed formats (layout: kernel/packed_int.h).
//
// Both products keep one weight row per 32-bit lane and accumulate a block of RT tiles (16 rows
// each) x NT tokens in registers, so each unit of weights is unpacked once per NT tokens and
// each activation value is broadcast once per RT tiles:
//   - decode (fewer than 4 tokens): RT = 4, NT = 1: four independent accumulators hide the
//     latency of the dot/FMA chain;
//   - prefill: RT = 2 and NT = 8 (fp32) / 4 (int8, which also keeps an int32 dot per block),
//     about 24 live vector registers of the 32.
//
// fp32 activations: register k of a unit minus the zero-point bytes gives signed bytes
// q - zero (|.| <= 255 fits: c and z' are both in [0, 2^bits)); column j of it is one shift
// pair away from an int32 lane, then w = scale * float(c - z'), bit-identical to the format's
// decode, and one FMA per token.
//
// int8 activations: per kernel group, dot = Σ c · q_a in int32 (vpdpbusd, or vpmaddubsw +
// vpmaddwd), then  acc += (w_scale · a_scale) · dot − (w_scale · z') · (a_scale · Σ q_a).
// vpdpbusd is emitted through inline asm: the same template then compiles into the VNNI and the
// non-VNNI path under one target attribute without VNNI, and the compiler can never put a VNNI
// instruction into the path meant for CPUs without it.
#include <immintrin.h>

#include <algorithm>

#include "kernel/packed_int.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source of their
// masked forms, which -Wmaybe-uninitialized reports once inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)  // a GCC bug; Clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The target of every function of this file (AVX-512 as kernel/gemv_f32.h's Isa::Avx512).
#define MPQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define MPQ_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,fma"), always_inline)) inline

namespace mpq {
namespace {

template <int Bits>
constexpr int kRegsPerUnit = Bits == 8 ? 1 : Bits == 4 ? 2 : Bits == 2 ? 4 : 8;

// Register k of a unit: 16 rows x 4 consecutive columns, one unsigned code per byte.
template <int Bits>
MPQ_AVX512_INLINE __m512i unit_register(const uint8_t* unit, int k) {
  const __m512i v = _mm512_load_si512(unit);
  if constexpr (Bits == 8) {
    return v;
  } else if constexpr (Bits == 4) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    return _mm512_and_si512(k == 0 ? v : _mm512_srli_epi16(v, 4), nibble);
  } else if constexpr (Bits == 2) {
    return _mm512_and_si512(_mm512_srli_epi16(v, 2 * k), _mm512_set1_epi8(3));
  } else {
    // Bits 0-1 from the 2-bit planes (blocks 0, 1), bit 2 from bit k of block 2. 16-bit shifts
    // move bits across the two bytes of a word, but the masks keep only bits that came from the
    // same byte.
    const __m512i low_plane = _mm512_load_si512(unit + 64 * (k / 4));
    const __m512i low = _mm512_and_si512(_mm512_srli_epi16(low_plane, 2 * (k % 4)), _mm512_set1_epi8(3));
    const __m512i high_plane = _mm512_load_si512(unit + 128);
    const __m512i high = k <= 2 ? _mm512_slli_epi16(high_plane, 2 - k) : _mm512_srli_epi16(high_plane, k - 2);
    return _mm512_or_si512(low, _mm512_and_si512(high, _mm512_set1_epi8(4)));
  }
}

// z' of 16 rows, repeated in the 4 bytes of each row's lane (z' <= 255: the product has no
// carries).
MPQ_AVX512_INLINE __m512i zero_bytes(const uint8_t* zeros) {
  const __m512i z = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(zeros)));
  return _mm512_mullo_epi32(z, _mm512_set1_epi32(0x01010101));
}

MPQ_AVX512_INLINE __m512 zero_floats(const uint8_t* zeros) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(zeros))));
}

// Writes the 16 rows of `tile` for token t: a plain (or masked, at the ends of the row range)
// vector store for contiguous outputs, lane by lane through the row map otherwise.
MPQ_AVX512_INLINE void store_tile(__m512 v, int64_t tile, int64_t t, const IntOutput& out) {
  const int64_t r0 = tile * kIntTileRows;
  float* yt = out.y + t * out.ldy;
  const int64_t lo = std::max(r0, out.row_begin) - r0;
  const int64_t hi = std::min(r0 + kIntTileRows, out.row_end) - r0;
  if (out.row_to_output == nullptr) {
    if (lo == 0 && hi == kIntTileRows) {
      _mm512_storeu_ps(yt + r0, v);
    } else {
      const auto mask = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
      _mm512_mask_storeu_ps(yt + r0, mask, v);
    }
    return;
  }
  alignas(64) float lanes[kIntTileRows];
  _mm512_store_ps(lanes, v);
  for (int64_t l = lo; l < hi; ++l) yt[out.row_to_output[r0 + l]] = lanes[l];
}

// ---------------------------------------------------------------------------------------------
// fp32 activations

// One unit's columns [c0, c0 + valid) into acc, with the weights already scaled: w = ws * (c-z').
template <int Bits, int RT, int NT>
MPQ_AVX512_INLINE void f32_unit(const uint8_t* const (&unit)[RT], const __m512i (&zb)[RT],
                                const __m512 (&ws)[RT], const float* const (&xt)[NT], int64_t c0,
                                int valid, __m512 (&acc)[RT][NT]) {
#pragma GCC unroll 8
  for (int k = 0; k < kRegsPerUnit<Bits>; ++k) {
    __m512i w[RT];
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) w[rt] = _mm512_sub_epi8(unit_register<Bits>(unit[rt], k), zb[rt]);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int cc = 4 * k + j;
      if (cc >= valid) return;
      __m512 wf[RT];
#pragma GCC unroll 4
      for (int rt = 0; rt < RT; ++rt) {
        // byte j of each lane, sign-extended: shift it to the top, arithmetic shift down
        const __m512i top = j == 3 ? w[rt] : _mm512_slli_epi32(w[rt], 24 - 8 * j);
        wf[rt] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srai_epi32(top, 24)), ws[rt]);
      }
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m512 xb = _mm512_set1_ps(xt[t][c0 + cc]);
#pragma GCC unroll 4
        for (int rt = 0; rt < RT; ++rt) acc[rt][t] = _mm512_fmadd_ps(wf[rt], xb, acc[rt][t]);
      }
    }
  }
}

// Tiles [tile0, tile0 + RT) x tokens [t0, t0 + NT): the full products, stored.
template <int Bits, int RT, int NT>
MPQ_AVX512 void f32_block(const PackedIntLayout& m, const float* x, int64_t tile0, int64_t t0,
                          const IntOutput& out) {
  constexpr int kUnitCols = 4 * kRegsPerUnit<Bits>;
  const int64_t group_cols = m.group_size ? m.group_size : kIntChannelChunkCols;
  const int64_t groups = (m.cols + group_cols - 1) / group_cols;
  const int64_t units_per_group = group_cols / kUnitCols;
  const float* xt[NT];
  for (int t = 0; t < NT; ++t) xt[t] = x + (t0 + t) * m.cols;
  __m512 acc[RT][NT];
#pragma GCC unroll 4
  for (int rt = 0; rt < RT; ++rt) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[rt][t] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t pg = m.group_size ? g : 0;
    __m512i zb[RT];
    __m512 ws[RT];
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) {
      zb[rt] = zero_bytes(m.tile_zeros(tile0 + rt, pg));
      ws[rt] = _mm512_loadu_ps(m.tile_scales(tile0 + rt, pg));
    }
    const int64_t u_begin = g * units_per_group;
    const int64_t u_end = std::min(u_begin + units_per_group, m.units_per_row);
    for (int64_t u = u_begin; u < u_end; ++u) {
      const uint8_t* unit[RT];
#pragma GCC unroll 4
      for (int rt = 0; rt < RT; ++rt) unit[rt] = m.tile_codes(tile0 + rt) + u * m.unit_bytes;
      const int64_t c0 = u * kUnitCols;
      if (c0 + kUnitCols <= m.cols) {
        f32_unit<Bits, RT, NT>(unit, zb, ws, xt, c0, kUnitCols, acc);
      } else {
        f32_unit<Bits, RT, NT>(unit, zb, ws, xt, c0, static_cast<int>(m.cols - c0), acc);
      }
    }
  }
  for (int rt = 0; rt < RT; ++rt) {
    for (int t = 0; t < NT; ++t) store_tile(acc[rt][t], tile0 + rt, t0 + t, out);
  }
}

template <int Bits>
void f32_rows(const PackedIntLayout& m, const float* x, int64_t n, const IntOutput& out) {
  const int64_t tile_begin = out.row_begin / kIntTileRows;
  const int64_t tile_end = (out.row_end + kIntTileRows - 1) / kIntTileRows;
  if (n < 4) {
    for (int64_t t = 0; t < n; ++t) {
      int64_t tile = tile_begin;
      for (; tile + 4 <= tile_end; tile += 4) f32_block<Bits, 4, 1>(m, x, tile, t, out);
      for (; tile < tile_end; ++tile) f32_block<Bits, 1, 1>(m, x, tile, t, out);
    }
    return;
  }
  for (int64_t tile = tile_begin; tile < tile_end; tile += 2) {
    const bool pair = tile + 2 <= tile_end;
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
      if (pair) {
        f32_block<Bits, 2, 8>(m, x, tile, t, out);
      } else {
        f32_block<Bits, 1, 8>(m, x, tile, t, out);
      }
    }
    for (; t < n; ++t) {
      f32_block<Bits, 1, 1>(m, x, tile, t, out);
      if (pair) f32_block<Bits, 1, 1>(m, x, tile + 1, t, out);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// int8 activations

// acc += Σ over each lane's 4 bytes of u8 · s8, in int32 (vpdpbusd; see the file comment).
MPQ_AVX512_INLINE __m512i dot_vnni(__m512i acc, __m512i u8, __m512i s8) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// The same without VNNI: vpmaddubsw's int16 pair sums cannot saturate for codes <= 15
// (2 * 15 * 128 < 32767); int8 weights go through dot_int8_weights_bw instead.
MPQ_AVX512_INLINE __m512i dot_bw(__m512i acc, __m512i u8, __m512i s8) {
  const __m512i pairs = _mm512_maddubs_epi16(u8, s8);
  return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
}

template <int Bits, bool Vnni, int RT, int NT>
MPQ_AVX512 void int8_block(const PackedIntLayout& m, const Int8Prepared& x, int64_t tile0,
                           int64_t t0, const IntOutput& out) {
  constexpr int kRegs = kRegsPerUnit<Bits>;
  constexpr int kUnitCols = 4 * kRegs;
  // Without VNNI, int8 weights dot as Σ |q| · (sign(q) · a) = Σ (c - 128) · a: the zero-point
  // term is already in the dot.
  constexpr bool kZeroInDot = Bits == 8 && !Vnni;
  const int64_t units_per_group = x.group_cols / kUnitCols;
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = x.q + (t0 + t) * x.stride;
  __m512 acc[RT][NT];
#pragma GCC unroll 4
  for (int rt = 0; rt < RT; ++rt) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[rt][t] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < x.groups; ++g) {
    if constexpr (NT == 1) {
#pragma GCC unroll 4
      for (int rt = 0; rt < RT; ++rt) prefetch_group_params(m, tile0 + rt, g + 1);
    }
    __m512i dot[RT][NT];
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) {
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) dot[rt][t] = _mm512_setzero_si512();
    }
    const int64_t u_begin = g * units_per_group;
    const int64_t u_end = std::min(u_begin + units_per_group, m.units_per_row);
    for (int64_t u = u_begin; u < u_end; ++u) {
      const int64_t c0 = u * kUnitCols;
      if constexpr (NT == 1) {
#pragma GCC unroll 4
        for (int rt = 0; rt < RT; ++rt) prefetch_unit_ahead<Bits>(m, tile0 + rt, u);
      }
#pragma GCC unroll 8
      for (int k = 0; k < kRegs; ++k) {
        __m512i w[RT];
        __mmask64 negative[RT];
#pragma GCC unroll 4
        for (int rt = 0; rt < RT; ++rt) {
          w[rt] = unit_register<Bits>(m.tile_codes(tile0 + rt) + u * m.unit_bytes, k);
          if constexpr (kZeroInDot) {
            const __m512i q = _mm512_xor_si512(w[rt], _mm512_set1_epi8(static_cast<char>(0x80)));
            negative[rt] = _mm512_movepi8_mask(q);
            w[rt] = _mm512_abs_epi8(q);  // |q| <= 128 as u8; times |a| <= 127 no saturation
          }
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
          int32_t four;
          __builtin_memcpy(&four, xq[t] + c0 + 4 * k, 4);
          const __m512i a = _mm512_set1_epi32(four);
#pragma GCC unroll 4
          for (int rt = 0; rt < RT; ++rt) {
            if constexpr (Vnni) {
              dot[rt][t] = dot_vnni(dot[rt][t], w[rt], a);
            } else if constexpr (kZeroInDot) {
              const __m512i signed_a = _mm512_mask_sub_epi8(a, negative[rt], _mm512_setzero_si512(), a);
              dot[rt][t] = dot_bw(dot[rt][t], w[rt], signed_a);
            } else {
              dot[rt][t] = dot_bw(dot[rt][t], w[rt], a);
            }
          }
        }
      }
    }
    const int64_t pg = m.group_size ? g : 0;
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) {
      const __m512 ws = _mm512_loadu_ps(m.tile_scales(tile0 + rt, pg));
      const __m512 wz = _mm512_mul_ps(ws, zero_floats(m.tile_zeros(tile0 + rt, pg)));
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const int64_t i = (t0 + t) * x.groups + g;
        const __m512 wsa = _mm512_mul_ps(ws, _mm512_set1_ps(x.scale[i]));
        acc[rt][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[rt][t]), wsa, acc[rt][t]);
        if constexpr (!kZeroInDot) acc[rt][t] = _mm512_fnmadd_ps(wz, _mm512_set1_ps(x.scale_sum[i]), acc[rt][t]);
      }
    }
  }
  for (int rt = 0; rt < RT; ++rt) {
    for (int t = 0; t < NT; ++t) store_tile(acc[rt][t], tile0 + rt, t0 + t, out);
  }
}

template <int Bits, bool Vnni>
void int8_rows(const PackedIntLayout& m, const Int8Prepared& x, const IntOutput& out) {
  const int64_t tile_begin = out.row_begin / kIntTileRows;
  const int64_t tile_end = (out.row_end + kIntTileRows - 1) / kIntTileRows;
  const int64_t n = x.n_tokens;
  if (n < 4) {
    for (int64_t t = 0; t < n; ++t) {
      int64_t tile = tile_begin;
      for (; tile + 4 <= tile_end; tile += 4) int8_block<Bits, Vnni, 4, 1>(m, x, tile, t, out);
      for (; tile < tile_end; ++tile) int8_block<Bits, Vnni, 1, 1>(m, x, tile, t, out);
    }
    return;
  }
  for (int64_t tile = tile_begin; tile < tile_end; tile += 2) {
    const bool pair = tile + 2 <= tile_end;
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
      if (pair) {
        int8_block<Bits, Vnni, 2, 4>(m, x, tile, t, out);
      } else {
        int8_block<Bits, Vnni, 1, 4>(m, x, tile, t, out);
      }
    }
    for (; t < n; ++t) {
      int8_block<Bits, Vnni, 1, 1>(m, x, tile, t, out);
      if (pair) int8_block<Bits, Vnni, 1, 1>(m, x, tile + 1, t, out);
    }
  }
}

template <bool Vnni>
void int8_dispatch(const PackedIntLayout& m, const Int8Prepared& x, const IntOutput& out) {
  switch (m.bits) {
    case 8: return int8_rows<8, Vnni>(m, x, out);
    case 4: return int8_rows<4, Vnni>(m, x, out);
    case 3: return int8_rows<3, Vnni>(m, x, out);
    default: return int8_rows<2, Vnni>(m, x, out);
  }
}

}  // namespace

void int_matmul_f32_avx512(const PackedIntLayout& m, const float* x, int64_t n_tokens,
                           const IntOutput& out) {
  switch (m.bits) {
    case 8: return f32_rows<8>(m, x, n_tokens, out);
    case 4: return f32_rows<4>(m, x, n_tokens, out);
    case 3: return f32_rows<3>(m, x, n_tokens, out);
    default: return f32_rows<2>(m, x, n_tokens, out);
  }
}

void int_matmul_int8_avx512(const PackedIntLayout& m, const Int8Prepared& x, bool vnni,
                            const IntOutput& out) {
  if (vnni) return int8_dispatch<true>(m, x, out);
  int8_dispatch<false>(m, x, out);
}

// ---------------------------------------------------------------------------------------------
// Activation quantizer: the scalar path's arithmetic (packed_int.cpp), 16 values at a time.

MPQ_AVX512 void quantize_token_int8_avx512(const float* x, int64_t cols, int64_t group_size,
                                           int8_t* q, float* scales, int32_t* sums) {
  const int64_t groups = (cols + group_size - 1) / group_size;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * group_size, end = std::min(cols, begin + group_size);
    __m512 absmax = _mm512_setzero_ps();
    for (int64_t i = begin; i < end; i += 16) {
      const auto mask = static_cast<__mmask16>(end - i >= 16 ? 0xFFFF : (1u << (end - i)) - 1);
      absmax = _mm512_max_ps(absmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, x + i)));
    }
    float scale = 0.f, inverse = 0.f;
    int8_group_scale(_mm512_reduce_max_ps(absmax), scale, inverse);
    const __m512 inv = _mm512_set1_ps(inverse);
    __m512i sum = _mm512_setzero_si512();
    for (int64_t i = begin; i < begin + group_size; i += 16) {
      const int64_t left = std::min<int64_t>(end - i, 16);
      const auto load_mask = static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
      const auto store_mask = static_cast<__mmask16>(begin + group_size - i >= 16 ? 0xFFFF : (1u << (begin + group_size - i)) - 1);
      const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(load_mask, x + i), inv);
      __m512i r = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
      sum = _mm512_add_epi32(sum, r);
      _mm512_mask_cvtepi32_storeu_epi8(q + i, store_mask, r);
    }
    scales[g] = scale;
    sums[g] = _mm512_reduce_add_epi32(sum);
  }
}

}  // namespace mpq

// AVX2 + FMA paths of the integer packed formats (layout: kernel/packed_int.h).
//
// The same scheme as the AVX-512 paths (kernel/packed_int_avx512.cpp), on 256-bit registers:
// a 16-row tile is worked on as two half-tiles of 8 rows, half h reading bytes 32h..32h+31 of
// every 64-byte block and scales/zero points 8h..8h+7. Blocks of RT half-tiles x NT tokens:
// decode RT = 4, NT = 1; prefill RT = 2 with NT = 4 (fp32) or 2 (int8, which also keeps the
// int32 dots), within the 16 vector registers.
//
// int8 activations: there is no 256-bit vpdpbusd without AVX-VNNI, so the dot product is
// vpmaddubsw (u8 code x s8 activation -> int16 pair sums, no saturation for codes <= 15) then
// vpmaddwd by 1; int8 weights use |q| x sign(q)·a (|q| <= 128, |a| <= 127: no saturation).
#include <immintrin.h>

#include <algorithm>

#include "kernel/packed_int.h"

// The target of every function of this file (kernel/gemv_f32.h's Isa::Avx2).
#define MPQ_AVX2 __attribute__((target("avx2,fma")))
#define MPQ_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

namespace mpq {
namespace {

constexpr int kHalfRows = kIntTileRows / 2;

template <int Bits>
constexpr int kRegsPerUnit = Bits == 8 ? 1 : Bits == 4 ? 2 : Bits == 2 ? 4 : 8;

// Codes of half-tile `half` (0 = rows 0-7, 1 = rows 8-15) of a tile's unit, scales and zeros.
inline const uint8_t* half_unit(const PackedIntLayout& m, int64_t half_tile, int64_t unit) {
  return m.tile_codes(half_tile / 2) + unit * m.unit_bytes + 32 * (half_tile % 2);
}
inline const float* half_scales(const PackedIntLayout& m, int64_t half_tile, int64_t group) {
  return m.tile_scales(half_tile / 2, group) + kHalfRows * (half_tile % 2);
}
inline const uint8_t* half_zeros(const PackedIntLayout& m, int64_t half_tile, int64_t group) {
  return m.tile_zeros(half_tile / 2, group) + kHalfRows * (half_tile % 2);
}

// Register k of a half unit: 8 rows x 4 consecutive columns, one unsigned code per byte.
template <int Bits>
MPQ_AVX2_INLINE __m256i unit_register(const uint8_t* unit, int k) {
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(unit));
  if constexpr (Bits == 8) {
    return v;
  } else if constexpr (Bits == 4) {
    return _mm256_and_si256(k == 0 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
  } else if constexpr (Bits == 2) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 2 * k), _mm256_set1_epi8(3));
  } else {
    const __m256i low_plane = _mm256_load_si256(reinterpret_cast<const __m256i*>(unit + 64 * (k / 4)));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(low_plane, 2 * (k % 4)), _mm256_set1_epi8(3));
    const __m256i high_plane = _mm256_load_si256(reinterpret_cast<const __m256i*>(unit + 128));
    const __m256i high = k <= 2 ? _mm256_slli_epi16(high_plane, 2 - k) : _mm256_srli_epi16(high_plane, k - 2);
    return _mm256_or_si256(low, _mm256_and_si256(high, _mm256_set1_epi8(4)));
  }
}

MPQ_AVX2_INLINE __m256i zero_ints(const uint8_t* zeros) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zeros)));
}

// z' of 8 rows repeated in the 4 bytes of each lane.
MPQ_AVX2_INLINE __m256i zero_bytes(const uint8_t* zeros) {
  return _mm256_mullo_epi32(zero_ints(zeros), _mm256_set1_epi32(0x01010101));
}

MPQ_AVX2_INLINE void store_half(__m256 v, int64_t half_tile, int64_t t, const IntOutput& out) {
  const int64_t r0 = half_tile * kHalfRows;
  float* yt = out.y + t * out.ldy;
  if (out.row_to_output == nullptr && r0 >= out.row_begin && r0 + kHalfRows <= out.row_end) {
    _mm256_storeu_ps(yt + r0, v);
    return;
  }
  alignas(32) float lanes[kHalfRows];
  _mm256_store_ps(lanes, v);
  const int64_t lo = std::max(r0, out.row_begin), hi = std::min(r0 + kHalfRows, out.row_end);
  for (int64_t r = lo; r < hi; ++r) yt[out.row_to_output ? out.row_to_output[r] : r] = lanes[r - r0];
}

// The decode prefetches of packed_int.h for half tiles h0 .. h0 + RT - 1: both halves of a tile
// read the same 64-byte blocks, so each tile is asked for once.
template <int Bits, int RT>
MPQ_AVX2_INLINE void prefetch_halves_ahead(const PackedIntLayout& m, int64_t half0, int64_t unit) {
#pragma GCC unroll 4
  for (int rt = 0; rt < RT; ++rt) {
    if (rt == 0 || (half0 + rt) % 2 == 0) prefetch_unit_ahead<Bits>(m, (half0 + rt) / 2, unit);
  }
}

template <int RT>
MPQ_AVX2_INLINE void prefetch_halves_params(const PackedIntLayout& m, int64_t half0, int64_t group) {
#pragma GCC unroll 4
  for (int rt = 0; rt < RT; ++rt) {
    if (rt == 0 || (half0 + rt) % 2 == 0) prefetch_group_params(m, (half0 + rt) / 2, group);
  }
}

// ---------------------------------------------------------------------------------------------
// fp32 activations

template <int Bits, int RT, int NT>
MPQ_AVX2_INLINE void f32_unit(const uint8_t* const (&unit)[RT], const __m256i (&zb)[RT],
                              const __m256 (&ws)[RT], const float* const (&xt)[NT], int64_t c0,
                              int valid, __m256 (&acc)[RT][NT]) {
#pragma GCC unroll 8
  for (int k = 0; k < kRegsPerUnit<Bits>; ++k) {
    __m256i w[RT];
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) w[rt] = _mm256_sub_epi8(unit_register<Bits>(unit[rt], k), zb[rt]);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int cc = 4 * k + j;
      if (cc >= valid) return;
      __m256 wf[RT];
#pragma GCC unroll 4
      for (int rt = 0; rt < RT; ++rt) {
        const __m256i top = j == 3 ? w[rt] : _mm256_slli_epi32(w[rt], 24 - 8 * j);
        wf[rt] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srai_epi32(top, 24)), ws[rt]);
      }
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        const __m256 xb = _mm256_set1_ps(xt[t][c0 + cc]);
#pragma GCC unroll 4
        for (int rt = 0; rt < RT; ++rt) acc[rt][t] = _mm256_fmadd_ps(wf[rt], xb, acc[rt][t]);
      }
    }
  }
}

template <int Bits, int RT, int NT>
MPQ_AVX2 void f32_block(const PackedIntLayout& m, const float* x, int64_t half0, int64_t t0,
                        const IntOutput& out) {
  constexpr int kUnitCols = 4 * kRegsPerUnit<Bits>;
  const int64_t group_cols = m.group_size ? m.group_size : kIntChannelChunkCols;
  const int64_t groups = (m.cols + group_cols - 1) / group_cols;
  const int64_t units_per_group = group_cols / kUnitCols;
  const float* xt[NT];
  for (int t = 0; t < NT; ++t) xt[t] = x + (t0 + t) * m.cols;
  __m256 acc[RT][NT];
#pragma GCC unroll 4
  for (int rt = 0; rt < RT; ++rt) {
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[rt][t] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t pg = m.group_size ? g : 0;
    __m256i zb[RT];
    __m256 ws[RT];
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) {
      zb[rt] = zero_bytes(half_zeros(m, half0 + rt, pg));
      ws[rt] = _mm256_loadu_ps(half_scales(m, half0 + rt, pg));
    }
    const int64_t u_begin = g * units_per_group;
    const int64_t u_end = std::min(u_begin + units_per_group, m.units_per_row);
    for (int64_t u = u_begin; u < u_end; ++u) {
      const uint8_t* unit[RT];
#pragma GCC unroll 4
      for (int rt = 0; rt < RT; ++rt) unit[rt] = half_unit(m, half0 + rt, u);
      const int64_t c0 = u * kUnitCols;
      if (c0 + kUnitCols <= m.cols) {
        f32_unit<Bits, RT, NT>(unit, zb, ws, xt, c0, kUnitCols, acc);
      } else {
        f32_unit<Bits, RT, NT>(unit, zb, ws, xt, c0, static_cast<int>(m.cols - c0), acc);
      }
    }
  }
  for (int rt = 0; rt < RT; ++rt) {
    for (int t = 0; t < NT; ++t) store_half(acc[rt][t], half0 + rt, t0 + t, out);
  }
}

// Half-tiles covering the row range (the packing pads rows to whole tiles, so a half past the
// last row still has readable zero codes).
inline int64_t half_begin(const IntOutput& out) { return out.row_begin / kHalfRows; }
inline int64_t half_end(const IntOutput& out) { return (out.row_end + kHalfRows - 1) / kHalfRows; }

template <int Bits>
void f32_rows(const PackedIntLayout& m, const float* x, int64_t n, const IntOutput& out) {
  const int64_t hb = half_begin(out), he = half_end(out);
  if (n < 4) {
    for (int64_t t = 0; t < n; ++t) {
      int64_t h = hb;
      for (; h + 4 <= he; h += 4) f32_block<Bits, 4, 1>(m, x, h, t, out);
      for (; h < he; ++h) f32_block<Bits, 1, 1>(m, x, h, t, out);
    }
    return;
  }
  for (int64_t h = hb; h < he; h += 2) {
    const bool pair = h + 2 <= he;
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
      if (pair) {
        f32_block<Bits, 2, 4>(m, x, h, t, out);
      } else {
        f32_block<Bits, 1, 4>(m, x, h, t, out);
      }
    }
    for (; t < n; ++t) {
      f32_block<Bits, 1, 1>(m, x, h, t, out);
      if (pair) f32_block<Bits, 1, 1>(m, x, h + 1, t, out);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// int8 activations

MPQ_AVX2_INLINE __m256i dot_u8s8(__m256i acc, __m256i u8, __m256i s8) {
  const __m256i pairs = _mm256_maddubs_epi16(u8, s8);
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

template <int Bits, int RT, int NT>
MPQ_AVX2 void int8_block(const PackedIntLayout& m, const Int8Prepared& x, int64_t half0,
                         int64_t t0, const IntOutput& out) {
  constexpr int kRegs = kRegsPerUnit<Bits>;
  constexpr int kUnitCols = 4 * kRegs;
  constexpr bool kZeroInDot = Bits == 8;  // Σ |q| · sign(q)·a = Σ (c - 128) · a
  const int64_t units_per_group = x.group_cols / kUnitCols;
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = x.q + (t0 + t) * x.stride;
  __m256 acc[RT][NT];
#pragma GCC unroll 4
  for (int rt = 0; rt < RT; ++rt) {
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[rt][t] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < x.groups; ++g) {
    __m256i dot[RT][NT];
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) {
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) dot[rt][t] = _mm256_setzero_si256();
    }
    if constexpr (NT == 1) prefetch_halves_params<RT>(m, half0, g + 1);
    const int64_t u_begin = g * units_per_group;
    const int64_t u_end = std::min(u_begin + units_per_group, m.units_per_row);
    for (int64_t u = u_begin; u < u_end; ++u) {
      if constexpr (NT == 1) prefetch_halves_ahead<Bits, RT>(m, half0, u);
      const int64_t c0 = u * kUnitCols;
#pragma GCC unroll 8
      for (int k = 0; k < kRegs; ++k) {
        __m256i w[RT], q[RT];
#pragma GCC unroll 4
        for (int rt = 0; rt < RT; ++rt) {
          w[rt] = unit_register<Bits>(half_unit(m, half0 + rt, u), k);
          if constexpr (kZeroInDot) {
            q[rt] = _mm256_xor_si256(w[rt], _mm256_set1_epi8(static_cast<char>(0x80)));
            w[rt] = _mm256_abs_epi8(q[rt]);
          }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; ++t) {
          int32_t four;
          __builtin_memcpy(&four, xq[t] + c0 + 4 * k, 4);
          const __m256i a = _mm256_set1_epi32(four);
#pragma GCC unroll 4
          for (int rt = 0; rt < RT; ++rt) {
            if constexpr (kZeroInDot) {
              dot[rt][t] = dot_u8s8(dot[rt][t], w[rt], _mm256_sign_epi8(a, q[rt]));
            } else {
              dot[rt][t] = dot_u8s8(dot[rt][t], w[rt], a);
            }
          }
        }
      }
    }
    const int64_t pg = m.group_size ? g : 0;
#pragma GCC unroll 4
    for (int rt = 0; rt < RT; ++rt) {
      const __m256 ws = _mm256_loadu_ps(half_scales(m, half0 + rt, pg));
      const __m256 wz = _mm256_mul_ps(ws, _mm256_cvtepi32_ps(zero_ints(half_zeros(m, half0 + rt, pg))));
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        const int64_t i = (t0 + t) * x.groups + g;
        const __m256 wsa = _mm256_mul_ps(ws, _mm256_set1_ps(x.scale[i]));
        acc[rt][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[rt][t]), wsa, acc[rt][t]);
        if constexpr (!kZeroInDot) acc[rt][t] = _mm256_fnmadd_ps(wz, _mm256_set1_ps(x.scale_sum[i]), acc[rt][t]);
      }
    }
  }
  for (int rt = 0; rt < RT; ++rt) {
    for (int t = 0; t < NT; ++t) store_half(acc[rt][t], half0 + rt, t0 + t, out);
  }
}

template <int Bits>
void int8_rows(const PackedIntLayout& m, const Int8Prepared& x, const IntOutput& out) {
  const int64_t hb = half_begin(out), he = half_end(out);
  const int64_t n = x.n_tokens;
  if (n < 2) {
    for (int64_t t = 0; t < n; ++t) {
      int64_t h = hb;
      for (; h + 4 <= he; h += 4) int8_block<Bits, 4, 1>(m, x, h, t, out);
      for (; h < he; ++h) int8_block<Bits, 1, 1>(m, x, h, t, out);
    }
    return;
  }
  for (int64_t h = hb; h < he; h += 2) {
    const bool pair = h + 2 <= he;
    int64_t t = 0;
    for (; t + 2 <= n; t += 2) {
      if (pair) {
        int8_block<Bits, 2, 2>(m, x, h, t, out);
      } else {
        int8_block<Bits, 1, 2>(m, x, h, t, out);
      }
    }
    for (; t < n; ++t) {
      int8_block<Bits, 1, 1>(m, x, h, t, out);
      if (pair) int8_block<Bits, 1, 1>(m, x, h + 1, t, out);
    }
  }
}

}  // namespace

void int_matmul_f32_avx2(const PackedIntLayout& m, const float* x, int64_t n_tokens,
                         const IntOutput& out) {
  switch (m.bits) {
    case 8: return f32_rows<8>(m, x, n_tokens, out);
    case 4: return f32_rows<4>(m, x, n_tokens, out);
    case 3: return f32_rows<3>(m, x, n_tokens, out);
    default: return f32_rows<2>(m, x, n_tokens, out);
  }
}

void int_matmul_int8_avx2(const PackedIntLayout& m, const Int8Prepared& x, const IntOutput& out) {
  switch (m.bits) {
    case 8: return int8_rows<8>(m, x, out);
    case 4: return int8_rows<4>(m, x, out);
    case 3: return int8_rows<3>(m, x, out);
    default: return int8_rows<2>(m, x, out);
  }
}

// ---------------------------------------------------------------------------------------------
// Activation quantizer: the scalar path's arithmetic (packed_int.cpp), 8 values at a time; the
// last partial vector of a group goes through a zero-padded copy.

MPQ_AVX2 void quantize_token_int8_avx2(const float* x, int64_t cols, int64_t group_size,
                                       int8_t* q, float* scales, int32_t* sums) {
  const int64_t groups = (cols + group_size - 1) / group_size;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * group_size, end = std::min(cols, begin + group_size);
    const int64_t full_end = begin + (end - begin) / 8 * 8;
    alignas(32) float tail[8] = {};
    std::copy(x + full_end, x + end, tail);
    __m256 absmax = _mm256_and_ps(_mm256_load_ps(tail), abs_mask);
    for (int64_t i = begin; i < full_end; i += 8) {
      absmax = _mm256_max_ps(absmax, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, absmax);
    float m = 0.f;
    for (float v : lanes) m = std::max(m, v);
    float scale = 0.f, inverse = 0.f;
    int8_group_scale(m, scale, inverse);
    const __m256 inv = _mm256_set1_ps(inverse);
    __m256i sum = _mm256_setzero_si256();
    std::fill(q + begin, q + begin + group_size, int8_t{0});
    for (int64_t i = begin; i < end; i += 8) {
      const __m256 v = _mm256_mul_ps(i < full_end ? _mm256_loadu_ps(x + i) : _mm256_load_ps(tail), inv);
      __m256i r = _mm256_cvttps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      r = _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
      sum = _mm256_add_epi32(sum, r);
      alignas(32) int32_t values[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(values), r);
      const int64_t count = std::min<int64_t>(8, end - i);
      for (int64_t l = 0; l < count; ++l) q[i + l] = static_cast<int8_t>(values[l]);
    }
    alignas(32) int32_t partial[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(partial), sum);
    int32_t total = 0;
    for (int32_t v : partial) total += v;
    scales[g] = scale;
    sums[g] = total;
  }
}

}  // namespace mpq

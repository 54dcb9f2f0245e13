#include "kernel/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <omp.h>

#include "kernel/fast_exp.h"
#include "kernel/half.h"
#include "kernel/threads.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source of their
// masked forms, which -W(maybe-)uninitialized reports once inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)  // a GCC bug; Clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define MPQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define MPQ_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,fma"), always_inline)) inline

namespace mpq {
namespace {

// The body of the AVX2 path and of AVX-512 head sizes without a kernel below, inlined into each
// target function; `omp simd` lets the compiler sum in lanes. The softmax sum is kept in double,
// as ops::causal_softmax does.
__attribute__((always_inline)) inline AttentionPartial attend_body(const float* q, const float* k, const float* v,
                                                                   int64_t stride, int64_t n_keys, int head_dim,
                                                                   float scale, float* scores, float* acc) {
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* kj = k + j * stride;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int d = 0; d < head_dim; ++d) dot += q[d] * kj[d];
    scores[j] = scale * dot;
    max_score = std::max(max_score, scores[j]);
  }
  const double sum = exp_shifted_sum(scores, n_keys, max_score);
  for (int d = 0; d < head_dim; ++d) acc[d] = 0.f;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* vj = v + j * stride;
    const float p = scores[j];
#pragma omp simd
    for (int d = 0; d < head_dim; ++d) acc[d] += p * vj[d];
  }
  return {max_score, sum};
}

// ---------------------------------------------------------------------------------------------
// AVX-512, head_dim = 16 · kVecs (64 and 128: the head sizes of the Llama-family models we run)

// The horizontal sums of 16 vectors as one vector: lane i = Σ of the 16 lanes of part[i].
// A tree of 128-bit-lane shuffles and adds, 4 levels, each halving the vectors and the partial
// sums per key (16 -> 8 -> 4 -> 2 -> 1 per key): instead of a horizontal reduction per key
// (a chain of ~8 dependent shuffles and adds each), 15 pairs of shuffles and 15 adds per 16 keys.
MPQ_AVX512_INLINE __m512 sum_lanes_16(__m512 (&part)[16]) {
  // 16 -> 8: a 512-bit half of level1[i] holds 8 partials of key 2i (low) and 2i+1 (high).
  __m512 level1[8];
  for (int i = 0; i < 8; ++i) {
    const __m512 a = part[2 * i], b = part[2 * i + 1];
    level1[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  // 8 -> 4: 128-bit lane L of level2[i] holds 4 partials of key 4i + L.
  __m512 level2[4];
  for (int i = 0; i < 4; ++i) {
    const __m512 a = level1[2 * i], b = level1[2 * i + 1];
    level2[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  }
  // 4 -> 2: in 128-bit lane L of level3[i], floats 0-1 are partials of key 8i + L and floats 2-3
  // of key 8i + 4 + L.
  __m512 level3[2];
  for (int i = 0; i < 2; ++i) {
    const __m512 a = level2[2 * i], b = level2[2 * i + 1];
    level3[i] = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
  }
  // 2 -> 1: float e of 128-bit lane L is the sum of key 4e + L; lane 4L + e -> lane 4e + L.
  const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(level3[0], level3[1], 0x88),
                                    _mm512_shuffle_ps(level3[0], level3[1], 0xDD));
  const __m512i to_key_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(to_key_order, sums);
}

// The 16 lane-wise partial sums of q · k_j (head_dim = 16 · kVecs).
// 16 cache values as fp32: floats, or halves converted (vcvtph2ps, exact).
MPQ_AVX512_INLINE __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
MPQ_AVX512_INLINE __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <int kVecs, class T>
MPQ_AVX512_INLINE __m512 key_partials(const __m512 (&qv)[kVecs], const T* kj) {
  __m512 a = _mm512_mul_ps(qv[0], load16(kj));
  for (int c = 1; c < kVecs; ++c) a = _mm512_fmadd_ps(qv[c], load16(kj + 16 * c), a);
  return a;
}

// The cache lines of `count` rows of 16 · kVecs values (rows of one KV head: contiguous when the
// stride is the row length, as in KVCache).
template <int kVecs, class T>
MPQ_AVX512_INLINE void prefetch_block(const T* rows, int64_t stride, int64_t count) {
  constexpr int kRowBytes = 16 * kVecs * static_cast<int>(sizeof(T));
  for (int64_t i = 0; i < count; ++i) {
    const char* row = reinterpret_cast<const char*>(rows + i * stride);
    for (int b = 0; b < kRowBytes; b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
  }
}

// kHeads query heads (q + a · 16·kVecs for head a) against the same keys and values: the GQA
// heads of one KV head. The scores of a 16-key block are taken head after head (the block's keys,
// 4 KB, stay in L1 for the heads after the first); the weighted sums of all the heads advance
// together, one load of each value row serving every head. kHeads · kVecs <= 16 accumulators.
template <int kVecs, int kHeads, class T>
MPQ_AVX512 void attend_avx512_heads(const float* q, const T* k, const T* v, int64_t stride, int64_t n_keys,
                                    float scale, float* scores, float* acc, AttentionPartial* parts) {
  static_assert(kHeads * kVecs <= 16, "accumulators must fit the register file");
  constexpr int kDim = 16 * kVecs;
  const __m512 scale_v = _mm512_set1_ps(scale);
  for (int a = 0; a < kHeads; ++a) {
    float* head_scores = scores + a * n_keys;
    __m512 qv[kVecs];
    for (int c = 0; c < kVecs; ++c) qv[c] = _mm512_loadu_ps(q + a * kDim + 16 * c);
    // Scores, 16 keys at a time, then the rest one by one.
    __m512 max_v = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= n_keys; j += 16) {
      // In a decode step the cache comes from memory (all the weights stream between two visits
      // of a layer): while the first head scores a block, fetch the next block's keys and this
      // block's values, so that the misses overlap the arithmetic (measured: a step's attention
      // 20% faster at 129 keys).
      if (a == 0) prefetch_block<kVecs>(v + j * stride, stride, 16);
      if (a == 0) prefetch_block<kVecs>(k + (j + 16) * stride, stride, std::min<int64_t>(16, n_keys - j - 16));
      __m512 part[16];
      for (int i = 0; i < 16; ++i) part[i] = key_partials<kVecs>(qv, k + (j + i) * stride);
      const __m512 s = _mm512_mul_ps(sum_lanes_16(part), scale_v);
      _mm512_storeu_ps(head_scores + j, s);
      max_v = _mm512_max_ps(max_v, s);
    }
    float max_score = _mm512_reduce_max_ps(max_v);
    for (; j < n_keys; ++j) {
      head_scores[j] = scale * _mm512_reduce_add_ps(key_partials<kVecs>(qv, k + j * stride));
      max_score = std::max(max_score, head_scores[j]);
    }
    parts[a] = {max_score, exp_shifted_sum(head_scores, n_keys, max_score)};
  }
  // acc_a = Σ_j e_aj · v_j. A single head runs two keys at a time into two sets of accumulators
  // so that independent chains hide the FMA latency; several heads are independent chains already.
  constexpr int kChains = kHeads == 1 ? 2 : 1;
  __m512 sums[kChains][kHeads][kVecs];
  for (int ch = 0; ch < kChains; ++ch) {
    for (int a = 0; a < kHeads; ++a) {
      for (int c = 0; c < kVecs; ++c) sums[ch][a][c] = _mm512_setzero_ps();
    }
  }
  int64_t j = 0;
  for (; j + kChains <= n_keys; j += kChains) {
    for (int ch = 0; ch < kChains; ++ch) {
      const T* vj = v + (j + ch) * stride;
      __m512 row[kVecs];
      for (int c = 0; c < kVecs; ++c) row[c] = load16(vj + 16 * c);
      for (int a = 0; a < kHeads; ++a) {
        const __m512 p = _mm512_set1_ps(scores[a * n_keys + j + ch]);
        for (int c = 0; c < kVecs; ++c) sums[ch][a][c] = _mm512_fmadd_ps(p, row[c], sums[ch][a][c]);
      }
    }
  }
  for (; j < n_keys; ++j) {  // kChains = 2 and an odd count: the last key
    for (int a = 0; a < kHeads; ++a) {
      const __m512 p = _mm512_set1_ps(scores[a * n_keys + j]);
      for (int c = 0; c < kVecs; ++c) sums[0][a][c] = _mm512_fmadd_ps(p, load16(v + j * stride + 16 * c), sums[0][a][c]);
    }
  }
  for (int a = 0; a < kHeads; ++a) {
    for (int c = 0; c < kVecs; ++c) {
      __m512 total = sums[0][a][c];
      if constexpr (kChains == 2) total = _mm512_add_ps(total, sums[1][a][c]);
      _mm512_storeu_ps(acc + a * kDim + 16 * c, total);
    }
  }
}

// Heads in passes of as many as fit the registers (4 of size 64, 2 of size 128).
template <int kVecs, class T>
MPQ_AVX512 void attend_avx512_vecs(const float* q, int n_heads, const T* k, const T* v, int64_t stride,
                                   int64_t n_keys, float scale, float* scores, float* acc, AttentionPartial* parts) {
  constexpr int kDim = 16 * kVecs, kMaxHeads = 16 / kVecs;
  for (int a = 0; a < n_heads; a += kMaxHeads) {
    const int heads = std::min(kMaxHeads, n_heads - a);
    const float* qa = q + a * kDim;
    float* sa = scores + a * n_keys;
    float* acca = acc + a * kDim;
    if constexpr (kMaxHeads >= 4) {
      if (heads == 4) { attend_avx512_heads<kVecs, 4, T>(qa, k, v, stride, n_keys, scale, sa, acca, parts + a); continue; }
      if (heads == 3) { attend_avx512_heads<kVecs, 3, T>(qa, k, v, stride, n_keys, scale, sa, acca, parts + a); continue; }
    }
    if (heads == 2) {
      attend_avx512_heads<kVecs, 2, T>(qa, k, v, stride, n_keys, scale, sa, acca, parts + a);
    } else {
      attend_avx512_heads<kVecs, 1, T>(qa, k, v, stride, n_keys, scale, sa, acca, parts + a);
    }
  }
}

// Head sizes 64 and 128: the kernels above, for either cache type.
template <class T>
MPQ_AVX512 void attend_avx512_sized(const float* q, int n_heads, const T* k, const T* v, int64_t stride,
                                    int64_t n_keys, int head_dim, float scale, float* scores, float* acc,
                                    AttentionPartial* parts) {
  if (head_dim == 64) return attend_avx512_vecs<4>(q, n_heads, k, v, stride, n_keys, scale, scores, acc, parts);
  attend_avx512_vecs<8>(q, n_heads, k, v, stride, n_keys, scale, scores, acc, parts);
}

bool has_avx512_kernel(int head_dim) { return head_dim == 64 || head_dim == 128; }

MPQ_AVX512 void attend_avx512_generic(const float* q, int n_heads, const float* k, const float* v, int64_t stride,
                                      int64_t n_keys, int head_dim, float scale, float* scores, float* acc,
                                      AttentionPartial* parts) {
  for (int a = 0; a < n_heads; ++a) {
    parts[a] = attend_body(q + a * head_dim, k, v, stride, n_keys, head_dim, scale, scores + a * n_keys,
                           acc + a * head_dim);
  }
}

__attribute__((target("avx2,fma"))) void attend_avx2(const float* q, int n_heads, const float* k, const float* v,
                                                     int64_t stride, int64_t n_keys, int head_dim, float scale,
                                                     float* scores, float* acc, AttentionPartial* parts) {
  for (int a = 0; a < n_heads; ++a) {
    parts[a] = attend_body(q + a * head_dim, k, v, stride, n_keys, head_dim, scale, scores + a * n_keys,
                           acc + a * head_dim);
  }
}

// The reference: plain loops in order.
AttentionPartial attend_scalar(const float* q, const float* k, const float* v, int64_t stride, int64_t n_keys,
                               int head_dim, float scale, float* scores, float* acc) {
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    float dot = 0.f;
    for (int d = 0; d < head_dim; ++d) dot += q[d] * k[j * stride + d];
    scores[j] = scale * dot;
    max_score = std::max(max_score, scores[j]);
  }
  double sum = 0;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  for (int d = 0; d < head_dim; ++d) {
    float a = 0.f;
    for (int64_t j = 0; j < n_keys; ++j) a += scores[j] * v[j * stride + d];
    acc[d] = a;
  }
  return {max_score, sum};
}

template <class T>
void attend_partial_impl(Isa isa, const float* q, int n_heads, const T* k, const T* v, int64_t stride,
                         int64_t n_keys, int head_dim, float scale, float* scores, float* acc,
                         AttentionPartial* parts) {
  if (n_keys <= 0) {
    std::fill_n(acc, static_cast<int64_t>(n_heads) * head_dim, 0.f);
    std::fill_n(parts, n_heads, AttentionPartial{-INFINITY, 0.0});
    return;
  }
  if (isa == Isa::Avx512 && has_avx512_kernel(head_dim)) {
    return attend_avx512_sized(q, n_heads, k, v, stride, n_keys, head_dim, scale, scores, acc, parts);
  }
  if constexpr (std::is_same_v<T, uint16_t>) {
    // Paths without a half kernel: widen the keys and values to fp32 rows first (exact), then the
    // fp32 path. Per thread, reused from call to call.
    thread_local std::vector<float> keys, values;
    keys.resize(n_keys * head_dim);
    values.resize(n_keys * head_dim);
    for (int64_t j = 0; j < n_keys; ++j) {
      f16_to_f32_row(isa, k + j * stride, head_dim, &keys[j * head_dim]);
      f16_to_f32_row(isa, v + j * stride, head_dim, &values[j * head_dim]);
    }
    return attend_partial_impl<float>(isa, q, n_heads, keys.data(), values.data(), head_dim, n_keys, head_dim,
                                      scale, scores, acc, parts);
  } else {
    switch (isa) {
      case Isa::Avx512:
        return attend_avx512_generic(q, n_heads, k, v, stride, n_keys, head_dim, scale, scores, acc, parts);
      case Isa::Avx2: return attend_avx2(q, n_heads, k, v, stride, n_keys, head_dim, scale, scores, acc, parts);
      case Isa::Scalar: break;
    }
    for (int a = 0; a < n_heads; ++a) {
      parts[a] = attend_scalar(q + a * head_dim, k, v, stride, n_keys, head_dim, scale, scores + a * n_keys,
                               acc + a * head_dim);
    }
  }
}

// Stretch `part` of n_parts of a decode step's keys (decode_attention_parts) for KV heads
// [kv_begin, kv_end). `scores` is scratch of group * (n_past + n_new) floats.
template <class T>
void attend_decode_part_impl(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new,
                             int64_t n_past, const T* k_cache, const T* v_cache, int64_t head_stride, int part,
                             int n_parts, int kv_begin, int kv_end, AttentionPartial* parts, float* accs,
                             float* scores) {
  const int hd = shape.head_dim, n_heads = shape.n_heads;
  const int group = n_heads / shape.n_kv_heads;
  const int64_t q_dim = static_cast<int64_t>(n_heads) * hd;
  const float scale = shape.scale > 0 ? shape.scale : 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t i = 0; i < n_new; ++i) {
    // Query i sits at position n_past + i: it sees keys [oldest, n_past + i]; this part takes
    // the stretch [begin, end) of them.
    const int64_t visible = n_past + i + 1;
    const int64_t oldest = shape.sliding_window > 0 ? std::max<int64_t>(0, visible - shape.sliding_window) : 0;
    const int64_t begin = oldest + (visible - oldest) * part / n_parts;
    const int64_t end = oldest + (visible - oldest) * (part + 1) / n_parts;
    for (int g = kv_begin; g < kv_end; ++g) {
      const int64_t slot = (i * n_parts + part) * n_heads + g * group, row0 = g * head_stride + begin * hd;
      attend_partial_impl(isa, q + i * q_dim + g * group * hd, group, k_cache + row0, v_cache + row0, hd,
                          end - begin, hd, scale, scores, &accs[slot * hd], &parts[slot]);
    }
  }
}

template <class T>
void attend_decode_impl(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                        const T* k_cache, const T* v_cache, int64_t head_stride, float* out) {
  const int n_parts = decode_attention_parts(shape, n_new, n_past, omp_get_max_threads());
  const int group = shape.n_heads / shape.n_kv_heads;
  std::vector<AttentionPartial> parts(decode_attention_slots(shape, n_new, n_parts));
  std::vector<float> accs(parts.size() * shape.head_dim);
#pragma omp parallel num_threads(n_parts) if (n_parts > 1)
  {
    std::vector<float> scores(group * (n_past + n_new));
#pragma omp for schedule(static)
    for (int part = 0; part < n_parts; ++part) {
      attend_decode_part_impl(isa, shape, q, n_new, n_past, k_cache, v_cache, head_stride, part, n_parts, 0,
                              shape.n_kv_heads, parts.data(), accs.data(), scores.data());
    }
  }
  merge_decode_parts(shape, n_new, n_parts, parts.data(), accs.data(), 0, shape.n_heads, out);
}

}  // namespace

int decode_attention_parts(const DecodeAttentionShape& shape, int64_t n_new, int64_t n_past, int threads) {
  const int64_t work = n_new * (n_past + n_new) * shape.n_heads * shape.head_dim;
  return work > (omp_workers_spin() ? 1 << 14 : 1 << 20) ? threads : 1;
}

int64_t decode_attention_slots(const DecodeAttentionShape& shape, int64_t n_new, int n_parts) {
  return n_new * n_parts * shape.n_heads;
}

void attend_decode_part(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                        const float* k_cache, const float* v_cache, int64_t head_stride, int part, int n_parts,
                        int kv_begin, int kv_end, AttentionPartial* parts, float* accs, float* scores) {
  attend_decode_part_impl(isa, shape, q, n_new, n_past, k_cache, v_cache, head_stride, part, n_parts, kv_begin,
                          kv_end, parts, accs, scores);
}

void attend_decode_part(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                        const uint16_t* k_cache, const uint16_t* v_cache, int64_t head_stride, int part,
                        int n_parts, int kv_begin, int kv_end, AttentionPartial* parts, float* accs,
                        float* scores) {
  attend_decode_part_impl(isa, shape, q, n_new, n_past, k_cache, v_cache, head_stride, part, n_parts, kv_begin,
                          kv_end, parts, accs, scores);
}

void merge_decode_parts(const DecodeAttentionShape& shape, int64_t n_new, int n_parts, const AttentionPartial* parts,
                        const float* accs, int head_begin, int head_end, float* out) {
  const int hd = shape.head_dim, n_heads = shape.n_heads;
  for (int64_t i = 0; i < n_new; ++i) {
    for (int h = head_begin; h < head_end; ++h) {
      const int64_t first = i * n_parts * n_heads + h;
      merge_partials(&parts[first], n_parts, n_heads, &accs[first * hd], static_cast<int64_t>(n_heads) * hd, hd,
                     out + i * n_heads * hd + h * hd);
    }
  }
}

void attend_partial(Isa isa, const float* q, int n_heads, const float* k, const float* v, int64_t stride,
                    int64_t n_keys, int head_dim, float scale, float* scores, float* acc, AttentionPartial* parts) {
  attend_partial_impl(isa, q, n_heads, k, v, stride, n_keys, head_dim, scale, scores, acc, parts);
}

void attend_partial(Isa isa, const float* q, int n_heads, const uint16_t* k, const uint16_t* v, int64_t stride,
                    int64_t n_keys, int head_dim, float scale, float* scores, float* acc, AttentionPartial* parts) {
  attend_partial_impl(isa, q, n_heads, k, v, stride, n_keys, head_dim, scale, scores, acc, parts);
}

void merge_partials(const AttentionPartial* parts, int n_parts, int64_t part_stride, const float* accs,
                    int64_t acc_stride, int head_dim, float* out) {
  float max_score = -INFINITY;
  for (int c = 0; c < n_parts; ++c) max_score = std::max(max_score, parts[c * part_stride].max_score);
  // Each part's exponentials were taken relative to its own max: rescale them to the common one.
  double sum = 0;
  std::fill_n(out, head_dim, 0.f);
  for (int c = 0; c < n_parts; ++c) {
    const AttentionPartial& part = parts[c * part_stride];
    if (part.sum <= 0) continue;  // no keys
    const float weight = std::exp(part.max_score - max_score);
    sum += weight * part.sum;
    for (int d = 0; d < head_dim; ++d) out[d] += weight * accs[c * acc_stride + d];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int d = 0; d < head_dim; ++d) out[d] *= inv;
}

void attend_decode(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                   const float* k_cache, const float* v_cache, int64_t head_stride, float* out) {
  attend_decode_impl(isa, shape, q, n_new, n_past, k_cache, v_cache, head_stride, out);
}

void attend_decode(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                   const uint16_t* k_cache, const uint16_t* v_cache, int64_t head_stride, float* out) {
  attend_decode_impl(isa, shape, q, n_new, n_past, k_cache, v_cache, head_stride, out);
}

}  // namespace mpq

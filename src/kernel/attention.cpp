#include "kernel/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernel/fast_exp.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source of their
// masked forms, which -W(maybe-)uninitialized reports once inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define MPQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define MPQ_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,fma"), always_inline)) inline

namespace mpq {
namespace {

// The body of the AVX2 path and of AVX-512 head sizes without a kernel below, inlined into each
// target function; `omp simd` lets the compiler sum in lanes. The softmax sum is kept in double,
// as ops::causal_softmax does.
__attribute__((always_inline)) inline void attend_body(const float* q, const float* k, const float* v,
                                                       int64_t stride, int64_t n_keys, int head_dim,
                                                       float scale, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* kj = k + j * stride;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int d = 0; d < head_dim; ++d) dot += q[d] * kj[d];
    scores[j] = scale * dot;
    max_score = std::max(max_score, scores[j]);
  }
  const float inv = static_cast<float>(1.0 / exp_shifted_sum(scores, n_keys, max_score));
  for (int d = 0; d < head_dim; ++d) out[d] = 0.f;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* vj = v + j * stride;
    const float p = scores[j] * inv;
#pragma omp simd
    for (int d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
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
template <int kVecs>
MPQ_AVX512_INLINE __m512 key_partials(const __m512 (&qv)[kVecs], const float* kj) {
  __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
  for (int c = 1; c < kVecs; ++c) a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kj + 16 * c), a);
  return a;
}

template <int kVecs>
MPQ_AVX512 void attend_avx512_vecs(const float* q, const float* k, const float* v, int64_t stride,
                                   int64_t n_keys, float scale, float* scores, float* out) {
  __m512 qv[kVecs];
  for (int c = 0; c < kVecs; ++c) qv[c] = _mm512_loadu_ps(q + 16 * c);
  // Scores, 16 keys at a time, then the rest one by one.
  const __m512 scale_v = _mm512_set1_ps(scale);
  __m512 max_v = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n_keys; j += 16) {
    __m512 part[16];
    for (int i = 0; i < 16; ++i) part[i] = key_partials<kVecs>(qv, k + (j + i) * stride);
    const __m512 s = _mm512_mul_ps(sum_lanes_16(part), scale_v);
    _mm512_storeu_ps(scores + j, s);
    max_v = _mm512_max_ps(max_v, s);
  }
  float max_score = _mm512_reduce_max_ps(max_v);
  for (; j < n_keys; ++j) {
    scores[j] = scale * _mm512_reduce_add_ps(key_partials<kVecs>(qv, k + j * stride));
    max_score = std::max(max_score, scores[j]);
  }
  const float inv = static_cast<float>(1.0 / exp_shifted_sum(scores, n_keys, max_score));
  // out = inv · Σ_j e_j · v_j, two keys at a time into two sets of accumulators, so that the
  // FMA latency is hidden by independent chains.
  __m512 acc0[kVecs], acc1[kVecs];
  for (int c = 0; c < kVecs; ++c) acc0[c] = acc1[c] = _mm512_setzero_ps();
  j = 0;
  for (; j + 2 <= n_keys; j += 2) {
    const __m512 p0 = _mm512_set1_ps(scores[j]), p1 = _mm512_set1_ps(scores[j + 1]);
    const float* v0 = v + j * stride;
    const float* v1 = v0 + stride;
    for (int c = 0; c < kVecs; ++c) {
      acc0[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), acc0[c]);
      acc1[c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * c), acc1[c]);
    }
  }
  if (j < n_keys) {
    const __m512 p0 = _mm512_set1_ps(scores[j]);
    for (int c = 0; c < kVecs; ++c) acc0[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v + j * stride + 16 * c), acc0[c]);
  }
  const __m512 inv_v = _mm512_set1_ps(inv);
  for (int c = 0; c < kVecs; ++c) _mm512_storeu_ps(out + 16 * c, _mm512_mul_ps(_mm512_add_ps(acc0[c], acc1[c]), inv_v));
}

MPQ_AVX512 void attend_avx512(const float* q, const float* k, const float* v, int64_t stride, int64_t n_keys,
                              int head_dim, float scale, float* scores, float* out) {
  switch (head_dim) {
    case 64: return attend_avx512_vecs<4>(q, k, v, stride, n_keys, scale, scores, out);
    case 128: return attend_avx512_vecs<8>(q, k, v, stride, n_keys, scale, scores, out);
    default: return attend_body(q, k, v, stride, n_keys, head_dim, scale, scores, out);
  }
}

__attribute__((target("avx2,fma"))) void attend_avx2(const float* q, const float* k, const float* v,
                                                     int64_t stride, int64_t n_keys, int head_dim, float scale,
                                                     float* scores, float* out) {
  attend_body(q, k, v, stride, n_keys, head_dim, scale, scores, out);
}

// The reference: plain loops in order.
void attend_scalar(const float* q, const float* k, const float* v, int64_t stride, int64_t n_keys, int head_dim,
                   float scale, float* scores, float* out) {
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
  const float inv = static_cast<float>(1.0 / sum);
  for (int d = 0; d < head_dim; ++d) {
    float acc = 0.f;
    for (int64_t j = 0; j < n_keys; ++j) acc += scores[j] * inv * v[j * stride + d];
    out[d] = acc;
  }
}

}  // namespace

void attend_row(Isa isa, const float* q, const float* k, const float* v, int64_t stride, int64_t n_keys,
                int head_dim, float scale, float* scores, float* out) {
  switch (isa) {
    case Isa::Avx512: return attend_avx512(q, k, v, stride, n_keys, head_dim, scale, scores, out);
    case Isa::Avx2: return attend_avx2(q, k, v, stride, n_keys, head_dim, scale, scores, out);
    case Isa::Scalar: return attend_scalar(q, k, v, stride, n_keys, head_dim, scale, scores, out);
  }
}

}  // namespace mpq

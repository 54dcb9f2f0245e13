#include "kernel/attention.h"

#include <algorithm>
#include <cmath>

namespace mpq {
namespace {

// The body, inlined into each target function; `omp simd` lets the compiler sum in lanes.
// The softmax sum is kept in double, as ops::causal_softmax does.
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
  double sum = 0;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int d = 0; d < head_dim; ++d) out[d] = 0.f;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* vj = v + j * stride;
    const float p = scores[j] * inv;
#pragma omp simd
    for (int d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void attend_avx512(
    const float* q, const float* k, const float* v, int64_t stride, int64_t n_keys, int head_dim, float scale,
    float* scores, float* out) {
  attend_body(q, k, v, stride, n_keys, head_dim, scale, scores, out);
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

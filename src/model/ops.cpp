#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel/fast_exp.h"
#include "kernel/swiglu.h"

namespace mpq::ops {

namespace {

// for_rows(rows, f) calls f(t) for every t < rows: over the threads for prompt batches, on the
// calling thread otherwise. The plain loop matters: a parallel region whose `if` is false still
// cost a few microseconds per call here, more than a decode step's row of work.
template <class RowFunction>
void for_rows(int64_t rows, RowFunction f) {
  if (rows <= 8) {
    for (int64_t t = 0; t < rows; ++t) f(t);
    return;
  }
#pragma omp parallel for
  for (int64_t t = 0; t < rows; ++t) f(t);
}

}  // namespace

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t width, float eps) {
  for_rows(rows, [&](int64_t t) {
    const float* row = x + t * width;
    // In double, summed in vector lanes (one chain of dependent adds was most of the time).
    double sum_sq = 0;
#pragma omp simd reduction(+ : sum_sq)
    for (int64_t i = 0; i < width; ++i) sum_sq += static_cast<double>(row[i]) * row[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / width + eps));
    float* out = y + t * width;
    for (int64_t i = 0; i < width; ++i) out[i] = row[i] * scale * weight[i];
  });
}

void rope(float* x, int64_t rows, int n_heads, int head_dim, const float* cos_t, const float* sin_t,
          bool inverse) {
  const int half = head_dim / 2;
  const float sign = inverse ? -1.f : 1.f;  // sin(-angle) = -sin(angle)
  for_rows(rows, [&](int64_t t) {
    const float* c = cos_t + t * half;
    const float* s = sin_t + t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* head = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = head[i], b = head[i + half];
        const float sn = sign * s[i];
        head[i] = a * c[i] - b * sn;
        head[i + half] = a * sn + b * c[i];
      }
    }
  });
}

void swiglu(float* gate, const float* up, int64_t n) {
  // Chunks over the threads for prompt batches; a decode step's few thousand values run on the
  // calling thread, outside any parallel region (a parallel region whose `if` is false still
  // cost ~7 us per call here, more than the work).
  constexpr int64_t kChunk = int64_t{1} << 14;
  const Isa isa = best_isa();
  if (n <= kChunk) return swiglu_kernel(isa, gate, up, n);
#pragma omp parallel for schedule(static)
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    swiglu_kernel(isa, gate + begin, up + begin, std::min(kChunk, n - begin));
  }
}

void geglu_tanh(float* gate, const float* up, int64_t n) {
  constexpr int64_t kChunk = int64_t{1} << 14;  // as swiglu
  const Isa isa = best_isa();
  if (n <= kChunk) return geglu_tanh_kernel(isa, gate, up, n);
#pragma omp parallel for schedule(static)
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    geglu_tanh_kernel(isa, gate + begin, up + begin, std::min(kChunk, n - begin));
  }
}

void causal_softmax(float* scores, int64_t rows, int64_t n_keys, int64_t n_past, int window) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = scores + i * n_keys;
    const int64_t visible = n_past + i + 1;
    const int64_t oldest = window > 0 ? std::max<int64_t>(0, visible - window) : 0;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = oldest; j < visible; ++j) max_score = std::max(max_score, row[j]);
    const double sum = exp_shifted_sum(row + oldest, visible - oldest, max_score);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < oldest; ++j) row[j] = 0.f;
    for (int64_t j = oldest; j < visible; ++j) row[j] *= inv;
    for (int64_t j = visible; j < n_keys; ++j) row[j] = 0.f;
  }
}

}  // namespace mpq::ops

#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel/fast_exp.h"

namespace mpq::ops {

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t width, float eps) {
#pragma omp parallel for if (rows > 8)
  for (int64_t t = 0; t < rows; ++t) {
    const float* row = x + t * width;
    double sum_sq = 0;
    for (int64_t i = 0; i < width; ++i) sum_sq += static_cast<double>(row[i]) * row[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / width + eps));
    float* out = y + t * width;
    for (int64_t i = 0; i < width; ++i) out[i] = row[i] * scale * weight[i];
  }
}

void rope(float* x, int64_t rows, int n_heads, int head_dim, const float* cos_t, const float* sin_t,
          bool inverse) {
  const int half = head_dim / 2;
  const float sign = inverse ? -1.f : 1.f;  // sin(-angle) = -sin(angle)
#pragma omp parallel for if (rows > 8)
  for (int64_t t = 0; t < rows; ++t) {
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
  }
}

void swiglu(float* gate, const float* up, int64_t n) {
  // exp_approx (within 2^-23 relative of exp) vectorizes; libm's expf per value was most of a
  // decode step's SwiGLU time.
#pragma omp parallel for simd if (n > (int64_t{1} << 14))
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.f + exp_approx(-g)) * up[i];
  }
}

void causal_softmax(float* scores, int64_t rows, int64_t n_keys, int64_t n_past, int window) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = scores + i * n_keys;
    const int64_t visible = n_past + i + 1;
    const int64_t oldest = window > 0 ? std::max<int64_t>(0, visible - window) : 0;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = oldest; j < visible; ++j) max_score = std::max(max_score, row[j]);
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = oldest; j < visible; ++j) {
      row[j] = exp_approx(row[j] - max_score);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < oldest; ++j) row[j] = 0.f;
    for (int64_t j = oldest; j < visible; ++j) row[j] *= inv;
    for (int64_t j = visible; j < n_keys; ++j) row[j] = 0.f;
  }
}

}  // namespace mpq::ops

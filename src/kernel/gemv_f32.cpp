#include "kernel/gemv_f32.h"

namespace mpq {
namespace {

// The loop body, inlined into each target-specific function below; `omp simd reduction` lets the
// compiler split the sum over vector lanes (plain C++ forbids that reordering).
__attribute__((always_inline)) inline void gemv_body(const float* w, const float* x, int64_t rows,
                                                     int64_t in, float* y) {
  for (int64_t o = 0; o < rows; ++o) {
    const float* row = w + o * in;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < in; ++i) sum += row[i] * x[i];
    y[o] = sum;
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void gemv_avx512(const float* w, const float* x,
                                                                           int64_t rows, int64_t in, float* y) {
  gemv_body(w, x, rows, in, y);
}

__attribute__((target("avx2,fma"))) void gemv_avx2(const float* w, const float* x, int64_t rows, int64_t in,
                                                   float* y) {
  gemv_body(w, x, rows, in, y);
}

// The reference: a plain loop in order, no vectorised reduction.
void gemv_scalar(const float* w, const float* x, int64_t rows, int64_t in, float* y) {
  for (int64_t o = 0; o < rows; ++o) {
    const float* row = w + o * in;
    float sum = 0.f;
    for (int64_t i = 0; i < in; ++i) sum += row[i] * x[i];
    y[o] = sum;
  }
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  }
  return false;
}

Isa best_isa() {
  static const Isa best = cpu_supports(Isa::Avx512) ? Isa::Avx512 : cpu_supports(Isa::Avx2) ? Isa::Avx2 : Isa::Scalar;
  return best;
}

void gemv_f32(Isa isa, const float* w, const float* x, int64_t rows, int64_t in, float* y) {
  switch (isa) {
    case Isa::Avx512: return gemv_avx512(w, x, rows, in, y);
    case Isa::Avx2: return gemv_avx2(w, x, rows, in, y);
    case Isa::Scalar: return gemv_scalar(w, x, rows, in, y);
  }
}

}  // namespace mpq

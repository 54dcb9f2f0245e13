#include "kernel/swiglu.h"

#include <cmath>

#include "kernel/fast_exp.h"

namespace mpq {
namespace {

__attribute__((always_inline)) inline void swiglu_body(float* gate, const float* up, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.f + exp_approx(-g)) * up[i];
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void swiglu_avx512(float* gate, const float* up, int64_t n) {
  swiglu_body(gate, up, n);
}

__attribute__((target("avx2,fma"))) void swiglu_avx2(float* gate, const float* up, int64_t n) {
  swiglu_body(gate, up, n);
}

// The reference: libm's exp, one value at a time.
void swiglu_scalar(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.f + std::exp(-g)) * up[i];
  }
}

// GeGLU (tanh GELU): g / (1 + e^(-2u)) · up, u = sqrt(2/π) (g + 0.044715 g³).
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/π)
constexpr float kGeluA = 0.044715f;

__attribute__((always_inline)) inline void geglu_body(float* gate, const float* up, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float u = kGeluC * (g + kGeluA * g * g * g);
    gate[i] = g / (1.f + exp_approx(-2.f * u)) * up[i];
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void geglu_avx512(float* gate, const float* up, int64_t n) {
  geglu_body(gate, up, n);
}

__attribute__((target("avx2,fma"))) void geglu_avx2(float* gate, const float* up, int64_t n) {
  geglu_body(gate, up, n);
}

void geglu_scalar(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float u = kGeluC * (g + kGeluA * g * g * g);
    gate[i] = g / (1.f + std::exp(-2.f * u)) * up[i];
  }
}

}  // namespace

void geglu_tanh_kernel(Isa isa, float* gate, const float* up, int64_t n) {
  switch (isa) {
    case Isa::Avx512: return geglu_avx512(gate, up, n);
    case Isa::Avx2: return geglu_avx2(gate, up, n);
    case Isa::Scalar: return geglu_scalar(gate, up, n);
  }
}

void swiglu_kernel(Isa isa, float* gate, const float* up, int64_t n) {
  switch (isa) {
    case Isa::Avx512: return swiglu_avx512(gate, up, n);
    case Isa::Avx2: return swiglu_avx2(gate, up, n);
    case Isa::Scalar: return swiglu_scalar(gate, up, n);
  }
}

}  // namespace mpq

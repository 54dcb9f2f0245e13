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

}  // namespace

void swiglu_kernel(Isa isa, float* gate, const float* up, int64_t n) {
  switch (isa) {
    case Isa::Avx512: return swiglu_avx512(gate, up, n);
    case Isa::Avx2: return swiglu_avx2(gate, up, n);
    case Isa::Scalar: return swiglu_scalar(gate, up, n);
  }
}

}  // namespace mpq

#include "kernel/gemv_f32.h"

#include <cpuid.h>

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

bool cpu_has_f16c() {
  // CPUID leaf 1: ECX bit 29 is F16C, bit 27 OSXSAVE (the OS uses XSAVE, so XGETBV works). XCR0
  // bits 1 and 2: the OS saves the SSE and AVX (YMM) state. GCC's libgcc decides the same way
  // (F16C counts only when AVX is usable). XGETBV is spelled as bytes so that no -mxsave is needed.
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    if ((ecx & bit_F16C) == 0 || (ecx & bit_OSXSAVE) == 0) return false;
    unsigned xcr0_low = 0, xcr0_high = 0;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    return (xcr0_low & 0x6u) == 0x6u;
  }();
  return has;
}

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
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

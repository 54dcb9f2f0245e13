#include "kernel/half.h"

#include <immintrin.h>

#include "format/dtype.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source of their
// masked forms, which -W(maybe-)uninitialized reports once inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)  // a GCC bug; Clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace mpq {
namespace {

__attribute__((target("avx512f"))) void f32_to_f16_avx512(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

__attribute__((target("avx512f"))) void f16_to_f32_avx512(const uint16_t* h, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
  }
  for (; i < n; ++i) out[i] = f16_to_f32(h[i]);
}

__attribute__((target("avx2,f16c"))) void f32_to_f16_avx2(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

__attribute__((target("avx2,f16c"))) void f16_to_f32_avx2(const uint16_t* h, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  }
  for (; i < n; ++i) out[i] = f16_to_f32(h[i]);
}

}  // namespace

void f32_to_f16_row(Isa isa, const float* x, int64_t n, uint16_t* out) {
  switch (isa) {
    case Isa::Avx512: return f32_to_f16_avx512(x, n, out);
    case Isa::Avx2: return f32_to_f16_avx2(x, n, out);
    case Isa::Scalar: break;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

void f16_to_f32_row(Isa isa, const uint16_t* h, int64_t n, float* out) {
  switch (isa) {
    case Isa::Avx512: return f16_to_f32_avx512(h, n, out);
    case Isa::Avx2: return f16_to_f32_avx2(h, n, out);
    case Isa::Scalar: break;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(h[i]);
}

}  // namespace mpq

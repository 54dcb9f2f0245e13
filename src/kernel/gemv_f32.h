// fp32 GEMV y[o] = w[o, :] · x for decoding, with one code path per instruction set chosen at run
// time. The paths share one loop body (compiled once per target) and differ only in the vector
// width the compiler may use; tests compare each path the CPU can run with the scalar one.
#pragma once

#include <cstdint>

namespace mpq {

enum class Isa : uint8_t { Scalar, Avx2, Avx512 };

// Name for messages and test output: "scalar", "avx2", "avx512".
const char* isa_name(Isa isa);
// True when this CPU can run `isa` (Avx2: AVX2, FMA and F16C, which every AVX2 CPU has).
bool cpu_supports(Isa isa);
// True when the CPU has F16C (half <-> float conversions) and the OS saves the YMM registers it
// uses: the answer of GCC's __builtin_cpu_supports("f16c"), which Clang 14 does not know.
bool cpu_has_f16c();
// The widest instruction set this CPU supports.
Isa best_isa();

// y[o] = Σ_i w[o * in + i] * x[i] for o < rows, on the calling thread, with the path of `isa`
// (which the CPU must support). Scalar sums in order; the vector paths sum in vector lanes, so
// results differ from the scalar path by rounding only.
void gemv_f32(Isa isa, const float* w, const float* x, int64_t rows, int64_t in, float* y);

}  // namespace mpq

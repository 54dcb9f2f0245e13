// SwiGLU, the gated activation of Llama-family MLPs (and Gemma's GeGLU below): gate[i] = silu(gate[i]) · up[i] with
// silu(g) = g / (1 + e^-g), one code path per instruction set chosen at run time (one loop body
// compiled per target, like kernel/gemv_f32.h).
#pragma once

#include <cstdint>

#include "kernel/gemv_f32.h"

namespace mpq {

// In place over gate[0, n), on the calling thread. The scalar path is the reference (libm's
// exp); the vector paths use exp_approx (kernel/fast_exp.h, within 2^-23 relative), so results
// differ from the scalar path by a few ulp at most.
void swiglu_kernel(Isa isa, float* gate, const float* up, int64_t n);

// GeGLU with the tanh approximation of GELU (Gemma's gelu_pytorch_tanh):
// gate[i] = gelu_tanh(gate[i]) · up[i], gelu_tanh(g) = g/2 · (1 + tanh(u)) with
// u = sqrt(2/π) · (g + 0.044715 g³). Computed as g / (1 + e^(-2u)) (the same value:
// (1 + tanh u)/2 = σ(2u)), which has no cancellation near u = 0 and reuses the exp of SwiGLU.
// Scalar path: libm's exp; vector paths: exp_approx. Same accuracy contract as swiglu_kernel.
void geglu_tanh_kernel(Isa isa, float* gate, const float* up, int64_t n);

}  // namespace mpq

// SwiGLU, the gated activation of Llama-family MLPs: gate[i] = silu(gate[i]) · up[i] with
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

}  // namespace mpq

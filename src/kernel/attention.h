// Decode attention: one query row against the cached keys and values of one KV head, with one
// code path per instruction set chosen at run time (like kernel/gemv_f32.h: one loop body,
// compiled once per target). Prompt batches go through sgemm in model/forward.cpp; this serves
// the few-token steps, where a BLAS call per head costs more than its 64-wide dot products.
#pragma once

#include <cstdint>

#include "kernel/gemv_f32.h"

namespace mpq {

// For j < n_keys, with k_j = k + j * stride and v_j = v + j * stride (head_dim floats each):
//   s_j = scale · (q · k_j),  p = softmax(s),  out[0, head_dim) = Σ_j p_j · v_j.
// `scores` is scratch of n_keys floats. n_keys must be positive. The scalar path sums in order
// with libm's exp; the vector paths sum in lanes and use exp_approx (kernel/fast_exp.h, within
// 2^-23 relative), so results differ by rounding only. AVX-512 has kernels for head sizes 64 and
// 128 (16 keys' dot products reduced together, two accumulator sets for the weighted sum).
void attend_row(Isa isa, const float* q, const float* k, const float* v, int64_t stride, int64_t n_keys,
                int head_dim, float scale, float* scores, float* out);

}  // namespace mpq

// fp32 matrix products for the reference path, through single-threaded OpenBLAS calls that we
// split across our own OpenMP threads.
//
// Why not let OpenBLAS thread itself: its worker threads synchronise inside every call with
// spin-and-yield loops. On a 2-core machine any other busy process (a compiler, a second
// benchmark) then stalls every call; we measured prompt speed falling from ~720 to ~50 tok/s.
// Splitting the output columns into one independent slice per thread leaves a single barrier
// per call, so a preempted thread costs at most its own slice.
#pragma once

#include <cstdint>

namespace mpq {

// y[n, out] = x[n, in] · w[out, in]ᵀ  (row-major, leading dimensions = widths). Fewer than 8
// rows (decoding) run as GEMVs on the calling thread (kernel/gemv_f32.h, AVX-512 / AVX2 /
// scalar chosen at run time); larger products as sgemm slices over the OpenMP threads.
void matmul_f32(const float* x, int64_t n, const float* w, int64_t out, int64_t in, float* y);

}  // namespace mpq

#include "kernel/matmul_f32.h"

#include "kernel/gemv_f32.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

namespace mpq {

void matmul_f32(const float* x, int64_t n, const float* w, int64_t out, int64_t in, float* y) {
  if (n < 8) {
    // A decode step: memory-bound GEMVs on the calling thread. Measured on this 2-core machine,
    // splitting a decode step's ~200 GEMVs over two threads (ours, or OpenBLAS's own) cost more
    // in wake-ups than it gained, and collapsed whenever another process held a core.
    for (int64_t t = 0; t < n; ++t) gemv_f32(best_isa(), w, x + t * in, out, in, y + t * out);
    return;
  }
  // Slices of output features, a multiple of 16 so every slice starts on a cache line of y's
  // rows and of w; small products stay on one thread.
  const int64_t work = n * out * in;
  const int threads = work < (int64_t{1} << 22) ? 1 : omp_get_max_threads();
  const int64_t slice = ((out + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * slice;
    const int64_t count = std::min(out, begin + slice) - begin;
    if (count <= 0) continue;
    // Inside a parallel region the OpenMP build of OpenBLAS runs single-threaded.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, count, in, 1.f, x, in, w + begin * in,
                in, 0.f, y + begin, out);
  }
}

}  // namespace mpq

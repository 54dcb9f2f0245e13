#include "kernel/matmul_f32.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

namespace mpq {

void matmul_f32(const float* x, int64_t n, const float* w, int64_t out, int64_t in, float* y) {
  // Slices of output features, a multiple of 16 so every slice starts on a cache line of y's
  // rows and of w; small products stay on one thread.
  const int64_t work = n * out * in;
  const int threads = work < (1 << 18) ? 1 : omp_get_max_threads();
  const int64_t slice = ((out + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * slice;
    const int64_t count = std::min(out, begin + slice) - begin;
    if (count <= 0) continue;
    // Inside a parallel region the OpenMP build of OpenBLAS runs single-threaded.
    if (n == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, count, in, 1.f, w + begin * in, in, x, 1, 0.f,
                  y + begin, 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, count, in, 1.f, x, in, w + begin * in,
                  in, 0.f, y + begin, out);
    }
  }
}

}  // namespace mpq

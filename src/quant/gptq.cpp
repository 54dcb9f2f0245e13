// GPTQ: Cholesky of H⁻¹ (LAPACK from OpenBLAS), column-by-column quantization with error feedback,
// lazy block updates through one dgemm per block. W is kept transposed and in double:
// wt[i * rows + r] is the current (error-updated) value of row r at *processing* position i, so
// the column being quantized and every update of it are contiguous.
#include "quant/gptq.h"

#include "quant/check_input.h"
#include "quant/grid.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

#include "mpq/error.h"

// LAPACK (Fortran interface, column-major) as exported by OpenBLAS, which bundles LAPACK; declared
// here because no lapacke/lapack header is required by the build. 32-bit integers (Debian's
// libopenblas0, not the INTERFACE64 libopenblas64). The trailing size_t is gfortran's hidden
// length of the CHARACTER argument (OpenBLAS' own C implementation of dpotrf ignores it).
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
}

namespace mpq {
namespace {

// Sets the calling thread's OpenMP thread count (which OpenBLAS' OpenMP build reads on every call)
// for the lifetime of the object; n <= 0 leaves it alone.
class ThreadScope {
 public:
  explicit ThreadScope(int n) : saved_(omp_get_max_threads()), active_(n > 0) {
    if (active_) omp_set_num_threads(n);
  }
  ~ThreadScope() {
    if (active_) omp_set_num_threads(saved_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_;
  bool active_;
};

// In place: a (row-major n x n, symmetric positive definite) -> U, the upper Cholesky factor of
// a⁻¹ (a⁻¹ = UᵀU), row-major, strictly lower part zeroed. A row-major matrix read column-major
// is its transpose, so "L" in LAPACK's column-major view is our upper triangle:
//   potrf('L') : a = L Lᵀ          (L in column-major lower = our upper triangle)
//   potri('L') : a⁻¹ in column-major lower
//   potrf('L') : a⁻¹ = L2 L2ᵀ; our upper triangle then holds L2ᵀ =: U with a⁻¹ = UᵀU.
// Returns false when a factorisation fails (matrix not positive definite numerically).
bool upper_cholesky_of_inverse(std::vector<double>& a, int n) {
  int info = 0;
  dpotrf_("L", &n, a.data(), &n, &info, 1);
  if (info != 0) return false;
  dpotri_("L", &n, a.data(), &n, &info, 1);
  if (info != 0) return false;
  dpotrf_("L", &n, a.data(), &n, &info, 1);
  if (info != 0) return false;
  for (int i = 0; i < n; ++i) {
    const double d = a[static_cast<size_t>(i) * n + i];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    for (int j = 0; j < i; ++j) a[static_cast<size_t>(i) * n + j] = 0.0;
  }
  return true;
}


}  // namespace

double layer_output_error(const float* w, const float* w_hat, int64_t rows, int64_t cols,
                          const std::vector<double>& xtx) {
  check(static_cast<int64_t>(xtx.size()) == cols * cols, "layer_output_error",
        "xtx has " + std::to_string(xtx.size()) + " entries, expected cols² = " +
            std::to_string(cols * cols));
  const ThreadScope thread_scope(1);  // see GptqOptions::threads
  std::vector<double> d(static_cast<size_t>(rows * cols)), dh(d.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>(w[i]) - w_hat[i];
  if (rows * cols * cols < (int64_t{1} << 16)) {  // tiny: skip BLAS (its thread start-up dominates)
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const double* dr = &d[static_cast<size_t>(r * cols)];
      for (int64_t i = 0; i < cols; ++i) {
        double hi = 0.0;
        for (int64_t j = 0; j < cols; ++j) hi += xtx[static_cast<size_t>(i * cols + j)] * dr[j];
        sum += dr[i] * hi;
      }
    }
    return sum;
  }
  // dh = d · H (H symmetric)
  cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, static_cast<int>(rows),
              static_cast<int>(cols), 1.0, xtx.data(), static_cast<int>(cols), d.data(),
              static_cast<int>(cols), 0.0, dh.data(), static_cast<int>(cols));
  double sum = 0.0;
  for (size_t i = 0; i < d.size(); ++i) sum += d[i] * dh[i];
  return sum;
}

double layer_output_error(const float* w, const QuantizedMatrix& q,
                          const std::vector<double>& xtx) {
  std::vector<float> w_hat(static_cast<size_t>(q.rows * q.cols));
  dequantize(q, w_hat.data());
  return layer_output_error(w, w_hat.data(), q.rows, q.cols, xtx);
}

QuantizedMatrix quantize_gptq(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                              const std::vector<double>& xtx, const GptqOptions& options,
                              GptqStats* stats) {
  const WeightFormatTraits& f = weight_format(format);
  check(rows > 0 && cols > 0, f.name, "quantize_gptq: empty matrix");
  check(cols <= (1 << 20) && rows <= (int64_t{1} << 30), f.name, "quantize_gptq: matrix too large");
  check(static_cast<int64_t>(xtx.size()) == cols * cols, f.name,
        "quantize_gptq: xtx has " + std::to_string(xtx.size()) + " entries, expected " +
            std::to_string(cols) + "² = " + std::to_string(cols * cols));
  check(options.block_size >= 1, f.name, "quantize_gptq: block_size must be >= 1");
  check(std::isfinite(options.damp_percent) && options.damp_percent >= 0.0, f.name,
        "quantize_gptq: damp_percent must be finite and >= 0");
  if (options.fit.clip_search) {  // fit_group would throw inside a parallel loop otherwise
    check(options.fit.clip_steps >= 2 && options.fit.clip_min > 0.f &&
              options.fit.clip_max >= options.fit.clip_min,
          f.name, "quantize_gptq: clip search needs clip_steps >= 2 and 0 < clip_min <= clip_max");
  }
  check(options.threads >= 0, f.name, "quantize_gptq: threads must be >= 0");
  check_quantizer_input(f, "quantize_gptq", w, rows, cols);
  const ThreadScope thread_scope(options.threads);

  GptqStats st;
  st.damp_percent_used = options.damp_percent;

  if (f.storage == Storage::Elements && groups_per_row(f, cols) == 0) {
    // kept weights (bf16/f16): plain rounding, nothing to compensate
    QuantizedMatrix q = make_quantized_matrix(format, rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) q.set_code(r, c, f.encode(f, w[r * cols + c], {}));
    }
    if (stats) {
      st.output_error = layer_output_error(w, q, xtx);
      *stats = st;
    }
    return q;
  }
  // The grids: per group of each row (element formats) or per block (ggml formats); nvfp4's
  // tensor scale from the original weights. Throws for a shape the format cannot hold.
  GridSet grids(format, w, rows, cols, options.fit);

  const int n = static_cast<int>(cols);
  const auto N = static_cast<size_t>(n);
  const auto R = static_cast<size_t>(rows);

  // ---- H: dead columns, processing order, dampening, U = chol(H⁻¹)ᵀ
  std::vector<double> diag(N);
  std::vector<char> dead(N, 0);
  for (size_t i = 0; i < N; ++i) {
    diag[i] = xtx[i * N + i];
    if (diag[i] == 0.0) {
      dead[i] = 1;
      diag[i] = 1.0;
      ++st.dead_columns;
    }
  }
  std::vector<int> perm(N);  // perm[i] = original column processed at position i
  std::iota(perm.begin(), perm.end(), 0);
  if (options.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
  }
  std::vector<int> pos_of(N);  // inverse permutation
  for (size_t i = 0; i < N; ++i) pos_of[perm[i]] = static_cast<int>(i);

  std::vector<double> hp(N * N);  // permuted H (dead diagonal entries = 1)
  double mean_diag = 0.0;
  for (size_t i = 0; i < N; ++i) {
    const size_t pi = perm[i];
    for (size_t j = 0; j < N; ++j) hp[i * N + j] = xtx[pi * N + perm[j]];
    if (dead[pi]) hp[i * N + i] = 1.0;
    mean_diag += hp[i * N + i];
  }
  mean_diag /= static_cast<double>(N);

  std::vector<double> u;
  double damp = options.damp_percent;
  constexpr int kMaxRetries = 4;  // λ up to 10⁴ · damp_percent
  for (;;) {
    u = hp;
    const double lambda = damp * mean_diag;
    for (size_t i = 0; i < N; ++i) u[i * N + i] += lambda;
    if (upper_cholesky_of_inverse(u, n)) break;
    if (st.damp_retries == kMaxRetries) {
      fail(f.name, "quantize_gptq: Cholesky of H + λI failed even with damp_percent " +
                       std::to_string(damp) + " (is xtx finite and positive semi-definite?)");
    }
    const double next = damp > 0.0 ? damp * 10.0 : 0.01;
    std::fprintf(stderr,
                 "mpq: warning: gptq (%s, %lldx%lld): Cholesky of H + λI failed with "
                 "damp_percent %g, retrying with %g\n",
                 f.name, static_cast<long long>(rows), static_cast<long long>(cols), damp, next);
    damp = next;
    ++st.damp_retries;
  }
  st.damp_percent_used = damp;
  hp.clear();
  hp.shrink_to_fit();

  // ---- working weights, transposed and permuted; dead columns zeroed
  std::vector<double> wt(N * R);
  for (size_t i = 0; i < N; ++i) {
    const size_t c = perm[i];
    for (size_t r = 0; r < R; ++r) wt[i * R + r] = dead[c] ? 0.0 : w[r * N + c];
  }

  // ---- grids
  const int64_t n_groups = grids.groups();
  std::vector<char> fitted(static_cast<size_t>(n_groups), 0);

  const int bs = std::min(options.block_size, n);
  std::vector<double> err(static_cast<size_t>(bs) * R);  // scaled errors of the block, [k][r]
  std::vector<float> gbuf;

  // Fits group g from the current values of all its columns. i1 = first position of the current
  // block, i = the position being processed (no column of g has been quantized yet: all its
  // positions are >= i). Columns inside the block are current in wt; columns after the block
  // still lack the block's pending update  -Σ_k err[k] · U[i1 + k, pos].
  auto fit_group_now = [&](int64_t g, size_t i1, size_t i, size_t i2) {
    const int64_t begin = grids.group_begin(g), len = grids.group_length(g);
    gbuf.assign(R * static_cast<size_t>(len), 0.f);
    for (int64_t j = 0; j < len; ++j) {
      const size_t pc = pos_of[static_cast<size_t>(begin + j)];
      const double* cur = &wt[pc * R];
      for (size_t r = 0; r < R; ++r) {
        double v = cur[r];
        if (pc >= i2) {
          for (size_t k = 0; k < i - i1; ++k) v -= err[k * R + r] * u[(i1 + k) * N + pc];
        }
        gbuf[r * len + j] = static_cast<float>(v);
      }
    }
    const float* values = gbuf.data();
#pragma omp parallel for schedule(static) if (R * len >= 16384)
    for (int64_t r = 0; r < rows; ++r) grids.fit(r, g, values + r * len);
  };

  if (!is_ggml_format(f) && f.group_size == 0) {
    // per channel: params from the whole (dead-zeroed) row, before anything
    fit_group_now(0, 0, 0, N);  // every column is "in block" (i2 = N): plain current values
    fitted[0] = 1;
  }

  for (size_t i1 = 0; i1 < N; i1 += static_cast<size_t>(bs)) {
    const size_t i2 = std::min(N, i1 + static_cast<size_t>(bs));
    for (size_t i = i1; i < i2; ++i) {
      const int c = perm[i];
      const int64_t g = grids.group_of(c);
      if (!fitted[static_cast<size_t>(g)]) {
        fit_group_now(g, i1, i, i2);
        fitted[static_cast<size_t>(g)] = 1;
      }
      double* col = &wt[i * R];
      double* e = &err[(i - i1) * R];
      const double d = u[i * N + i];
      for (size_t r = 0; r < R; ++r) {
        const float value = grids.round(static_cast<int64_t>(r), c, static_cast<float>(col[r]));
        e[r] = (col[r] - static_cast<double>(value)) / d;
      }
      // Error feedback inside the block (the rest of the block sees it immediately).
      for (size_t j = i + 1; j < i2; ++j) {
        const double uij = u[i * N + j];
        if (uij == 0.0) continue;
        double* cj = &wt[j * R];
        for (size_t r = 0; r < R; ++r) cj[r] -= uij * e[r];
      }
    }
    // Lazy batch update of every later column: wt[i2:, :] -= U[i1:i2, i2:]ᵀ · err.
    if (i2 < N) {
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(N - i2),
                  static_cast<int>(R), static_cast<int>(i2 - i1), -1.0, &u[i1 * N + i2], n,
                  err.data(), static_cast<int>(R), 1.0, &wt[i2 * R], static_cast<int>(R));
    }
  }

  QuantizedMatrix q = grids.take();
  if (stats) {
    st.output_error = layer_output_error(w, q, xtx);
    *stats = st;
  }
  return q;
}

}  // namespace mpq

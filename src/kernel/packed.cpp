#include "kernel/packed.h"

#include <omp.h>

#include <algorithm>

#include "kernel/packed_impl.h"
#include "kernel/threads.h"
#include "mpq/error.h"

namespace mpq {

const char* activation_mode_name(ActivationMode mode) {
  return mode == ActivationMode::Int8 ? "int8" : "fp32";
}

void PackedMatrix::matmul_int8(Isa, const Int8Activations&, float*, int64_t, int64_t, int64_t,
                               const int32_t*) const {
  fail(weight_format(format()).name, "this weight format has no int8-activation kernel");
}

std::unique_ptr<PackedMatrix> pack_matrix(const QuantizedMatrix& q) {
  const WeightFormatTraits& f = q.traits();
  check(q.rows > 0 && q.cols > 0, f.name, "cannot pack an empty matrix");
  check(q.groups == groups_per_row(f, q.cols), f.name, "group count does not match the format");
  check(q.codes.size() == static_cast<size_t>(q.rows * q.cols * q.code_bytes()), f.name,
        "code array has the wrong size");
  if (f.value_kind == ValueKind::Int) return pack_int_matrix(q);
  return pack_fp_matrix(q);
}

namespace {

// Multiply-adds from which a product is split across the threads (fork costs: kernel/threads.h).
// In a decode step the weights stream from memory in short products (0.1-0.5 MB each); one core
// streaming one of them does not reach the bandwidth a long sequential read gets, two cores
// overlap their misses: measured, splitting every SmolLM2 layer at one token took decode from 104
// to 122 tok/s with spinning workers, and to 63 tok/s with sleeping ones (docs/RUNTIME.md). With sleeping workers: split from ~1M (fp32) /
// ~4M (int8) multiply-adds, where the kernels' compute (~35 / ~140 multiply-adds per ns) alone
// pays for it; with spinning workers: from 256K (a 576 x 576 layer at one token and up).
int64_t min_parallel_work(bool int8_activations) {
  if (omp_workers_spin()) return int64_t{1} << 18;
  return int8_activations ? int64_t{1} << 22 : int64_t{1} << 20;
}

}  // namespace

void packed_matmul(const PackedMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                   ActivationMode mode, const int32_t* row_to_output, const Int8Activations* x_int8,
                   Isa isa) {
  const bool int8 = mode == ActivationMode::Int8 && w.supports_int8_activations();
  Int8Activations local;
  if (int8 && x_int8 == nullptr) {
    quantize_activations_int8(isa, x, n_tokens, w.cols(), local);
    x_int8 = &local;
  }
  // Row slices, a multiple of 16 rows each (whole cache lines of y for contiguous outputs, and a
  // whole number of any interleaved row block); small products stay on the calling thread,
  // where waking a second thread costs more than it saves (min_parallel_work below).
  const int64_t rows = w.rows();
  const int64_t work = n_tokens * rows * w.cols();
  const int threads = work < min_parallel_work(int8) ? 1 : omp_get_max_threads();
  const int64_t slice = ((rows + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * slice;
    const int64_t end = std::min(rows, begin + slice);
    if (begin >= end) continue;
    if (int8) {
      w.matmul_int8(isa, *x_int8, y, ldy, begin, end, row_to_output);
    } else {
      w.matmul_f32(isa, x, n_tokens, y, ldy, begin, end, row_to_output);
    }
  }
}

}  // namespace mpq

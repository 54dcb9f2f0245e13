#include "kernel/packed.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

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
  if (is_ggml_format(f)) return pack_ggml_matrix(q);
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

namespace {

// A product asked for int8 activations whose format has an int8 kernel (the others run fp32).
bool runs_int8(const PackedProduct& p) {
  return p.mode == ActivationMode::Int8 && p.w->supports_int8_activations();
}

}  // namespace

bool group_uses_int8(std::span<const PackedProduct> group) {
  return std::any_of(group.begin(), group.end(), runs_int8);
}

void packed_matmul_group_share(std::span<const PackedProduct> group, const float* x, const Int8Activations* x_int8,
                               int64_t n_tokens, int thread, int n_threads, Isa isa) {
  // Rows [begin, end) of product p on the calling thread.
  auto run = [&](const PackedProduct& p, int64_t begin, int64_t end) {
    if (begin >= end) return;
    if (runs_int8(p)) {
      p.w->matmul_int8(isa, *x_int8, p.y, p.ldy, begin, end, p.row_to_output);
    } else {
      p.w->matmul_f32(isa, x, n_tokens, p.y, p.ldy, begin, end, p.row_to_output);
    }
  };
  if (n_threads == 1) {
    for (const PackedProduct& p : group) run(p, 0, p.w->rows());
    return;
  }
  // The group's tiles of 16 rows (whole cache lines of y for contiguous outputs, and a whole
  // number of any interleaved row block) laid end to end and cut into `n_threads` stretches of
  // about equal weight bytes, which is what a product's time follows (the formats of a group
  // may differ: a channel split's 8-bit and 4-bit sets). Thread t takes the byte range
  // [t·B/n_threads, (t+1)·B/n_threads) and, of product i (starting at byte offset[i], tile_bytes[i]
  // per tile), the tiles whose rounded position falls inside it: neighbouring threads round the
  // same boundary the same way, so every tile runs exactly once. (A group has 1-3 products.)
  constexpr int64_t kTile = 16;
  double total = 0.0;
  for (const PackedProduct& p : group) total += static_cast<double>(p.w->bytes());
  const double lo = total * thread / n_threads, hi = total * (thread + 1) / n_threads;
  double offset = 0.0;
  for (const PackedProduct& p : group) {
    const int64_t rows = p.w->rows(), tiles = (rows + kTile - 1) / kTile;
    const double tile_bytes = static_cast<double>(p.w->bytes()) / static_cast<double>(tiles);
    auto tile_at = [&](double position) {
      const double t = std::nearbyint((position - offset) / tile_bytes);
      return std::clamp<int64_t>(static_cast<int64_t>(t), 0, tiles);
    };
    run(p, std::min(rows, tile_at(lo) * kTile), std::min(rows, tile_at(hi) * kTile));
    offset += static_cast<double>(p.w->bytes());
  }
}

void packed_matmul_group(std::span<const PackedProduct> group, const float* x, int64_t n_tokens, Isa isa) {
  if (group.empty()) return;
  const int64_t cols = group[0].w->cols();
  int64_t work = 0;
  for (const PackedProduct& p : group) {
    check(p.w->cols() == cols, "packed product", "the products of a group must share their input width");
    work += n_tokens * p.w->rows() * cols;
  }
  const bool any_int8 = group_uses_int8(group);
  const bool all_int8 = std::all_of(group.begin(), group.end(), runs_int8);
  Int8Activations x_int8;  // quantized once for every int8 product of the group
  if (any_int8) quantize_activations_int8(isa, x, n_tokens, cols, x_int8);
  // Small work stays on the calling thread, where waking a second one costs more than it saves.
  const int threads = work < min_parallel_work(all_int8) ? 1 : omp_get_max_threads();
  if (threads == 1) return packed_matmul_group_share(group, x, &x_int8, n_tokens, 0, 1, isa);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) packed_matmul_group_share(group, x, &x_int8, n_tokens, t, threads, isa);
}

void packed_matmul(const PackedMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                   ActivationMode mode, const int32_t* row_to_output, Isa isa) {
  const PackedProduct product{&w, y, ldy, row_to_output, mode};
  packed_matmul_group(std::span(&product, 1), x, n_tokens, isa);
}

}  // namespace mpq

// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers") for one weight matrix, to any format of the table.
//
// Objective: minimise the layer-output error  sum_rows (w - q)ᵀ H (w - q) = tr(ΔW H ΔWᵀ) with
// H = XᵀX (InputStats::xtx; the paper's 2/n factor does not change the minimiser). Columns are
// quantized one at a time (in order, or by descending diag(H) with act_order); the rounding error
// of a column is spread over the columns not yet quantized through the upper Cholesky factor U of
// H⁻¹ (H⁻¹ = UᵀU):
//     err = (w_i - q_i) / U_ii,     w_j -= err · U_ij   for every later column j,
// applied at once inside a block of `block_size` columns and lazily (one GEMM) to the columns after
// the block. See docs/QUANTIZERS.md for the exact choices (dead columns, dampening, group params).
//
// The loop is the same for every format: it sees a GridSet (quant/grid.h), one rounding grid per
// group of each row, fitted at the group's first column in processing order from the current,
// error-updated values. For the ggml block formats a group is a block (a 256-value super-block
// for the k-quants): its stored scales (sub-block scales and mins already in their 4/6/8-bit form,
// fp16 d/dmin) are fitted by the codec, then each column is rounded onto those levels with GPTQ's
// error feedback, and the codes land in the block bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "format/weight_format.h"

namespace mpq {

struct GptqOptions {
  double damp_percent = 0.01;  // λ = damp_percent · mean(diag H), added to the diagonal
  int block_size = 128;        // columns per lazy batch update (>= 1)
  bool act_order = false;      // process columns by descending diag(H) (stable order on ties)
  int threads = 1;             // OpenMP/OpenBLAS threads for the Cholesky, the block GEMMs and
                               // the group fits; 0 = the caller's setting. Default 1: on the
                               // shared 2-core machine, multi-threaded dpotrf/dpotri ran 30x
                               // slower under load (3.7 s vs 0.11 s for n = 1536); quantize
                               // several layers in parallel instead.
  GroupFitOptions fit;         // passed to fit_group for each group (clip search, ...). NOTE:
                               // fit.weights, when set, points to [cols] per-INPUT-COLUMN
                               // weights (e.g. InputStats::mean_square()); GPTQ passes
                               // fit.weights + group_begin to fit_group for each group.
                               // ggml block formats use only fit.weights: the importance their
                               // codec's weighted fit takes (nullptr: the plain fit).
};

// Diagnostics of one quantize_gptq call.
struct GptqStats {
  double output_error = 0.0;      // tr(ΔW H ΔWᵀ) with ΔW = w - dequantized result and H = the
                                  // xtx given (undamped): sum over rows of (w-q)ᵀ H (w-q)
  double damp_percent_used = 0.0; // the dampening that made H + λI factorisable (= options'
                                  // damp_percent unless retries were needed)
  int damp_retries = 0;           // times λ was multiplied by 10 after a failed Cholesky
  int64_t dead_columns = 0;       // columns with H_ii == 0 (set to 0 in the result)
};

// Quantizes w [rows, cols] (row-major fp32, rows = out_features) to `format` with GPTQ, given
// xtx = Σ xᵀx over calibration rows ([cols, cols] row-major, symmetric; InputStats::xtx).
// bf16/f16 (kept formats) are plain rounding. nvfp4's tensor scale comes from the original w.
// Throws mpq::Error on non-finite weights, a wrong xtx size, bad options, or when H + λI cannot
// be factorised even after raising λ to 10⁴·damp_percent (a warning goes to stderr on each
// retry). `stats` (optional) receives the diagnostics above. Deterministic for a given thread
// count of OpenBLAS (the GEMM's summation order may depend on it).
QuantizedMatrix quantize_gptq(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                              const std::vector<double>& xtx, const GptqOptions& options = {},
                              GptqStats* stats = nullptr);

// tr(ΔW H ΔWᵀ) = Σ_rows (w - w_hat)ᵀ H (w - w_hat) for w, w_hat [rows, cols] and H = xtx
// [cols, cols]: the summed squared output error of the layer over the calibration rows.
double layer_output_error(const float* w, const float* w_hat, int64_t rows, int64_t cols,
                          const std::vector<double>& xtx);
// The same for a quantized matrix (dequantized first).
double layer_output_error(const float* w, const QuantizedMatrix& q,
                          const std::vector<double>& xtx);

}  // namespace mpq

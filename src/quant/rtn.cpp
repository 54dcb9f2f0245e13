// RTN: fit each group (optionally with the clip search), then encode every value with the
// group's parameters. The per-group primitives live in format/weight_format.h.
#include "quant/rtn.h"

#include "quant/check_input.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "format/ggml_codec.h"
#include "mpq/error.h"

namespace mpq {
namespace {

// Σ_i w_i (x_i − x̂_i)² over one block (w nullptr: all 1).
double block_error(const float* x, const float* decoded, const float* w, int n) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - decoded[i];
    sum += (w ? w[i] : 1.0) * d * d;
  }
  return sum;
}

// ggml block formats: llama.cpp's encoder row by row; with clip_search, also its weighted search,
// kept per block unless its weighted error (under the search's own weights) is larger than the
// plain encoder's.
QuantizedMatrix quantize_rtn_ggml(const WeightFormatTraits& f, const float* w, int64_t rows, int64_t cols,
                                  const RtnOptions& options) {
  const GgmlBlockCodec& codec = *f.ggml;
  QuantizedMatrix q = make_quantized_matrix(f.id, rows, cols);
  const bool weighted = options.clip_search && codec.encode_weighted != nullptr;
  std::vector<float> ones;
  const float* importance = options.importance;
  if (weighted && importance == nullptr) {
    ones.assign(static_cast<size_t>(cols), 1.f);
    importance = ones.data();
  }
  const int bv = codec.block_values, bb = codec.block_bytes;
  std::atomic<int64_t> non_finite_row{-1};
#pragma omp parallel
  {
    std::vector<float> decoded(static_cast<size_t>(cols)), alt_decoded, sw;
    std::vector<uint8_t> alt;
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = w + r * cols;
      uint8_t* out = q.block_row(r);
      codec.encode(x, out, cols);
      codec.decode(out, decoded.data(), cols);
      if (weighted) {
        alt.resize(static_cast<size_t>(q.block_row_bytes()));
        alt_decoded.resize(static_cast<size_t>(cols));
        sw.resize(static_cast<size_t>(cols));
        codec.encode_weighted(x, importance, alt.data(), cols);
        codec.decode(alt.data(), alt_decoded.data(), cols);
        codec.search_weights(x, importance, sw.data(), cols);
        for (int64_t b = 0; b < q.groups; ++b) {
          const int64_t at = b * bv;
          const double plain = block_error(x + at, decoded.data() + at, sw.data() + at, bv);
          const double searched = block_error(x + at, alt_decoded.data() + at, sw.data() + at, bv);
          if (searched <= plain) {
            std::copy_n(alt.data() + b * bb, bb, out + b * bb);
            std::copy_n(alt_decoded.data() + at, bv, decoded.data() + at);
          }
        }
      }
      for (int64_t c = 0; c < cols; ++c) {
        if (!std::isfinite(decoded[static_cast<size_t>(c)])) {
          int64_t expected = -1;
          non_finite_row.compare_exchange_strong(expected, r);
          break;
        }
      }
    }
  }
  if (non_finite_row >= 0) {
    fail(f.name, "quantize_rtn: row " + std::to_string(non_finite_row.load()) +
                     " decodes to a non-finite value (weights too large for the format's fp16 scales)");
  }
  return q;
}

}  // namespace

QuantizedMatrix quantize_rtn(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                             const RtnOptions& options) {
  const WeightFormatTraits& f = weight_format(format);
  check_quantizer_input(f, "quantize_rtn", w, rows, cols);
  if (is_ggml_format(f)) {
    require_format_accepts(format, rows, cols, "quantize_rtn");
    return quantize_rtn_ggml(f, w, rows, cols, options);
  }
  const int64_t n = rows * cols;
  QuantizedMatrix q = make_quantized_matrix(format, rows, cols);
  q.tensor_scale = compute_tensor_scale(f, w, n);

  GroupFitOptions fit;
  fit.clip_search = options.clip_search;
  fit.clip_steps = options.clip_steps;
  fit.clip_min = options.clip_min;
  fit.clip_max = options.clip_max;
  if (options.clip_search) {
    check(options.clip_steps >= 2 && options.clip_min > 0.f &&
              options.clip_max >= options.clip_min,
          f.name, "quantize_rtn: clip search needs clip_steps >= 2 and 0 < clip_min <= clip_max");
  }

#pragma omp parallel for schedule(dynamic, 16) firstprivate(fit)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    if (q.groups == 0) {  // kept weights: no parameters
      for (int64_t c = 0; c < cols; ++c) q.set_code(r, c, f.encode(f, row[c], GroupParams{}));
      continue;
    }
    for (int64_t g = 0; g < q.groups; ++g) {
      const int64_t begin = q.group_begin(g), len = q.group_length(g);
      fit.weights = options.importance ? options.importance + begin : nullptr;
      GroupParams p = fit_group(f, row + begin, len, q.tensor_scale, fit);
      q.set_params(r, g, p);
      for (int64_t c = begin; c < begin + len; ++c) q.set_code(r, c, f.encode(f, row[c], p));
    }
  }
  return q;
}

}  // namespace mpq

// RTN: fit each group (optionally with the clip search), then encode every value with the
// group's parameters. The per-group primitives live in format/weight_format.h.
#include "quant/rtn.h"

#include "quant/check_input.h"

#include <cmath>
#include <string>

#include "mpq/error.h"

namespace mpq {

QuantizedMatrix quantize_rtn(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                             const RtnOptions& options) {
  const WeightFormatTraits& f = weight_format(format);
  check_quantizer_input(f, "quantize_rtn", w, rows, cols);
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

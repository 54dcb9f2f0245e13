// Grids of element and ggml block formats behind one interface (quant/grid.h).
#include "quant/grid.h"

#include "format/ggml_codec.h"
#include "mpq/error.h"

namespace mpq {

GridSet::GridSet(WeightFormatId format, const float* w, int64_t rows, int64_t cols, const GroupFitOptions& fit)
    : f_(weight_format(format)), fit_(fit) {
  require_format_accepts(format, rows, cols, "quantize");
  q_ = make_quantized_matrix(format, rows, cols);
  check(q_.groups > 0, f_.name, "kept weights have no grid to fit");
  q_.tensor_scale = compute_tensor_scale(f_, w, rows * cols);
  if (!is_ggml_format(f_)) params_.resize(static_cast<size_t>(rows * q_.groups));
}

int64_t GridSet::group_of(int64_t col) const {
  if (is_ggml_format(f_)) return col / f_.ggml->block_values;
  return f_.group_size == 0 ? 0 : col / f_.group_size;
}

int64_t GridSet::group_begin(int64_t g) const {
  return is_ggml_format(f_) ? g * f_.ggml->block_values : q_.group_begin(g);
}

int64_t GridSet::group_length(int64_t g) const {
  return is_ggml_format(f_) ? f_.ggml->block_values : q_.group_length(g);
}

void GridSet::fit(int64_t r, int64_t g, const float* values) {
  const int64_t begin = group_begin(g);
  const float* weights = fit_.weights ? fit_.weights + begin : nullptr;
  if (is_ggml_format(f_)) {
    f_.ggml->fit_block(values, weights, q_.block_row(r) + g * f_.ggml->block_bytes);
    return;
  }
  GroupFitOptions fo = fit_;
  fo.weights = weights;
  const GroupParams p = fit_group(f_, values, group_length(g), q_.tensor_scale, fo);
  params_[static_cast<size_t>(r * q_.groups + g)] = p;
  q_.set_params(r, g, p);
}

float GridSet::round(int64_t r, int64_t col, float x) {
  const int64_t g = group_of(col);
  if (is_ggml_format(f_)) {
    const int bv = f_.ggml->block_values;
    return f_.ggml->round_value(q_.block_row(r) + g * f_.ggml->block_bytes, static_cast<int>(col - g * bv), x);
  }
  const GroupParams& p = params_[static_cast<size_t>(r * q_.groups + g)];
  const uint16_t code = f_.encode(f_, x, p);
  q_.set_code(r, col, code);
  return f_.decode(f_, code, p);
}

}  // namespace mpq

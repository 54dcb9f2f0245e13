// The rounding grids a column-by-column quantizer (GPTQ) puts a matrix on: one grid per group of
// each row, fitted once from the group's current values, then used to round the group's values
// one at a time.
//
//   element formats  the grid of a group is its GroupParams (fit_group with the options' clip
//                    search and weights); rounding = the table's encode, the value = its decode.
//   ggml formats     the grid of a block (super-block for the k-quants) is its stored scales:
//                    the codec's fit_block writes them (sub-block scales and mins already in
//                    their 4/6/8-bit form, fp16 d/dmin), with the importance when given; rounding
//                    = the codec's round_value onto those stored levels, writing the code into
//                    the block.
//
// Either way `round` returns exactly the value the stored code decodes to, which is what GPTQ
// needs for its error feedback, and the matrix it builds is complete when every column has been
// rounded.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "format/weight_format.h"

namespace mpq {

class GridSet {
 public:
  // For w [rows, cols] (nvfp4's tensor scale comes from it; nothing else is read). `fit` as for
  // fit_group; for ggml formats only fit.weights is used: the per-input-column importance
  // ([cols]), nullptr for the codec's plain fit. Throws for a shape the format cannot hold and
  // for kept formats (bf16/f16: nothing to fit).
  GridSet(WeightFormatId format, const float* w, int64_t rows, int64_t cols, const GroupFitOptions& fit);

  int64_t groups() const { return q_.groups; }   // groups (blocks) per row
  int64_t group_of(int64_t col) const;
  int64_t group_begin(int64_t g) const;
  int64_t group_length(int64_t g) const;

  // Fits group g of row r from `values` (its group_length(g) current values, in column order).
  // Rows are independent: different rows may be fitted from different threads.
  void fit(int64_t r, int64_t g, const float* values);
  // Rounds x, the current value of row r at column col (its group fitted), onto the group's grid;
  // stores the code and returns the value it decodes to.
  float round(int64_t r, int64_t col, float x);

  // The quantized matrix (complete once every value was rounded).
  QuantizedMatrix take() { return std::move(q_); }

 private:
  const WeightFormatTraits& f_;
  QuantizedMatrix q_;
  GroupFitOptions fit_;
  std::vector<GroupParams> params_;  // element formats: [rows][groups]
};

}  // namespace mpq

// Round-to-nearest (RTN) quantization of one weight matrix to any format of the table, with an
// optional clip search per group: the group's scale range is shrunk by the candidate factor that
// minimises the importance-weighted squared error sum_j importance_j * (w_j - q(w_j))^2. With
// importance = the per-input-column mean squared activation (an "importance matrix", as in
// llama.cpp's imatrix), this minimises the expected output error of the layer under a diagonal
// approximation of the activations' second moment.
#pragma once

#include <cstdint>

#include "format/weight_format.h"

namespace mpq {

struct RtnOptions {
  bool clip_search = false;  // search a shrink factor per group (per row for per-channel formats)
  int clip_steps = 20;       // candidates evenly spaced from clip_max down to clip_min
  float clip_min = 0.5f;     // smallest shrink tried (AWQ's auto-clip: 20 steps, 1 .. 0.5)
  float clip_max = 1.f;      // largest shrink; 1 always tried too (never worse than plain RTN)
  const float* importance = nullptr;  // [cols] weight of each input column, or nullptr (all 1)
};

// Quantizes w [rows, cols] (row-major fp32, rows = out_features) to `format`. Throws mpq::Error
// when w holds a NaN or an infinity, or the shape is empty. Rows run in parallel (OpenMP); the
// result does not depend on the thread count.
QuantizedMatrix quantize_rtn(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                             const RtnOptions& options = {});

}  // namespace mpq

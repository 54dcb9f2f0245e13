// Round-to-nearest (RTN) quantization of one weight matrix to any format of the table, with an
// optional clip search per group: the group's scale range is shrunk by the candidate factor that
// minimises the importance-weighted squared error sum_j importance_j * (w_j - q(w_j))^2. With
// importance = the per-input-column mean squared activation (an "importance matrix", as in
// llama.cpp's imatrix), this minimises the expected output error of the layer under a diagonal
// approximation of the activations' second moment.
//
// ggml block formats (q4_K, q8_0, iq4_nl, ...) have their own searches, llama.cpp's:
//   clip_search false: llama.cpp's quantization without an importance matrix (the bytes
//                      llama-quantize writes without --imatrix);
//   clip_search true:  llama.cpp's importance-weighted search (llama-quantize --imatrix) with
//                      `importance` (all 1 when nullptr), block by block kept only where its error
//                      Σ w (x − x̂)² under the search's own weights (GgmlBlockCodec::search_weights)
//                      is not larger than the plain encoder's, so it is never worse on that
//                      measure. q8_0 has no search (llama.cpp ignores the imatrix there too).
//   clip_steps/clip_min/clip_max do not apply. The shape must suit the format (format_accepts).
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
// when w holds a NaN or an infinity, the shape is empty or not one the format can hold, or (ggml
// formats) the result would decode to a non-finite value (fp16 scale overflow). Rows run in parallel (OpenMP); the
// result does not depend on the thread count.
QuantizedMatrix quantize_rtn(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                             const RtnOptions& options = {});

}  // namespace mpq

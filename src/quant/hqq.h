// HQQ (Badri & Shaji 2023, "Half-Quadratic Quantization of Large Machine Learning Models"):
// calibration-free; per group, minimise the Lp reconstruction error (p < 1, robust to outliers)
//     sum_j |x_j - dequant(quant(x_j))|^p
// by half-quadratic splitting: an auxiliary error e = shrink_p(x - x̂, β) (the Lp proximal step)
// alternates with a closed-form update of the quantization parameters that makes x̂ fit x - e,
// β growing by κ per iteration. Starts from the format's min/max (RTN) parameters and keeps a
// result only when its Lp error is lower than RTN's, so it is never worse than RTN in Lp.
//
// What is optimised, per format (docs/QUANTIZERS.md has the details):
//   asymmetric int (int*_g*)  the zero point as a real number (HQQ's own update,
//                             z = mean(q - (x - e)/s)); optionally the scale too (update_scale).
//                             Our formats store an integer zero, so the real zero is rounded
//                             (floor and ceil both tried), then the scale is re-optimised with
//                             that integer zero fixed, and the codes are re-encoded.
//   symmetric int / fp8 / fp4 the scale only: s = Σ t·v / Σ v² (least squares of the codes'
//                             values v onto the target t = x - e), stored through
//                             group_params_from_scale (f16/f32/E4M3/E8M0 as the format says);
//                             the two neighbouring stored scales are tried too.
//   bf16 / f16                plain rounding.
#pragma once

#include <cstdint>

#include "format/weight_format.h"

namespace mpq {

struct HqqOptions {
  float lp_norm = 0.7f;      // p of the Lp error (HQQ's default); (0, 1]
  float beta = 10.f;         // initial β of the half-quadratic splitting
  float kappa = 1.01f;       // β *= κ per iteration
  int iterations = 20;       // per stage (HQQ's default)
  bool early_stop = true;    // stop a stage as soon as the Lp error does not improve
  bool update_scale = true;  // asymmetric int formats: also update the scale in the zero stage
                             // (HQQ's reference updates the zero only)
  float max_l2_ratio = 1.f;  // guard (not in HQQ): a group's result is accepted only if its
                             // squared error is <= max_l2_ratio x RTN's; 0 = no guard (pure Lp).
                             // Without it, p < 1 happily clips outliers: mxfp4 (power-of-two
                             // scales) got 2.8x RTN's squared error for 4% less Lp error.
};

// Quantizes w [rows, cols] (row-major fp32) to `format`. Throws mpq::Error on non-finite weights,
// an empty shape or invalid options. Rows run in parallel (OpenMP); the result does not depend on
// the thread count.
QuantizedMatrix quantize_hqq(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                             const HqqOptions& options = {});

// Σ |w - dequantize(q)|^p over the matrix (the error HQQ minimises, per group).
double lp_error(const float* w, const QuantizedMatrix& q, double p);

}  // namespace mpq

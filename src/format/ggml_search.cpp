// llama.cpp's scale searches (definitions and the meaning of each in ggml_search.h).
//
// fp32 only, every sum accumulated in index order and every expression evaluated in the order
// ggml writes it (the project builds without floating-point contraction), because the point is
// to reproduce llama-quantize's bytes. Integer codes enter products as floats, as in C.
#include "format/ggml_search.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace mpq::ggml {

int nearest_int(float v) {
  // Adding 1.5·2^23 leaves the integer part of v in the low mantissa bits, rounded to nearest
  // even by the fp32 addition itself; valid while |v| < 2^22.
  constexpr float kLimit = 4194303.f;
  if (!(v >= -kLimit)) v = -kLimit;  // also NaN
  if (v > kLimit) v = kLimit;
  const float shifted = v + 12582912.f;
  return static_cast<int>(std::bit_cast<uint32_t>(shifted) & 0x007FFFFFu) - 0x00400000;
}

namespace {

// The value of largest magnitude (its sign kept; the first one on ties) and that magnitude.
void signed_absmax(int n, const float* x, float& max, float& amax) {
  max = 0.f;
  amax = 0.f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
}

int clamp_code(int l, int lo, int hi) { return std::max(lo, std::min(hi, l)); }

}  // namespace

float symmetric_search(int n, int nmax, const float* x, const float* weights, uint8_t* L) {
  float max, amax;
  signed_absmax(n, x, max, amax);
  if (amax < kZeroRunMax) {
    std::fill(L, L + n, uint8_t{0});
    return 0.f;
  }
  auto weight = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
  // Sums Σ w x l and Σ w l² of the codes of grid `iscale` (the codes written to L when `store`).
  auto fit = [&](float iscale, bool store, float& sumlx, float& suml2) {
    sumlx = 0.f;
    suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_code(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      if (store) L[i] = static_cast<uint8_t>(l + nmax);
      const float w = weight(i);
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
  };
  // First grid: the largest-magnitude value lands on level −nmax (the grid's long end).
  float sumlx, suml2;
  fit(static_cast<float>(-nmax) / max, true, sumlx, suml2);
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.f;
  // The least-squares error of a grid is Σ w x² − sumlx²/suml2: a larger sumlx²/suml2 is better.
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    fit(iscale, false, sumlx, suml2);
    if (suml2 > 0.f && sumlx * sumlx > best * suml2) {
      fit(iscale, true, sumlx, suml2);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

float coordinate_search(int n, int nmax, const float* x, uint8_t* L) {
  float max, amax;
  signed_absmax(n, x, max, amax);
  if (amax < kZeroRunMax) {
    std::fill(L, L + n, uint8_t{0});
    return 0.f;
  }
  int l_of[256];  // signed codes while refining (n <= 256)
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.f, suml2 = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_code(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    l_of[i] = l;
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  // Move one code at a time to its optimum given the others (x_i · Σ' w l² / Σ' w x l, the sums
  // without i) when the fitted error sumlx²/suml2 grows.
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(l_of[i]);
      if (slx > 0.f) {
        float sl2 = suml2 - w * static_cast<float>(l_of[i]) * static_cast<float>(l_of[i]);
        const int new_l = clamp_code(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != l_of[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (sl2 > 0.f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            l_of[i] = new_l;
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(l_of[i] + nmax);
  return suml2 > 0.f ? sumlx / suml2 : 0.f;
}

float asymmetric_search(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                        float* min_out, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.f) min = 0.f;
  if (max <= min) {
    std::fill(L, L + n, uint8_t{0});
    *min_out = -min;
    return 0.f;
  }
  auto error_of = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1.f / iscale;
  float best_error = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(clamp_code(l, 0, nmax));
    const float diff = scale * static_cast<float>(L[i]) + min - x[i];
    best_error += weights[i] * error_of(diff);
  }
  uint8_t trial[256];  // codes of the candidate grid (n <= 256)
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0.f, sum_l2 = 0.f, sum_xl = 0.f;
    for (int i = 0; i < n; ++i) {
      // min is the best fit so far; v may be out of range or NaN when it is near max.
      const float v = iscale * (x[i] - min);
      const int l = v > 0.f ? nearest_int(std::min(v, static_cast<float>(nmax))) : 0;
      trial[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const auto lf = static_cast<float>(l);
      sum_l += w * lf;
      sum_l2 += w * lf * lf;
      sum_xl += w * lf * x[i];
    }
    // Weighted least squares for value = scale·l + m (m = −min): the 2x2 normal equations.
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.f) {  // the offset may only lower values: refit the scale alone
        this_min = 0.f;
        this_scale = sum_xl / sum_l2;
      }
      float error = 0.f;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * static_cast<float>(trial[i]) + this_min - x[i];
        error += weights[i] * error_of(diff);
      }
      if (error < best_error) {
        std::copy(trial, trial + n, L);
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *min_out = -min;
  return scale;
}

float positive_search(int n, int nmax, const float* x, uint8_t* L, const float* weights) {
  float max = 0.f;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kZeroRunMax) {
    std::fill(L, L + n, uint8_t{0});
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1.f / iscale;
  float best_mse = 0.f;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
    const float scale_is = 1.f / iscale_is;
    float mse = 0.f;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0.f, suml2 = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float w = weights[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = weights[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0.f && sl2 > 0.f) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  return suml2 > 0.f ? sumlx / suml2 : 0.f;
}

}  // namespace mpq::ggml

// HQQ: per-group half-quadratic optimisation of the quantization parameters (see hqq.h).
//
// During the optimisation the parameters are real numbers (s, z): for asymmetric int formats the
// value of x is v = clamp(round(x/s + z), qmin, qmax) and x̂ = s·(v - z) (HQQ's own form); for every
// other format v = value of f.encode(x / s) and x̂ = s·v. Only at the end are they turned into
// stored parameters (integer zero, scale rounded to the scale type) and judged with the format's
// own codec against the RTN parameters.
#include "quant/hqq.h"

#include "quant/check_input.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "format/rounding.h"
#include "mpq/error.h"

namespace mpq {
namespace {

struct State {
  double s = 1.0;  // effective scale
  double z = 0.0;  // zero point (real during the optimisation; 0 for symmetric formats)
};

// HQQ's shrinkage: the proximal operator of the Lp norm (generalised soft thresholding),
// sign(x) · max(|x| - |x|^(p-1) / β, 0).
inline double shrink_lp(double x, double beta, double p) {
  const double a = std::fabs(x);
  if (a == 0.0) return 0.0;
  const double m = a - (p == 1.0 ? 1.0 : std::pow(a, p - 1.0)) / beta;
  return m > 0.0 ? std::copysign(m, x) : 0.0;
}

inline double lp_term(double d, double p) {
  const double a = std::fabs(d);
  return p == 1.0 ? a : (a == 0.0 ? 0.0 : std::pow(a, p));
}

class GroupOptimizer {
 public:
  GroupOptimizer(const WeightFormatTraits& f, float tensor_scale, const HqqOptions& o)
      : f_(f), ts_(tensor_scale), o_(o), p_(o.lp_norm),
        int_asym_(f.value_kind == ValueKind::Int && !f.symmetric),
        qmin_(f.value_kind == ValueKind::Int ? -(1 << (f.bits - 1)) : 0),
        qmax_(f.value_kind == ValueKind::Int ? (1 << (f.bits - 1)) - 1 : 0) {}

  GroupParams optimise(const float* x, int64_t n, const GroupParams& rtn) {
    x_ = x;
    n_ = n;
    v_.resize(static_cast<size_t>(n));
    best_ = rtn;
    best_err_ = stored_error(rtn, &l2_limit_);
    if (best_err_ == 0.0) return rtn;
    l2_limit_ = o_.max_l2_ratio > 0.f ? l2_limit_ * o_.max_l2_ratio
                                      : std::numeric_limits<double>::infinity();
    if (int_asym_) {
      const State st = stage({rtn.scale, static_cast<double>(rtn.zero)}, true, o_.update_scale);
      const double lo = std::clamp(std::floor(st.z), double(qmin_), double(qmax_));
      const double hi = std::clamp(std::ceil(st.z), double(qmin_), double(qmax_));
      const int n_zeros = lo == hi ? 1 : 2;
      const double zeros[2] = {lo, hi};
      for (int k = 0; k < n_zeros; ++k) {
        const double zi = zeros[k];
        const State s2 = stage({st.s, zi}, false, true);  // scale only, integer zero fixed
        consider_scale(s2.s, static_cast<int32_t>(zi));
        consider_scale(st.s, static_cast<int32_t>(zi));
      }
    } else {
      const State st = stage({rtn.scale, 0.0}, false, true);
      consider_scale(st.s, 0);
    }
    return best_;
  }

 private:
  // Value (in units of the scale) of x under real parameters.
  double value(float x, const State& st) const {
    if (int_asym_) {
      const double q = round_half_even(static_cast<double>(x) / st.s + st.z);
      return std::clamp(q, static_cast<double>(qmin_), static_cast<double>(qmax_));
    }
    GroupParams p;
    p.scale = static_cast<float>(st.s);
    GroupParams unit;  // scale 1, zero 0: decode gives the code's value
    return f_.decode(f_, f_.encode(f_, x, p), unit);
  }

  // One half-quadratic stage from `st`; returns the state with the lowest real-valued Lp error.
  State stage(State st, bool update_zero, bool update_scale) {
    double beta = o_.beta;
    State best = st;
    double best_err = std::numeric_limits<double>::infinity();
    for (int it = 0; it < o_.iterations; ++it) {
      if (!(st.s > 0.0) || !std::isfinite(st.s) || !std::isfinite(st.z)) break;
      double err = 0.0;
      for (int64_t j = 0; j < n_; ++j) {
        v_[j] = value(x_[j], st);
        err += lp_term(x_[j] - st.s * (v_[j] - st.z), p_);
      }
      if (err < best_err) {
        best_err = err;
        best = st;
      } else if (o_.early_stop) {
        break;
      }
      // Target of the parameter update: t = x - e, e = shrink(x - x̂).
      double sv = 0, st_ = 0, svv = 0, svt = 0;
      for (int64_t j = 0; j < n_; ++j) {
        const double xr = st.s * (v_[j] - st.z);
        const double t = x_[j] - shrink_lp(x_[j] - xr, beta, p_);
        const double v = v_[j];
        sv += v;
        st_ += t;
        svv += v * v;
        svt += v * t;
      }
      const double nn = static_cast<double>(n_);
      if (update_zero && update_scale) {
        // t ≈ s·v - s·z: least squares line through (v, t).
        const double var = svv - sv * sv / nn, cov = svt - sv * st_ / nn;
        const double s_new = var > 0.0 ? cov / var : 0.0;
        if (s_new > 0.0 && std::isfinite(s_new)) {
          st.z = (sv - st_ / s_new) / nn;  // mean(v - t/s)
          st.s = s_new;
        } else {
          st.z = (sv - st_ / st.s) / nn;
        }
      } else if (update_zero) {
        st.z = (sv - st_ / st.s) / nn;  // HQQ: z = mean(q - (x - e)/s)
      } else if (update_scale) {
        // t ≈ s·(v - z), z fixed: s = Σ t(v - z) / Σ (v - z)².
        const double z = st.z;
        const double num = svt - z * st_;
        const double den = svv - 2.0 * z * sv + nn * z * z;
        const double s_new = den > 0.0 ? num / den : 0.0;
        if (s_new > 0.0 && std::isfinite(s_new)) st.s = s_new;
      }
      beta *= o_.kappa;
    }
    return best;
  }

  // Lp error of the stored parameters under the format's own codec (and the squared error).
  double stored_error(const GroupParams& p, double* l2 = nullptr) const {
    double e = 0.0, e2 = 0.0;
    for (int64_t j = 0; j < n_; ++j) {
      const double d = x_[j] - quantize_value(f_, x_[j], p);
      e += lp_term(d, p_);
      e2 += d * d;
    }
    if (l2) *l2 = e2;
    return e;
  }

  void consider(const GroupParams& p) {
    if (!(p.scale > 0.f) || !std::isfinite(p.scale)) return;
    double l2 = 0.0;
    const double e = stored_error(p, &l2);
    if (e < best_err_ && l2 <= l2_limit_) {
      best_err_ = e;
      best_ = p;
    }
  }

  // The stored scale nearest to s (as encode_scale rounds it) and its two neighbours in the
  // scale type (bit patterns of positive values are monotone in every scale type).
  void consider_scale(double s, int32_t zero) {
    if (!(s > 0.0) || !std::isfinite(s)) return;
    const GroupParams c = group_params_from_scale(f_, static_cast<float>(s), zero, ts_);
    consider(c);
    if (c.scale_bits > 0) consider(group_params_from_stored(f_, c.scale_bits - 1, zero, ts_));
    consider(group_params_from_stored(f_, c.scale_bits + 1, zero, ts_));
  }

  const WeightFormatTraits& f_;
  float ts_;
  const HqqOptions& o_;
  double p_;
  bool int_asym_;
  int32_t qmin_, qmax_;
  const float* x_ = nullptr;
  int64_t n_ = 0;
  std::vector<double> v_;
  GroupParams best_;
  double best_err_ = 0.0;
  double l2_limit_ = 0.0;  // largest squared error a candidate may have
};

}  // namespace

double lp_error(const float* w, const QuantizedMatrix& q, double p) {
  std::vector<float> w_hat(static_cast<size_t>(q.rows * q.cols));
  dequantize(q, w_hat.data());
  double sum = 0.0;
  for (size_t i = 0; i < w_hat.size(); ++i) sum += lp_term(static_cast<double>(w[i]) - w_hat[i], p);
  return sum;
}

QuantizedMatrix quantize_hqq(WeightFormatId format, const float* w, int64_t rows, int64_t cols,
                             const HqqOptions& options) {
  const WeightFormatTraits& f = weight_format(format);
  // HQQ optimises one scale (and zero) per group in closed form; a ggml block's two-level
  // scales (integer sub-block scales times fp16 super-block scales) have no such update here.
  check(!is_ggml_format(f), f.name,
        "quantize_hqq: hqq does not support ggml block formats (use rtn, rtn_clip or gptq)");
  check_quantizer_input(f, "quantize_hqq", w, rows, cols);
  check(options.lp_norm > 0.f && options.lp_norm <= 1.f, f.name,
        "quantize_hqq: lp_norm must be in (0, 1]");
  check(options.beta > 0.f && options.kappa >= 1.f && options.iterations >= 0, f.name,
        "quantize_hqq: needs beta > 0, kappa >= 1, iterations >= 0");
  const int64_t n = rows * cols;
  QuantizedMatrix q = make_quantized_matrix(format, rows, cols);
  q.tensor_scale = compute_tensor_scale(f, w, n);

#pragma omp parallel
  {
    GroupOptimizer opt(f, q.tensor_scale, options);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = w + r * cols;
      if (q.groups == 0) {  // kept weights: plain rounding
        for (int64_t c = 0; c < cols; ++c) q.set_code(r, c, f.encode(f, row[c], GroupParams{}));
        continue;
      }
      for (int64_t g = 0; g < q.groups; ++g) {
        const int64_t begin = q.group_begin(g), len = q.group_length(g);
        const GroupParams rtn = fit_group(f, row + begin, len, q.tensor_scale);
        const GroupParams p = opt.optimise(row + begin, len, rtn);
        q.set_params(r, g, p);
        for (int64_t c = begin; c < begin + len; ++c) q.set_code(r, c, f.encode(f, row[c], p));
      }
    }
  }
  return q;
}

}  // namespace mpq

// Reverse-mode gradients of the fp32 decoder: the ops (forward and backward) and the driver
// (forward with per-layer checkpoints, then layer by layer: recompute, backward). The forward
// arithmetic mirrors model/forward.cpp (same formulas, same float/double choices), so the loss
// matches Model::forward to roundoff. See docs/GRADIENTS.md.
#include "model/backward.h"

#include "model/ops.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "kernel/fast_exp.h"
#include "mpq/error.h"

namespace mpq {
namespace {

// Threads for a product of `work` multiply-adds: small ones stay on one thread.
int threads_for(int64_t work) { return work < (1 << 18) ? 1 : omp_get_max_threads(); }

// Slice of [0, total) for thread t of `threads`, a multiple of 16 wide.
void slice_of(int64_t total, int t, int threads, int64_t& begin, int64_t& count) {
  const int64_t slice = ((total + threads - 1) / threads + 15) / 16 * 16;
  begin = t * slice;
  count = std::max<int64_t>(0, std::min(total, begin + slice) - begin);
}

// dx[n, in] (+)= dy[n, out] · w[out, in]; threads split the columns of dx.
void input_gradient(const float* dy, const float* w, int64_t n, int64_t in, int64_t out, float* dx,
                    bool accumulate) {
  const int threads = threads_for(n * in * out);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    int64_t begin, count;
    slice_of(in, t, threads, begin, count);
    if (count == 0) continue;
    // Inside a parallel region the OpenMP build of OpenBLAS runs single-threaded.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, count, out, 1.f, dy, out, w + begin,
                in, accumulate ? 1.f : 0.f, dx + begin, in);
  }
}

// The activations of one layer that its backward pass needs.
struct LayerActs {
  std::vector<float> xn1;           // [n, dim] attention-norm output (input of q/k/v)
  std::vector<float> q_lin, k_lin;  // [n, q_dim], [n, kv_dim] q/k projections (qk_norm only)
  std::vector<float> q, k, v;       // q/k after norm and RoPE, v: attention inputs
  std::vector<float> att;           // [n, q_dim] attention output (input of o_proj)
  std::vector<float> o_out;         // [n, dim] o_proj output (post_norms only: its norm's input)
  std::vector<float> x1;            // [n, dim] residual after attention
  std::vector<float> xn2;           // [n, dim] MLP-norm output (input of gate/up)
  std::vector<float> gate, up, h;   // [n, ffn] pre-activations and act(gate) * up
  std::vector<float> down_out;      // [n, dim] down_proj output (post_norms only)
};

grad::AttentionShape attention_shape(const ModelConfig& c, int l) {
  return {c.n_heads, c.n_kv_heads, c.head_dim, c.layer_window(l), c.attn_scale()};
}

void mlp_activation(const ModelConfig& c, const float* g, const float* u, float* h, int64_t count) {
  if (c.gelu_mlp) return grad::geglu_tanh(g, u, h, count);
  grad::swiglu(g, u, h, count);
}

// Runs layer l on x0 [n, dim], keeping the activations in `a`; writes the layer output to x_out
// when it is not null.
void layer_forward(const Model& model, int l, const BatchPlan& plan, const float* x0, float* x_out,
                   LayerActs& a) {
  const ModelConfig& c = model.config;
  const DecoderLayer& layer = model.layers[l];
  const int64_t n = plan.n_tokens;
  a.xn1.resize(n * c.dim);
  a.q.resize(n * c.q_dim());
  a.k.resize(n * c.kv_dim());
  a.v.resize(n * c.kv_dim());
  a.att.resize(n * c.q_dim());
  a.x1.resize(n * c.dim);
  a.xn2.resize(n * c.dim);
  a.gate.resize(n * c.ffn_dim);
  a.up.resize(n * c.ffn_dim);
  a.h.resize(n * c.ffn_dim);

  grad::rms_norm(x0, layer.attn_norm.data(), a.xn1.data(), n, c.dim, c.rms_eps);
  layer.at(LinearKind::Q).apply(a.xn1.data(), n, a.q.data());
  layer.at(LinearKind::K).apply(a.xn1.data(), n, a.k.data());
  layer.at(LinearKind::V).apply(a.xn1.data(), n, a.v.data());
  if (c.qk_norm) {
    a.q_lin = a.q;
    a.k_lin = a.k;
    grad::rms_norm(a.q_lin.data(), layer.q_norm.data(), a.q.data(), n * c.n_heads, c.head_dim,
                   c.rms_eps);
    grad::rms_norm(a.k_lin.data(), layer.k_norm.data(), a.k.data(), n * c.n_kv_heads, c.head_dim,
                   c.rms_eps);
  }
  grad::rope(a.q.data(), n, c.n_heads, c.head_dim, plan.cos_of(c, l), plan.sin_of(c, l));
  grad::rope(a.k.data(), n, c.n_kv_heads, c.head_dim, plan.cos_of(c, l), plan.sin_of(c, l));
  grad::attention(attention_shape(c, l), a.q.data(), a.k.data(), a.v.data(), n, a.att.data());
  layer.at(LinearKind::O).apply(a.att.data(), n, a.x1.data());
  if (c.post_norms) {  // x1 = x0 + norm(o)
    a.o_out = a.x1;
    grad::rms_norm(a.o_out.data(), layer.post_attn_norm.data(), a.x1.data(), n, c.dim, c.rms_eps);
  }
  for (int64_t i = 0; i < n * c.dim; ++i) a.x1[i] += x0[i];

  grad::rms_norm(a.x1.data(), layer.ffn_norm.data(), a.xn2.data(), n, c.dim, c.rms_eps);
  layer.at(LinearKind::Gate).apply(a.xn2.data(), n, a.gate.data());
  layer.at(LinearKind::Up).apply(a.xn2.data(), n, a.up.data());
  mlp_activation(c, a.gate.data(), a.up.data(), a.h.data(), n * c.ffn_dim);
  // The layer output is needed in the forward sweep; the backward sweep needs only down's output
  // (post_norms: the input of its norm).
  if (x_out != nullptr || c.post_norms) {
    std::vector<float> down(n * c.dim);
    layer.at(LinearKind::Down).apply(a.h.data(), n, down.data());
    if (c.post_norms) {
      a.down_out = down;
      grad::rms_norm(a.down_out.data(), layer.post_ffn_norm.data(), down.data(), n, c.dim, c.rms_eps);
    }
    if (x_out != nullptr) {
      for (int64_t i = 0; i < n * c.dim; ++i) x_out[i] = down[i] + a.x1[i];
    }
  }
}

// Backward through one Linear: dW into the accumulator (when it is not empty), the sink, and
// dx (+)= dy · W with W fetched as fp32 into `w_scratch`.
struct LinearBackward {
  const Model& model;
  LinearGradients& grads;
  LinearGradientSink* sink;
  std::vector<float> w_scratch;

  void operator()(int l, LinearKind kind, const float* x, const float* dy, int64_t n, float* dx,
                  bool accumulate_dx) {
    const Linear& linear = model.layers[l].at(kind);
    const int64_t in = linear.weights->in_features(), out = linear.weights->out_features();
    if (!grads.w.empty()) {
      std::vector<float>& dw = grads.at(l, kind);
      if (!dw.empty()) {
        check(static_cast<int64_t>(dw.size()) == out * in, "gradients",
              "layer " + std::to_string(l) + " " + linear_kind_name(kind) + ": accumulator size " +
                  std::to_string(dw.size()) + ", expected " + std::to_string(out * in));
        weight_gradient(x, dy, n, in, out, dw.data(), true);
      }
    }
    if (sink != nullptr) sink->on_linear(l, kind, x, dy, n, in, out);
    w_scratch.resize(out * in);
    linear.weights->to_f32(w_scratch.data());
    input_gradient(dy, w_scratch.data(), n, in, out, dx, accumulate_dx);
  }
};

// Backward of layer l: dx [n, dim] holds dLoss/d(layer output) on entry and dLoss/d(layer input)
// on return. `a` holds the layer's recomputed activations, x0 its input.
void layer_backward(const Model& model, int l, const BatchPlan& plan, const float* x0,
                    const LayerActs& a, float* dx, LinearBackward& linear_backward) {
  const ModelConfig& c = model.config;
  const DecoderLayer& layer = model.layers[l];
  const int64_t n = plan.n_tokens;
  // dx is dLoss/dx2; x2 = x1 + down(h) (or x1 + norm(down(h))), so dLoss/dx1 starts as dx and
  // dLoss/d(down out) = dx (or dx through the norm's backward).
  std::vector<float> dh(n * c.ffn_dim), dg(n * c.ffn_dim), du(n * c.ffn_dim), dxn(n * c.dim);
  std::vector<float> d_out;  // post_norms: dLoss/d(down or o output)
  if (c.post_norms) {
    d_out.resize(n * c.dim);
    grad::rms_norm_backward(a.down_out.data(), layer.post_ffn_norm.data(), dx, d_out.data(), n, c.dim, c.rms_eps, false);
  }
  linear_backward(l, LinearKind::Down, a.h.data(), c.post_norms ? d_out.data() : dx, n, dh.data(), false);
  if (c.gelu_mlp) {
    grad::geglu_tanh_backward(a.gate.data(), a.up.data(), dh.data(), dg.data(), du.data(), n * c.ffn_dim);
  } else {
    grad::swiglu_backward(a.gate.data(), a.up.data(), dh.data(), dg.data(), du.data(), n * c.ffn_dim);
  }
  dh = {};
  linear_backward(l, LinearKind::Up, a.xn2.data(), du.data(), n, dxn.data(), false);
  linear_backward(l, LinearKind::Gate, a.xn2.data(), dg.data(), n, dxn.data(), true);
  dg = {};
  du = {};
  grad::rms_norm_backward(a.x1.data(), layer.ffn_norm.data(), dxn.data(), dx, n, c.dim, c.rms_eps,
                          true);
  // dx is now dLoss/dx1; x1 = x0 + o(att).
  std::vector<float> datt(n * c.q_dim()), dq(n * c.q_dim()), dk(n * c.kv_dim()),
      dv(n * c.kv_dim());
  if (c.post_norms) {
    grad::rms_norm_backward(a.o_out.data(), layer.post_attn_norm.data(), dx, d_out.data(), n, c.dim, c.rms_eps, false);
  }
  linear_backward(l, LinearKind::O, a.att.data(), c.post_norms ? d_out.data() : dx, n, datt.data(), false);
  grad::attention_backward(attention_shape(c, l), a.q.data(), a.k.data(), a.v.data(), datt.data(), n,
                           dq.data(), dk.data(), dv.data());
  datt = {};
  grad::rope_backward(dq.data(), n, c.n_heads, c.head_dim, plan.cos_of(c, l), plan.sin_of(c, l));
  grad::rope_backward(dk.data(), n, c.n_kv_heads, c.head_dim, plan.cos_of(c, l), plan.sin_of(c, l));
  if (c.qk_norm) {
    grad::rms_norm_backward(a.q_lin.data(), layer.q_norm.data(), dq.data(), dq.data(),
                            n * c.n_heads, c.head_dim, c.rms_eps, false);
    grad::rms_norm_backward(a.k_lin.data(), layer.k_norm.data(), dk.data(), dk.data(),
                            n * c.n_kv_heads, c.head_dim, c.rms_eps, false);
  }
  linear_backward(l, LinearKind::V, a.xn1.data(), dv.data(), n, dxn.data(), false);
  linear_backward(l, LinearKind::K, a.xn1.data(), dk.data(), n, dxn.data(), true);
  linear_backward(l, LinearKind::Q, a.xn1.data(), dq.data(), n, dxn.data(), true);
  grad::rms_norm_backward(x0, layer.attn_norm.data(), dxn.data(), dx, n, c.dim, c.rms_eps, true);
}

// Final norm, output head and cross-entropy on x [n, dim]: returns the mean loss over the n-1
// targets and writes dx = scale * dLoss/dx (the last row is zero). Rows go through the head in
// chunks so that at most `chunk` rows of logits exist at once.
double head_backward(const Model& model, std::span<const int32_t> tokens, const float* x,
                     float* dx, float scale, int chunk, LinearGradientSink* sink) {
  const ModelConfig& c = model.config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_targets = n - 1;
  const int64_t vocab = model.lm_head.weights->out_features();
  check(model.lm_head.weights->in_features() == c.dim, "gradients", "output head width mismatch");
  chunk = std::max(1, chunk);
  std::vector<float> w_head(vocab * c.dim);
  model.lm_head.weights->to_f32(w_head.data());
  std::vector<float> xn(chunk * c.dim), logits(chunk * vocab), dxn(chunk * c.dim);
  const float grad_scale = scale / static_cast<float>(n_targets);
  double loss_sum = 0;
  for (int64_t r0 = 0; r0 < n_targets; r0 += chunk) {
    const int64_t rows = std::min<int64_t>(chunk, n_targets - r0);
    grad::rms_norm(x + r0 * c.dim, model.final_norm.data(), xn.data(), rows, c.dim, c.rms_eps);
    model.lm_head.apply(xn.data(), rows, logits.data());
    loss_sum += grad::cross_entropy(logits.data(), tokens.data() + r0 + 1, rows, vocab, grad_scale,
                                    logits.data());
    if (sink != nullptr) sink->on_head(xn.data(), logits.data(), rows, c.dim, vocab);  // logits now hold dlogits
    input_gradient(logits.data(), w_head.data(), rows, c.dim, vocab, dxn.data(), false);
    grad::rms_norm_backward(x + r0 * c.dim, model.final_norm.data(), dxn.data(), dx + r0 * c.dim,
                            rows, c.dim, c.rms_eps, false);
  }
  std::fill(dx + n_targets * c.dim, dx + n * c.dim, 0.f);
  return loss_sum / static_cast<double>(n_targets);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ops

namespace grad {

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t width, float eps) {
  ops::rms_norm(x, w, y, rows, width, eps);
}

// With r = 1/sqrt(mean(x²) + eps) and g = dy ⊙ w:  dx = r·g - x · r³ · (g·x) / width.
void rms_norm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows,
                       int64_t width, float eps, bool accumulate) {
#pragma omp parallel for if (rows > 8)
  for (int64_t t = 0; t < rows; ++t) {
    const float* xr = x + t * width;
    const float* dyr = dy + t * width;
    float* dxr = dx + t * width;
    double sum_sq = 0, gx = 0;
    for (int64_t i = 0; i < width; ++i) {
      sum_sq += static_cast<double>(xr[i]) * xr[i];
      gx += static_cast<double>(dyr[i]) * w[i] * xr[i];
    }
    const double r = 1.0 / std::sqrt(sum_sq / width + eps);
    const float a = static_cast<float>(r);
    const float b = static_cast<float>(r * r * r * gx / width);
    // dx may alias dy (not when accumulating): each element is read before it is written.
    for (int64_t i = 0; i < width; ++i) {
      const float v = a * dyr[i] * w[i] - b * xr[i];
      dxr[i] = accumulate ? dxr[i] + v : v;
    }
  }
}

void rope(float* x, int64_t rows, int n_heads, int head_dim, const float* cos_t, const float* sin_t) {
  ops::rope(x, rows, n_heads, head_dim, cos_t, sin_t);
}

// The rotation is orthogonal: its transpose (rotation by -angle) maps output to input gradients.
void rope_backward(float* dx, int64_t rows, int n_heads, int head_dim, const float* cos_t,
                   const float* sin_t) {
  ops::rope(dx, rows, n_heads, head_dim, cos_t, sin_t, /*inverse=*/true);
}

namespace {

// P = causal (windowed) softmax of scale · q_h k_hᵀ, as forward.cpp computes it: [n, n], zero
// outside the visible keys.
void attention_probs(const AttentionShape& s, const float* q, const float* k, int64_t n, int h,
                     float* p) {
  const int hd = s.head_dim, q_dim = s.n_heads * hd, kv_dim = s.n_kv_heads * hd;
  const int kv = h / (s.n_heads / s.n_kv_heads);
  const float scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(hd));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, scale, q + h * hd, q_dim,
              k + kv * hd, kv_dim, 0.f, p, n);
  ops::causal_softmax(p, n, n, 0, s.sliding_window);
}

void check_shape(const AttentionShape& s) {
  check(s.n_heads > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0 && s.head_dim > 0,
        "gradients", "invalid attention shape");
}

}  // namespace

void attention(const AttentionShape& s, const float* q, const float* k, const float* v, int64_t n,
               float* out) {
  check_shape(s);
  const int hd = s.head_dim, q_dim = s.n_heads * hd, kv_dim = s.n_kv_heads * hd;
  const int group = s.n_heads / s.n_kv_heads;
#pragma omp parallel if (n * n > 4096)
  {
    std::vector<float> p(n * n);
#pragma omp for schedule(dynamic)
    for (int h = 0; h < s.n_heads; ++h) {
      attention_probs(s, q, k, n, h, p.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, n, 1.f, p.data(), n,
                  v + (h / group) * hd, kv_dim, 0.f, out + h * hd, q_dim);
    }
  }
}

// Per head, with P the probabilities, dO the output gradient and S the scaled scores:
//   dP = dO·Vᵀ,  dS = P ⊙ (dP - rowsum(P ⊙ dP)),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q,  dV = Pᵀ·dO.
// Query heads sharing a KV head add their dK/dV: each head writes its own [n, hd] buffer and the
// buffers are summed afterwards, so heads run in parallel without races.
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const float* dout, int64_t n, float* dq, float* dk, float* dv) {
  check_shape(s);
  const int hd = s.head_dim, q_dim = s.n_heads * hd, kv_dim = s.n_kv_heads * hd;
  const int group = s.n_heads / s.n_kv_heads;
  const float scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> dk_head(static_cast<size_t>(s.n_heads) * n * hd),
      dv_head(static_cast<size_t>(s.n_heads) * n * hd);
#pragma omp parallel if (n * n > 4096)
  {
    std::vector<float> p(n * n), dp(n * n);
#pragma omp for schedule(dynamic)
    for (int h = 0; h < s.n_heads; ++h) {
      const int kv = h / group;
      attention_probs(s, q, k, n, h, p.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, 1.f, dout + h * hd, q_dim,
                  v + kv * hd, kv_dim, 0.f, dp.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        float* pr = p.data() + i * n;
        float* dpr = dp.data() + i * n;
        double dot = 0;
        for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(pr[j]) * dpr[j];
        const float d = static_cast<float>(dot);
        // dS overwrites dP; entries outside the visible keys are zero because P is.
        for (int64_t j = 0; j < n; ++j) dpr[j] = pr[j] * (dpr[j] - d);
      }
      float* dkh = dk_head.data() + static_cast<size_t>(h) * n * hd;
      float* dvh = dv_head.data() + static_cast<size_t>(h) * n * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, n, scale, dp.data(), n,
                  k + kv * hd, kv_dim, 0.f, dq + h * hd, q_dim);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, n, scale, dp.data(), n,
                  q + h * hd, q_dim, 0.f, dkh, hd);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, n, 1.f, p.data(), n,
                  dout + h * hd, q_dim, 0.f, dvh, hd);
    }
  }
#pragma omp parallel for if (n > 8)
  for (int64_t t = 0; t < n; ++t) {
    for (int kv = 0; kv < s.n_kv_heads; ++kv) {
      float* dkr = dk + t * kv_dim + kv * hd;
      float* dvr = dv + t * kv_dim + kv * hd;
      std::fill(dkr, dkr + hd, 0.f);
      std::fill(dvr, dvr + hd, 0.f);
      for (int h = kv * group; h < (kv + 1) * group; ++h) {
        const float* dkh = dk_head.data() + (static_cast<size_t>(h) * n + t) * hd;
        const float* dvh = dv_head.data() + (static_cast<size_t>(h) * n + t) * hd;
        for (int i = 0; i < hd; ++i) {
          dkr[i] += dkh[i];
          dvr[i] += dvh[i];
        }
      }
    }
  }
}

// Out of place through the forward pass's own SwiGLU, so both compute the same h.
void swiglu(const float* g, const float* u, float* h, int64_t count) {
  std::copy_n(g, count, h);
  ops::swiglu(h, u, count);
}

// silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 - σ(g))).
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du,
                     int64_t count) {
#pragma omp parallel for simd if (count > 65536)
  for (int64_t i = 0; i < count; ++i) {
    const float sig = 1.f / (1.f + exp_approx(-g[i]));
    const float silu = g[i] * sig;
    const float d = dh[i];
    du[i] = d * silu;
    dg[i] = d * u[i] * sig * (1.f + g[i] * (1.f - sig));
  }
}

void geglu_tanh(const float* g, const float* u, float* h, int64_t count) {
  std::copy_n(g, count, h);
  ops::geglu_tanh(h, u, count);
}

// gelu_tanh(g) = g·s with s = σ(2v), v = c·(g + a·g³):
// gelu' = s + g·s·(1 - s)·2·c·(1 + 3a·g²).
void geglu_tanh_backward(const float* g, const float* u, const float* dh, float* dg, float* du,
                         int64_t count) {
  constexpr float kC = 0.7978845608028654f, kA = 0.044715f;
#pragma omp parallel for simd if (count > 65536)
  for (int64_t i = 0; i < count; ++i) {
    const float x = g[i];
    const float v = kC * (x + kA * x * x * x);
    const float sig = 1.f / (1.f + exp_approx(-2.f * v));
    const float d = dh[i];
    du[i] = d * x * sig;
    dg[i] = d * u[i] * (sig + x * sig * (1.f - sig) * 2.f * kC * (1.f + 3.f * kA * x * x));
  }
}

double cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                     float grad_scale, float* dlogits) {
  double total = 0;
#pragma omp parallel for reduction(+ : total) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    float* drow = dlogits + r * vocab;
    const int32_t target = targets[r];
    const double max_logit = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - max_logit);
    const double log_z = max_logit + std::log(sum);
    total += log_z - row[target];
    // dlogits may alias logits: row[j] is read before drow[j] is written.
    for (int64_t j = 0; j < vocab; ++j) {
      drow[j] = static_cast<float>(std::exp(row[j] - log_z) * grad_scale);
    }
    drow[target] -= grad_scale;
  }
  return total;
}

}  // namespace grad

// ---------------------------------------------------------------------------------------------
// Driver

LinearGradients LinearGradients::zeros(const Model& model) {
  model.require_dense("gradients");
  LinearGradients g;
  g.w.resize(model.layers.size());
  for (size_t l = 0; l < model.layers.size(); ++l) {
    for (int k = 0; k < kLinearKinds; ++k) {
      const LinearWeights& w = *model.layers[l].linear[k].weights;
      g.w[l][k].assign(w.out_features() * w.in_features(), 0.f);
    }
  }
  return g;
}

void weight_gradient(const float* x, const float* dy, int64_t n, int64_t in, int64_t out, float* dw,
                     bool accumulate) {
  const int threads = threads_for(n * in * out);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    int64_t begin, count;
    slice_of(out, t, threads, begin, count);
    if (count == 0) continue;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, count, in, n, 1.f, dy + begin, out, x, in,
                accumulate ? 1.f : 0.f, dw + begin * in, in);
  }
}

double accumulate_linear_gradients(const Model& model, std::span<const int32_t> tokens,
                                   LinearGradients& grads, const GradientOptions& options) {
  model.require_dense("gradients");
  const ModelConfig& c = model.config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) fail("gradients", "need at least 2 tokens, got " + std::to_string(n));
  if (!grads.w.empty() && grads.w.size() != model.layers.size()) {
    fail("gradients", "accumulator has " + std::to_string(grads.w.size()) + " layers, model " +
                          std::to_string(model.layers.size()));
  }
  // The plan validates the ids and gives the model's own RoPE tables (positions 0..n-1).
  KVCache positions;
  positions.capacity = static_cast<int>(n);
  const SequenceInput seq{tokens.data(), static_cast<int>(n), &positions};
  const BatchPlan plan = model.plan_batch(std::span(&seq, 1));

  // Forward, keeping each layer's input (checkpoints[l]) and the final hidden state.
  const int n_layers = c.n_layers;
  std::vector<std::vector<float>> checkpoints(n_layers + 1);
  checkpoints[0] = model.embed(plan);
  LayerActs acts;
  for (int l = 0; l < n_layers; ++l) {
    checkpoints[l + 1].resize(n * c.dim);
    layer_forward(model, l, plan, checkpoints[l].data(), checkpoints[l + 1].data(), acts);
  }

  std::vector<float> dx(n * c.dim);
  const double loss = head_backward(model, tokens, checkpoints[n_layers].data(), dx.data(),
                                    options.scale, options.head_chunk_rows, options.sink);
  checkpoints[n_layers] = {};

  LinearBackward linear_backward{model, grads, options.sink, {}};
  for (int l = n_layers - 1; l >= 0; --l) {
    layer_forward(model, l, plan, checkpoints[l].data(), nullptr, acts);
    layer_backward(model, l, plan, checkpoints[l].data(), acts, dx.data(), linear_backward);
    checkpoints[l] = {};
  }
  if (options.sink != nullptr) {
    // The embedding output is embed_scale · row (gemma3): the rows' gradient is scaled alike.
    if (c.embed_scale != 1.f) {
      for (float& v : dx) v *= c.embed_scale;
    }
    options.sink->on_embedding(tokens.data(), dx.data(), n, c.dim);
  }
  grads.n_sequences += 1;
  grads.loss_sum += loss;
  return loss;
}

}  // namespace mpq

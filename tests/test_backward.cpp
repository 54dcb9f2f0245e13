// Reverse-mode gradients (model/backward.h) against central finite differences: each op on its
// own, then whole models (synthetic llama GQA / qwen2 biases / qwen3 q-k norm / mistral sliding
// window / tied llama with biases, the real stories260K, and the default SmolLM2 when present),
// and, when a PyTorch reference file from tools/reference_grad.py sits in /tmp, against autograd.
//
// The checks are directional: for a random direction D, (f(x+hD) - f(x-hD)) / 2h against the
// analytic <grad, D>. That sums over every entry, so a single check sees an error anywhere in
// the gradient, and it is far less noisy than entry-wise differences. Error budget (fp32): the
// function values carry roundoff ~1e-7 relative, which the difference quotient turns into
// ~1e-7 |f| / h; truncation is O(h²) relative. The tolerance is taken relative to
// |<g, D>| + ||g|| ||D|| / sqrt(N) (the typical size of <g, D> for a random D), so that a
// direction nearly orthogonal to the gradient does not make the relative error meaningless.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/backward.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using mpq::LinearKind;

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

double norm(const std::vector<float>& a) { return std::sqrt(dot(a, a)); }

std::vector<float> axpy(const std::vector<float>& x, double h, const std::vector<float>& d) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(x[i] + h * d[i]);
  return y;
}

// The relative error of the directional derivative of f at x along d: |fd - <g, d>| divided by
// |<g, d>| + ||g|| ||d|| / sqrt(N).
// With `richardson`, the central differences at h and h/2 are combined as (4 D(h/2) - D(h)) / 3,
// which cancels the O(h²) truncation term (left: O(h⁴)); the whole-model checks need it, their
// loss being strongly curved (a 1% weight step moves the layer-0 down_proj derivative of the
// default model by a few percent).
double directional_error(const std::function<double(const std::vector<float>&)>& f,
                         const std::vector<float>& x, const std::vector<float>& g,
                         const std::vector<float>& d, double h, double* fd_out = nullptr,
                         double* an_out = nullptr, bool richardson = false) {
  auto central = [&](double step) { return (f(axpy(x, step, d)) - f(axpy(x, -step, d))) / (2 * step); };
  const double fd = richardson ? (4 * central(h / 2) - central(h)) / 3 : central(h);
  const double an = dot(g, d);
  if (fd_out) *fd_out = fd;
  if (an_out) *an_out = an;
  const double typical = norm(g) * norm(d) / std::sqrt(static_cast<double>(x.size()));
  return std::abs(fd - an) / (std::abs(an) + typical + 1e-30);
}

// Checks `n_dirs` random directions; f must be the function whose gradient at x is g.
void expect_gradient(const std::function<double(const std::vector<float>&)>& f,
                     const std::vector<float>& x, const std::vector<float>& g, double h, double tol,
                     uint64_t seed, const std::string& what, int n_dirs = 3) {
  ASSERT_EQ(x.size(), g.size()) << what;
  ASSERT_GT(norm(g), 0) << what << ": zero gradient";
  for (int k = 0; k < n_dirs; ++k) {
    const std::vector<float> d = mpq::test::gaussian(x.size(), seed * 100 + k);
    double fd, an;
    const double err = directional_error(f, x, g, d, h, &fd, &an);
    EXPECT_LT(err, tol) << what << " direction " << k << ": finite difference " << fd
                        << ", analytic " << an;
  }
}

// f(y) = Σ r ⊙ y in double: the probe whose gradient with respect to y is r.
double probe(const std::vector<float>& y, const std::vector<float>& r) { return dot(y, r); }

}  // namespace

// --- ops --------------------------------------------------------------------------------------

TEST(BackwardOps, RmsNorm) {
  const int64_t rows = 3, width = 16;
  const float eps = 1e-5f;
  const auto x = mpq::test::gaussian(rows * width, 1);
  auto w = mpq::test::gaussian(width, 2, 0.2f);
  for (float& v : w) v += 1.f;
  const auto r = mpq::test::gaussian(rows * width, 3);
  auto f = [&](const std::vector<float>& xx) {
    std::vector<float> y(xx.size());
    mpq::grad::rms_norm(xx.data(), w.data(), y.data(), rows, width, eps);
    return probe(y, r);
  };
  std::vector<float> g(x.size(), 0.5f);
  mpq::grad::rms_norm_backward(x.data(), w.data(), r.data(), g.data(), rows, width, eps, false);
  expect_gradient(f, x, g, 1e-3, 1e-3, 4, "rms_norm");
  // Accumulating adds to what is there; dx may alias dy.
  std::vector<float> acc(x.size(), 0.5f);
  mpq::grad::rms_norm_backward(x.data(), w.data(), r.data(), acc.data(), rows, width, eps, true);
  for (size_t i = 0; i < g.size(); ++i) EXPECT_FLOAT_EQ(acc[i], g[i] + 0.5f);
  std::vector<float> alias = r;
  mpq::grad::rms_norm_backward(x.data(), w.data(), alias.data(), alias.data(), rows, width, eps, false);
  EXPECT_EQ(alias, g);
}

TEST(BackwardOps, Rope) {
  const int64_t rows = 4;
  const int heads = 3, hd = 8;
  std::vector<float> cos_t(rows * hd / 2), sin_t(rows * hd / 2);
  const auto angles = mpq::test::gaussian(cos_t.size(), 5, 2.f);
  for (size_t i = 0; i < angles.size(); ++i) {
    cos_t[i] = std::cos(angles[i]);
    sin_t[i] = std::sin(angles[i]);
  }
  const auto x = mpq::test::gaussian(rows * heads * hd, 6);
  const auto r = mpq::test::gaussian(x.size(), 7);
  auto f = [&](const std::vector<float>& xx) {
    std::vector<float> y = xx;
    mpq::grad::rope(y.data(), rows, heads, hd, cos_t.data(), sin_t.data());
    return probe(y, r);
  };
  std::vector<float> g = r;
  mpq::grad::rope_backward(g.data(), rows, heads, hd, cos_t.data(), sin_t.data());
  expect_gradient(f, x, g, 1e-2, 1e-4, 8, "rope");
  // The backward is the inverse rotation: it undoes the forward exactly (up to rounding).
  std::vector<float> y = x;
  mpq::grad::rope(y.data(), rows, heads, hd, cos_t.data(), sin_t.data());
  mpq::grad::rope_backward(y.data(), rows, heads, hd, cos_t.data(), sin_t.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
}

TEST(BackwardOps, AttentionGqaMhaAndSlidingWindow) {
  const int64_t n = 7;
  // The last: scores scaled by 0.2 instead of 1/sqrt(8) (gemma3's query_pre_attn_scalar = 25).
  const mpq::grad::AttentionShape shapes[] = {{4, 2, 8, 0}, {2, 2, 8, 0}, {4, 1, 8, 3}, {3, 3, 4, 1}, {4, 2, 8, 4, 0.2f}};
  int case_no = 0;
  for (const auto& s : shapes) {
    const std::string what = "attention case " + std::to_string(case_no++);
    const int q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
    // Scores of order 1 (entries ~N(0, 1), scaled by 1/sqrt(hd) after a sum of hd products).
    const auto q = mpq::test::gaussian(n * q_dim, 10 + case_no);
    const auto k = mpq::test::gaussian(n * kv_dim, 20 + case_no);
    const auto v = mpq::test::gaussian(n * kv_dim, 30 + case_no);
    const auto r = mpq::test::gaussian(n * q_dim, 40 + case_no);
    auto run = [&](const std::vector<float>& qq, const std::vector<float>& kk,
                   const std::vector<float>& vv) {
      std::vector<float> out(n * q_dim);
      mpq::grad::attention(s, qq.data(), kk.data(), vv.data(), n, out.data());
      return probe(out, r);
    };
    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
    mpq::grad::attention_backward(s, q.data(), k.data(), v.data(), r.data(), n, dq.data(),
                                  dk.data(), dv.data());
    if (s.sliding_window == 1) {
      // A softmax over one key is constant: no gradient reaches q or k.
      EXPECT_EQ(norm(dq), 0) << what;
      EXPECT_EQ(norm(dk), 0) << what;
    } else {
      expect_gradient([&](const std::vector<float>& x) { return run(x, k, v); }, q, dq, 1e-3,
                      2e-3, 50 + case_no, what + " dq");
      expect_gradient([&](const std::vector<float>& x) { return run(q, x, v); }, k, dk, 1e-3,
                      2e-3, 60 + case_no, what + " dk");
    }
    expect_gradient([&](const std::vector<float>& x) { return run(q, k, x); }, v, dv, 1e-3, 2e-3,
                    70 + case_no, what + " dv");
  }
}

TEST(BackwardOps, AttentionWindowOfOneIsIdentityOnValues) {
  // Each query sees only its own key: out = v of its KV head, whatever q and k are.
  const int64_t n = 5;
  const mpq::grad::AttentionShape s{2, 1, 4, 1};
  const auto q = mpq::test::gaussian(n * 8, 1), k = mpq::test::gaussian(n * 4, 2),
             v = mpq::test::gaussian(n * 4, 3);
  std::vector<float> out(n * 8);
  mpq::grad::attention(s, q.data(), k.data(), v.data(), n, out.data());
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[t * 8 + h * 4 + i], v[t * 4 + i], 1e-6);
    }
  }
}

TEST(BackwardOps, SwiGlu) {
  const int64_t count = 40;
  const auto g = mpq::test::gaussian(count, 1, 2.f), u = mpq::test::gaussian(count, 2),
             r = mpq::test::gaussian(count, 3);
  auto run = [&](const std::vector<float>& gg, const std::vector<float>& uu) {
    std::vector<float> h(count);
    mpq::grad::swiglu(gg.data(), uu.data(), h.data(), count);
    return probe(h, r);
  };
  std::vector<float> dg(count), du(count);
  mpq::grad::swiglu_backward(g.data(), u.data(), r.data(), dg.data(), du.data(), count);
  expect_gradient([&](const std::vector<float>& x) { return run(x, u); }, g, dg, 1e-3, 1e-3, 4,
                  "swiglu dg");
  expect_gradient([&](const std::vector<float>& x) { return run(g, x); }, u, du, 1e-3, 1e-3, 5,
                  "swiglu du");
}

TEST(BackwardOps, GeGluTanh) {
  const int64_t count = 40;
  const auto g = mpq::test::gaussian(count, 6, 2.f), u = mpq::test::gaussian(count, 7),
             r = mpq::test::gaussian(count, 8);
  auto run = [&](const std::vector<float>& gg, const std::vector<float>& uu) {
    std::vector<float> h(count);
    mpq::grad::geglu_tanh(gg.data(), uu.data(), h.data(), count);
    return probe(h, r);
  };
  std::vector<float> dg(count), du(count);
  mpq::grad::geglu_tanh_backward(g.data(), u.data(), r.data(), dg.data(), du.data(), count);
  expect_gradient([&](const std::vector<float>& x) { return run(x, u); }, g, dg, 1e-3, 1e-3, 9,
                  "geglu dg");
  expect_gradient([&](const std::vector<float>& x) { return run(g, x); }, u, du, 1e-3, 1e-3, 10,
                  "geglu du");
}

TEST(BackwardOps, CrossEntropy) {
  const int64_t rows = 3, vocab = 11;
  const auto logits = mpq::test::gaussian(rows * vocab, 1, 3.f);
  const std::vector<int32_t> targets = {4, 0, 10};
  const float scale = 0.25f;
  std::vector<float> dl(logits.size());
  const double loss = mpq::grad::cross_entropy(logits.data(), targets.data(), rows, vocab, scale,
                                               dl.data());
  double expected = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double z = 0;
    for (int64_t j = 0; j < vocab; ++j) z += std::exp(static_cast<double>(logits[r * vocab + j]));
    expected += std::log(z) - logits[r * vocab + targets[r]];
  }
  EXPECT_NEAR(loss, expected, 1e-9 * expected);
  auto f = [&](const std::vector<float>& x) {
    std::vector<float> scratch(x.size());
    return scale * mpq::grad::cross_entropy(x.data(), targets.data(), rows, vocab, scale,
                                            scratch.data());
  };
  expect_gradient(f, logits, dl, 1e-3, 1e-3, 2, "cross_entropy");
  // Each row of the gradient sums to zero (softmax minus one-hot).
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t j = 0; j < vocab; ++j) s += dl[r * vocab + j];
    EXPECT_NEAR(s, 0, 1e-6);
  }
}

TEST(BackwardOps, WeightGradientIsDyTransposeX) {
  const int64_t n = 5, in = 7, out = 3;
  const auto x = mpq::test::gaussian(n * in, 1), dy = mpq::test::gaussian(n * out, 2);
  std::vector<float> dw(out * in, 1.f);
  mpq::weight_gradient(x.data(), dy.data(), n, in, out, dw.data(), true);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      double s = 1;
      for (int64_t t = 0; t < n; ++t) s += static_cast<double>(dy[t * out + o]) * x[t * in + i];
      EXPECT_NEAR(dw[o * in + i], s, 1e-5);
    }
  }
}

// --- whole models -----------------------------------------------------------------------------

namespace {

// Mean next-token NLL in double from fp32 logits [n-1 or more rows, vocab].
double mean_nll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int64_t vocab) {
  double sum = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const float* row = &logits[i * vocab];
    const double max_logit = *std::max_element(row, row + vocab);
    double z = 0;
    for (int64_t j = 0; j < vocab; ++j) z += std::exp(row[j] - max_logit);
    sum += max_logit + std::log(z) - row[ids[i + 1]];
  }
  return sum / static_cast<double>(ids.size() - 1);
}

// The loss of the model's own forward pass (Model::forward_all).
double forward_loss(mpq::Model& model, const std::vector<int32_t>& ids) {
  mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  return mean_nll(model.forward_all(ids, cache), ids, model.config.vocab_size);
}

// The same loss through the model's layer-by-layer API, starting from the input of layer
// `first` (computed once): perturbing a weight of layer l only needs layers l.. rerun.
class LossFromLayer {
 public:
  LossFromLayer(const mpq::Model& model, const std::vector<int32_t>& ids, int first)
      : model_(model), ids_(ids), first_(first) {
    mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
    const mpq::SequenceInput seq{ids.data(), static_cast<int>(ids.size()), &cache};
    const mpq::BatchPlan plan = model.plan_batch(std::span(&seq, 1));
    x_ = model.embed(plan);
    for (int l = 0; l < first; ++l) model.run_layer(l, plan, x_.data());
  }
  double operator()() const {
    mpq::KVCache cache = model_.make_cache(static_cast<int>(ids_.size()));
    const mpq::SequenceInput seq{ids_.data(), static_cast<int>(ids_.size()), &cache};
    const mpq::BatchPlan plan = model_.plan_batch(std::span(&seq, 1));
    std::vector<float> x = x_;
    for (int l = first_; l < model_.config.n_layers; ++l) model_.run_layer(l, plan, x.data());
    std::vector<int> rows(ids_.size() - 1);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int>(i);
    return mean_nll(model_.head(x.data(), plan.n_tokens, rows), ids_, model_.config.vocab_size);
  }

 private:
  const mpq::Model& model_;
  const std::vector<int32_t>& ids_;
  int first_;
  std::vector<float> x_;  // input of layer first_
};

std::vector<float> dense(const mpq::Linear& linear) {
  std::vector<float> w(linear.weights->out_features() * linear.weights->in_features());
  linear.weights->to_f32(w.data());
  return w;
}

// The loss as a function of one Linear's weight matrix: the model runs with W swapped for a
// dense fp32 copy, and is restored afterwards.
double loss_with_weight(mpq::Model& model, int l, LinearKind kind, const std::vector<float>& w,
                        const std::vector<int32_t>& ids) {
  mpq::Linear& linear = model.layers[l].at(kind);
  const int64_t out = linear.weights->out_features(), in = linear.weights->in_features();
  auto saved = std::move(linear.weights);
  linear.weights = mpq::make_dense_f32_weights(std::make_shared<const std::vector<float>>(w), out, in);
  const double loss = LossFromLayer(model, ids, l)();
  linear.weights = std::move(saved);
  return loss;
}

// Directional check of dLoss/dW for one Linear: D ~ N(0, rms(W)²), steps h and h/2 (relative to W),
// Returns the relative error (see directional_error).
double linear_directional_error(mpq::Model& model, const mpq::LinearGradients& grads, int l,
                                LinearKind kind, const std::vector<int32_t>& ids, double h,
                                uint64_t seed, std::string* detail = nullptr) {
  const std::vector<float> w = dense(model.layers[l].at(kind));
  const double rms = norm(w) / std::sqrt(static_cast<double>(w.size()));
  const std::vector<float> d = mpq::test::gaussian(w.size(), seed, static_cast<float>(rms));
  double fd, an;
  const double err = directional_error(
      [&](const std::vector<float>& ww) { return loss_with_weight(model, l, kind, ww, ids); }, w,
      grads.at(l, kind), d, h, &fd, &an, /*richardson=*/true);
  if (detail) {
    std::ostringstream s;
    s << "layer " << l << " " << mpq::linear_kind_name(kind) << ": finite difference " << fd
      << ", analytic " << an << ", relative error " << err;
    *detail = s.str();
  }
  return err;
}

constexpr LinearKind kKinds[] = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};

using mpq::test::random_ids;

// The ids of the default-model test: a fixed formula, so that tools/reference_grad.py can be run
// on the same ids (see docs/GRADIENTS.md).
std::vector<int32_t> default_model_ids() {
  std::vector<int32_t> ids(64);
  for (int i = 0; i < 64; ++i) ids[i] = (i * 7919 + 13) % 8000 + 1;
  return ids;
}

std::string hf_linear_name(int l, LinearKind kind) {
  const bool attn = kind == LinearKind::Q || kind == LinearKind::K || kind == LinearKind::V ||
                    kind == LinearKind::O;
  return "model.layers." + std::to_string(l) + (attn ? ".self_attn." : ".mlp.") +
         mpq::linear_kind_name(kind) + ".weight";
}

// Compares our gradients with a tools/reference_grad.py file (HF names and layout) computed on
// `ids`; says so and compares nothing when the file is missing or was made for other ids.
void compare_with_reference(const std::string& path, const mpq::Model& model,
                            const std::vector<int32_t>& ids, const mpq::LinearGradients& grads,
                            double loss, double max_rel_l2) {
  if (!fs::exists(path)) {
    std::cout << "[ info ] no autograd reference " << path << " (tools/reference_grad.py)\n";
    return;
  }
  mpq::SafetensorsFile file(path);
  std::ostringstream want;
  for (size_t i = 0; i < ids.size(); ++i) want << (i ? " " : "") << ids[i];
  const auto& meta = file.metadata();
  if (meta.count("ids") == 0 || meta.at("ids") != want.str()) {
    std::cout << "[ info ] " << path << " was made for other ids: not compared\n";
    return;
  }
  if (meta.count("loss_mean_nll")) {
    const double ref_loss = std::stod(meta.at("loss_mean_nll"));
    EXPECT_NEAR(loss, ref_loss, 1e-4 * ref_loss + 1e-6) << path;
    std::cout << "[ info ] loss " << loss << " vs reference " << ref_loss << " ("
              << meta.at("dtype") << ")\n";
  }
  double worst = 0, worst_max = 0;
  std::string worst_name;
  for (int l = 0; l < model.config.n_layers; ++l) {
    for (LinearKind kind : kKinds) {
      const std::string name = hf_linear_name(l, kind);
      const mpq::SafetensorsTensor* t = file.find(name);
      ASSERT_NE(t, nullptr) << name;
      ASSERT_EQ(t->dtype, "F32") << name;
      const std::vector<float>& ours = grads.at(l, kind);
      ASSERT_EQ(t->nbytes, ours.size() * 4) << name;
      std::vector<float> ref(ours.size());
      std::memcpy(ref.data(), t->data, t->nbytes);
      double diff2 = 0, ref2 = 0, max_diff = 0, max_ref = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        const double d = static_cast<double>(ours[i]) - ref[i];
        diff2 += d * d;
        ref2 += static_cast<double>(ref[i]) * ref[i];
        max_diff = std::max(max_diff, std::abs(d));
        max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[i])));
      }
      const double rel = std::sqrt(diff2 / ref2);
      EXPECT_LT(rel, max_rel_l2) << name;
      if (rel > worst) {
        worst = rel;
        worst_name = name;
      }
      worst_max = std::max(worst_max, max_diff / max_ref);
    }
  }
  std::cout << "[ info ] vs autograd " << path << ": worst relative L2 error " << worst << " ("
            << worst_name << "), worst max|diff|/max|ref| " << worst_max << "\n";
}

struct SynthCase {
  const char* name;
  mpq::synth::Spec spec;
};

std::vector<SynthCase> synth_cases() {
  std::vector<SynthCase> cases;
  mpq::synth::Spec llama;  // GQA: 4 query heads, 2 KV heads
  cases.push_back({"llama_gqa", llama});
  mpq::synth::Spec qwen2;
  qwen2.model_type = "qwen2";  // q/k/v biases
  qwen2.seed = 2;
  cases.push_back({"qwen2_bias", qwen2});
  mpq::synth::Spec qwen3;
  qwen3.model_type = "qwen3";  // per-head q/k RMSNorm
  qwen3.seed = 3;
  qwen3.kv_heads = 1;
  cases.push_back({"qwen3_qk_norm", qwen3});
  mpq::synth::Spec mistral;
  mistral.model_type = "mistral";
  mistral.sliding_window = 3;  // the sequence below is much longer than the window
  mistral.seed = 4;
  cases.push_back({"mistral_window", mistral});
  mpq::synth::Spec tied;
  tied.tied = true;  // output head views the embedding
  tied.attention_bias = true;
  tied.mlp_bias = true;
  tied.kv_heads = 4;
  tied.layers = 3;
  tied.seed = 5;
  cases.push_back({"llama_tied_biases", tied});
  mpq::synth::Spec gemma;  // post norms, GeGLU, local/global layers, scaled embedding
  gemma.model_type = "gemma3_text";
  gemma.layers = 3;
  gemma.kv_heads = 1;
  gemma.sliding_window = 3;
  gemma.theta = 1e6;
  gemma.tied = true;
  gemma.seed = 6;
  cases.push_back({"gemma3_local_global", gemma});
  return cases;
}

}  // namespace

TEST(BackwardModel, SyntheticArchitecturesMatchFiniteDifferences) {
  for (const SynthCase& c : synth_cases()) {
    SCOPED_TRACE(c.name);
    mpq::test::TempDir dir;
    mpq::synth::write_model(mpq::synth::make_model(c.spec), dir.path());
    mpq::Model model = mpq::load_model(dir.path(), {.need_tokenizer = false});
    ASSERT_EQ(model.config.sliding_window, c.spec.sliding_window);
    ASSERT_EQ(model.config.qk_norm, c.spec.qk_norm());
    const std::vector<int32_t> ids = random_ids(12, c.spec.vocab, 17);
    mpq::LinearGradients grads = mpq::LinearGradients::zeros(model);
    const double loss = mpq::accumulate_linear_gradients(model, ids, grads);
    EXPECT_NEAR(loss, forward_loss(model, ids), 1e-5 * loss);
    EXPECT_EQ(grads.n_sequences, 1);
    double worst = 0;
    std::string worst_detail;
    for (int l = 0; l < model.config.n_layers; ++l) {
      for (LinearKind kind : kKinds) {
        std::string detail;
        const double err = linear_directional_error(model, grads, l, kind, ids, 1e-2,
                                                    100 * l + static_cast<int>(kind), &detail);
        EXPECT_LT(err, 1e-2) << detail;
        if (err > worst) worst = err, worst_detail = detail;
      }
    }
    std::cout << "[ info ] " << c.name << ": worst " << worst_detail << "\n";
  }
}

TEST(BackwardModel, AccumulatesScaledAndFeedsTheSink) {
  mpq::test::TempDir dir;
  mpq::synth::Spec spec;
  spec.model_type = "qwen2";
  mpq::synth::write_model(mpq::synth::make_model(spec), dir.path());
  const mpq::Model model = mpq::load_model(dir.path(), {.need_tokenizer = false});
  const auto a = random_ids(9, spec.vocab, 1), b = random_ids(6, spec.vocab, 2);

  // Per-sequence dW from the sink's (X, dY) pairs; summed accumulator over two sequences.
  struct Sink : mpq::LinearGradientSink {
    mpq::LinearGradients per_sample;
    int calls = 0;
    void on_linear(int l, LinearKind kind, const float* x, const float* dy, int64_t n, int64_t in,
                   int64_t out) override {
      ++calls;
      // The last position has no target and feeds nothing: its dy row is zero.
      for (int64_t o = 0; o < out; ++o) EXPECT_EQ(dy[(n - 1) * out + o], 0.f);
      mpq::weight_gradient(x, dy, n, in, out, per_sample.at(l, kind).data(), true);
    }
  } sink;
  sink.per_sample = mpq::LinearGradients::zeros(model);
  mpq::LinearGradients ga = mpq::LinearGradients::zeros(model), sum = ga;
  mpq::GradientOptions options;
  options.sink = &sink;
  const double la = mpq::accumulate_linear_gradients(model, a, ga, options);
  EXPECT_EQ(sink.calls, spec.layers * mpq::kLinearKinds);
  // Scale 2, head in chunks of 2 rows: the same gradients, doubled.
  mpq::GradientOptions scaled;
  scaled.scale = 2.f;
  scaled.head_chunk_rows = 2;
  mpq::LinearGradients g2 = mpq::LinearGradients::zeros(model);
  // (Other chunks change the head's sgemm blocking, hence its rounding.)
  EXPECT_NEAR(mpq::accumulate_linear_gradients(model, a, g2, scaled), la, 1e-6 * la);
  const double lb = mpq::accumulate_linear_gradients(model, b, sum);
  mpq::accumulate_linear_gradients(model, a, sum);
  EXPECT_EQ(sum.n_sequences, 2);
  EXPECT_NEAR(sum.loss_sum, la + lb, 1e-12);
  mpq::LinearGradients gb = mpq::LinearGradients::zeros(model);
  mpq::accumulate_linear_gradients(model, b, gb);
  for (int l = 0; l < spec.layers; ++l) {
    for (LinearKind kind : kKinds) {
      const auto &wa = ga.at(l, kind), &wb = gb.at(l, kind);
      for (size_t i = 0; i < wa.size(); ++i) {
        EXPECT_NEAR(sink.per_sample.at(l, kind)[i], wa[i], 1e-6 + 1e-5 * std::abs(wa[i]));
        EXPECT_NEAR(g2.at(l, kind)[i], 2 * wa[i], 1e-6 + 1e-5 * std::abs(wa[i]));
        EXPECT_NEAR(sum.at(l, kind)[i], wa[i] + wb[i], 1e-6 + 1e-5 * std::abs(wa[i] + wb[i]));
      }
    }
  }
  // An empty accumulator entry skips that Linear; an empty accumulator runs the sink only.
  mpq::LinearGradients partial = mpq::LinearGradients::zeros(model);
  partial.at(0, LinearKind::Q).clear();
  mpq::accumulate_linear_gradients(model, a, partial);
  EXPECT_TRUE(partial.at(0, LinearKind::Q).empty());
  EXPECT_EQ(partial.at(1, LinearKind::Q), ga.at(1, LinearKind::Q));
  mpq::LinearGradients none;
  sink.calls = 0;
  mpq::accumulate_linear_gradients(model, a, none, options);
  EXPECT_EQ(sink.calls, spec.layers * mpq::kLinearKinds);
  // Errors: too short, bad id, mismatched accumulator.
  EXPECT_THROW(mpq::accumulate_linear_gradients(model, std::vector<int32_t>{3}, none), mpq::Error);
  EXPECT_THROW(mpq::accumulate_linear_gradients(model, std::vector<int32_t>{3, 999}, none),
               mpq::Error);
  mpq::LinearGradients wrong;
  wrong.w.resize(1);
  EXPECT_THROW(mpq::accumulate_linear_gradients(model, a, wrong), mpq::Error);
}

TEST(BackwardModel, Stories260kLossAndEveryLayer) {
  const std::string dir = mpq::test::shared_dir() + "/models/stories260K";
  if (!fs::exists(dir + "/hf/model.safetensors")) GTEST_SKIP() << "stories260K not found under " << dir;
  std::ifstream in(dir + "/golden_tinystories.json");
  const nlohmann::json g = nlohmann::json::parse(in)["tinystories_like"];
  const auto ids = g["ids"].get<std::vector<int32_t>>();
  mpq::Model model = mpq::load_model(dir + "/hf", {.need_tokenizer = false});
  mpq::LinearGradients grads = mpq::LinearGradients::zeros(model);
  const double loss = mpq::accumulate_linear_gradients(model, ids, grads);
  EXPECT_NEAR(loss, g["mean_nll"].get<double>(), 1e-4 * loss);
  EXPECT_NEAR(loss, forward_loss(model, ids), 1e-5 * loss);
  double worst = 0;
  std::string worst_detail;
  for (int l = 0; l < model.config.n_layers; ++l) {
    for (LinearKind kind : kKinds) {
      std::string detail;
      const double err = linear_directional_error(model, grads, l, kind, ids, 1e-2,
                                                  1000 + 10 * l + static_cast<int>(kind), &detail);
      EXPECT_LT(err, 1e-2) << detail;
      if (err > worst) worst = err, worst_detail = detail;
    }
  }
  std::cout << "[ info ] stories260K: worst " << worst_detail << "\n";
  compare_with_reference("/tmp/grad_stories260K.safetensors", model, ids, grads, loss, 1e-3);
}

TEST(BackwardModel, DefaultModelLossAndTwoLayers) {
  const std::string path = mpq::test::default_model();
  if (!fs::exists(path)) GTEST_SKIP() << "default model not found: " << path;
  const auto t0 = std::chrono::steady_clock::now();
  mpq::Model model = mpq::load_model(path, {.need_tokenizer = false});
  const std::vector<int32_t> ids = default_model_ids();
  mpq::LinearGradients grads = mpq::LinearGradients::zeros(model);
  const auto t1 = std::chrono::steady_clock::now();
  const double loss = mpq::accumulate_linear_gradients(model, ids, grads);
  const auto t2 = std::chrono::steady_clock::now();
  EXPECT_NEAR(loss, forward_loss(model, ids), 1e-5 * loss);
  const int last = model.config.n_layers - 1;
  for (auto [l, kind] : {std::pair{0, LinearKind::Down}, std::pair{last, LinearKind::Q}}) {
    std::string detail;
    const double err = linear_directional_error(model, grads, l, kind, ids, 1e-2, 7 + l, &detail);
    EXPECT_LT(err, 1e-2) << detail;
    std::cout << "[ info ] default model " << detail << "\n";
  }
  std::cout << "[ info ] default model: load " << std::chrono::duration<double>(t1 - t0).count()
            << " s, gradients of " << ids.size() << " tokens "
            << std::chrono::duration<double>(t2 - t1).count() << " s, loss " << loss << "\n";
  compare_with_reference("/tmp/grad_smollm2.safetensors", model, ids, grads, loss, 1e-2);
}

// By hand (--gtest_also_run_disabled_tests): time and peak memory of one sequence of the default
// model; MPQ_GRAD_TOKENS sets its length (default 512).
TEST(BackwardBench, DISABLED_DefaultModelOneSequence) {
  const std::string path = mpq::test::default_model();
  if (!fs::exists(path)) GTEST_SKIP() << "default model not found: " << path;
  const char* env = std::getenv("MPQ_GRAD_TOKENS");
  const int n = env ? std::atoi(env) : 512;
  const mpq::Model model = mpq::load_model(path, {.need_tokenizer = false});
  mpq::LinearGradients grads = mpq::LinearGradients::zeros(model);
  auto peak_kib = [] {
    std::ifstream st("/proc/self/status");
    std::string line;
    while (std::getline(st, line)) {
      if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
    }
    return 0L;
  };
  const long before = peak_kib();
  const auto ids = random_ids(n, 8000, 3);
  const auto t0 = std::chrono::steady_clock::now();
  const double loss = mpq::accumulate_linear_gradients(model, ids, grads);
  const auto t1 = std::chrono::steady_clock::now();
  std::cout << "[ info ] " << n << " tokens: " << std::chrono::duration<double>(t1 - t0).count()
            << " s, loss " << loss << ", peak RSS " << before / 1024 << " MiB before (model + "
            << "accumulator), " << peak_kib() / 1024 << " MiB after\n";
}

#include "calib/sensitivity.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "calib/sensitivity_internal.h"
#include "model/backward.h"
#include "mpq/error.h"
#include "quant/gptq.h"
#include "quant/rtn.h"

namespace mpq {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::string cur;
  std::istringstream in(text);
  while (std::getline(in, cur, ',')) {
    const auto b = cur.find_first_not_of(" \t");
    const auto e = cur.find_last_not_of(" \t");
    items.push_back(b == std::string::npos ? std::string() : cur.substr(b, e - b + 1));
  }
  return items;
}

// Per-sample gradient statistics of every Linear: G2 (Σ g² per entry) and channel salience.
class GradientStatsSink final : public LinearGradientSink {
 public:
  struct Slot {
    std::vector<float> g2;       // [out, in] (fisher)
    // channels: the int4_g128 RTN form of the weights (about 1/8 of their fp32 bytes); its error
    // w_hat - w is formed a tensor at a time when the gradient arrives, so that a 1.5B model does
    // not hold a second fp32 copy of every weight.
    const Linear* linear = nullptr;
    std::optional<QuantizedMatrix> rtn;
    std::vector<double> salience;  // [out] (channels)
  };
  std::vector<std::array<Slot, kLinearKinds>> slots;
  bool fisher = false, channels = false;
  // The output head (fisher): this sequence's gradient [vocab, dim] and Σ over sequences of its
  // square. A tied head also receives the embedding rows' gradients.
  bool head = false, head_tied = false;
  std::vector<float> head_g, head_g2;

  void on_head(const float* x, const float* dy, int64_t rows, int64_t in, int64_t out) override {
    if (!head) return;
    weight_gradient(x, dy, rows, in, out, head_g.data(), true);
  }

  // The last call of a sequence: adds the embedding rows (tied) and folds the sequence's head
  // gradient into G2.
  void on_embedding(const int32_t* tokens, const float* dx, int64_t n, int64_t dim) override {
    if (!head) return;
    if (head_tied) {
      for (int64_t t = 0; t < n; ++t) {  // serial: tokens repeat
        float* row = head_g.data() + static_cast<int64_t>(tokens[t]) * dim;
        for (int64_t i = 0; i < dim; ++i) row[i] += dx[t * dim + i];
      }
    }
    const int64_t size = static_cast<int64_t>(head_g.size());
    float* g = head_g.data();
    float* g2 = head_g2.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < size; ++i) {
      g2[i] += g[i] * g[i];
      g[i] = 0.f;
    }
  }

  void on_linear(int layer, LinearKind kind, const float* x, const float* dy, int64_t n, int64_t in,
                 int64_t out) override {
    Slot& s = slots[layer][static_cast<int>(kind)];
    dw_.resize(static_cast<size_t>(in * out));
    weight_gradient(x, dy, n, in, out, dw_.data(), false);
    float* g2 = fisher ? s.g2.data() : nullptr;
    const float* delta = nullptr;
    if (channels) {  // delta = w_hat - w, the same floats whether formed now or kept
      delta_.resize(static_cast<size_t>(in * out));
      w_.resize(static_cast<size_t>(in * out));
      dequantize(*s.rtn, delta_.data());
      s.linear->weights->to_f32(w_.data());
      float* d = delta_.data();
      const float* w = w_.data();
      const int64_t size = in * out;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < size; ++i) d[i] -= w[i];
      delta = delta_.data();
    }
    double* sal = channels ? s.salience.data() : nullptr;
    const float* dw = dw_.data();
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; ++o) {
      const float* g = dw + o * in;
      if (g2 != nullptr) {
        float* r = g2 + o * in;
        for (int64_t i = 0; i < in; ++i) r[i] += g[i] * g[i];
      }
      if (sal != nullptr) {
        const float* d = delta + o * in;
        double dot = 0.0;  // serial, fixed order
        for (int64_t i = 0; i < in; ++i) dot += static_cast<double>(g[i]) * d[i];
        sal[o] += std::abs(dot + 0.5 * dot * dot);
      }
    }
  }

 private:
  std::vector<float> dw_, delta_, w_;  // scratch of the largest tensor
};

// Σ g2·(w_hat − w)² over n entries, serial in index order (deterministic): the fisher cost's sum.
double weighted_square_error(const float* g2, const float* w, const float* w_hat, int64_t n) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double d = static_cast<double>(w_hat[j]) - w[j];
    sum += static_cast<double>(g2[j]) * d * d;
  }
  return sum;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

std::vector<float> weights_f32(const Linear& lin) {
  std::vector<float> w(static_cast<size_t>(lin.weights->out_features() * lin.weights->in_features()));
  lin.weights->to_f32(w.data());
  return w;
}

std::vector<float> rtn_dequantized(WeightFormatId format, const std::vector<float>& w, int64_t rows,
                                   int64_t cols) {
  const QuantizedMatrix q = quantize_rtn(format, w.data(), rows, cols);
  std::vector<float> d(w.size());
  dequantize(q, d.data());
  return d;
}

Progress::Progress(bool enabled, std::string phase, int total)
    : enabled_(enabled), phase_(std::move(phase)), total_(total), start_(std::chrono::steady_clock::now()) {}

void Progress::step(int done) const {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > 0 ? elapsed / done * (total_ - done) : 0.0;
  std::fprintf(stderr, "[analyze] %s %d/%d, elapsed %.1f s, ETA %.1f s\n", phase_.c_str(), done, total_, elapsed,
               eta);
}

std::vector<std::string> SensitivityMethods::names() const {
  std::vector<std::string> v;
  if (fisher) v.push_back("fisher");
  if (output) v.push_back("output");
  if (channels) v.push_back("channels");
  if (kld) v.push_back("kld");
  if (shapley) v.push_back("shapley");
  return v;
}

SensitivityMethods parse_sensitivity_methods(const std::string& text, const std::string& where) {
  SensitivityMethods m;
  for (const std::string& name : split_list(text)) {
    if (name == "fisher") {
      m.fisher = true;
    } else if (name == "output") {
      m.output = true;
    } else if (name == "channels") {
      m.channels = true;
    } else if (name == "kld") {
      m.kld = true;
    } else if (name == "shapley") {
      m.shapley = true;
    } else {
      fail(where, "unknown method '" + name + "' (valid: fisher, output, channels, kld, shapley)");
    }
  }
  if (!m.any()) fail(where, "no method given (valid: fisher, output, channels, kld, shapley)");
  return m;
}

std::vector<WeightFormatId> default_sensitivity_formats() {
  std::vector<WeightFormatId> v;
  for (const WeightFormatTraits& f : weight_formats()) {
    // ggml block formats are asked for by name: not every tensor can take them (format_accepts),
    // which the default list must not have to know about.
    if (f.id != WeightFormatId::BF16 && f.id != WeightFormatId::F16 && !is_ggml_format(f)) v.push_back(f.id);
  }
  return v;
}

std::vector<WeightFormatId> parse_format_list(const std::string& text, const std::string& where) {
  std::vector<WeightFormatId> v;
  for (const std::string& name : split_list(text)) {
    const auto id = weight_format_from_name(name);
    if (!id) {
      std::string valid;
      for (const WeightFormatTraits& f : weight_formats()) valid += (valid.empty() ? "" : ", ") + std::string(f.name);
      fail(where, "unknown format '" + name + "' (valid: " + valid + ")");
    }
    if (std::find(v.begin(), v.end(), *id) != v.end()) fail(where, "format '" + name + "' given twice");
    v.push_back(*id);
  }
  if (v.empty()) fail(where, "no format given");
  return v;
}

SensitivityResult analyze_sensitivity(Model& model, const CalibrationSet& set,
                                      const SensitivityOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  check(options.methods.any(), "analyze", "no method requested");
  check(!set.sequences.empty(), "analyze", "empty calibration set");
  SensitivityResult r;
  r.methods = options.methods;
  r.formats = options.formats.empty() ? default_sensitivity_formats() : options.formats;
  const int n_layers = model.config.n_layers;
  const bool moe = model.config.is_moe();
  if (moe && (options.methods.fisher || options.methods.channels || options.methods.kld || options.methods.shapley)) {
    fail("analyze", "a mixture-of-experts model (" + std::to_string(model.config.n_experts) +
                        " experts per layer) supports --methods output only so far: fisher and channels need "
                        "gradients through the router, kld and shapley quantize experts, which mpq cannot yet");
  }
  // The tensors, and per layer which of them (indices into r.tensors) with their Linear.
  std::vector<const Linear*> linears;
  std::vector<std::vector<int>> layer_tensors(n_layers);
  auto add_tensor = [&](int l, LinearKind kind, int expert, const Linear& lin) {
    TensorSensitivity t;
    t.layer = l;
    t.kind = kind;
    t.expert = expert;
    t.name = lin.name;
    t.rows = lin.weights->out_features();
    t.cols = lin.weights->in_features();
    layer_tensors[l].push_back(static_cast<int>(r.tensors.size()));
    r.tensors.push_back(std::move(t));
    linears.push_back(&lin);
  };
  for (int l = 0; l < n_layers; ++l) {
    const DecoderLayer& layer = model.layers[l];
    for (int k = 0; k < kLinearKinds; ++k) {
      if (moe && k >= static_cast<int>(LinearKind::Gate)) break;  // the experts below
      add_tensor(l, static_cast<LinearKind>(k), -1, layer.linear[k]);
    }
    for (int e = 0; e < static_cast<int>(layer.experts.size()); ++e) {
      add_tensor(l, LinearKind::Gate, e, layer.experts[e].gate);
      add_tensor(l, LinearKind::Up, e, layer.experts[e].up);
      add_tensor(l, LinearKind::Down, e, layer.experts[e].down);
    }
  }
  // Statistics of a tensor's input: its expert's for an expert tensor.
  auto stats_of = [](const TensorSensitivity& t, const LayerStats& s) -> const InputStats& {
    if (t.expert < 0) return s.of(t.kind);
    const ExpertStats& e = s.experts.at(t.expert);
    return t.kind == LinearKind::Down ? e.down : e.mlp;
  };
  // Dense models only (phase 1): tensor (l, k) sits at l * kLinearKinds + k.
  auto tensor = [&](int l, int k) -> TensorSensitivity& { return r.tensors[l * kLinearKinds + k]; };

  // Phase 1: per-sample gradients (fisher, channels).
  GradientStatsSink sink;
  sink.fisher = options.methods.fisher;
  sink.channels = options.methods.channels;
  if (sink.fisher || sink.channels) {
    sink.slots.resize(n_layers);
    Progress prep(options.progress && sink.channels, "int4_g128 rounding errors, layer", n_layers);
    for (int l = 0; l < n_layers; ++l) {
      for (int k = 0; k < kLinearKinds; ++k) {
        const TensorSensitivity& t = tensor(l, k);
        auto& s = sink.slots[l][k];
        if (sink.fisher) s.g2.assign(static_cast<size_t>(t.rows * t.cols), 0.f);
        if (sink.channels) {
          const std::vector<float> w = weights_f32(model.layers[l].linear[k]);
          s.linear = &model.layers[l].linear[k];
          s.rtn = quantize_rtn(WeightFormatId::Int4_G128, w.data(), t.rows, t.cols);
          s.salience.assign(static_cast<size_t>(t.rows), 0.0);
        }
      }
      prep.step(l + 1);
    }
    if (sink.fisher) {
      // The output head's G2 (docs/SENSITIVITY.md, "The output head"): vocab × dim floats twice.
      sink.head = true;
      sink.head_tied = model.config.tied_embeddings;
      const size_t head_size = static_cast<size_t>(model.lm_head.weights->out_features() *
                                                   model.lm_head.weights->in_features());
      sink.head_g.assign(head_size, 0.f);
      sink.head_g2.assign(head_size, 0.f);
    }
    GradientOptions gopt;
    gopt.sink = &sink;
    LinearGradients none;  // empty: only the sink sees gradients
    Progress prog(options.progress, "gradients, sample", static_cast<int>(set.sequences.size()));
    double loss_sum = 0;
    for (size_t i = 0; i < set.sequences.size(); ++i) {
      loss_sum += accumulate_linear_gradients(model, set.sequences[i], none, gopt);
      prog.step(static_cast<int>(i + 1));
    }
    r.grad_sequences = static_cast<int64_t>(set.sequences.size());
    r.grad_loss_mean = loss_sum / static_cast<double>(set.sequences.size());
    if (sink.channels) {
      for (int l = 0; l < n_layers; ++l) {
        for (int k = 0; k < kLinearKinds; ++k) {
          auto& s = sink.slots[l][k];
          tensor(l, k).channels.assign(s.salience.begin(), s.salience.end());
          s.rtn.reset();
          std::vector<double>().swap(s.salience);
        }
      }
    }
  }

  if (sink.fisher || sink.channels) r.method_seconds["gradients (fisher, channels)"] = seconds_since(t0);
  if (sink.head) {
    // The head's fisher cost per format, every format in parallel (RTN, as the Linear tensors).
    std::vector<float>().swap(sink.head_g);
    r.head_tied = sink.head_tied;
    r.head.name = "lm_head";
    r.head.layer = -1;
    r.head.rows = model.lm_head.weights->out_features();
    r.head.cols = model.lm_head.weights->in_features();
    const std::vector<float> w = weights_f32(model.lm_head);
    r.head.fisher.assign(r.formats.size(), std::numeric_limits<double>::quiet_NaN());
    Progress prog(options.progress, "output head formats", static_cast<int>(r.formats.size()));
    for (size_t fi = 0; fi < r.formats.size(); ++fi) {
      if (!format_accepts(r.formats[fi], r.head.rows, r.head.cols)) continue;
      const std::vector<float> w_hat = rtn_dequantized(r.formats[fi], w, r.head.rows, r.head.cols);
      const int64_t rows = r.head.rows, cols = r.head.cols;
      std::vector<double> row_sum(static_cast<size_t>(rows));
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < rows; ++o) {  // rows in parallel, summed in order below: deterministic
        row_sum[o] = weighted_square_error(sink.head_g2.data() + o * cols, w.data() + o * cols, w_hat.data() + o * cols, cols);
      }
      double sum = 0.0;
      for (double v : row_sum) sum += v;
      r.head.fisher[fi] = 0.5 * sum;
      prog.step(static_cast<int>(fi + 1));
    }
    std::vector<float>().swap(sink.head_g2);
    r.method_seconds["fisher: output head"] = seconds_since(t0) - r.method_seconds["gradients (fisher, channels)"];
  }
  const auto t_formats = std::chrono::steady_clock::now();

  // Phase 2: per layer, every (tensor, format): RTN error -> fisher and/or output.
  const int n_formats = static_cast<int>(r.formats.size());
  const bool per_format = options.methods.fisher || options.methods.output;
  Progress prog2(options.progress && per_format, "formats, layer", n_layers);
  auto process = [&](int l, const LayerStats* stats) {
    const std::vector<int>& ids = layer_tensors[l];
    const int n_tensors = static_cast<int>(ids.size());
    std::vector<std::vector<float>> w(n_tensors);
    if (moe && stats != nullptr) {
      r.expert_tokens.emplace_back();
      for (const ExpertStats& e : stats->experts) r.expert_tokens.back().push_back(e.tokens);
      r.expert_tokens.back().resize(model.config.n_experts, 0);  // a layer no token reached
    }
    std::vector<char> measured(n_tensors, 1);  // 0: an expert without calibration tokens
    for (int i = 0; i < n_tensors; ++i) {
      TensorSensitivity& t = r.tensors[ids[i]];
      if (t.expert >= 0) {
        t.expert_tokens = r.expert_tokens.back()[t.expert];
        measured[i] = t.expert_tokens > 0;
      }
      if (!measured[i]) continue;  // no evidence: no costs (listed in the routing report)
      w[i] = weights_f32(*linears[ids[i]]);
      if (options.methods.fisher) t.fisher.assign(n_formats, 0.0);
      if (options.methods.output) t.output.assign(n_formats, 0.0);
    }
    const int tasks = n_tensors * n_formats;
    std::exception_ptr error;
    std::mutex error_mutex;
    // Each task is independent and writes its own slots; inner BLAS/OpenMP runs single-threaded.
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      try {
        const int i = task / n_formats, fi = task % n_formats;
        if (!measured[i]) continue;
        TensorSensitivity& t = r.tensors[ids[i]];
        if (!format_accepts(r.formats[fi], t.rows, t.cols)) {
          // e.g. a k-quant on rows that are not whole 256-blocks: no cost, never offered.
          if (options.methods.fisher) t.fisher[fi] = std::numeric_limits<double>::quiet_NaN();
          if (options.methods.output) t.output[fi] = std::numeric_limits<double>::quiet_NaN();
          continue;
        }
        const std::vector<float> w_hat = rtn_dequantized(r.formats[fi], w[i], t.rows, t.cols);
        if (options.methods.fisher) {
          const std::vector<float>& g2 = sink.slots[l][static_cast<int>(t.kind)].g2;
          t.fisher[fi] = 0.5 * weighted_square_error(g2.data(), w[i].data(), w_hat.data(), static_cast<int64_t>(w_hat.size()));
        }
        if (options.methods.output) {
          t.output[fi] = layer_output_error(w[i].data(), w_hat.data(), t.rows, t.cols, stats_of(t, *stats).xtx);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    if (options.methods.fisher) {
      for (int k = 0; k < kLinearKinds; ++k) std::vector<float>().swap(sink.slots[l][k].g2);
    }
    if (stats != nullptr) r.calib_rows = stats->qkv.n_rows;
    prog2.step(l + 1);
  };
  if (options.methods.output) {
    // The callback changes nothing, so every layer sees the unquantized model's inputs.
    run_sequential_calibration(model, set, [&](int l, const LayerStats& s) { process(l, &s); });
  } else if (options.methods.fisher) {
    for (int l = 0; l < n_layers; ++l) process(l, nullptr);
  }
  if (per_format) r.method_seconds["fisher+output per format"] = seconds_since(t_formats);

  // Phase 3: the held-out KL methods, resumable. They quantize every tensor in every format.
  if (options.methods.kld) {
    for (const TensorSensitivity& t : r.tensors) {
      for (WeightFormatId f : r.formats) {
        std::string why;
        if (!format_accepts(f, t.rows, t.cols, &why)) {
          fail("--formats", std::string("the kld method needs formats every tensor can take: ") + why + " (" + t.name +
                                ")");
        }
      }
    }
  }
  nlohmann::json checkpoint = options.resume.is_object() ? options.resume : nlohmann::json::object();
  if (options.methods.kld) {
    const auto t_kld = std::chrono::steady_clock::now();
    run_kld_method(model, options, r, checkpoint);
    r.method_seconds["kld"] = seconds_since(t_kld);
  }
  if (options.methods.shapley) {
    const auto t_shapley = std::chrono::steady_clock::now();
    run_shapley_method(model, options, r, checkpoint);
    r.method_seconds["shapley"] = seconds_since(t_shapley);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<std::string> experts_without_tokens(const SensitivityResult& result) {
  std::vector<std::string> out;
  for (size_t l = 0; l < result.expert_tokens.size(); ++l) {
    for (size_t e = 0; e < result.expert_tokens[l].size(); ++e) {
      if (result.expert_tokens[l][e] == 0) {
        out.push_back("model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(e));
      }
    }
  }
  return out;
}

nlohmann::json channel_summary(const SensitivityResult& result, double top_fraction) {
  using nlohmann::json;
  // Every channel, in file order (tensor order, then row).
  std::vector<float> s;
  std::vector<int> owner;  // tensor index of each channel
  for (size_t t = 0; t < result.tensors.size(); ++t) {
    for (float v : result.tensors[t].channels) {
      s.push_back(v);
      owner.push_back(static_cast<int>(t));
    }
  }
  const int64_t n = static_cast<int64_t>(s.size());
  json j;
  j["top_fraction"] = top_fraction;
  j["n_channels"] = n;
  if (n == 0) return j;
  const int64_t k = std::min<int64_t>(n, static_cast<int64_t>(std::ceil(top_fraction * static_cast<double>(n) - 1e-9)));
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  // Descending salience, ties by position: a total order, so the top set is unique.
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return s[a] != s[b] ? s[a] > s[b] : a < b; });
  std::vector<char> top(n, 0);
  for (int64_t i = 0; i < k; ++i) top[idx[i]] = 1;
  j["n_top"] = k;
  j["threshold"] = k > 0 ? static_cast<double>(s[idx[k - 1]]) : 0.0;  // smallest salience in the top set

  int n_layers = 0;
  for (const auto& t : result.tensors) n_layers = std::max(n_layers, t.layer + 1);
  std::vector<int64_t> kind_total(kLinearKinds, 0), kind_top(kLinearKinds, 0);
  std::vector<int64_t> layer_total(n_layers, 0), layer_top(n_layers, 0);
  for (int64_t i = 0; i < n; ++i) {
    const TensorSensitivity& t = result.tensors[owner[i]];
    const int kind = static_cast<int>(t.kind);
    ++kind_total[kind];
    ++layer_total[t.layer];
    if (top[i]) {
      ++kind_top[kind];
      ++layer_top[t.layer];
    }
  }
  auto entry = [](int64_t total, int64_t in_top) {
    return json{{"channels", total},
                {"top", in_top},
                {"share", total > 0 ? static_cast<double>(in_top) / static_cast<double>(total) : 0.0}};
  };
  json by_kind = json::object();
  for (int kind = 0; kind < kLinearKinds; ++kind) {
    if (kind_total[kind] > 0) by_kind[linear_kind_name(static_cast<LinearKind>(kind))] = entry(kind_total[kind], kind_top[kind]);
  }
  json by_layer = json::array();
  for (int l = 0; l < n_layers; ++l) {
    json e = entry(layer_total[l], layer_top[l]);
    e["layer"] = l;
    by_layer.push_back(e);
  }
  j["by_kind"] = by_kind;
  j["by_layer"] = by_layer;
  return j;
}

}  // namespace mpq

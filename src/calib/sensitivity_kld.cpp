// The held-out KL methods of mpq analyze: kld (one tensor at a time) and shapley (progressive
// quantization of players along permutations). Both measure the mean KL divergence against the
// unquantized model on the held-out token set with calib/kld_eval.h, and both are resumable: every
// finished unit (a tensor's row of KL values, a permutation's chain) goes into `checkpoint`, which
// the CLI writes to disk; a resumed run takes finished units from it instead of recomputing.
#include <algorithm>
#include <cstdio>
#include <cmath>
#include <memory>

#include "calib/kld_eval.h"
#include "calib/sensitivity_internal.h"
#include "calib/shapley.h"
#include "mpq/error.h"
#include "quant/rtn.h"

namespace mpq {
namespace {

// Puts `replacement` in place of a Linear's weights for its lifetime (restores the original even
// when an exception unwinds through).
class WeightSwap {
 public:
  WeightSwap(Linear& lin, std::unique_ptr<LinearWeights> replacement)
      : lin_(lin), saved_(std::move(lin.weights)) {
    lin_.weights = std::move(replacement);
  }
  ~WeightSwap() { lin_.weights = std::move(saved_); }
  WeightSwap(const WeightSwap&) = delete;
  WeightSwap& operator=(const WeightSwap&) = delete;

 private:
  Linear& lin_;
  std::unique_ptr<LinearWeights> saved_;  // the original weights
};

void save_checkpoint(const SensitivityOptions& options, const nlohmann::json& checkpoint) {
  if (options.checkpoint) options.checkpoint(checkpoint);
}

// JSON numbers cannot be NaN: an estimate that is not available is null.
nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }
nlohmann::json numbers(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(number_or_null(x));
  return a;
}
nlohmann::json matrix(const std::vector<std::vector<double>>& m) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& row : m) a.push_back(numbers(row));
  return a;
}

nlohmann::json shapley_estimate_json(const ShapleyEstimate& e) {
  nlohmann::json curve = nlohmann::json::array();
  for (auto [chains, se] : e.std_error_curve) curve.push_back({{"chains", chains}, {"mean_std_error", number_or_null(se)}});
  return {{"value", numbers(e.value)},
          {"value_std_error", numbers(e.value_std_error)},
          {"value_units", e.value_units},
          {"base_cost", e.base_cost},
          {"full_cost", e.full_cost},
          {"fit_intercept", e.fit_intercept},
          {"linear", numbers(e.linear)},
          {"linear_std_error", numbers(e.linear_std_error)},
          {"interaction", matrix(e.interaction)},
          {"interaction_std_error", matrix(e.interaction_std_error)},
          {"fitted_value", numbers(e.fitted_value)},
          {"fitted_value_std_error", numbers(e.fitted_value_std_error)},
          {"bootstrap_samples", e.bootstrap_samples},
          {"bootstrap_rank_deficient", e.bootstrap_rank_deficient},
          {"interaction_window", e.interaction_window},
          {"fit_parameters", e.fit_parameters},
          {"fit_rank", e.fit_rank},
          {"fit_ridge", e.fit_ridge},
          {"fit_r2", number_or_null(e.fit_r2)},
          {"fit_rmse", number_or_null(e.fit_rmse)},
          {"fit_note", e.fit_note},
          {"chains", e.chains},
          {"evaluations", e.evaluations},
          {"distinct_points", e.distinct_points},
          {"std_error_curve", curve}};
}

}  // namespace

void run_kld_method(Model& model, const SensitivityOptions& options, SensitivityResult& r,
                    nlohmann::json& checkpoint) {
  check(!options.heldout.empty(), "analyze", "kld needs a held-out token set");
  KldEvaluator eval(model, options.heldout);
  r.heldout_tokens = eval.n_tokens();
  r.kld_base = eval.evaluate(0);
  nlohmann::json& done = checkpoint["kld"];
  if (!done.is_object()) done = nlohmann::json::object();
  const int n_formats = static_cast<int>(r.formats.size());
  Progress prog(options.progress, "kld, tensor", static_cast<int>(r.tensors.size()));
  int finished = 0;
  for (TensorSensitivity& t : r.tensors) {
    const auto it = done.find(t.name);
    if (it != done.end() && it->is_array() && static_cast<int>(it->size()) == n_formats) {
      t.kld = it->get<std::vector<double>>();  // finished in an earlier run
      prog.step(++finished);
      continue;
    }
    Linear& lin = model.layers[t.layer].at(t.kind);
    const std::vector<float> w = weights_f32(lin);
    t.kld.assign(n_formats, 0.0);
    for (int f = 0; f < n_formats; ++f) {
      WeightSwap swap(lin, make_quantized_weights(quantize_rtn(r.formats[f], w.data(), t.rows, t.cols)));
      t.kld[f] = eval.evaluate(t.layer);
    }
    done[t.name] = t.kld;
    save_checkpoint(options, checkpoint);
    prog.step(++finished);
  }
}

namespace {

// The loss oracle of the Shapley chains: L(x) = mean held-out KL of the model whose players with
// x[p] = 1 are in the low format and the others in the high one. Keeps the hidden states of the
// state it last evaluated, so a call that changes one player recomputes from that player's first
// layer only (what makes progressive quantization affordable).
class ShapleyOracle {
 public:
  ShapleyOracle(Model& model, const SensitivityOptions& options,
                const std::vector<std::vector<std::pair<int, LinearKind>>>& players)
      : model_(model), players_(players), eval_(model, options.heldout) {
    // Decoded high/low weights of every tensor, swapped in by pointer (no copies per call).
    for (const auto& tensors : players_) {
      for (auto [layer, kind] : tensors) {
        Linear& lin = model_.layers[layer].at(kind);
        const int64_t rows = lin.weights->out_features(), cols = lin.weights->in_features();
        const std::vector<float> w = weights_f32(lin);
        auto decode = [&](WeightFormatId f) {
          return std::make_shared<const std::vector<float>>(rtn_dequantized(f, w, rows, cols));
        };
        Slot slot{&lin, decode(options.shapley.high), decode(options.shapley.low), nullptr};
        slot.original = std::move(lin.weights);
        slots_.push_back(std::move(slot));
      }
    }
    state_.assign(players_.size(), 0);
    for (size_t p = 0; p < players_.size(); ++p) apply(p, 0);
    base_cost_ = eval_.evaluate(0, /*commit=*/true);
    base_hidden_ = eval_.hidden();
  }
  ~ShapleyOracle() {
    for (Slot& s : slots_) s.lin->weights = std::move(s.original);
  }
  ShapleyOracle(const ShapleyOracle&) = delete;
  ShapleyOracle& operator=(const ShapleyOracle&) = delete;

  double operator()(const std::vector<uint8_t>& x) {
    check(x.size() == state_.size(), "shapley", "state of the wrong size");
    if (std::none_of(x.begin(), x.end(), [](uint8_t v) { return v != 0; })) {
      // A chain start: back to all-high, whose hidden states were kept.
      for (size_t p = 0; p < x.size(); ++p) apply(p, 0);
      eval_.set_hidden(base_hidden_);
      return base_cost_;
    }
    // Recompute from the first layer that differs from the state whose hidden states we hold, or
    // from the all-high state's (kept) when that starts later: a chain's first step after the
    // previous chain's end differs from the old state everywhere but from all-high in one player.
    const int from_current = first_changed_layer(x, state_);
    const int from_base = first_changed_layer(x, std::vector<uint8_t>(x.size(), 0));
    if (from_base > from_current) eval_.set_hidden(base_hidden_);
    for (size_t p = 0; p < x.size(); ++p) {
      if (x[p] != state_[p]) apply(p, x[p]);
    }
    return eval_.evaluate(std::max(from_current, from_base), /*commit=*/true);
  }

 private:
  struct Slot {
    Linear* lin;                                   // the tensor in the model
    std::shared_ptr<const std::vector<float>> high, low;  // decoded RTN weights [rows, cols]
    std::unique_ptr<LinearWeights> original;       // restored at the end
  };
  // The first decoder layer holding a player whose state differs between a and b.
  int first_changed_layer(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) const {
    int first = model_.config.n_layers;
    for (size_t p = 0; p < a.size(); ++p) {
      if (a[p] == b[p]) continue;
      for (auto [layer, kind] : players_[p]) first = std::min(first, layer);
    }
    return first;
  }
  // Sets player p's tensors to high (0) or low (1).
  void apply(size_t p, uint8_t low) {
    size_t slot = 0;
    for (size_t q = 0; q < p; ++q) slot += players_[q].size();
    for (size_t i = 0; i < players_[p].size(); ++i, ++slot) {
      Slot& s = slots_[slot];
      const auto& w = low ? s.low : s.high;
      s.lin->weights = make_dense_f32_weights(w, s.original->out_features(), s.original->in_features());
    }
    state_[p] = low;
  }

  Model& model_;
  const std::vector<std::vector<std::pair<int, LinearKind>>>& players_;  // tensors of each player
  KldEvaluator eval_;
  std::vector<Slot> slots_;      // every tensor of every player, in player order
  std::vector<uint8_t> state_;   // the state whose hidden states eval_ holds
  double base_cost_ = 0;         // L(all high)
  KldEvaluator::HiddenStates base_hidden_;  // hidden states of the all-high model
};

}  // namespace

void run_shapley_method(Model& model, const SensitivityOptions& options, SensitivityResult& r,
                        nlohmann::json& checkpoint) {
  check(!options.heldout.empty(), "analyze", "shapley needs a held-out token set");
  const ShapleySettings& set = options.shapley;
  check(set.permutations >= 2, "--shapley-permutations", "need at least 2 permutations");
  ShapleyResult& out = r.shapley;
  out.settings = set;
  std::vector<std::vector<std::pair<int, LinearKind>>> players;
  for (const TensorSensitivity& t : r.tensors) {
    if (set.tensor_players || players.size() <= static_cast<size_t>(t.layer)) {
      players.emplace_back();
      out.players.push_back(set.tensor_players ? t.name : "layer." + std::to_string(t.layer));
      out.player_bits_high.push_back(0);
      out.player_bits_low.push_back(0);
    }
    players.back().emplace_back(t.layer, t.kind);
    out.player_bits_high.back() += static_cast<int64_t>(storage_bits(set.high, t.rows, t.cols));
    out.player_bits_low.back() += static_cast<int64_t>(storage_bits(set.low, t.rows, t.cols));
  }
  const int n = static_cast<int>(players.size());

  // Chains finished by an earlier run (same settings: the CLI checks) are reused.
  std::vector<ShapleyChain> chains;
  nlohmann::json& done = checkpoint["shapley_chains"];
  if (!done.is_array()) done = nlohmann::json::array();
  for (const auto& c : done) {
    if (static_cast<int>(chains.size()) >= set.permutations) break;
    chains.push_back({c.at("order").get<std::vector<int>>(), c.at("cost").get<std::vector<double>>()});
  }
  const auto t0 = std::chrono::steady_clock::now();
  r.heldout_tokens = 0;
  for (const auto& seq : options.heldout) r.heldout_tokens += static_cast<int64_t>(seq.size());
  if (static_cast<int>(chains.size()) < set.permutations) {
    ShapleyOracle oracle(model, options, players);
    Progress prog(options.progress, "shapley, permutation", set.permutations);
    prog.step(static_cast<int>(chains.size()));
    const int64_t first = static_cast<int64_t>(chains.size());
    run_shapley_chains(
        n, [&](const std::vector<uint8_t>& x) { return oracle(x); }, set.seed, first,
        set.permutations - first, set.antithetic, [&](const ShapleyChain& c) {
          chains.push_back(c);
          done.push_back({{"order", c.order}, {"cost", c.cost}});
          save_checkpoint(options, checkpoint);
          prog.step(static_cast<int>(chains.size()));
        });
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ShapleyOptions fit;
  fit.antithetic = set.antithetic;
  out.estimate = shapley_estimate_json(estimate_shapley(n, chains, fit));
  if (options.progress) {
    std::fprintf(stderr, "[analyze] shapley fit: R² %.4f, rank %lld of %lld parameters%s%s\n",
                 out.estimate.value("fit_r2", 0.0), static_cast<long long>(out.estimate.value("fit_rank", 0)),
                 static_cast<long long>(out.estimate.value("fit_parameters", 0)),
                 out.estimate.value("fit_note", std::string()).empty() ? "" : "; ",
                 out.estimate.value("fit_note", std::string()).c_str());
  }
  out.chains = done;
}

}  // namespace mpq

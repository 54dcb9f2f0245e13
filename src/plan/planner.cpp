#include "plan/planner.h"

#include "io/model_writer.h"
#include "io/read_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "calib/sensitivity_file.h"
#include "mpq/error.h"
#include "util/json_number.h"

namespace mpq {
namespace {

uint64_t read_u64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

const char* fname(WeightFormatId f) { return weight_format(f).name; }

// Limits of what a sensitivity file may describe: layer indices and Linear dimensions.
constexpr int64_t kMaxLayers = 1 << 16;
constexpr int64_t kMaxDim = 1 << 24;

// Fused class of a kind: 0 = q/k/v, 1 = gate/up, -1 = alone.
int fused_class(const std::string& kind) {
  if (kind == "q_proj" || kind == "k_proj" || kind == "v_proj") return 0;
  if (kind == "gate_proj" || kind == "up_proj") return 1;
  return -1;
}

// The Shapley fit of a sensitivity file as a BQP objective over `layers` (in that order).
struct ShapleyTerms {
  std::vector<double> linear;                    // a_i
  std::vector<std::vector<double>> interaction;  // b_ij, symmetric
  double base_cost = 0;                          // L0: every player in the high format
};

ShapleyTerms shapley_terms(const SensitivityInput& in, const std::vector<int>& layers,
                           const std::vector<WeightFormatId>& formats) {
  const nlohmann::json& sh = in.shapley;
  check(sh.is_object(), in.path, "no Shapley analysis (run mpq analyze with --methods shapley)");
  ShapleyTerms terms;
  try {
    check(sh.value("player_kind", std::string()) == "layer", in.path,
          "bqp needs a Shapley analysis over layer players (--shapley-players layers)");
    check(sh.value("high", std::string()) == fname(formats[0]) && sh.value("low", std::string()) == fname(formats[1]),
          "--formats", std::string("the Shapley analysis of ") + in.path + " is for " + sh.value("high", std::string("?")) +
                           "," + sh.value("low", std::string("?")) + ", not " + fname(formats[0]) + "," + fname(formats[1]));
    const auto& est = sh.at("estimate");
    const auto linear = est.at("linear").get<std::vector<double>>();
    const auto interaction = est.at("interaction").get<std::vector<std::vector<double>>>();
    const int n = static_cast<int>(sh.at("players").size());
    check(static_cast<int>(linear.size()) == n && static_cast<int>(interaction.size()) == n, in.path,
          "shapley estimate: sizes differ from the player count");
    check(static_cast<int>(layers.size()) == n, "--pin",
          "bqp with Shapley costs plans whole layers: every layer must be free (no pins)");
    for (int i = 0; i < n; ++i) {
      check(layers[i] == i, in.path, "shapley players are not the layers 0..n-1");
      check(static_cast<int>(interaction[i].size()) == n, in.path, "shapley interaction matrix is not square");
    }
    terms.linear = linear;
    terms.interaction = interaction;
    terms.base_cost = est.value("base_cost", 0.0);
  } catch (const nlohmann::json::exception& e) {
    fail(in.path, std::string("malformed shapley section: ") + e.what());
  }
  return terms;
}

}  // namespace

SensitivityInput read_sensitivity_input(const std::string& path, bool load_channels) {
  const std::string text = read_file(path);
  SensitivityInput in;
  in.path = path;
  in.sha256 = sha256_hex(text.data(), text.size());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
  std::string bin;
  // Every access is inside the try: a field of another JSON type is a malformed file naming the
  // path, not a bare nlohmann exception. Numbers are read as checked integers (util/json_number.h).
  try {
    check(j.is_object() && j.value("format", std::string()) == "mpq-sensitivity", path,
          "not an mpq sensitivity file (\"format\" is not \"mpq-sensitivity\")");
    check(j.contains("version") && j["version"] == kSensitivityFileVersion, path, "unsupported sensitivity file version");
    if (j.contains("model")) in.model = j["model"];
    if (in.model.contains("n_layers")) in.n_layers = static_cast<int>(json_integer(in.model["n_layers"], 0, kMaxLayers, path, "model.n_layers"));
    if (j.contains("shapley")) in.shapley = j["shapley"];
    if (j.contains("formats")) in.formats = j["formats"].get<std::vector<std::string>>();
    check(j.contains("tensors") && j["tensors"].is_array(), path, "missing \"tensors\" array");
    for (const auto& t : j["tensors"]) {
      SensitivityTensor s;
      s.name = t.at("name").get<std::string>();
      const std::string w = "tensor " + s.name;
      s.layer = static_cast<int>(json_integer(t.at("layer"), 0, kMaxLayers - 1, path, w + ": layer"));
      s.kind = t.at("kind").get<std::string>();
      // Dimensions of a Linear layer: up to 2^24 each keeps every bit count far inside 64 bits.
      s.rows = json_integer(t.at("rows"), 1, kMaxDim, path, w + ": rows");
      s.cols = json_integer(t.at("cols"), 1, kMaxDim, path, w + ": cols");
      if (t.contains("fisher")) s.fisher = t["fisher"].get<std::map<std::string, double>>();
      if (t.contains("output")) s.output = t["output"].get<std::map<std::string, double>>();
      if (t.contains("kld")) s.kld = t["kld"].get<std::map<std::string, double>>();
      if (load_channels && t.contains("channels")) {
        if (bin.empty()) {
          const std::string bin_path = sensitivity_sidecar_path(path);
          bin = read_file(bin_path);
          check(bin.size() >= static_cast<size_t>(kSensitivityBinHeaderBytes) &&
                    std::memcmp(bin.data(), kSensitivityBinMagic, 8) == 0,
                bin_path, "not an mpq sensitivity sidecar (bad magic)");
          check(read_u64(bin, 16) == bin.size() - kSensitivityBinHeaderBytes, bin_path,
                "payload size differs from the header (truncated file?)");
        }
        const auto off = static_cast<uint64_t>(json_integer(t["channels"].at("offset"), 0, INT64_MAX, path, w + ": channels.offset"));
        const int64_t count = json_integer(t["channels"].at("count"), 0, kMaxDim, path, w + ": channels.count");
        // Compared without adding: offset + 4 * count could wrap around.
        check(count == s.rows && off <= bin.size() && static_cast<uint64_t>(count) * 4 <= bin.size() - off, path,
              "tensor " + s.name + ": channel salience out of the sidecar's range");
        s.channels.resize(static_cast<size_t>(count));
        std::memcpy(s.channels.data(), bin.data() + off, static_cast<size_t>(count) * 4);
      }
      in.n_layers = std::max(in.n_layers, s.layer + 1);
      in.tensors.push_back(std::move(s));
    }
    if (j.contains("head")) {
      const auto& h = j["head"];
      in.head.name = h.at("name").get<std::string>();
      in.head.layer = -1;
      in.head.kind = "head";
      in.head.rows = json_integer(h.at("rows"), 1, kMaxDim, path, "head: rows");
      in.head.cols = json_integer(h.at("cols"), 1, kMaxDim, path, "head: cols");
      in.head_tied = h.at("tied").get<bool>();
      in.head.fisher = h.at("fisher").get<std::map<std::string, double>>();
      for (const auto& [format, cost] : in.head.fisher) {
        check(std::isfinite(cost) && cost >= 0, path, "head: fisher cost of " + format + " is not a finite non-negative number");
      }
    }
    if (j.contains("gguf")) {
      in.gguf_fixed_bytes = static_cast<uint64_t>(json_integer(j["gguf"].at("fixed_bytes"), 1, INT64_MAX, path, "gguf.fixed_bytes"));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("malformed sensitivity file: ") + e.what());
  }
  check(!in.tensors.empty(), path, "no tensors");
  return in;
}

PlanPin parse_pin(const std::string& text) {
  const size_t eq = text.rfind('=');
  check(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), "--pin",
        "'" + text + "' is not REGEX=FORMAT[:QUANTIZER]");
  PlanPin pin;
  pin.pattern = text.substr(0, eq);
  try {
    std::regex re(pin.pattern);
  } catch (const std::regex_error& e) {
    fail("--pin", "bad regex '" + pin.pattern + "': " + e.what());
  }
  const std::string value = text.substr(eq + 1);
  if (value == "none") {
    pin.none = true;
    return pin;
  }
  const Scheme s = parse_scheme(value, "--pin " + text);
  pin.format = s.format;
  if (value.find(':') != std::string::npos) pin.quantizer = s.quantizer;
  return pin;
}

namespace {

Plan make_linear_plan(const SensitivityInput& in, const PlanRequest& req) {
  const std::string& m = req.method;
  check(m == "tiers" || m == "knapsack" || m == "bqp" || m == "channels" || m == "rule", "--method",
        "unknown method '" + m + "' (valid: tiers, knapsack, bqp, channels, rule)");
  check(req.cost == "fisher" || req.cost == "output" || req.cost == "kld" || req.cost == "shapley", "--cost",
        "unknown cost '" + req.cost + "' (valid: fisher, output, kld, shapley)");
  const bool shapley_cost = req.cost == "shapley";
  check(!shapley_cost || m == "bqp", "--cost", "shapley costs are for the bqp method");
  check(!(req.bits && req.bytes), "--bits/--size", "give one budget, not both");
  if (req.bits) check(*req.bits > 0, "--bits", "must be positive");
  if (req.high_fraction) {
    check(m == "channels", "--high-fraction", "applies to the channels method only");
    check(!req.bits && !req.bytes, "--high-fraction", "is the budget of a channels plan: give it instead of --bits/--size");
    check(*req.high_fraction >= 0 && *req.high_fraction <= 1, "--high-fraction",
          "must be a fraction from 0 to 1, got " + std::to_string(*req.high_fraction));
  }
  check(!(req.fused_same && m == "channels"), "--fused-same", "does not apply to the channels method");
  check(m != "channels" || req.target.allows_channel_split(), "--method",
        "channels plans (MixLLM channel splits) run only in mpq, not in " + req.target.name() + ": use --target mpq");
  // vLLM fuses q/k/v and gate/up: one format each.
  const bool fused_same = req.fused_same || req.target.needs_fused_same();

  // Formats per method.
  std::vector<WeightFormatId> formats = req.formats;
  if (formats.empty()) {
    if (m == "tiers") formats = {WeightFormatId::BF16, WeightFormatId::FP8_E4M3_Channel, WeightFormatId::NVFP4};
    else if (m == "bqp" && shapley_cost && in.shapley.is_object()) {
      for (const char* key : {"high", "low"}) {
        const auto it = in.shapley.find(key);
        const auto id = it != in.shapley.end() && it->is_string() ? weight_format_from_name(it->get<std::string>())
                                                                 : std::nullopt;
        check(id.has_value(), in.path, std::string("shapley section: unknown ") + key + " format");
        formats.push_back(*id);
      }
    } else if (m == "bqp" || m == "channels") formats = {WeightFormatId::Int8_Channel, WeightFormatId::Int4_G128};
    else if (m == "rule") formats = {WeightFormatId::Int4_G128, WeightFormatId::Int8_Channel};
    else
      for (const auto& n : in.formats)
        if (auto id = weight_format_from_name(n)) formats.push_back(*id);
  }
  check(!formats.empty(), "--formats", "no candidate formats");
  if (m == "tiers") check(formats.size() == 3, "--formats", "tiers needs exactly 3 formats: high,mid,low");
  if (m == "bqp" || m == "channels" || m == "rule")
    check(formats.size() == 2, "--formats", m + " needs exactly 2 formats (" +
                                                (m == "rule" ? "base,more" : "high,low") + ")");

  const size_t nt = in.tensors.size();
  const std::string where = in.path;
  auto cost_of = [&](size_t t, WeightFormatId f) -> double {
    if (shapley_cost) return 0.0;  // the objective comes from the Shapley fit (bqp below)
    const auto& map = req.cost == "fisher" ? in.tensors[t].fisher
                      : req.cost == "kld"  ? in.tensors[t].kld
                                           : in.tensors[t].output;
    auto it = map.find(fname(f));
    if (it != map.end()) return it->second;
    if (f == WeightFormatId::BF16 || f == WeightFormatId::F16) return 0.0;  // kept weights: no measured loss
    fail(where, "no '" + req.cost + "' cost for tensor " + in.tensors[t].name + " in format " + fname(f) +
                    " (run mpq analyze with --methods including " + req.cost + " and --formats including it)");
  };
  auto bits_of = [&](size_t t, WeightFormatId f) { return storage_bits(f, in.tensors[t].rows, in.tensors[t].cols); };

  // Pins: first matching pin wins; every pin must match something.
  std::vector<int> pin_of(nt, -1);
  for (size_t p = 0; p < req.pins.size(); ++p) {
    const std::regex re(req.pins[p].pattern);
    bool any = false;
    for (size_t t = 0; t < nt; ++t)
      if (std::regex_search(in.tensors[t].name, re)) {
        any = true;
        if (pin_of[t] < 0) pin_of[t] = static_cast<int>(p);
      }
    check(any, "--pin", "'" + req.pins[p].pattern + "' matches no tensor of " + where);
  }
  std::vector<bool> unq(nt, false);
  for (size_t t = 0; t < nt; ++t) unq[t] = pin_of[t] >= 0 && req.pins[pin_of[t]].none;

  // Units: tensors that share a format.
  std::vector<std::vector<size_t>> units;
  {
    std::map<std::pair<int, int>, size_t> fused;
    for (size_t t = 0; t < nt; ++t) {
      if (unq[t]) continue;
      const int fc = fused_class(in.tensors[t].kind);
      if (fused_same && fc >= 0) {
        auto key = std::make_pair(in.tensors[t].layer, fc);
        auto it = fused.find(key);
        if (it != fused.end()) { units[it->second].push_back(t); continue; }
        fused[key] = units.size();
      }
      units.push_back({t});
    }
  }
  // A unit's pinned format (all pinned members must agree; the others follow).
  std::vector<std::optional<WeightFormatId>> unit_pin(units.size());
  for (size_t u = 0; u < units.size(); ++u)
    for (size_t t : units[u]) {
      if (pin_of[t] < 0) continue;
      const WeightFormatId f = req.pins[pin_of[t]].format;
      check(!unit_pin[u] || *unit_pin[u] == f, "--pin",
            "fused tensors of " + in.tensors[t].name + " are pinned to different formats (--fused-same)");
      unit_pin[u] = f;
    }

  uint64_t weights = 0;
  for (size_t t = 0; t < nt; ++t)
    if (!unq[t]) weights += static_cast<uint64_t>(in.tensors[t].rows) * static_cast<uint64_t>(in.tensors[t].cols);
  check(weights > 0, "--pin", "every tensor is pinned to none: nothing to quantize");

  Plan plan;
  plan.method = m;
  plan.cost = m == "channels" ? "salience" : (m == "rule" ? "" : req.cost);
  if (req.bytes) plan.budget.bytes = *req.bytes;
  else if (req.bits) plan.budget.bits_per_weight = *req.bits;
  else if (m == "tiers") plan.budget.bits_per_weight = 8;
  else if (m == "rule" || req.high_fraction) plan.budget.bits_per_weight = 16;  // only checked
  else fail("--bits/--size", "method " + m + " needs a budget (--bits B or --size BYTES)");
  const uint64_t cap = plan.budget.cap_bits(weights);
  plan.sensitivity = {{"path", in.path}, {"sha256", in.sha256}, {"model", in.model}};
  plan.target = req.target.name();

  std::vector<std::optional<WeightFormatId>> chosen(nt);
  uint64_t fixed_bits = 0;
  double fixed_cost = 0;
  std::vector<size_t> free_units;
  for (size_t u = 0; u < units.size(); ++u) {
    if (!unit_pin[u]) { free_units.push_back(u); continue; }
    for (size_t t : units[u]) {
      chosen[t] = *unit_pin[u];
      fixed_bits += bits_of(t, *unit_pin[u]);
      if (m != "rule" && m != "channels") fixed_cost += cost_of(t, *unit_pin[u]);
    }
  }
  // Whether the target runs format f on every tensor of unit u (why not, when it does not).
  auto unit_accepts = [&](size_t u, WeightFormatId f, std::string* why) {
    for (size_t t : units[u]) {
      if (!req.target.accepts(f, in.tensors[t].rows, in.tensors[t].cols, why)) {
        if (why != nullptr) *why = in.tensors[t].name + ": " + *why;
        return false;
      }
    }
    return true;
  };
  for (size_t u = 0; u < units.size(); ++u) {
    std::string why;
    if (unit_pin[u] && !unit_accepts(u, *unit_pin[u], &why)) {
      fail("--pin", std::string("pinned format ") + fname(*unit_pin[u]) + " is not accepted by the target (" + why + ")");
    }
  }
  auto pinned_over = [&] {
    fail("--pin", "the pinned tensors alone take " + std::to_string(fixed_bits) + " bits, over the budget of " +
                      std::to_string(cap) + " bits (" + plan.budget.describe() + ")");
  };
  if (fixed_bits > cap) pinned_over();
  const uint64_t free_cap = cap - fixed_bits;

  // Knapsack offers each unit the formats its target accepts; the methods that place formats by
  // rank (tiers, bqp, rule) need every format on every tensor.
  auto make_items = [&](const std::vector<WeightFormatId>& fs) {
    std::vector<PlanItem> items;
    for (size_t u : free_units) {
      PlanItem it;
      it.name = in.tensors[units[u][0]].name;
      std::string why;
      for (WeightFormatId f : fs) {
        if (!unit_accepts(u, f, &why)) {
          check(m == "knapsack", "--target", std::string("format ") + fname(f) + " is not accepted by the target (" + why +
                                                 "): choose --formats every tensor can take");
          continue;
        }
        PlanOption o{f, 0, 0};
        for (size_t t : units[u]) o.bits += bits_of(t, f), o.cost += cost_of(t, f);
        it.options.push_back(o);
      }
      check(!it.options.empty(), "--target", "tensor " + it.name + " can take none of the candidate formats (" + why + ")");
      items.push_back(std::move(it));
    }
    return items;
  };
  auto apply_choice = [&](const std::vector<PlanItem>& items, const std::vector<int>& choice) {
    for (size_t k = 0; k < free_units.size(); ++k)
      for (size_t t : units[free_units[k]]) chosen[t] = items[k].options[choice[k]].format;
  };

  if (m == "bqp" || m == "rule" || m == "channels") {
    for (size_t u : free_units) {
      for (WeightFormatId f : formats) {
        std::string why;
        check(unit_accepts(u, f, &why), "--target", std::string("format ") + fname(f) + " is not accepted by the target (" + why +
                                                        "): choose --formats every tensor can take");
      }
    }
  }
  double objective = fixed_cost;
  std::map<size_t, std::vector<int64_t>> split;  // tensor -> high channels (channels method)
  if (m == "knapsack") {
    const auto items = make_items(formats);
    const PlanSolution s = solve_knapsack(items, free_cap, req.knapsack_cells);
    apply_choice(items, s.choice);
    objective += s.objective;
    plan.solver = {{"exact", s.exact}, {"lower_bound", fixed_cost + s.lower_bound},
                   {"gap", s.objective - s.lower_bound}, {"note", s.note}};
  } else if (m == "tiers") {
    const auto items = make_items(formats);
    std::vector<double> importance;
    for (const PlanItem& it : items) importance.push_back(it.options[2].cost);  // damage in the low tier
    const PlanSolution s = solve_tiers(items, importance, free_cap);
    apply_choice(items, s.choice);
    objective += s.objective;
    plan.solver = {{"note", s.note}, {"importance", std::string("cost in ") + fname(formats[2])}};
  } else if (m == "bqp") {
    // Players: layers (all their non-pinned tensors take the player's format).
    std::map<int, std::vector<size_t>> layer_tensors;
    for (size_t u : free_units)
      for (size_t t : units[u]) layer_tensors[in.tensors[t].layer].push_back(t);
    BqpProblem p;
    std::vector<int> layers;
    double high_cost = 0;
    for (const auto& [layer, ts] : layer_tensors) {
      layers.push_back(layer);
      double a = 0;
      uint64_t bh = 0, bl = 0;
      for (size_t t : ts) {
        const double ch = cost_of(t, formats[0]), cl = cost_of(t, formats[1]);
        a += cl - ch, high_cost += ch;
        bh += bits_of(t, formats[0]), bl += bits_of(t, formats[1]);
      }
      p.a.push_back(a), p.bits_high.push_back(bh), p.bits_low.push_back(bl);
    }
    p.budget_bits = free_cap;
    std::string interactions = "none (additive costs: " + req.cost + ")";
    if (shapley_cost) {
      const ShapleyTerms terms = shapley_terms(in, layers, formats);
      p.a = terms.linear;
      p.b = terms.interaction;
      high_cost = terms.base_cost;
      interactions = "Shapley fit (L0 + a·x + xᵀBx over layer players, mean KL on held-out tokens)";
    }
    const BqpSolution s = solve_bqp(p);
    for (size_t i = 0; i < layers.size(); ++i)
      for (size_t t : layer_tensors[layers[i]]) chosen[t] = s.low[i] ? formats[1] : formats[0];
    objective += high_cost + s.objective;
    plan.solver = {{"exact", s.exact}, {"nodes", s.nodes}, {"players", layers.size()}, {"note", s.note},
                   {"interactions", interactions}};
  } else if (m == "channels") {
    std::vector<ChannelTensor> cts;
    std::vector<size_t> ids;
    for (size_t u : free_units) {
      const size_t t = units[u][0];
      check(!in.tensors[t].channels.empty(), where,
            "tensor " + in.tensors[t].name + " has no channel salience (run mpq analyze with --methods channels)");
      cts.push_back({in.tensors[t].rows, in.tensors[t].cols, in.tensors[t].channels});
      ids.push_back(t);
    }
    int64_t n_channels = 0;
    for (const ChannelTensor& ct : cts) n_channels += ct.rows;
    const int64_t max_high = req.high_fraction
                                 ? static_cast<int64_t>(std::floor(*req.high_fraction * static_cast<double>(n_channels)))
                                 : INT64_MAX;
    const ChannelSolution s = solve_channels(cts, formats[0], formats[1], free_cap, max_high);
    check(!req.high_fraction || s.n_high == max_high, "--high-fraction",
          "the top " + std::to_string(max_high) + " channels do not fit 16 bits per weight with these formats");
    for (size_t k = 0; k < ids.size(); ++k) {
      chosen[ids[k]] = formats[1];
      split[ids[k]] = s.high_channels[k];
    }
    objective = s.objective;
    plan.solver = {{"n_high", s.n_high}, {"n_channels", s.n_channels},
                   {"high_fraction", s.n_channels ? static_cast<double>(s.n_high) / static_cast<double>(s.n_channels) : 0.0},
                   {"note", "objective: summed salience of the channels left in the low format"}};
  } else {  // rule
    for (size_t u : free_units) {
      bool more = false;
      for (size_t t : units[u]) {
        const auto& ts = in.tensors[t];
        more = more || ((ts.kind == "v_proj" || ts.kind == "down_proj") && rule_more_bits(ts.layer, in.n_layers));
      }
      for (size_t t : units[u]) chosen[t] = more ? formats[1] : formats[0];
    }
    objective = 0;
    plan.solver = {{"note", "llama.cpp Q4_K_M use_more_bits rule on v_proj and down_proj"}};
  }

  // Assemble and check.
  std::vector<PlanTensorShape> shapes;
  for (size_t t = 0; t < nt; ++t) {
    const auto& ts = in.tensors[t];
    shapes.push_back({ts.name, ts.rows, ts.cols});
    if (unq[t]) { plan.unquantized.push_back(ts.name); continue; }
    PlanEntry e;
    e.format = *chosen[t];
    e.quantizer = req.quantizer;
    if (pin_of[t] >= 0 && req.pins[pin_of[t]].quantizer) e.quantizer = *req.pins[pin_of[t]].quantizer;
    auto sp = split.find(t);
    if (sp != split.end()) {
      e.split = true;
      e.high_format = formats[0];
      e.low_format = formats[1];
      e.high_channels = sp->second;
    }
    plan.total_bits += plan_entry_bits(e, ts.rows, ts.cols);
    plan.tensors[ts.name] = std::move(e);
  }
  if (m == "rule" && plan.total_bits > cap)
    fail("--bits/--size", "the rule's plan takes " + std::to_string(plan.total_bits) + " bits, over the budget of " +
                              std::to_string(cap) + " bits (" + plan.budget.describe() + ")");
  plan.weights = weights;
  plan.bits_per_weight = static_cast<double>(plan.total_bits) / static_cast<double>(weights);
  plan.predicted_objective = objective;
  validate_plan(plan, shapes);  // budget, names: never hand out a plan that would be refused
  return plan;
}

// A whole-file budget (PlanRequest::file_bytes): the Linear plan in what the file leaves after its
// fixed part and the head, for each candidate head format; the least total cost wins.
Plan make_file_plan(const SensitivityInput& in, const PlanRequest& req) {
  const uint64_t file_bytes = *req.file_bytes;
  check(!req.bits && !req.bytes, "--file-size", "give one budget, not several");
  check(req.target.engines.size() == 1 && req.target.engines[0] == Engine::LlamaCpp, "--file-size",
        "whole-file budgets are for GGUF files: use --target llama.cpp (for other outputs, --size budgets the "
        "Linear weights)");
  check(in.gguf_fixed_bytes.has_value(), in.path,
        "has no GGUF size record (\"gguf.fixed_bytes\"): re-run mpq analyze with this mpq, or use --size");
  check(in.head.rows > 0, in.path, "has no output-head sensitivity: re-run mpq analyze with --methods fisher");
  // Bytes outside the planned tensors: the measured fixed part, the report reserve and up to 31
  // bytes of alignment padding after each planned tensor (the Linear ones and the head).
  const uint64_t planned = in.tensors.size() + 1;
  const uint64_t overhead = *in.gguf_fixed_bytes + gguf_report_reserve(planned) + 31 * planned;
  std::vector<WeightFormatId> head_formats;
  if (req.head) {
    head_formats.push_back(req.head->format);
  } else {
    check(req.method == "knapsack" && req.cost == "fisher", "--file-size",
          "choosing the head's format needs costs comparable with the Linear plan's: use --method knapsack with "
          "--cost fisher, or give --head-format");
    for (const auto& [name, cost] : in.head.fisher) {
      const auto id = weight_format_from_name(name);
      if (id && req.target.accepts(*id, in.head.rows, in.head.cols)) head_formats.push_back(*id);
    }
    check(!head_formats.empty(), in.path, "no head format with a fisher cost is accepted by " + req.target.name());
  }
  std::optional<Plan> best;
  double best_total = 0;
  std::string last_error = "the file's fixed part alone is " + std::to_string(overhead) + " bytes";
  for (WeightFormatId f : head_formats) {
    std::string why;
    check(req.target.accepts(f, in.head.rows, in.head.cols, &why), "--head-format",
          std::string(fname(f)) + " cannot hold the output head: " + why);
    const uint64_t head_bytes = (storage_bits(f, in.head.rows, in.head.cols) + 7) / 8;
    if (overhead + head_bytes >= file_bytes) continue;
    PlanRequest sub = req;
    sub.file_bytes.reset();
    sub.bytes = file_bytes - overhead - head_bytes;
    Plan p;
    try {
      p = make_linear_plan(in, sub);
    } catch (const Error& e) {  // the Linear weights do not fit beside this head
      last_error = e.what();
      continue;
    }
    double head_cost = 0;
    if (const auto it = in.head.fisher.find(fname(f)); it != in.head.fisher.end()) head_cost = it->second;
    const double total = p.predicted_objective + head_cost;
    if (!best || total < best_total) {
      best_total = total;
      p.head = Scheme{f, req.head ? req.head->quantizer : Quantizer::Rtn};
      p.budget.file_bytes = file_bytes;
      p.solver["file"] = {{"file_bytes", file_bytes},
                          {"fixed_bytes", *in.gguf_fixed_bytes},
                          {"report_reserve", gguf_report_reserve(planned)},
                          {"head_format", fname(f)},
                          {"head_bytes", head_bytes},
                          {"head_cost", head_cost},
                          {"linear_bytes", *sub.bytes},
                          {"predicted_file_bytes_at_most", overhead + head_bytes + (p.total_bits + 7) / 8}};
      best = std::move(p);
    }
  }
  if (!best) {
    fail("--file-size", std::to_string(file_bytes) + " bytes cannot hold the model with any head format (" +
                            last_error + ")");
  }
  return *best;
}

}  // namespace

Plan make_plan(const SensitivityInput& in, const PlanRequest& req) {
  if (req.file_bytes) return make_file_plan(in, req);
  Plan plan = make_linear_plan(in, req);
  if (req.head) plan.head = *req.head;
  return plan;
}

}  // namespace mpq

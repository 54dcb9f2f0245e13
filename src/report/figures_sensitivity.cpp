// Report sections drawn from the sensitivity file: the per-tensor cost of every format, the
// MixLLM channel salience, and the Shapley analysis.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "format/weight_format.h"
#include "mpq/error.h"
#include "report/figures.h"
#include "report/svg.h"

namespace mpq::report {
namespace {

// The cost of tensor `t` in `format` under `method`, NaN when not measured.
double cost_of(const SensitivityTensor& t, const std::string& method, const std::string& format) {
  const auto& m = method == "kld" ? t.kld : method == "fisher" ? t.fisher : t.output;
  const auto it = m.find(format);
  return it == m.end() ? NAN : it->second;
}

std::string method_meaning(const std::string& method) {
  if (method == "kld") return "kld: mean KL divergence (nats/token) on held-out text with only this tensor quantized (RTN)";
  if (method == "fisher") return "fisher: ½ Σ G2·δ², the empirical-Fisher estimate of the loss increase";
  return "output: tr(δ H δᵀ), the layer-output error on the calibration inputs";
}

// A number array of the Shapley estimate whose entries may be null (→ NaN).
std::vector<double> numbers(const nlohmann::json& j) {
  std::vector<double> v;
  if (!j.is_array()) return v;
  for (const auto& x : j) v.push_back(x.is_number() ? x.get<double>() : NAN);
  return v;
}

std::vector<std::vector<double>> matrix(const nlohmann::json& j) {
  std::vector<std::vector<double>> m;
  if (!j.is_array()) return m;
  for (const auto& row : j) m.push_back(numbers(row));
  return m;
}

// "layer.12" -> "12"; "model.layers.3.self_attn.q_proj" -> "3.q".
std::string short_player(const std::string& name) {
  if (name.rfind("layer.", 0) == 0) return name.substr(6);
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) == 0) {
    const size_t dot = name.find('.', prefix.size());
    const size_t last = name.rfind('.');
    if (dot != std::string::npos) return name.substr(prefix.size(), dot - prefix.size()) + "." + short_kind(name.substr(last + 1));
  }
  return name;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sensitivity heatmaps

Section sensitivity_section(const ReportData& d) {
  Section s{"sensitivity", "Sensitivity: what each format costs each tensor", ""};
  const SensitivityInput& in = d.tensors;
  std::string method;
  for (const char* m : {"kld", "fisher", "output"}) {
    const bool any = std::any_of(in.tensors.begin(), in.tensors.end(), [&](const SensitivityTensor& t) {
      return !(std::string(m) == "kld" ? t.kld : std::string(m) == "fisher" ? t.fisher : t.output).empty();
    });
    if (any) {
      method = m;
      break;
    }
  }
  if (method.empty()) {
    s.html = omitted("sensitivity-omitted",
                     "The sensitivity file measured no per-format cost (none of the methods kld, fisher, output), "
                     "so there is no heatmap.");
    return s;
  }
  // Formats with values, most bits first.
  std::vector<std::pair<std::string, double>> formats;
  for (const auto& f : in.formats) {
    const bool any = std::any_of(in.tensors.begin(), in.tensors.end(),
                                 [&](const SensitivityTensor& t) { return std::isfinite(cost_of(t, method, f)); });
    if (any) formats.emplace_back(f, nominal_bits(in, f));
  }
  std::stable_sort(formats.begin(), formats.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  const std::vector<std::string> kinds = kinds_in_order(in);
  const int n_layers = std::max(1, in.n_layers);

  double lo = INFINITY, hi = 0;
  svg::TileGrid grid;
  grid.id = "fig-sensitivity";
  for (const auto& [f, bits] : formats) {
    svg::TilePanel panel;
    panel.title = f + " · " + num(bits, 4) + " bits/weight";
    for (const auto& k : kinds) panel.row_labels.push_back(short_kind(k));
    for (int l = 0; l < n_layers; ++l) panel.col_labels.push_back(std::to_string(l));
    panel.tiles.assign(kinds.size(), std::vector<svg::Tile>(static_cast<size_t>(n_layers)));
    // Cells of several tensors (MoE experts) show the sum.
    std::map<std::pair<size_t, int>, std::pair<double, int>> sums;
    for (const auto& t : in.tensors) {
      const size_t row = static_cast<size_t>(std::find(kinds.begin(), kinds.end(), t.kind) - kinds.begin());
      const double v = cost_of(t, method, f);
      auto& [sum, count] = sums[{row, t.layer}];
      if (std::isfinite(v)) sum += v, ++count;
    }
    for (const auto& [key, sc] : sums) {
      const auto [sum, count] = sc;
      if (count > 0 && sum > 0) lo = std::min(lo, sum), hi = std::max(hi, sum);
      svg::Tile& tile = panel.tiles[key.first][static_cast<size_t>(key.second)];
      tile.fill = "";  // set once the colour scale is known
      tile.hover = "layer " + std::to_string(key.second) + " " + kinds[key.first] + " · " + f + ": " + method + " " +
                   (count == 0 ? std::string("not measured") : num(sum, 4)) +
                   (count > 1 ? " (sum over " + std::to_string(count) + " tensors)" : "");
      tile.band_fraction = count > 0 ? sum : NAN;  // the value, until the colour is set below
    }
    grid.panels.push_back(std::move(panel));
  }
  if (!(hi > 0)) lo = 1, hi = 10;
  const auto [clo, chi] = svg::nice_log_domain(lo, hi);
  grid.has_colour_bar = true;
  grid.colour_bar = {method + " (log scale)", clo, chi, true, false};
  for (auto& p : grid.panels) {
    for (auto& row : p.tiles) {
      for (auto& t : row) {
        const double v = t.band_fraction;
        t.band_fraction = 0;
        t.fill = std::isfinite(v) && v > 0 ? grid.colour_bar.colour(v) : "";
      }
    }
  }
  // Small multiples: up to four panels a row (fewer panels: wider cells), cells no narrower than 7 px.
  const double per_row = static_cast<double>(std::clamp<size_t>(grid.panels.size(), 1, 4));
  grid.cell_width = std::clamp((kFigureWidth / per_row - 70) / n_layers, 7.0, 30.0);
  grid.cell_height = 15;
  const double panel_w = 44 + grid.cell_width * n_layers;  // row labels + tiles
  grid.panel_columns = std::clamp(static_cast<int>((kFigureWidth + 28) / (panel_w + 28)), 1, 6);
  grid.note = "Grey dot: not measured, or 0. Colours share one scale across panels.";

  // The most sensitive tensors, at the format nearest the kept model's bits per weight.
  const RunCandidate& chosen = d.run.chosen_candidate();
  const double target = chosen.bits_per_weight.value_or(d.run.budget_bits_per_weight);
  std::string ref = formats.front().first;
  for (const auto& [f, bits] : formats) {
    if (std::fabs(bits - target) < std::fabs(nominal_bits(in, ref) - target)) ref = f;
  }
  std::vector<const SensitivityTensor*> ranked;
  double total = 0;
  for (const auto& t : in.tensors) {
    const double v = cost_of(t, method, ref);
    if (std::isfinite(v)) ranked.push_back(&t), total += v;
  }
  std::stable_sort(ranked.begin(), ranked.end(), [&](const SensitivityTensor* a, const SensitivityTensor* b) {
    return cost_of(*a, method, ref) > cost_of(*b, method, ref);
  });
  const size_t top = std::min<size_t>(10, ranked.size());
  std::string list = "<table class=\"data\" id=\"sensitive-tensors\">\n<thead><tr><th>rank</th><th>tensor</th><th>" +
                     esc(method) + " at " + esc(ref) + "</th><th>share of the total</th>" +
                     (d.chosen_plan ? "<th>format in the kept model</th>" : "") + "</tr></thead>\n<tbody>\n";
  for (size_t i = 0; i < top; ++i) {
    const SensitivityTensor& t = *ranked[i];
    const double v = cost_of(t, method, ref);
    std::string kept;
    if (d.chosen_plan) {
      const auto it = d.chosen_plan->tensors.find(t.name);
      if (it == d.chosen_plan->tensors.end()) kept = "unquantized";
      else if (it->second.split) {
        kept = std::string(weight_format(it->second.high_format).name) + " / " + weight_format(it->second.format).name +
               " split (" + percent(static_cast<double>(it->second.high_channels.size()) / static_cast<double>(t.rows)) +
               " high)";
      } else {
        kept = weight_format(it->second.format).name;
      }
    }
    list += "<tr><td class=\"num\">" + std::to_string(i + 1) + "</td><td><code>" + esc(t.name) +
            "</code></td><td class=\"num\">" + esc(num(v, 4)) + "</td><td class=\"num\">" +
            esc(total > 0 ? percent(v / total) : std::string("—")) + "</td>" +
            (d.chosen_plan ? "<td>" + esc(kept) + "</td>" : "") + "</tr>\n";
  }
  list += "</tbody>\n</table>\n";

  s.html = "<p>Cost used: <b>" + esc(method_meaning(method)) +
           "</b> (the best the file has, in the order kld, fisher, output). One panel per format; rows are the "
           "projections, columns the layers; hover a tile for its value.</p>\n" +
           figure(svg::render(grid), "Per-tensor " + esc(method) + " cost of each candidate format (" +
                                         esc(d.run.sensitivity) + "), log colour scale shared by all panels.") +
           "<h3>Most sensitive tensors</h3>\n<p>The " + std::to_string(top) + " tensors with the largest " + esc(method) +
           " cost at <b>" + esc(ref) + "</b> (" + esc(num(nominal_bits(in, ref), 4)) +
           " bits/weight, the measured format nearest the kept model's " + esc(num(target, 4)) + " bits/weight).</p>\n" +
           list;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Channel salience

Section salience_section(const ReportData& d) {
  Section s{"salience", "Channel salience (MixLLM): which projections hold the salient output channels", ""};
  if (!d.sensitivity.contains("channels")) {
    s.html = omitted("salience-omitted",
                     "Not measured: the sensitivity analysis ran without the channels method (mpq analyze --methods "
                     "...,channels), so there is no per-channel salience to show.");
    return s;
  }
  const nlohmann::json& summary = d.sensitivity["channels"];
  const std::string where = d.run.sensitivity;
  double fraction = 0;
  int64_t n_channels = 0, n_top = 0;
  try {
    fraction = summary.at("top_fraction").get<double>();
    n_channels = summary.at("n_channels").get<int64_t>();
    n_top = summary.at("n_top").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("malformed channels summary: ") + e.what());
  }
  const std::string top_text = "top " + num(100 * fraction, 3) + " %";
  const svg::ReferenceLine even{100 * fraction, "even spread (" + num(100 * fraction, 3) + " %)", "#d55e00"};
  const std::vector<std::string> kinds = kinds_in_order(d.tensors);

  svg::BarChart by_kind;
  by_kind.id = "fig-salience-kind";
  by_kind.width = kFigureWidth * 0.42;
  by_kind.height = 300;
  by_kind.x_label = "projection";
  by_kind.y.label = "share in the " + top_text + " (%)";
  by_kind.legend = false;
  svg::BarSeries ks{"", svg::categorical(0, 1), {}, {}, {}, {}};
  std::map<std::string, int64_t> kind_top;
  for (const auto& k : kinds) {
    if (!summary["by_kind"].contains(k)) continue;
    const auto& e = summary["by_kind"][k];
    by_kind.categories.push_back(short_kind(k));
    ks.values.push_back(100 * e.at("share").get<double>());
    kind_top[k] = e.at("top").get<int64_t>();
    ks.hovers.push_back(k + ": " + std::to_string(e.at("top").get<int64_t>()) + " of " +
                        std::to_string(e.at("channels").get<int64_t>()) + " output channels (" +
                        percent(e.at("share").get<double>()) + ") are in the " + top_text);
  }
  by_kind.series.push_back(ks);
  by_kind.references.push_back(even);

  svg::BarChart by_layer;
  by_layer.id = "fig-salience-layer";
  by_layer.width = kFigureWidth * 0.55;
  by_layer.height = 300;
  by_layer.x_label = "layer";
  by_layer.y.label = "share in the " + top_text + " (%)";
  by_layer.legend = false;
  svg::BarSeries ls{"", svg::categorical(2, 3), {}, {}, {}, {}};
  for (const auto& e : summary["by_layer"]) {
    by_layer.categories.push_back(std::to_string(e.at("layer").get<int>()));
    ls.values.push_back(100 * e.at("share").get<double>());
    ls.hovers.push_back("layer " + std::to_string(e.at("layer").get<int>()) + ": " +
                        std::to_string(e.at("top").get<int64_t>()) + " of " +
                        std::to_string(e.at("channels").get<int64_t>()) + " output channels (" +
                        percent(e.at("share").get<double>()) + ") are in the " + top_text);
  }
  by_layer.series.push_back(ls);
  by_layer.references.push_back(even);

  std::string html = "<p>Every output channel of every Linear tensor ranked by its salience (docs/SENSITIVITY.md, "
                     "method channels); the " + esc(top_text) + " (" + std::to_string(n_top) + " of " +
                     std::to_string(n_channels) + " channels) is the set a channel-split plan keeps in the high "
                     "format first. A bar above the dashed line holds more than its share of them.</p>\n";
  html += "<div class=\"row\">\n" + figure(svg::render(by_kind), "Share of each projection's output channels in the " + esc(top_text) + ".") +
          figure(svg::render(by_layer), "Share of each layer's output channels in the " + esc(top_text) + ".") + "</div>\n";

  // Per tensor, from the sidecar: the same ranking (descending salience, ties by file position).
  const bool have_channels = std::all_of(d.tensors.tensors.begin(), d.tensors.tensors.end(),
                                         [](const SensitivityTensor& t) { return !t.channels.empty(); });
  if (!have_channels) {
    html += omitted("salience-tensor-omitted", "The sidecar holds no per-channel values, so the per-tensor map is not drawn.");
    s.html = html;
    return s;
  }
  std::vector<std::pair<float, int64_t>> all;  // (salience, position)
  std::vector<size_t> owner;
  for (size_t i = 0; i < d.tensors.tensors.size(); ++i) {
    for (float v : d.tensors.tensors[i].channels) {
      all.emplace_back(v, static_cast<int64_t>(all.size()));
      owner.push_back(i);
    }
  }
  check(static_cast<int64_t>(all.size()) == n_channels, where, "channels summary counts " + std::to_string(n_channels) +
                                                                  " channels, the sidecar holds " + std::to_string(all.size()));
  std::vector<size_t> idx(all.size());
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t k = std::min<int64_t>(n_top, static_cast<int64_t>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](size_t a, size_t b) {
    return all[a].first != all[b].first ? all[a].first > all[b].first : all[a].second < all[b].second;
  });
  std::vector<int64_t> tensor_top(d.tensors.tensors.size(), 0);
  for (int64_t i = 0; i < k; ++i) ++tensor_top[owner[idx[i]]];
  std::map<std::string, int64_t> recount;
  for (size_t i = 0; i < tensor_top.size(); ++i) recount[d.tensors.tensors[i].kind] += tensor_top[i];
  for (const auto& [kind, count] : kind_top) {
    check(recount[kind] == count, where, "channels summary says " + std::to_string(count) + " " + kind +
                                             " channels are in the top set, its sidecar gives " + std::to_string(recount[kind]));
  }
  const int n_layers = std::max(1, d.tensors.n_layers);
  svg::TilePanel panel;
  for (const auto& kd : kinds) panel.row_labels.push_back(short_kind(kd));
  for (int l = 0; l < n_layers; ++l) panel.col_labels.push_back(std::to_string(l));
  panel.tiles.assign(kinds.size(), std::vector<svg::Tile>(static_cast<size_t>(n_layers)));
  std::map<std::pair<size_t, int>, std::pair<int64_t, int64_t>> cell;  // (top, channels)
  for (size_t i = 0; i < d.tensors.tensors.size(); ++i) {
    const auto& t = d.tensors.tensors[i];
    const size_t row = static_cast<size_t>(std::find(kinds.begin(), kinds.end(), t.kind) - kinds.begin());
    auto& [top, count] = cell[{row, t.layer}];
    top += tensor_top[i];
    count += t.rows;
  }
  double max_share = 0;
  for (const auto& [key, tc] : cell) max_share = std::max(max_share, static_cast<double>(tc.first) / tc.second);
  svg::TileGrid grid;
  grid.id = "fig-salience-tensor";
  grid.has_colour_bar = true;
  grid.colour_bar = {"share of the tensor's output channels in the " + top_text + " (%)", 0,
                     svg::nice_linear_domain(0, std::max(100 * max_share, 1.0)).second, false, false};
  for (const auto& [key, tc] : cell) {
    const double share = static_cast<double>(tc.first) / static_cast<double>(tc.second);
    svg::Tile& tile = panel.tiles[key.first][static_cast<size_t>(key.second)];
    tile.fill = grid.colour_bar.colour(100 * share);
    tile.hover = "layer " + std::to_string(key.second) + " " + kinds[key.first] + ": " + std::to_string(tc.first) +
                 " of " + std::to_string(tc.second) + " output channels (" + percent(share) + ") in the " + top_text;
  }
  grid.panels.push_back(panel);
  grid.cell_width = std::clamp((kFigureWidth - 80) / n_layers, 14.0, 44.0);
  grid.cell_height = 20;
  grid.x_label = "layer";
  html += figure(svg::render(grid), "Per tensor: share of its output channels in the " + esc(top_text) +
                                        " (recomputed from the sidecar's saliences with the same ranking; it agrees "
                                        "with the summary above by projection).");
  s.html = html;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Shapley

Section shapley_section(const ReportData& d) {
  Section s{"shapley", "Shapley values: each player's share of the damage, interactions included", ""};
  if (!d.sensitivity.contains("shapley") || d.sensitivity["shapley"].is_null()) {
    s.html = omitted("shapley-omitted",
                     "Not measured: the sensitivity analysis ran without the shapley method (mpq analyze --methods "
                     "...,shapley), so there are no Shapley values or interactions to show.");
    return s;
  }
  const nlohmann::json& sh = d.sensitivity["shapley"];
  const std::string where = d.run.sensitivity;
  std::vector<std::string> players;
  nlohmann::json est;
  try {
    players = sh.at("players").get<std::vector<std::string>>();
    est = sh.at("estimate");
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("malformed shapley section: ") + e.what());
  }
  const size_t n = players.size();
  const std::vector<double> value = numbers(est.value("value", nlohmann::json())),
                            value_se = numbers(est.value("value_std_error", nlohmann::json())),
                            fitted = numbers(est.value("fitted_value", nlohmann::json())),
                            fitted_se = numbers(est.value("fitted_value_std_error", nlohmann::json()));
  check(value.size() == n, where, "shapley estimate has " + std::to_string(value.size()) + " values for " +
                                      std::to_string(n) + " players");
  const bool layers = sh.value("player_kind", std::string()) == "layer";
  const auto bar_series = [&](const std::string& name, const std::string& colour, const std::vector<double>& v,
                              const std::vector<double>& se) {
    svg::BarSeries b{name, colour, v, {}, {}, {}};
    for (size_t i = 0; i < n; ++i) {
      const double e = i < se.size() ? se[i] : NAN;
      b.low.push_back(std::isfinite(e) ? v[i] - e : NAN);
      b.high.push_back(std::isfinite(e) ? v[i] + e : NAN);
      b.hovers.push_back(players[i] + " · " + name + ": " + num(v[i], 4) +
                         (std::isfinite(e) ? " ± " + num(e, 2) + " (1 std. error)" : std::string(" (no std. error)")));
    }
    return b;
  };
  svg::BarChart bars;
  bars.id = "fig-shapley";
  bars.width = kFigureWidth;
  bars.height = 340;
  bars.x_label = layers ? "layer" : "tensor (layer.projection)";
  bars.y.label = "Shapley value (nats/token)";
  for (const auto& p : players) bars.categories.push_back(short_player(p));
  bars.series.push_back(bar_series("Shapley value (mean over permutations)", svg::categorical(0, 2), value, value_se));
  if (fitted.size() == n) bars.series.push_back(bar_series("quadratic fit a + ½Σb", svg::categorical(1, 2), fitted, fitted_se));

  const double base = est.value("base_cost", NAN), full = est.value("full_cost", NAN);
  double sum = 0;
  for (double v : value) sum += std::isfinite(v) ? v : 0;
  std::string html = "<p>Players: " + std::to_string(n) + " " + (layers ? "layers" : "tensors") + ", each moving from <b>" +
                     esc(sh.value("high", std::string("?"))) + "</b> to <b>" + esc(sh.value("low", std::string("?"))) +
                     "</b> (" + esc(sh.value("quantizer", std::string("rtn"))) + "); " +
                     std::to_string(sh.value("permutations", 0)) + " permutations" +
                     (sh.value("antithetic", false) ? " in antithetic pairs" : "") + ", " +
                     std::to_string(est.value("evaluations", 0)) + " evaluations. Held-out KL with every player high: " +
                     esc(num(base, 4)) + ", every player low: " + esc(num(full, 4)) + "; the values add up to " +
                     esc(num(sum, 4)) + " (their difference is " + esc(num(full - base, 4)) +
                     "). Error bars: ±1 standard error.</p>\n";
  html += figure(svg::render(bars), "Shapley value of each player (damage it adds on average over the orders of "
                                    "quantization) and the quadratic model's estimate of it; hover a bar for the numbers.");
  const std::string note = est.value("fit_note", std::string());
  if (!note.empty()) html += "<p class=\"note\">Fit: r² " + esc(num(est.value("fit_r2", NAN), 4)) + ", rank " +
                             std::to_string(est.value("fit_rank", 0)) + " of " +
                             std::to_string(est.value("fit_parameters", 0)) + ". " + esc(note) + "</p>\n";

  const auto b = matrix(est.value("interaction", nlohmann::json()));
  const auto b_se = matrix(est.value("interaction_std_error", nlohmann::json()));
  if (b.size() != n) {
    html += omitted("interactions-omitted", "The fit has no pairwise interaction terms (" +
                                                (note.empty() ? std::string("too many players for all pairs") : note) + ").");
    s.html = html;
    return s;
  }
  struct Pair {
    size_t i, j;
    double v, se;
  };
  std::vector<Pair> pairs;
  double max_abs = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n && j < b[i].size(); ++j) {
      if (!std::isfinite(b[i][j])) continue;
      const double se = i < b_se.size() && j < b_se[i].size() ? b_se[i][j] : NAN;
      pairs.push_back({i, j, b[i][j], se});
      max_abs = std::max(max_abs, std::fabs(b[i][j]));
    }
  }
  std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& c) { return std::fabs(a.v) > std::fabs(c.v); });
  std::string table = "<table class=\"data\" id=\"interactions\">\n<thead><tr><th>players</th><th>b<sub>ij</sub></th>"
                      "<th>std. error</th><th>meaning</th></tr></thead>\n<tbody>\n";
  for (size_t k = 0; k < std::min<size_t>(10, pairs.size()); ++k) {
    const Pair& p = pairs[k];
    table += "<tr><td>" + esc(players[p.i]) + " × " + esc(players[p.j]) + "</td><td class=\"num\">" + esc(num(p.v, 3)) +
             "</td><td class=\"num\">" + esc(std::isfinite(p.se) ? num(p.se, 2) : std::string("—")) + "</td><td>" +
             (p.v > 0 ? "worse together than apart" : "less damage together than apart") + "</td></tr>\n";
  }
  table += "</tbody>\n</table>\n";
  html += "<h3>Strongest pairwise interactions</h3>\n<p>b<sub>ij</sub> of the quadratic model L(x) ≈ L0 + Σ a<sub>i</sub>x<sub>i</sub> + "
          "Σ b<sub>ij</sub>x<sub>i</sub>x<sub>j</sub>: positive when quantizing both players costs more than the sum "
          "of each alone.</p>\n" + table;
  if (n <= 64) {
    svg::TilePanel panel;
    for (const auto& p : players) panel.row_labels.push_back(short_player(p)), panel.col_labels.push_back(short_player(p));
    panel.tiles.assign(n, std::vector<svg::Tile>(n));
    svg::TileGrid grid;
    grid.id = "fig-interactions";
    grid.has_colour_bar = true;
    grid.colour_bar = {"b_ij (blue: less damage together, vermillion: more)", -max_abs, max_abs, false, true};
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        svg::Tile& t = panel.tiles[i][j];
        const double v = j < b[i].size() ? b[i][j] : NAN;
        if (i == j || !std::isfinite(v)) {
          t.hover = players[i] + (i == j ? " (diagonal: no pair)" : " × " + players[j] + ": not fitted");
          continue;
        }
        t.fill = grid.colour_bar.colour(v);
        const double se = i < b_se.size() && j < b_se[i].size() ? b_se[i][j] : NAN;
        t.hover = players[i] + " × " + players[j] + ": b = " + num(v, 4) + (std::isfinite(se) ? " ± " + num(se, 2) : "");
      }
    }
    grid.panels.push_back(panel);
    grid.cell_width = grid.cell_height = std::clamp(480.0 / static_cast<double>(n), 8.0, 36.0);
    grid.x_label = layers ? "layer" : "tensor";
    grid.y_label = layers ? "layer" : "tensor";
    html += figure(svg::render(grid), "All pairwise interaction terms b<sub>ij</sub> (symmetric).");
  }
  s.html = html;
  return s;
}

}  // namespace mpq::report

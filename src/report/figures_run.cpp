// Report sections about the run's outcome: the measured size-vs-KLD frontier of the candidates
// and the chosen model's allocation (formats per tensor, bits per layer).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "format/weight_format.h"
#include "report/figures.h"
#include "report/svg.h"

namespace mpq::report {

std::string esc(const std::string& text) { return svg::escape(text); }

std::string omitted(const std::string& id, const std::string& sentence) {
  return "<p class=\"omitted\" id=\"" + esc(id) + "\">" + esc(sentence) + "</p>\n";
}

std::string figure(const std::string& svg, const std::string& caption) {
  return "<figure>\n" + svg + "<figcaption>" + caption + "</figcaption>\n</figure>\n";
}

std::string num(double v, int significant) { return svg::format_number(v, significant); }

std::string percent(double share, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f %%", decimals, 100 * share);
  return buf;
}

std::string megabytes(double bytes) {
  char buf[48];
  const double mb = bytes / 1e6;
  if (mb >= 10) std::snprintf(buf, sizeof buf, "%.2f MB", mb);
  else std::snprintf(buf, sizeof buf, "%s MB", svg::format_number(mb, 4).c_str());
  return buf;
}

namespace {

std::string candidate_hover(const RunCandidate& c) {
  std::string h = c.name + " (" + c.kind + (c.method.empty() ? "" : ", " + c.method) +
                  (c.cost.empty() ? "" : ", cost " + c.cost) + ")";
  if (c.file_bytes) h += "\nfile size " + megabytes(static_cast<double>(*c.file_bytes));
  if (c.bits_per_weight) h += ", " + num(*c.bits_per_weight, 5) + " bits/weight";
  if (c.kld_mean) h += "\nKLD mean " + num(*c.kld_mean, 4);
  if (c.kld_p99) h += ", p99 " + num(*c.kld_p99, 4);
  if (c.ppl) h += "\nPPL " + num(*c.ppl, 5);
  if (c.top1_agree) h += ", top-1 agreement " + percent(*c.top1_agree);
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Frontier

Section frontier_section(const ReportData& d) {
  Section s{"frontier", "Size against KL divergence: every candidate, measured", ""};
  const RunRecord& run = d.run;
  // Series: one per plan method, then uniform schemes, then llama.cpp.
  std::vector<std::string> keys;
  std::map<std::string, std::vector<const RunCandidate*>> by_key;
  std::vector<std::string> not_plotted;
  for (const auto& c : run.candidates) {
    if (!c.done()) {
      not_plotted.push_back(c.name + " (" + c.status + ")");
      continue;
    }
    if (!(*c.kld_mean > 0)) {
      not_plotted.push_back(c.name + " (KLD " + num(*c.kld_mean) + ": not on a log axis)");
      continue;
    }
    const std::string key = c.kind == "plan" ? "plan: " + c.method : c.kind == "uniform" ? "uniform schemes" : "llama.cpp";
    if (!by_key.count(key)) keys.push_back(key);
    by_key[key].push_back(&c);
  }
  std::stable_partition(keys.begin(), keys.end(), [](const std::string& k) { return k.rfind("plan: ", 0) == 0; });
  svg::XYChart chart;
  chart.id = "fig-frontier";
  chart.width = kFigureWidth;
  chart.height = 480;
  chart.x.label = "file size (MB, 10⁶ bytes)";
  chart.y.label = "mean KLD vs unquantized (nats/token, log)";
  chart.y.log = true;
  chart.emphasis_label = "kept: " + run.chosen;
  std::vector<const RunCandidate*> plotted;
  for (size_t i = 0; i < keys.size(); ++i) {
    svg::Series series;
    series.name = keys[i];
    series.colour = svg::categorical(i, keys.size());
    series.marker = svg::marker_for(i);
    for (const RunCandidate* c : by_key[keys[i]]) {
      svg::Point p;
      p.x = static_cast<double>(*c->file_bytes) / 1e6;
      p.y = *c->kld_mean;
      p.label = c->name;
      p.hover = candidate_hover(*c);
      p.emphasised = c->name == run.chosen;
      series.points.push_back(p);
      plotted.push_back(c);
    }
    chart.series.push_back(series);
  }
  // The measured frontier: candidates that no other is both smaller than (or as small as) and
  // better than, in size order.
  std::sort(plotted.begin(), plotted.end(), [](const RunCandidate* a, const RunCandidate* b) {
    return *a->file_bytes != *b->file_bytes ? *a->file_bytes < *b->file_bytes : *a->kld_mean < *b->kld_mean;
  });
  svg::Series front;
  front.name = "measured frontier";
  front.colour = "#777777";
  front.markers = false;
  front.line = true;
  front.dashed = true;
  double best = INFINITY;
  for (const RunCandidate* c : plotted) {
    if (*c->kld_mean < best) {
      best = *c->kld_mean;
      svg::Point p;
      p.x = static_cast<double>(*c->file_bytes) / 1e6;
      p.y = *c->kld_mean;
      front.points.push_back(p);
    }
  }
  if (front.points.size() >= 2) chart.series.insert(chart.series.begin(), front);

  std::string caption = "Each finished candidate's size on disk against its mean KL divergence from the unquantized "
                        "model on " + esc(run.eval_text) + " (" + esc(run.eval_protocol) + ", context " +
                        std::to_string(run.eval_ctx) + ", " + std::to_string(run.eval_chunks) +
                        " chunks): lower left is better. The ringed point is the model kept (" + esc(run.chosen) +
                        "). The dashed line joins the candidates that no other candidate beats on both size and "
                        "KL divergence. For reference, the unquantized model is " +
                        esc(megabytes(static_cast<double>(run.reference_file_bytes))) + " with perplexity " +
                        esc(num(run.reference_ppl, 5)) + ". Hover a point for its numbers.";
  if (!not_plotted.empty()) {
    std::string list;
    for (const auto& n : not_plotted) list += (list.empty() ? "" : "; ") + n;
    caption += " Not plotted: " + esc(list) + ".";
  }
  s.html = figure(svg::render(chart), caption);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Allocation

namespace {

struct FormatInfo {
  std::string name;
  double bits = 0;  // nominal bits/weight over the model's tensors
  std::string colour;
};

}  // namespace

Section allocation_section(const ReportData& d) {
  Section s{"allocation", "Where the bits went: the kept model's allocation", ""};
  const RunCandidate& chosen = d.run.chosen_candidate();
  if (!d.chosen_plan) {
    s.html = omitted("allocation-omitted",
                     "The kept model " + chosen.name + " is a " + chosen.kind + " model (" + chosen.method +
                         "): its per-tensor types are chosen by llama.cpp's own rules and are not recorded in a "
                         "plan file, so no allocation map is drawn.");
    return s;
  }
  const Plan& plan = *d.chosen_plan;
  const SensitivityInput& in = d.tensors;
  const std::vector<std::string> kinds = kinds_in_order(in);
  const int n_layers = std::max(1, in.n_layers);

  // Formats in use, most bits first, each with a colour.
  std::set<std::string> used;
  size_t n_split = 0;
  std::string split_low, split_high;  // the formats of the first split tensor (for the legend)
  for (const auto& [name, e] : plan.tensors) {
    used.insert(weight_format(e.format).name);
    if (!e.split) continue;
    used.insert(weight_format(e.high_format).name);
    if (n_split++ == 0) split_low = weight_format(e.format).name, split_high = weight_format(e.high_format).name;
  }
  std::vector<FormatInfo> formats;
  for (const auto& f : used) formats.push_back({f, nominal_bits(in, f), ""});
  std::stable_sort(formats.begin(), formats.end(), [](const FormatInfo& a, const FormatInfo& b) { return a.bits > b.bits; });
  std::map<std::string, size_t> format_index;
  for (size_t i = 0; i < formats.size(); ++i) {
    formats[i].colour = svg::categorical(i, formats.size());
    format_index[formats[i].name] = i;
  }
  const std::string kUnquantized = "#d9d9d9";
  const std::set<std::string> unquantized(plan.unquantized.begin(), plan.unquantized.end());

  // Tiles: rows = kinds, columns = layers. Bits per layer and format for the bar chart.
  svg::TilePanel panel;
  for (const auto& k : kinds) panel.row_labels.push_back(short_kind(k));
  for (int l = 0; l < n_layers; ++l) panel.col_labels.push_back(std::to_string(l));
  panel.tiles.assign(kinds.size(), std::vector<svg::Tile>(static_cast<size_t>(n_layers)));
  std::vector<std::vector<double>> layer_bits(formats.size(), std::vector<double>(n_layers, 0.0));
  std::vector<double> layer_weights(n_layers, 0.0);
  std::map<std::pair<size_t, int>, std::vector<const SensitivityTensor*>> cells;
  for (const auto& t : in.tensors) {
    const size_t row = static_cast<size_t>(std::find(kinds.begin(), kinds.end(), t.kind) - kinds.begin());
    cells[{row, t.layer}].push_back(&t);
  }
  for (const auto& [key, members] : cells) {
    const auto [row, layer] = key;
    svg::Tile& tile = panel.tiles[row][static_cast<size_t>(layer)];
    std::map<std::string, double> weights_by_format;  // for cells of several tensors (MoE experts)
    std::string hover;
    for (const SensitivityTensor* t : members) {
      const double w = static_cast<double>(t->rows * t->cols);
      if (!hover.empty()) hover += "\n";
      if (unquantized.count(t->name) || !plan.tensors.count(t->name)) {
        hover += t->name + ": unquantized (kept as it is)";
        weights_by_format["(unquantized)"] += w;
        continue;
      }
      const PlanEntry& e = plan.tensors.at(t->name);
      const uint64_t bits = plan_entry_bits(e, t->rows, t->cols);
      layer_weights[t->layer] += w;
      const std::string low = weight_format(e.format).name;
      if (e.split) {
        const std::string high = weight_format(e.high_format).name;
        const int64_t nh = static_cast<int64_t>(e.high_channels.size());
        const uint64_t hb = nh > 0 ? storage_bits(e.high_format, nh, t->cols) : 0;
        layer_bits[format_index[high]][t->layer] += static_cast<double>(hb);
        layer_bits[format_index[low]][t->layer] += static_cast<double>(bits - hb);
        hover += t->name + ": " + high + " for " + std::to_string(nh) + " of " + std::to_string(t->rows) +
                 " output channels (" + percent(static_cast<double>(nh) / static_cast<double>(t->rows)) + "), " + low +
                 " for the rest; " + num(static_cast<double>(bits) / w, 5) + " bits/weight";
        tile.band_fill = formats[format_index[high]].colour;
        tile.band_fraction = static_cast<double>(nh) / static_cast<double>(t->rows);
        char buf[16];
        std::snprintf(buf, sizeof buf, "%.0f%%", 100 * tile.band_fraction);
        tile.text = buf;
      } else {
        layer_bits[format_index[low]][t->layer] += static_cast<double>(bits);
        hover += t->name + ": " + low + ", " + num(static_cast<double>(bits) / w, 5) + " bits/weight";
      }
      hover += " (" + std::string(quantizer_name(e.quantizer)) + ")";
      weights_by_format[low] += w;
    }
    // The tile's colour: the format holding most of the cell's weights.
    const auto top = std::max_element(weights_by_format.begin(), weights_by_format.end(),
                                      [](const auto& a, const auto& b) { return a.second < b.second; });
    tile.fill = top->first == "(unquantized)" ? kUnquantized : formats[format_index[top->first]].colour;
    if (members.size() > 1) hover = std::to_string(members.size()) + " tensors; colour = the format of most weights\n" + hover;
    tile.hover = hover;
  }

  svg::TileGrid grid;
  grid.id = "fig-allocation";
  grid.panels.push_back(panel);
  grid.cell_width = std::clamp((kFigureWidth - 80) / n_layers, 14.0, 44.0);
  grid.cell_height = 24;
  grid.x_label = "layer";
  for (const auto& f : formats) grid.legend.push_back({f.name + " (" + num(f.bits, 4) + " b/w)", f.colour, ""});
  if (!unquantized.empty()) grid.legend.push_back({"unquantized", kUnquantized, ""});
  if (n_split > 0) {
    grid.legend.push_back({"channel split: top band = channels in the high format (height and % = their share)",
                           formats[format_index[split_low]].colour, formats[format_index[split_high]].colour});
  }
  std::string text = "<p>Kept model <b>" + esc(chosen.name) + "</b>: " +
                     (chosen.kind == "plan" ? "plan " + esc(d.chosen_plan_source) + " (method " + esc(plan.method) +
                                                  (plan.cost.empty() ? "" : ", cost " + esc(plan.cost)) + ")"
                                            : "uniform scheme " + esc(chosen.scheme) +
                                                  (chosen.plan.empty() ? std::string()
                                                                       : " as applied (" + esc(d.chosen_plan_source) + ")")) +
                     ", " + esc(num(plan.bits_per_weight, 6)) + " bits per quantized Linear weight (exact storage, "
                     "scales and zero points included) over " + std::to_string(plan.tensors.size()) + " tensors" +
                     (n_split ? ", " + std::to_string(n_split) + " of them split by output channel" : std::string()) +
                     (plan.unquantized.empty() ? std::string() : ", " + std::to_string(plan.unquantized.size()) + " left unquantized") +
                     ". " + (plan.head ? "The output head is quantized to " + esc(plan.head->name()) + " (outside the Linear budget)."
                                       : std::string("The embedding and output head are outside the Linear budget.")) +
                     "</p>\n";
  std::string html = text + figure(svg::render(grid),
                                   "Format of each decoder Linear tensor (rows: projection, columns: layer). Hover a "
                                   "tile for the tensor, its format(s), bits per weight and quantizer.");

  svg::BarChart bars;
  bars.id = "fig-bits-per-layer";
  bars.width = kFigureWidth;
  bars.height = 320;
  bars.stacked = true;
  bars.x_label = "layer";
  bars.y.label = "bits per weight";
  for (int l = 0; l < n_layers; ++l) bars.categories.push_back(std::to_string(l));
  for (size_t i = 0; i < formats.size(); ++i) {
    svg::BarSeries series;
    series.name = formats[i].name;
    series.colour = formats[i].colour;
    for (int l = 0; l < n_layers; ++l) {
      const double w = layer_weights[l];
      const double v = w > 0 ? layer_bits[i][l] / w : 0;
      double total = 0;
      for (size_t k = 0; k < formats.size(); ++k) total += w > 0 ? layer_bits[k][l] / w : 0;
      series.values.push_back(v > 0 ? v : svg::kNaN);
      series.hovers.push_back("layer " + std::to_string(l) + " · " + formats[i].name + ": " + num(v, 4) + " of " +
                              num(total, 5) + " bits/weight");
    }
    bars.series.push_back(series);
  }
  bars.references.push_back({plan.bits_per_weight, "whole model " + num(plan.bits_per_weight, 5), "#000000"});
  if (d.run.budget_bits_per_weight > 0 && std::fabs(d.run.budget_bits_per_weight - plan.bits_per_weight) > 1e-3) {
    bars.references.push_back({d.run.budget_bits_per_weight, "budget " + num(d.run.budget_bits_per_weight, 4), "#d55e00"});
  }
  html += figure(svg::render(bars),
                 "Bits per quantized Linear weight of each layer, split by format (each segment: that format's bits "
                 "divided by the layer's weights, so the segments add up to the layer's average). The dashed line "
                 "is the whole model's average.");
  s.html = html;
  return s;
}

}  // namespace mpq::report

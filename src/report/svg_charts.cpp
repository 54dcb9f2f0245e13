// The charts of svg.h (scatter/line, bars, tile grids), drawn with its primitives.
#include <algorithm>
#include <cmath>

#include "report/svg.h"

namespace mpq::svg {
namespace {

constexpr double kTickFont = 11, kLabelFont = 12, kTitleFont = 14;
constexpr const char* kGrid = "#e4e4e4";
constexpr const char* kAxis = "#444444";
// A white outline under text drawn over marks, so it stays readable on any colour.
constexpr const char* kHalo = "stroke=\"#ffffff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";

struct Box {
  double x0, y0, x1, y1;
  bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

// The domain of an axis: fixed ends where given, else the data's range, padded by `pad` of the
// span (so marks do not sit on the frame) and widened to nice ticks.
std::pair<double, double> axis_domain(const Axis& axis, std::vector<double> values, double pad) {
  values.erase(std::remove_if(values.begin(), values.end(),
                              [&](double v) { return !std::isfinite(v) || (axis.log && !(v > 0)); }),
               values.end());
  double lo = axis.min, hi = axis.max;
  if (values.empty()) {
    if (std::isnan(lo)) lo = axis.log ? 1 : 0;
    if (std::isnan(hi)) hi = axis.log ? 10 : 1;
    return {lo, hi};
  }
  const auto [mn, mx] = std::minmax_element(values.begin(), values.end());
  double a = *mn, b = *mx;
  if (axis.log) {
    const double f = std::pow(b / a, pad);
    a /= f, b *= f;
    auto [na, nb] = nice_log_domain(a, b);
    return {std::isnan(lo) ? na : lo, std::isnan(hi) ? nb : hi};
  }
  const double span = b - a;
  if (span > 0) a -= pad * span, b += pad * span;
  auto [na, nb] = nice_linear_domain(a, b);
  if (*mn >= 0 && na < 0) na = 0;  // never push non-negative data below zero
  return {std::isnan(lo) ? na : lo, std::isnan(hi) ? nb : hi};
}

double max_label_width(const std::vector<Tick>& ticks, double font) {
  double w = 0;
  for (const auto& t : ticks) w = std::max(w, text_width(t.label, font));
  return w;
}

// Gridlines, tick marks and labels of both axes of the plot area [px0, px1] × [py0, py1].
void draw_axes(Document& doc, const Scale& xs, const Scale& ys, const std::vector<Tick>& xt,
               const std::vector<Tick>& yt, double px0, double px1, double py0, double py1) {
  for (const auto& t : yt) {
    const double y = ys(t.value);
    if (!t.label.empty()) doc.line(px0, y, px1, y, kGrid, 1);
    doc.line(px0 - (t.label.empty() ? 3 : 5), y, px0, y, kAxis, 1);
    if (!t.label.empty()) doc.text(px0 - 8, y + 4, t.label, kTickFont, "end");
  }
  for (const auto& t : xt) {
    const double x = xs(t.value);
    if (!t.label.empty()) doc.line(x, py0, x, py1, kGrid, 1);
    doc.line(x, py1, x, py1 + (t.label.empty() ? 3 : 5), kAxis, 1);
    if (!t.label.empty()) doc.text(x, py1 + 18, t.label, kTickFont, "middle");
  }
  doc.line(px0, py1, px1, py1, kAxis, 1);
  doc.line(px0, py0, px0, py1, kAxis, 1);
}

void draw_references(Document& doc, const std::vector<ReferenceLine>& refs, const Scale& ys, double px0, double px1,
                     double py0, double py1) {
  // Labels sit right-aligned above their line; one that would overlap a label already placed
  // (two lines at nearly the same value: a model's average at its budget) moves left of it.
  std::vector<Box> placed;
  for (const auto& r : refs) {
    const double y = ys(r.value);
    if (!std::isfinite(y) || y < py0 - 0.5 || y > py1 + 0.5) continue;
    doc.line(px0, y, px1, y, r.colour, 1.2, "stroke-dasharray=\"6 4\"");
    if (r.label.empty()) continue;
    const double w = text_width(r.label, kTickFont);
    double right = px1 - 4;
    for (bool moved = true; moved;) {
      moved = false;
      const Box box{right - w, y - 4 - kTickFont, right, y - 2};
      for (const Box& t : placed) {
        if (t.overlaps(box)) {
          right = t.x0 - 10;
          moved = true;
        }
      }
    }
    placed.push_back({right - w, y - 4 - kTickFont, right, y - 2});
    doc.text(right, y - 4, r.label, kTickFont, "end", "fill=\"" + r.colour + "\" " + kHalo);
  }
}

// The label font size, smaller than kLabelFont when the label would be longer than `room` px.
double fitting_font(const std::string& label, double room) {
  const double w = text_width(label, kLabelFont);
  return w <= room ? kLabelFont : std::max(8.0, kLabelFont * room / w);
}

std::string default_hover(const std::string& series, double x, double y) {
  return (series.empty() ? "" : series + ": ") + format_number(x, 4) + ", " + format_number(y, 4);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// XYChart

std::string render(const XYChart& c) {
  std::vector<double> xs_data, ys_data;
  for (const auto& s : c.series) {
    for (const auto& p : s.points) {
      xs_data.push_back(p.x);
      ys_data.push_back(p.y);
      ys_data.push_back(p.y_low);
      ys_data.push_back(p.y_high);
    }
  }
  for (const auto& r : c.references) ys_data.push_back(r.value);
  const auto [x0, x1] = axis_domain(c.x, xs_data, 0.05);
  const auto [y0, y1] = axis_domain(c.y, ys_data, 0.05);
  Scale xs{x0, x1, 0, 1, c.x.log}, ys{y0, y1, 0, 1, c.y.log};
  const std::vector<Tick> yt = ys.ticks(), xt_probe = xs.ticks();

  // Legend on the right: one row per series (+ the emphasis ring).
  bool any_emphasis = false;
  double legend_w = 0;
  for (const auto& s : c.series) {
    legend_w = std::max(legend_w, text_width(s.name, kLabelFont));
    for (const auto& p : s.points) any_emphasis = any_emphasis || p.emphasised;
  }
  if (any_emphasis) legend_w = std::max(legend_w, text_width(c.emphasis_label, kLabelFont));
  legend_w = c.series.size() > 1 || any_emphasis ? legend_w + 40 : 0;

  const double top = c.title.empty() ? 14 : 36;
  const double left = max_label_width(yt, kTickFont) + 20 + (c.y.label.empty() ? 0 : 18);
  const double right = 16 + legend_w;
  const double bottom = 30 + (c.x.label.empty() ? 0 : 22);
  const double px0 = left, px1 = c.width - right, py0 = top, py1 = c.height - bottom;
  xs.r0 = px0, xs.r1 = px1;
  ys.r0 = py1, ys.r1 = py0;
  // Fewer x ticks when their labels would touch.
  std::vector<Tick> xt = xt_probe;
  for (int target = 6; target > 1; --target) {
    xt = xs.ticks(target);
    const double need = (max_label_width(xt, kTickFont) + 10) * static_cast<double>(xt.size());
    if (need <= px1 - px0) break;
  }

  Document doc(c.width, c.height, c.id, c.title);
  if (!c.title.empty()) doc.text(px0, 22, c.title, kTitleFont, "start", "font-weight=\"bold\"");
  draw_axes(doc, xs, ys, xt, yt, px0, px1, py0, py1);
  if (!c.x.label.empty()) doc.text((px0 + px1) / 2, c.height - 10, c.x.label, kLabelFont, "middle");
  if (!c.y.label.empty()) doc.text(16, (py0 + py1) / 2, c.y.label, fitting_font(c.y.label, py1 - py0), "middle", "", -90);
  draw_references(doc, c.references, ys, px0, px1, py0, py1);

  const auto visible = [&](const Point& p) {
    return std::isfinite(p.x) && std::isfinite(p.y) && (!c.x.log || p.x > 0) && (!c.y.log || p.y > 0);
  };
  std::vector<Box> taken;  // marks and labels already placed
  for (const auto& s : c.series) {
    if (s.line) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& p : s.points) {
        if (visible(p)) pts.emplace_back(xs(p.x), ys(p.y));
      }
      doc.polyline(pts, s.colour, 2, s.dashed ? "stroke-dasharray=\"6 4\"" : "", s.name);
    }
    for (const auto& p : s.points) {
      if (!visible(p)) continue;
      const double x = xs(p.x), y = ys(p.y);
      if (std::isfinite(p.y_low) && std::isfinite(p.y_high) && (!c.y.log || (p.y_low > 0 && p.y_high > 0))) {
        const double a = ys(p.y_low), b = ys(p.y_high);
        doc.line(x, a, x, b, s.colour, 1.2);
        doc.line(x - 4, a, x + 4, a, s.colour, 1.2);
        doc.line(x - 4, b, x + 4, b, s.colour, 1.2);
      }
      if (!s.markers) continue;
      const std::string hover = p.hover.empty() ? default_hover(s.name, p.x, p.y) : p.hover;
      const double size = p.emphasised ? 11 : 8;
      if (p.emphasised) {
        doc.marker(Marker::Circle, x, y, 24, "none", "#000000", "", "stroke-width=\"2\"");
      }
      doc.marker(s.marker, x, y, size, s.colour, "#ffffff", hover);
      taken.push_back({x - size, y - size, x + size, y + size});
    }
  }
  // Labels: the first of eight positions around the mark, near it or (with a leader line) a
  // little further out, that stays in the plot and overlaps nothing placed before; a label with
  // no such position is left out (its mark keeps the hover).
  for (const auto& s : c.series) {
    for (const auto& p : s.points) {
      if (!visible(p) || p.label.empty()) continue;
      const double x = xs(p.x), y = ys(p.y), w = text_width(p.label, kTickFont);
      bool placed = false;
      for (double ring : {1.0, 2.6, 4.2}) {
        const double g = (p.emphasised ? 14 : 7) * ring;
        struct Option {
          double tx, ty;
          const char* anchor;
        };
        const Option options[] = {{x + g, y + 4, "start"},  {x - g, y + 4, "end"},    {x, y - g - 2, "middle"},
                                  {x, y + g + 10, "middle"}, {x + g, y - g, "start"}, {x + g, y + g + 8, "start"},
                                  {x - g, y - g, "end"},    {x - g, y + g + 8, "end"}};
        for (const Option& o : options) {
          const std::string anchor = o.anchor;
          const double bx0 = anchor == "start" ? o.tx : anchor == "end" ? o.tx - w : o.tx - w / 2;
          const Box box{bx0, o.ty - 10, bx0 + w, o.ty + 3};
          if (box.x0 < px0 + 2 || box.x1 > px1 - 2 || box.y0 < py0 + 1 || box.y1 > py1 - 1) continue;
          if (std::any_of(taken.begin(), taken.end(), [&](const Box& t) { return t.overlaps(box); })) continue;
          if (ring > 1) {  // a leader from the mark to the nearest point of the label's box
            const double lx = std::clamp(x, box.x0, box.x1), ly = std::clamp(y, box.y0, box.y1);
            const double dx = lx - x, dy = ly - y, len = std::hypot(dx, dy), r0 = p.emphasised ? 12 : 5;
            if (len > r0 + 2) doc.line(x + dx * r0 / len, y + dy * r0 / len, lx, ly, "#999999", 0.8);
          }
          doc.text(o.tx, o.ty, p.label, kTickFont, anchor,
                   std::string(kHalo) + (p.emphasised ? " font-weight=\"bold\"" : ""));
          taken.push_back(box);
          placed = true;
          break;
        }
        if (placed) break;
      }
    }
  }
  if (legend_w > 0) {
    double ly = py0 + 8;
    const double lx = px1 + 18;
    for (const auto& s : c.series) {
      if (s.line) doc.line(lx - 8, ly, lx + 8, ly, s.colour, 2, s.dashed ? "stroke-dasharray=\"6 4\"" : "");
      if (s.markers) doc.marker(s.marker, lx, ly, 8, s.colour, "#ffffff");
      doc.text(lx + 14, ly + 4, s.name, kLabelFont);
      ly += 20;
    }
    if (any_emphasis) {
      doc.marker(Marker::Circle, lx, ly, 18, "none", "#000000", "", "stroke-width=\"2\"");
      doc.text(lx + 14, ly + 4, c.emphasis_label, kLabelFont);
    }
  }
  return doc.str();
}

// ---------------------------------------------------------------------------------------------
// BarChart

std::string render(const BarChart& c) {
  const size_t n = c.categories.size();
  std::vector<double> ys_data{0};
  for (size_t i = 0; i < n; ++i) {
    double pos = 0, neg = 0;
    for (const auto& s : c.series) {
      const double v = i < s.values.size() ? s.values[i] : kNaN;
      if (!std::isfinite(v)) continue;
      if (c.stacked) (v >= 0 ? pos : neg) += v;
      else ys_data.push_back(v);
      if (i < s.low.size()) ys_data.push_back(s.low[i]);
      if (i < s.high.size()) ys_data.push_back(s.high[i]);
    }
    ys_data.push_back(pos);
    ys_data.push_back(neg);
  }
  for (const auto& r : c.references) ys_data.push_back(r.value);
  Axis yaxis = c.y;
  yaxis.log = false;
  const auto [y0, y1] = axis_domain(yaxis, ys_data, 0.02);
  Scale ys{y0, y1, 0, 1, false};
  const std::vector<Tick> yt = ys.ticks();

  // Legend rows at the top (wrapping).
  const bool legend = c.legend && !c.series.empty() && (c.series.size() > 1 || !c.series[0].name.empty());
  const double title_h = c.title.empty() ? 8 : 30;
  double legend_h = 0;
  std::vector<std::pair<double, double>> legend_pos;  // x, y of each entry
  if (legend) {
    double lx = 12, ly = title_h + 10;
    for (const auto& s : c.series) {
      const double w = 22 + text_width(s.name, kLabelFont) + 18;
      if (lx + w > c.width - 8 && lx > 12) lx = 12, ly += 20;
      legend_pos.emplace_back(lx, ly);
      lx += w;
    }
    legend_h = ly - title_h + 14;
  }

  const double left = max_label_width(yt, kTickFont) + 20 + (c.y.label.empty() ? 0 : 18);
  const double px0 = left, px1 = c.width - 16;
  const double band = n > 0 ? (px1 - px0) / static_cast<double>(n) : 1;
  double cat_w = 0;
  for (const auto& cat : c.categories) cat_w = std::max(cat_w, text_width(cat, kTickFont));
  // Category labels: horizontal when they fit, else rotated 45°; every k-th when the bands are
  // narrower than a line of text.
  const bool rotated = cat_w > band - 2 && band >= 10;
  const size_t every = band >= 12 ? 1 : static_cast<size_t>(std::ceil(14.0 / band));
  const double cat_h = rotated ? cat_w * 0.71 + 14 : 20;
  const double bottom = cat_h + 10 + (c.x_label.empty() ? 0 : 20);
  const double py0 = title_h + legend_h + 8, py1 = c.height - bottom;
  ys.r0 = py1, ys.r1 = py0;

  Document doc(c.width, c.height, c.id, c.title);
  if (!c.title.empty()) doc.text(px0, 22, c.title, kTitleFont, "start", "font-weight=\"bold\"");
  for (size_t k = 0; k < c.series.size() && legend; ++k) {
    const auto [lx, ly] = legend_pos[k];
    doc.rect(lx, ly - 10, 14, 14, c.series[k].colour);
    doc.text(lx + 20, ly + 1, c.series[k].name, kLabelFont);
  }
  for (const auto& t : yt) {
    const double y = ys(t.value);
    doc.line(px0, y, px1, y, t.value == 0 ? kAxis : kGrid, 1);
    doc.line(px0 - 5, y, px0, y, kAxis, 1);
    doc.text(px0 - 8, y + 4, t.label, kTickFont, "end");
  }
  doc.line(px0, py0, px0, py1, kAxis, 1);
  if (!c.y.label.empty()) doc.text(16, (py0 + py1) / 2, c.y.label, fitting_font(c.y.label, py1 - py0), "middle", "", -90);

  const double inner = band * (n > 60 ? 0.9 : 0.78);
  const size_t ns = std::max<size_t>(1, c.series.size());
  for (size_t i = 0; i < n; ++i) {
    const double bx = px0 + band * static_cast<double>(i) + (band - inner) / 2;
    double pos = 0, neg = 0;
    for (size_t k = 0; k < c.series.size(); ++k) {
      const auto& s = c.series[k];
      const double v = i < s.values.size() ? s.values[i] : kNaN;
      const std::string hover = i < s.hovers.size() && !s.hovers[i].empty()
                                    ? s.hovers[i]
                                    : c.categories[i] + (s.name.empty() ? "" : " · " + s.name) + ": " + format_number(v, 4);
      double x = bx, w = inner, base = 0;
      if (!c.stacked) {
        w = inner / static_cast<double>(ns);
        x = bx + w * static_cast<double>(k);
      }
      if (std::isfinite(v)) {
        if (c.stacked) {
          base = v >= 0 ? pos : neg;
          (v >= 0 ? pos : neg) += v;
        }
        const double ya = ys(base), yb = ys(base + v);
        doc.rect(x, std::min(ya, yb), w, std::fabs(yb - ya), s.colour, "", hover);
      }
      const double lo = i < s.low.size() ? s.low[i] : kNaN, hi = i < s.high.size() ? s.high[i] : kNaN;
      if (std::isfinite(lo) && std::isfinite(hi)) {
        const double cx = x + w / 2, a = ys(lo), b = ys(hi), cap = std::min(4.0, w / 3);
        doc.line(cx, a, cx, b, "#222222", 1.2);
        doc.line(cx - cap, a, cx + cap, a, "#222222", 1.2);
        doc.line(cx - cap, b, cx + cap, b, "#222222", 1.2);
      }
    }
    if (i % every == 0) {
      const double cx = px0 + band * (static_cast<double>(i) + 0.5);
      if (rotated) doc.text(cx + 3, py1 + 12, c.categories[i], kTickFont, "end", "", -45);
      else doc.text(cx, py1 + 16, c.categories[i], kTickFont, "middle");
    }
  }
  draw_references(doc, c.references, ys, px0, px1, py0, py1);
  if (!c.x_label.empty()) doc.text((px0 + px1) / 2, c.height - 8, c.x_label, kLabelFont, "middle");
  return doc.str();
}

// ---------------------------------------------------------------------------------------------
// TileGrid

std::string ColourBar::colour(double v) const {
  if (!std::isfinite(v)) return "";
  if (diverging) {
    const double m = std::max(std::fabs(lo), std::fabs(hi));
    return svg::diverging(m > 0 ? v / m : 0);
  }
  const Scale s{lo, hi, 0, 1, log};
  if (log && !(v > 0)) return "";
  return viridis(s.fraction(v));
}

std::string render(const TileGrid& g) {
  // Panel geometry (all panels share the largest one's).
  size_t rows = 0, cols = 0;
  double row_label_w = 0, col_label_w = 0;
  for (const auto& p : g.panels) {
    rows = std::max(rows, p.row_labels.size());
    cols = std::max(cols, p.col_labels.size());
    for (const auto& l : p.row_labels) row_label_w = std::max(row_label_w, text_width(l, kTickFont));
    for (const auto& l : p.col_labels) col_label_w = std::max(col_label_w, text_width(l, kTickFont));
  }
  row_label_w += 8;
  const size_t col_every = std::max<size_t>(1, static_cast<size_t>(std::ceil((col_label_w + 4) / g.cell_width)));
  const bool panel_titles = std::any_of(g.panels.begin(), g.panels.end(), [](const TilePanel& p) { return !p.title.empty(); });
  const double title_h = panel_titles ? 18 : 0;
  const double grid_w = g.cell_width * static_cast<double>(cols), grid_h = g.cell_height * static_cast<double>(rows);
  const double panel_w = std::max(row_label_w + grid_w, text_width(g.panels.empty() ? "" : g.panels[0].title, kLabelFont));
  const double panel_h = title_h + grid_h + 18 + (g.x_label.empty() ? 0 : 16);
  const int pc = std::max(1, std::min<int>(g.panel_columns, static_cast<int>(g.panels.size())));
  const int pr = static_cast<int>((g.panels.size() + pc - 1) / pc);
  const double gap_x = 28, gap_y = 14, margin = 12;
  const double top = g.title.empty() ? margin : 34;
  const double y_label_w = g.y_label.empty() ? 0 : 18;
  double width = margin * 2 + y_label_w + pc * panel_w + (pc - 1) * gap_x;
  double foot = 0;
  if (g.has_colour_bar) foot += 58;
  if (!g.legend.empty()) {
    double lx = margin;
    foot += 24;
    for (const auto& e : g.legend) {
      const double w = 24 + text_width(e.name, kLabelFont) + 16;
      if (lx + w > width - margin && lx > margin) lx = margin, foot += 20;
      lx += w;
    }
  }
  if (!g.note.empty()) {
    foot += 20;
    width = std::max(width, margin * 2 + text_width(g.note, kTickFont));
  }
  if (g.has_colour_bar) width = std::max(width, 400.0);
  const double height = top + pr * panel_h + (pr - 1) * gap_y + foot + margin;

  Document doc(width, height, g.id, g.title);
  if (!g.title.empty()) doc.text(margin, 22, g.title, kTitleFont, "start", "font-weight=\"bold\"");
  for (size_t k = 0; k < g.panels.size(); ++k) {
    const TilePanel& p = g.panels[k];
    const double ox = margin + y_label_w + static_cast<double>(k % pc) * (panel_w + gap_x);
    const double oy = top + static_cast<double>(k / pc) * (panel_h + gap_y);
    const double gx = ox + row_label_w, gy = oy + title_h;
    if (!p.title.empty()) doc.text(gx, oy + 13, p.title, kLabelFont, "start", "font-weight=\"bold\"");
    for (size_t r = 0; r < p.row_labels.size(); ++r) {
      doc.text(gx - 5, gy + g.cell_height * (static_cast<double>(r) + 0.5) + 4, p.row_labels[r], kTickFont, "end");
    }
    for (size_t col = 0; col < p.col_labels.size(); ++col) {
      if (col % col_every != 0) continue;
      doc.text(gx + g.cell_width * (static_cast<double>(col) + 0.5), gy + grid_h + 14, p.col_labels[col], kTickFont,
               "middle");
    }
    if (!g.x_label.empty()) doc.text(gx + grid_w / 2, gy + grid_h + 30, g.x_label, kTickFont, "middle", "fill=\"#555555\"");
    if (!g.y_label.empty() && k % pc == 0) {
      doc.text(margin + 10, gy + grid_h / 2, g.y_label, kTickFont, "middle", "fill=\"#555555\"", -90);
    }
    for (size_t r = 0; r < p.tiles.size(); ++r) {
      for (size_t col = 0; col < p.tiles[r].size(); ++col) {
        const Tile& t = p.tiles[r][col];
        const double x = gx + g.cell_width * static_cast<double>(col), y = gy + g.cell_height * static_cast<double>(r);
        const double w = g.cell_width, h = g.cell_height;
        doc.begin_group(t.hover);
        if (t.fill.empty()) {
          doc.rect(x, y, w, h, "#eeeeee", "stroke=\"#ffffff\" stroke-width=\"1\"");
          doc.marker(Marker::Circle, x + w / 2, y + h / 2, 3, "#aaaaaa", "none");
        } else {
          doc.rect(x, y, w, h, t.fill, "stroke=\"#ffffff\" stroke-width=\"1\"");
        }
        if (!t.band_fill.empty()) {
          const double bh = std::clamp(t.band_fraction * h, 3.0, h);
          doc.rect(x + 0.5, y + 0.5, w - 1, bh - 0.5, t.band_fill);
        }
        if (!t.text.empty() && text_width(t.text, 9) <= w - 2 && h >= 11) {
          // The colour under the text's middle: the band when it reaches past half the tile.
          const bool on_band = !t.band_fill.empty() && std::clamp(t.band_fraction * h, 3.0, h) > h / 2;
          const std::string under = on_band ? t.band_fill : t.fill.empty() ? std::string("#eeeeee") : t.fill;
          doc.text(x + w / 2, y + h / 2 + 3.5 + (t.band_fill.empty() ? 0 : 2), t.text, 9, "middle",
                   "fill=\"" + text_colour_on(under) + "\"");
        }
        doc.end_group();
      }
    }
  }
  double fy = top + pr * panel_h + (pr - 1) * gap_y + 8;
  if (g.has_colour_bar) {
    const ColourBar& cb = g.colour_bar;
    const double bx0 = margin + y_label_w + row_label_w, bw = std::min(360.0, width - bx0 - margin), bh = 12;
    doc.text(bx0, fy + 10, cb.label, kLabelFont);
    const double by = fy + 16;
    const int segments = 64;
    double lo = cb.lo, hi = cb.hi;
    if (cb.diverging) hi = std::max(std::fabs(lo), std::fabs(hi)), lo = -hi;
    const Scale s{lo, hi, bx0, bx0 + bw, cb.log && !cb.diverging};
    for (int i = 0; i < segments; ++i) {
      const double f0 = static_cast<double>(i) / segments, f1 = static_cast<double>(i + 1) / segments;
      const auto value_at = [&](double f) {
        return s.log ? std::pow(10.0, std::log10(lo) + f * (std::log10(hi) - std::log10(lo))) : lo + f * (hi - lo);
      };
      const double mid = value_at((f0 + f1) / 2);
      doc.rect(bx0 + f0 * bw, by, bw / segments + 0.3, bh, cb.colour(mid), "",
               format_number(value_at(f0), 3) + " – " + format_number(value_at(f1), 3));
    }
    doc.rect(bx0, by, bw, bh, "none", "stroke=\"#444444\" stroke-width=\"0.8\"");
    std::vector<Tick> ticks = s.ticks(6);
    for (const auto& t : ticks) {
      const double x = s(t.value);
      doc.line(x, by + bh, x, by + bh + (t.label.empty() ? 3 : 5), kAxis, 1);
      if (!t.label.empty()) doc.text(x, by + bh + 17, t.label, kTickFont, "middle");
    }
    fy += 58;
  }
  if (!g.legend.empty()) {
    double lx = margin, ly = fy + 12;
    for (const auto& e : g.legend) {
      const double w = 24 + text_width(e.name, kLabelFont) + 16;
      if (lx + w > width - margin && lx > margin) lx = margin, ly += 20;
      doc.rect(lx, ly - 11, 18, 14, e.colour, "stroke=\"#888888\" stroke-width=\"0.5\"");
      if (!e.band_colour.empty()) doc.rect(lx, ly - 11, 18, 4, e.band_colour);
      doc.text(lx + 24, ly, e.name, kLabelFont);
      lx += w;
    }
    fy = ly + 8;
  }
  if (!g.note.empty()) doc.text(margin, fy + 14, g.note, kTickFont, "start", "fill=\"#555555\"");
  return doc.str();
}

}  // namespace mpq::svg

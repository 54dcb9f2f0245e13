// A small SVG plotting library of our own: the figures of the HTML report (report/report.h,
// docs/REPORT.md) and `mpq pareto`'s frontier.svg.
//
// Why our own: nothing well-kept in Debian writes static SVG from C++ the way the report needs.
// cairo's SVG surface draws text as glyph paths and has no per-mark <title>; PLplot's svg device
// and gnuplot (an external program, or libgnuplot-iostream piping to it) make whole-page pictures
// without hover text or control over element ids, and add a run-time dependency to a report that
// must be one deterministic, self-contained file. What the report needs — axes with readable
// ticks (linear and log), scatter/line/bar charts with legends, error bars, heatmaps with a colour
// bar, hover text on every mark — is a few hundred lines.
//
// Output: one <svg> element (xmlns set, width/height in px and a matching viewBox), XML-valid, so
// it can be inlined into an XHTML page or written as a file. Every text goes through escape().
// Every mark carries a <title> child: browsers show it on hover, so exact values are one pointer
// away. Same input -> same bytes (coordinates printed with fixed precision).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mpq::svg {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Text

// `text` made safe for XML character data and attribute values: & < > " ' escaped, characters
// XML 1.0 forbids (C0 controls other than tab/newline/CR) and malformed UTF-8 replaced by U+FFFD.
std::string escape(std::string_view text);

// A compact, readable number: `significant` significant digits, trailing zeros dropped; plain
// decimals for 1e-3 <= |v| < 1e6, "m×10ⁿ" (Unicode superscripts) outside that; "0" for 0.
std::string format_number(double v, int significant = 3);

// Estimated width in px of `text` at `font_size` in a sans-serif font (0.6 em per character, a
// little more than DejaVu Sans' average): used only to lay labels out, never to clip them.
double text_width(std::string_view text, double font_size);

// ---------------------------------------------------------------------------------------------
// Colours (all "#rrggbb")

// Okabe & Ito's 8 colours, distinguishable by colour-blind readers (black last).
const std::vector<std::string>& okabe_ito();
// Colour i of a categorical palette of n: Okabe–Ito when n <= 8 (black replaced by grey for
// fills), else viridis sampled evenly (an ordered palette: categories should be given in order).
std::string categorical(size_t i, size_t n);
// Viridis (perceptually uniform, colour-blind safe), t clamped to [0, 1]: dark purple -> yellow.
std::string viridis(double t);
// A diverging palette for signed values, t clamped to [-1, 1]: blue (-1) -> light grey (0) ->
// vermillion (+1), after the Okabe–Ito blue and vermillion.
std::string diverging(double t);
// Black or white, whichever reads better on `fill` (by relative luminance).
std::string text_colour_on(const std::string& fill);

// ---------------------------------------------------------------------------------------------
// Scales and ticks

struct Tick {
  double value = 0;
  std::string label;  // empty: a minor tick (drawn shorter, no label)
};

// Ticks for [lo, hi]: steps of 1, 2 or 5 × 10^k, about `target` of them, all inside [lo, hi]
// (with a relative tolerance of 1e-9), labelled with just enough decimals to tell them apart.
std::vector<Tick> linear_ticks(double lo, double hi, int target = 6);
// Ticks for a log axis on [lo, hi] (0 < lo <= hi): labelled decades; when the range spans fewer
// than 3 decades also labelled 2× and 5× ticks (fewer than one decade: 1..9×); when it spans more
// than `target` decades, every k-th decade labelled and the others minor.
std::vector<Tick> log_ticks(double lo, double hi, int target = 6);
// [lo, hi] widened to the nearest ticks outside it (linear), or to whole decades (log; half
// decades below one decade of span). lo == hi is widened around the value.
std::pair<double, double> nice_linear_domain(double lo, double hi, int target = 6);
std::pair<double, double> nice_log_domain(double lo, double hi);

// A map from a data domain [d0, d1] to a pixel range [r0, r1], linear or log10.
struct Scale {
  double d0 = 0, d1 = 1, r0 = 0, r1 = 1;
  bool log = false;
  double operator()(double v) const;            // pixel of v (log: v <= 0 maps below r0's end)
  double fraction(double v) const;              // (v - d0) / (d1 - d0), in log space when log
  std::vector<Tick> ticks(int target = 6) const;
};

// ---------------------------------------------------------------------------------------------
// The document

enum class Marker { Circle, Square, Diamond, TriangleUp, TriangleDown, Cross };
// The marker of series i (cycles), so series differ by shape as well as colour.
Marker marker_for(size_t i);

class Document {
 public:
  Document(double width, double height, std::string id = "", std::string title = "");
  double width() const { return width_; }
  double height() const { return height_; }
  const std::string& id() const { return id_; }

  // Primitives. `attrs` is extra raw attribute text (already escaped: callers build it from
  // numbers and fixed names); `hover` non-empty adds a <title> child shown on hover.
  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& attrs = "",
            const std::string& hover = "");
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& attrs = "");
  void polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke, double width,
                const std::string& attrs = "", const std::string& hover = "");
  void marker(Marker shape, double x, double y, double size, const std::string& fill, const std::string& stroke,
              const std::string& hover = "", const std::string& attrs = "");
  // anchor: "start", "middle" or "end"; rotate: degrees about (x, y).
  void text(double x, double y, std::string_view text, double font_size = 12, const std::string& anchor = "start",
            const std::string& attrs = "", double rotate = 0);
  // A <g> with a hover title that applies to everything inside it until end_group().
  void begin_group(const std::string& hover = "", const std::string& attrs = "");
  void end_group();

  std::string str() const;  // the <svg> element

 private:
  double width_, height_;
  std::string id_, title_, body_;
  int open_groups_ = 0;
};

// A coordinate with at most two decimals, trailing zeros dropped ("12.5", "3").
std::string coord(double v);

// ---------------------------------------------------------------------------------------------
// Charts

struct Axis {
  std::string label;
  bool log = false;
  double min = kNaN, max = kNaN;  // fixed domain ends (NaN: from the data, widened to nice ticks)
};

// A horizontal reference line across a chart (a budget, an average, a uniform share).
struct ReferenceLine {
  double value = 0;
  std::string label;
  std::string colour = "#555555";
};

struct Point {
  double x = 0, y = 0;
  double y_low = kNaN, y_high = kNaN;  // error bar from y_low to y_high (NaN: none)
  std::string label;                   // drawn beside the mark when it fits without overlap
  std::string hover;                   // <title> text (default "series: x, y")
  bool emphasised = false;             // drawn larger, ringed (e.g. the chosen model)
};

struct Series {
  std::string name;
  std::string colour;
  Marker marker = Marker::Circle;
  bool markers = true;  // draw a marker per point
  bool line = false;    // join the points in order
  bool dashed = false;  // the line dashed
  std::vector<Point> points;
};

// Scatter / line chart. Points with non-finite coordinates (or <= 0 on a log axis) are not
// drawn; the caller says so in the text around the figure.
struct XYChart {
  std::string id, title;
  double width = 760, height = 440;
  Axis x, y;
  std::vector<Series> series;
  std::vector<ReferenceLine> references;
  std::string emphasis_label = "chosen";  // legend text of the emphasis ring (when a point has it)
};
std::string render(const XYChart& chart);

// Bar chart over categories: one or more series per category, grouped side by side or stacked.
struct BarSeries {
  std::string name;
  std::string colour;
  std::vector<double> values;            // one per category (NaN: no bar)
  std::vector<double> low, high;         // optional error bars (same length as values, NaN: none)
  std::vector<std::string> hovers;       // optional, one per category
};
struct BarChart {
  std::string id, title;
  double width = 760, height = 360;
  std::vector<std::string> categories;
  std::string x_label;
  Axis y;                                // linear only (bars start at 0)
  std::vector<BarSeries> series;
  bool stacked = false;
  std::vector<ReferenceLine> references;
  bool legend = true;
};
std::string render(const BarChart& chart);

// Tiles: a grid of panels, each rows × columns of coloured cells (heatmaps, allocation maps).
struct Tile {
  std::string fill;              // "" = no value (drawn as a light grey cell with a dot)
  std::string band_fill;         // optional second colour: a band across the top of the tile
  double band_fraction = 0;      // its height as a share of the tile (drawn at least 3 px high)
  std::string text;              // short text inside the tile (drawn when it fits)
  std::string hover;
};
struct TilePanel {
  std::string title;
  std::vector<std::string> row_labels, col_labels;
  std::vector<std::vector<Tile>> tiles;  // [row][col]
};
// A colour bar for tiles coloured by a continuous scale.
struct ColourBar {
  std::string label;
  double lo = 0, hi = 1;
  bool log = false;
  bool diverging = false;  // diverging() on [-max|v|, max|v|] instead of viridis
  std::string colour(double v) const;  // viridis/diverging of v on this bar's scale (clamped)
};
struct LegendEntry {
  std::string name, colour;
  std::string band_colour;  // a split swatch (band on top), like a split tile
};
struct TileGrid {
  std::string id, title;
  std::vector<TilePanel> panels;
  int panel_columns = 1;
  double cell_width = 24, cell_height = 20;
  std::string x_label, y_label;  // under / beside every panel
  bool has_colour_bar = false;
  ColourBar colour_bar;
  std::vector<LegendEntry> legend;  // categorical legend (allocation maps)
  std::string note;                 // one line under the legend / colour bar
};
std::string render(const TileGrid& grid);

}  // namespace mpq::svg

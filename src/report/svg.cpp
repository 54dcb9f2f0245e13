// The primitives of svg.h: escaping, number formatting, palettes, ticks, scales and the document.
// The charts built from them are in svg_charts.cpp.
#include "report/svg.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

namespace mpq::svg {

// ---------------------------------------------------------------------------------------------
// Text

namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence at s[i] (1..4) and its code point, or 0 when the bytes
// there are not one (stray continuation, truncated, overlong, surrogate, above U+10FFFF).
size_t utf8_sequence(std::string_view s, size_t i, uint32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n = 0;
  if (c < 0x80) {
    cp = c;
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    n = 2, cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(text, i, cp);
    if (n == 0) {  // malformed byte: one replacement character per byte
      out += kReplacement;
      ++i;
      continue;
    }
    if (n == 1) {
      switch (text[i]) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default:
          if (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') out += kReplacement;  // not allowed in XML 1.0
          else out += text[i];
      }
    } else if (cp == 0xFFFE || cp == 0xFFFF) {
      out += kReplacement;
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

namespace {

std::string superscript_int(int e) {
  static const char* kDigits[10] = {"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
  std::string out = e < 0 ? "⁻" : "";
  const std::string digits = std::to_string(std::abs(e));
  for (char d : digits) out += kDigits[d - '0'];
  return out;
}

// "1.2300" -> "1.23", "2.000" -> "2", "10" -> "10".
std::string strip_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

std::string format_number(double v, int significant) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "∞" : "−∞";
  if (v == 0) return "0";
  significant = std::clamp(significant, 1, 17);
  const double a = std::fabs(v);
  char buf[64];
  if (a >= 1e-3 && a < 1e6) {
    const int e = static_cast<int>(std::floor(std::log10(a)));
    const int decimals = std::max(0, significant - 1 - e);
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    std::string s = strip_zeros(buf);
    return s == "-0" ? "0" : s;
  }
  std::snprintf(buf, sizeof buf, "%.*e", significant - 1, v);
  const std::string s = buf;
  const size_t epos = s.find('e');
  const std::string mantissa = strip_zeros(s.substr(0, epos));
  const int exponent = std::atoi(s.c_str() + epos + 1);
  const std::string power = "10" + superscript_int(exponent);
  if (mantissa == "1") return power;
  if (mantissa == "-1") return "−" + power;
  return mantissa + "×" + power;
}

double text_width(std::string_view text, double font_size) {
  size_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++chars;  // count code points
  }
  return 0.6 * font_size * static_cast<double>(chars);
}

// ---------------------------------------------------------------------------------------------
// Colours

namespace {

struct Rgb {
  double r, g, b;
};

Rgb parse_hex(const std::string& hex) {
  if (hex.size() != 7 || hex[0] != '#') return {0, 0, 0};
  const auto part = [&](int at) { return static_cast<double>(std::strtol(hex.substr(at, 2).c_str(), nullptr, 16)); };
  return {part(1), part(3), part(5)};
}

std::string to_hex(Rgb c) {
  char buf[8];
  const auto q = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 255.0))); };
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", q(c.r), q(c.g), q(c.b));
  return buf;
}

// Piecewise-linear interpolation (in sRGB) through evenly spaced stops, t in [0, 1].
std::string interpolate(const std::vector<std::string>& stops, double t) {
  if (std::isnan(t)) t = 0;
  t = std::clamp(t, 0.0, 1.0);
  const double pos = t * static_cast<double>(stops.size() - 1);
  const size_t i = std::min(static_cast<size_t>(pos), stops.size() - 2);
  const double f = pos - static_cast<double>(i);
  const Rgb a = parse_hex(stops[i]), b = parse_hex(stops[i + 1]);
  return to_hex({a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)});
}

}  // namespace

const std::vector<std::string>& okabe_ito() {
  static const std::vector<std::string> kColours = {"#e69f00", "#56b4e9", "#009e73", "#f0e442",
                                                    "#0072b2", "#d55e00", "#cc79a7", "#000000"};
  return kColours;
}

std::string categorical(size_t i, size_t n) {
  // Okabe–Ito reordered so that the first few colours are the most distinct from each other and
  // from white (yellow late), black replaced by grey so dark text stays readable on it.
  static const std::vector<std::string> kOrder = {"#0072b2", "#e69f00", "#009e73", "#d55e00",
                                                  "#56b4e9", "#cc79a7", "#f0e442", "#999999"};
  if (n <= kOrder.size()) return kOrder[i % kOrder.size()];
  return viridis(n <= 1 ? 0.5 : static_cast<double>(i) / static_cast<double>(n - 1));
}

std::string viridis(double t) {
  // matplotlib's viridis at t = 0, 0.1, ..., 1.
  static const std::vector<std::string> kStops = {"#440154", "#482475", "#414487", "#355f8d",
                                                  "#2a788e", "#21918c", "#22a884", "#44bf70",
                                                  "#7ad151", "#bddf26", "#fde725"};
  return interpolate(kStops, t);
}

std::string diverging(double t) {
  static const std::vector<std::string> kStops = {"#0072b2", "#f2f2f2", "#d55e00"};
  if (std::isnan(t)) t = 0;
  return interpolate(kStops, (std::clamp(t, -1.0, 1.0) + 1) / 2);
}

std::string text_colour_on(const std::string& fill) {
  const Rgb c = parse_hex(fill);
  const auto lin = [](double v) {
    v /= 255;
    return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  };
  const double luminance = 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
  return luminance > 0.179 ? "#000000" : "#ffffff";  // the contrast-ratio crossover of black/white
}

// ---------------------------------------------------------------------------------------------
// Ticks and scales

namespace {

// A step of 1, 2 or 5 × 10^k near span / target.
double nice_step(double span, int target) {
  const double raw = span / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = norm <= 1.0 ? 1.0 : norm <= 2.0 ? 2.0 : norm <= 5.0 ? 5.0 : 10.0;
  return step * mag;
}

}  // namespace

std::vector<Tick> linear_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) return {{lo, format_number(lo)}};
  const double step = nice_step(hi - lo, target);
  const double tol = 1e-9 * (hi - lo);
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  const bool plain = std::max(std::fabs(lo), std::fabs(hi)) < 1e6 && step >= 1e-4;
  std::vector<Tick> ticks;
  for (double k = std::ceil((lo - tol) / step);; k += 1) {
    const double v = k * step;
    if (v > hi + tol || ticks.size() > 1000) break;
    char buf[64];
    std::string label;
    if (plain) {
      std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
      label = buf;
      if (label[0] == '-' && label.find_first_not_of("-0.") == std::string::npos) label.erase(0, 1);  // "-0.0"
    } else {
      label = v == 0 ? "0" : format_number(v, 3);
    }
    ticks.push_back({std::fabs(v) < tol ? 0.0 : v, label});
  }
  return ticks;
}

std::vector<Tick> log_ticks(double lo, double hi, int target) {
  if (!(lo > 0) || !(hi > 0) || !std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  const double span = std::log10(hi / lo);
  const int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  const int every = std::max(1, static_cast<int>(std::ceil(span / std::max(1, target))));
  std::vector<Tick> ticks;
  for (int e = e0; e <= e1; ++e) {
    const double decade = std::pow(10.0, e);
    for (int m = 1; m <= 9; ++m) {
      const double v = m * decade;
      if (v < lo * (1 - 1e-9) || v > hi * (1 + 1e-9)) continue;
      bool labelled = false;
      if (span < 1) labelled = true;
      else if (span <= 3) labelled = m == 1 || m == 2 || m == 5;
      else labelled = m == 1 && ((e % every) + every) % every == 0;
      const bool drawn = labelled || span <= 6 || m == 1;  // minor ticks only while they stay legible
      if (drawn) ticks.push_back({v, labelled ? format_number(v, 2) : std::string()});
    }
  }
  return ticks;
}

std::pair<double, double> nice_linear_domain(double lo, double hi, int target) {
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double d = lo != 0 ? std::fabs(lo) * 0.1 : 1.0;
    lo -= d, hi += d;
  }
  const double step = nice_step(hi - lo, target);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step};
}

std::pair<double, double> nice_log_domain(double lo, double hi) {
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) lo /= std::sqrt(10.0), hi *= std::sqrt(10.0);
  const double el = std::floor(std::log10(lo) + 1e-9), eh = std::ceil(std::log10(hi) - 1e-9);
  if (eh - el > 1) return {std::pow(10.0, el), std::pow(10.0, eh)};
  // Within about one decade: snap to 1, 2, 5 × 10^k so the data fills the axis.
  static const double kSteps[] = {1, 2, 5, 10};
  double a = std::pow(10.0, el), b = std::pow(10.0, eh);
  for (double m : kSteps) {
    if (m * std::pow(10.0, el) <= lo * (1 + 1e-9)) a = m * std::pow(10.0, el);
  }
  for (int k = 3; k >= 0; --k) {
    const double v = kSteps[k] * std::pow(10.0, eh - 1);
    if (v >= hi * (1 - 1e-9)) b = v;
  }
  return {a, b};
}

double Scale::fraction(double v) const {
  if (log) {
    if (!(v > 0)) return -1;  // below the axis
    const double a = std::log10(d0), b = std::log10(d1);
    return b == a ? 0.5 : (std::log10(v) - a) / (b - a);
  }
  return d1 == d0 ? 0.5 : (v - d0) / (d1 - d0);
}

double Scale::operator()(double v) const { return r0 + fraction(v) * (r1 - r0); }

std::vector<Tick> Scale::ticks(int target) const {
  return log ? log_ticks(std::min(d0, d1), std::max(d0, d1), target) : linear_ticks(d0, d1, target);
}

// ---------------------------------------------------------------------------------------------
// The document

Marker marker_for(size_t i) {
  static const Marker kOrder[] = {Marker::Circle, Marker::Square, Marker::Diamond, Marker::TriangleUp,
                                  Marker::TriangleDown, Marker::Cross};
  return kOrder[i % 6];
}

std::string coord(double v) {
  if (!std::isfinite(v)) v = 0;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = strip_zeros(buf);
  return s == "-0" ? "0" : s;
}

namespace {

std::string title_element(const std::string& hover) {
  return hover.empty() ? std::string() : "<title>" + escape(hover) + "</title>";
}

// `<tag attrs/>` or `<tag attrs><title>..</title></tag>`.
std::string element(const std::string& tag, const std::string& attrs, const std::string& hover) {
  if (hover.empty()) return "<" + tag + " " + attrs + "/>\n";
  return "<" + tag + " " + attrs + ">" + title_element(hover) + "</" + tag + ">\n";
}

}  // namespace

Document::Document(double width, double height, std::string id, std::string title)
    : width_(width), height_(height), id_(std::move(id)), title_(std::move(title)) {}

void Document::rect(double x, double y, double w, double h, const std::string& fill, const std::string& attrs,
                    const std::string& hover) {
  std::string a = "x=\"" + coord(x) + "\" y=\"" + coord(y) + "\" width=\"" + coord(std::max(0.0, w)) +
                  "\" height=\"" + coord(std::max(0.0, h)) + "\" fill=\"" + fill + "\"";
  if (!attrs.empty()) a += " " + attrs;
  body_ += element("rect", a, hover);
}

void Document::line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
                    const std::string& attrs) {
  std::string a = "x1=\"" + coord(x1) + "\" y1=\"" + coord(y1) + "\" x2=\"" + coord(x2) + "\" y2=\"" + coord(y2) +
                  "\" stroke=\"" + stroke + "\" stroke-width=\"" + coord(width) + "\"";
  if (!attrs.empty()) a += " " + attrs;
  body_ += element("line", a, "");
}

void Document::polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke, double width,
                        const std::string& attrs, const std::string& hover) {
  if (points.size() < 2) return;
  std::string pts;
  for (const auto& [x, y] : points) pts += (pts.empty() ? "" : " ") + coord(x) + "," + coord(y);
  std::string a = "points=\"" + pts + "\" fill=\"none\" stroke=\"" + stroke + "\" stroke-width=\"" + coord(width) +
                  "\" stroke-linejoin=\"round\"";
  if (!attrs.empty()) a += " " + attrs;
  body_ += element("polyline", a, hover);
}

void Document::marker(Marker shape, double x, double y, double size, const std::string& fill,
                      const std::string& stroke, const std::string& hover, const std::string& attrs) {
  const double r = size / 2;
  const bool own_width = attrs.find("stroke-width") != std::string::npos;
  const std::string paint = "fill=\"" + fill + "\" stroke=\"" + stroke + "\"" +
                            (own_width ? "" : " stroke-width=\"1\"") + (attrs.empty() ? "" : " " + attrs);
  const auto polygon = [&](std::initializer_list<std::pair<double, double>> pts) {
    std::string p;
    for (const auto& [dx, dy] : pts) p += (p.empty() ? "" : " ") + coord(x + dx) + "," + coord(y + dy);
    body_ += element("polygon", "points=\"" + p + "\" " + paint, hover);
  };
  switch (shape) {
    case Marker::Circle:
      body_ += element("circle", "cx=\"" + coord(x) + "\" cy=\"" + coord(y) + "\" r=\"" + coord(r) + "\" " + paint, hover);
      break;
    case Marker::Square: {
      const double s = r * 0.9;
      body_ += element("rect", "x=\"" + coord(x - s) + "\" y=\"" + coord(y - s) + "\" width=\"" + coord(2 * s) +
                                   "\" height=\"" + coord(2 * s) + "\" " + paint,
                       hover);
      break;
    }
    case Marker::Diamond: polygon({{0, -r * 1.2}, {r * 1.2, 0}, {0, r * 1.2}, {-r * 1.2, 0}}); break;
    case Marker::TriangleUp: polygon({{0, -r * 1.2}, {r * 1.1, r * 0.8}, {-r * 1.1, r * 0.8}}); break;
    case Marker::TriangleDown: polygon({{0, r * 1.2}, {r * 1.1, -r * 0.8}, {-r * 1.1, -r * 0.8}}); break;
    case Marker::Cross: {
      const double s = r * 0.9;
      const std::string d = "M" + coord(x - s) + "," + coord(y - s) + "L" + coord(x + s) + "," + coord(y + s) + "M" +
                            coord(x - s) + "," + coord(y + s) + "L" + coord(x + s) + "," + coord(y - s);
      // The stroke is the mark; a wide transparent stroke under it keeps the hover target usable.
      body_ += element("path", "d=\"" + d + "\" fill=\"none\" stroke=\"" + fill + "\"" +
                                   (own_width ? "" : " stroke-width=\"2.5\"") + (attrs.empty() ? "" : " " + attrs),
                       hover);
      break;
    }
  }
}

void Document::text(double x, double y, std::string_view text, double font_size, const std::string& anchor,
                    const std::string& attrs, double rotate) {
  std::string a = "x=\"" + coord(x) + "\" y=\"" + coord(y) + "\" font-size=\"" + coord(font_size) + "\"";
  if (anchor != "start") a += " text-anchor=\"" + anchor + "\"";
  if (rotate != 0) a += " transform=\"rotate(" + coord(rotate) + " " + coord(x) + " " + coord(y) + ")\"";
  if (!attrs.empty()) a += " " + attrs;
  body_ += "<text " + a + ">" + escape(text) + "</text>\n";
}

void Document::begin_group(const std::string& hover, const std::string& attrs) {
  body_ += "<g" + (attrs.empty() ? std::string() : " " + attrs) + ">" + title_element(hover) + "\n";
  ++open_groups_;
}

void Document::end_group() {
  if (open_groups_ == 0) return;
  body_ += "</g>\n";
  --open_groups_;
}

std::string Document::str() const {
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\"";
  if (!id_.empty()) s += " id=\"" + escape(id_) + "\"";
  s += " width=\"" + coord(width_) + "\" height=\"" + coord(height_) + "\" viewBox=\"0 0 " + coord(width_) + " " +
       coord(height_) + "\" role=\"img\" font-family=\"DejaVu Sans, Liberation Sans, Arial, sans-serif\"" +
       " font-size=\"12\" fill=\"#222222\">\n";
  if (!title_.empty()) s += title_element(title_) + "\n";
  s += "<rect x=\"0\" y=\"0\" width=\"" + coord(width_) + "\" height=\"" + coord(height_) + "\" fill=\"#ffffff\"/>\n";
  s += body_;
  for (int i = 0; i < open_groups_; ++i) s += "</g>\n";
  return s + "</svg>\n";
}

}  // namespace mpq::svg

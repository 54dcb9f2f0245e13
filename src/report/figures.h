// The sections of the report (internal to src/report): each turns the loaded data into XHTML
// (headings, sentences, tables) with inline SVG figures from report/svg.h. A section whose data
// is missing says so in one sentence (an element with class "omitted") and draws nothing.
#pragma once

#include <string>

#include "report/report_data.h"

namespace mpq::report {

// Width in px of a full-width figure; the page's content is a little wider (report.cpp's CSS).
inline constexpr double kFigureWidth = 1160;

struct Section {
  std::string id;       // the <section> id
  std::string heading;  // its <h2>
  std::string html;     // its body (XHTML)
};

// figures_run.cpp
Section frontier_section(const ReportData& d);    // size vs KLD of every candidate (fig-frontier)
Section allocation_section(const ReportData& d);  // formats per tensor (fig-allocation), bits per layer (fig-bits-per-layer)

// figures_sensitivity.cpp
Section sensitivity_section(const ReportData& d);  // heatmap per format (fig-sensitivity), most sensitive tensors
Section salience_section(const ReportData& d);     // MixLLM channel salience (fig-salience-kind, -layer, -tensor)
Section shapley_section(const ReportData& d);      // Shapley values (fig-shapley), interactions (fig-interactions)

// Helpers shared by the sections.
std::string esc(const std::string& text);  // svg::escape
std::string omitted(const std::string& id, const std::string& sentence);  // <p class="omitted" id=..>
std::string figure(const std::string& svg, const std::string& caption);   // <figure> with <figcaption>
// "4.4992" style numbers for text.
std::string num(double v, int significant = 4);
std::string percent(double share, int decimals = 1);  // 0.1234 -> "12.3 %"
std::string megabytes(double bytes);                 // "52.31 MB" (10^6 bytes)

}  // namespace mpq::report

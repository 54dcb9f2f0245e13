// The report of an `mpq auto` run (docs/REPORT.md): one self-contained XHTML file — inline CSS,
// inline SVG figures (report/svg.h), no scripts, no network — drawn from RUN_DIR/run.json and
// the files it names (the sensitivity file, the kept model's plan), which stay the source of
// truth. Parts whose data is missing (no Shapley analysis, a llama.cpp model without a plan) are
// left out with a sentence saying why, never filled in.
#pragma once

#include <string>
#include <vector>

namespace mpq {

// The first bytes of every report: how an earlier report is recognised (io/output.h), so that a
// rerun may replace it without --force.
inline constexpr const char* kReportMagic = "<!DOCTYPE html>\n<!-- mpq report";

// The report's XHTML for the run in `run_dir`. Same files -> same bytes (no timestamps).
// Throws mpq::Error naming the file when run.json or a file it names is missing or invalid.
std::string render_report(const std::string& run_dir);

// The files render_report reads (for io/output.h's OutputRules: never written over).
std::vector<std::string> report_inputs(const std::string& run_dir);

// RUN_DIR/report.html.
std::string default_report_path(const std::string& run_dir);

// Renders the report and writes it to `out` ("" = default_report_path) through io/output.h:
// checked before any work (never over an input, never over a file that is not an earlier mpq
// report unless `force`), staged under a temporary name and renamed into place.
void write_report(const std::string& run_dir, const std::string& out = "", bool force = false);

}  // namespace mpq

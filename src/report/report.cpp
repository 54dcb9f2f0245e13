// The report page: header, results table, the figure sections (figures_*.cpp), the commands and
// the inputs it was drawn from; written through io/output.h.
#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "io/output.h"
#include "mpq/error.h"
#include "report/figures.h"
#include "report/report_data.h"
#include "report/svg.h"

namespace mpq {
namespace {

using report::esc;
using report::num;

// Light, print-friendly styling; the figures carry their own colours. No external fonts.
constexpr const char* kCss = R"(
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #222; background: #fff;
       margin: 0 auto; max-width: 1180px; padding: 16px 24px 48px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid #ddd; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p { margin: 6px 0 10px; }
code, pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }
pre { background: #f6f6f6; border: 1px solid #e2e2e2; padding: 10px; overflow-x: auto; white-space: pre-wrap;
      overflow-wrap: anywhere; line-height: 1.6; }
figure { margin: 10px 0 18px; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; max-width: 1000px; }
svg { max-width: 100%; height: auto; display: block; }
.row { display: flex; flex-wrap: wrap; gap: 8px 2%; align-items: flex-start; }
.row figure { flex: 0 1 auto; margin: 10px 0 18px; }
table.data { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
table.data th, table.data td { border-bottom: 1px solid #e0e0e0; padding: 4px 8px; text-align: left; vertical-align: top; }
table.data th { background: #f3f3f3; font-weight: 600; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.chosen td { background: #fff2c2; font-weight: 600; }
tr.reference td { color: #555; font-style: italic; }
tr.failed td { color: #8a1c1c; }
.badge { display: inline-block; background: #0072b2; color: #fff; border-radius: 3px; padding: 0 5px;
         font-size: 11px; margin-left: 6px; font-style: normal; }
.summary { background: #f4f8fb; border-left: 4px solid #0072b2; padding: 8px 14px; margin: 10px 0; }
.omitted { color: #666; font-style: italic; }
.note { color: #555; font-size: 13px; }
dl.settings { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 13px; }
dl.settings dt { font-weight: 600; }
dl.settings dd { margin: 0; }
)";

// A table cell holding a number: its exact value (shortest round-trip text, as in the JSON) in
// data-value and the hover, a readable rounding as text.
std::string number_cell(const std::string& key, const std::optional<double>& v, const std::string& shown,
                        const std::string& unit = "") {
  if (!v) return "<td class=\"num\" data-key=\"" + key + "\">—</td>";
  const std::string exact = nlohmann::json(*v).dump();
  return "<td class=\"num\" data-key=\"" + key + "\" data-value=\"" + esc(exact) + "\" title=\"" + esc(exact + unit) +
         "\">" + esc(shown) + "</td>";
}

// "134.5 M", "1.24 B", "260032".
std::string count_text(uint64_t n) {
  const double v = static_cast<double>(n);
  if (v >= 1e9) return num(v / 1e9, 4) + " B";
  if (v >= 1e6) return num(v / 1e6, 4) + " M";
  return std::to_string(n);
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string candidates_table(const RunRecord& run) {
  std::string h = "<table class=\"data\" id=\"candidates\">\n<thead><tr><th>candidate</th><th>kind</th><th>method</th>"
                  "<th>status</th><th>file size</th><th>bits/weight</th><th>PPL</th><th>KLD mean</th><th>KLD p99</th>"
                  "<th>top-1 agree</th><th>decode tok/s</th><th>quantize s</th><th>evaluate s</th></tr></thead>\n<tbody>\n";
  h += "<tr class=\"reference\" data-name=\"(unquantized)\"><td>unquantized model</td><td>reference</td><td></td><td></td>" +
       number_cell("file_bytes", static_cast<double>(run.reference_file_bytes),
                   report::megabytes(static_cast<double>(run.reference_file_bytes)), " bytes") +
       "<td class=\"num\">—</td>" + number_cell("ppl", run.reference_ppl, num(run.reference_ppl, 5)) +
       "<td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">100 %</td><td class=\"num\">—</td>"
       "<td class=\"num\">—</td><td class=\"num\">—</td></tr>\n";
  for (const auto& c : run.candidates) {
    const bool chosen = c.name == run.chosen;
    const std::string cls = chosen ? " class=\"chosen\"" : !c.done() ? " class=\"failed\"" : "";
    const std::string method = c.method + (c.cost.empty() ? "" : " (" + c.cost + ")") +
                               (c.kind == "uniform" ? ": " + c.scheme : "");
    h += "<tr" + cls + " data-name=\"" + esc(c.name) + "\"><td data-key=\"name\">" + esc(c.name) +
         (chosen ? "<span class=\"badge\">kept</span>" : "") + "</td><td data-key=\"kind\">" + esc(c.kind) +
         "</td><td data-key=\"method\">" + esc(method) + "</td><td data-key=\"status\">" + esc(c.status) + "</td>";
    const std::optional<double> bytes = c.file_bytes ? std::optional<double>(static_cast<double>(*c.file_bytes)) : std::nullopt;
    h += number_cell("file_bytes", bytes, bytes ? report::megabytes(*bytes) : "", " bytes");
    h += number_cell("bits_per_weight", c.bits_per_weight, c.bits_per_weight ? fixed(*c.bits_per_weight, 4) : "");
    h += number_cell("ppl", c.ppl, c.ppl ? num(*c.ppl, 5) : "");
    h += number_cell("kld_mean", c.kld_mean, c.kld_mean ? num(*c.kld_mean, 4) : "", " nats/token");
    h += number_cell("kld_p99", c.kld_p99, c.kld_p99 ? num(*c.kld_p99, 4) : "", " nats/token");
    h += number_cell("top1_agree", c.top1_agree, c.top1_agree ? report::percent(*c.top1_agree, 2) : "");
    h += number_cell("decode_tok_s", c.decode_tok_s, c.decode_tok_s ? num(*c.decode_tok_s, 4) : "", " tokens/s");
    h += number_cell("seconds_quantize", c.seconds_quantize, c.seconds_quantize ? num(*c.seconds_quantize, 3) : "", " s");
    h += number_cell("seconds_evaluate", c.seconds_evaluate, c.seconds_evaluate ? num(*c.seconds_evaluate, 3) : "", " s");
    h += "</tr>\n";
  }
  return h + "</tbody>\n</table>\n";
}

// The header's one-paragraph outcome: the kept model against the unquantized one and against the
// best uniform scheme (when one was measured).
std::string summary(const RunRecord& run) {
  const RunCandidate& c = run.chosen_candidate();
  std::string s = "<div class=\"summary\" id=\"outcome\"><p>Kept <b>" + esc(c.name) + "</b> (" + esc(c.kind) + ", " +
                  esc(c.method) + (c.cost.empty() ? "" : ", cost " + esc(c.cost)) + "): " +
                  esc(report::megabytes(static_cast<double>(*c.file_bytes))) + ", " + esc(fixed(*c.bits_per_weight, 4)) +
                  " bits/weight, perplexity " + esc(num(*c.ppl, 5)) + " (unquantized " + esc(num(run.reference_ppl, 5)) +
                  ", " + esc((*c.ppl >= run.reference_ppl ? "+" : "") + num(100 * (*c.ppl / run.reference_ppl - 1), 3)) +
                  " %), mean KL divergence " + esc(num(*c.kld_mean, 4)) + ", top-1 agreement " +
                  esc(report::percent(*c.top1_agree, 2)) + ".</p>\n";
  // The uniform scheme closest in size (the comparison the budget asks for); the lower KL
  // divergence among equally close ones.
  const RunCandidate* uniform = nullptr;
  const auto distance = [&](const RunCandidate& u) {
    return std::fabs(static_cast<double>(*u.file_bytes) - static_cast<double>(*c.file_bytes));
  };
  for (const auto& u : run.candidates) {
    if (u.kind != "uniform" || !u.done() || u.name == c.name) continue;
    if (!uniform || distance(u) < distance(*uniform) || (distance(u) == distance(*uniform) && *u.kld_mean < *uniform->kld_mean)) {
      uniform = &u;
    }
  }
  if (uniform) {
    const double ratio = *uniform->kld_mean > 0 ? *c.kld_mean / *uniform->kld_mean : 1;
    const double size = static_cast<double>(*c.file_bytes) / static_cast<double>(*uniform->file_bytes) - 1;
    s += "<p>The uniform scheme closest in size: <b>" + esc(uniform->name) + "</b> (" + esc(uniform->scheme) + "): " +
         esc(report::megabytes(static_cast<double>(*uniform->file_bytes))) + ", perplexity " + esc(num(*uniform->ppl, 5)) +
         ", mean KL divergence " + esc(num(*uniform->kld_mean, 4)) + ". The kept model's KL divergence is " +
         (ratio <= 1 ? esc(num(100 * (1 - ratio), 3)) + " % lower" : esc(num(ratio, 3)) + "× as large") +
         ", its size " + esc(num(100 * std::fabs(size), 3)) + " % " + (size <= 0 ? "smaller" : "larger") + ".</p>\n";
  } else if (c.kind != "uniform") {
    s += "<p>No uniform scheme finished in this run, so there is no uniform comparison.</p>\n";
  }
  return s + "</div>\n";
}

std::string settings(const report::ReportData& d) {
  const RunRecord& run = d.run;
  std::string files;
  for (const auto& f : run.calib_files) files += (files.empty() ? "" : ", ") + f;
  std::string h = "<dl class=\"settings\">\n";
  const auto row = [&](const std::string& k, const std::string& v) { h += "<dt>" + esc(k) + "</dt><dd>" + esc(v) + "</dd>\n"; };
  row("model", run.model_path + " (" + run.arch + ", " + std::to_string(run.parameters) + " parameters, " +
                   std::to_string(run.linear_weights) + " in decoder Linear tensors)");
  row("model identity", run.identity.value("identity_source", std::string("?")) + " sha256 " +
                            run.identity.value("sha256", std::string("?")));
  row("budget", run.budget_describe() + " (decoder Linear weights)");
  row("target", run.target);
  row("calibration", (files.empty() ? std::string("(default text)") : files) + ": " + std::to_string(run.calib_samples) +
                         " sequences of " + std::to_string(run.calib_len) + " tokens, seed " + std::to_string(run.calib_seed));
  row("evaluation", run.eval_text + " (" + run.eval_protocol + "), context " + std::to_string(run.eval_ctx) + ", " +
                        std::to_string(run.eval_chunks) + " chunks");
  h += "</dl>\n<h3>Files this report was drawn from</h3>\n<table class=\"data\" id=\"inputs\">\n<thead><tr><th>file</th>"
       "<th>sha256</th></tr></thead>\n<tbody>\n";
  for (const auto& f : d.inputs) h += "<tr><td><code>" + esc(f.path) + "</code></td><td><code>" + esc(f.sha256) + "</code></td></tr>\n";
  return h + "</tbody>\n</table>\n";
}

}  // namespace

std::string default_report_path(const std::string& run_dir) {
  return (std::filesystem::path(run_dir) / "report.html").string();
}

std::vector<std::string> report_inputs(const std::string& run_dir) { return report::report_input_paths(run_dir); }

std::string render_report(const std::string& run_dir) {
  const report::ReportData d = report::load_report_data(run_dir);
  const RunRecord& run = d.run;
  const std::string title = "mpq auto: " + run.model_path + " at " + run.budget_describe();
  std::vector<report::Section> sections;
  sections.push_back({"results", "Candidates", "<p>Every candidate quantized and measured in this run, on " +
                                                   esc(run.eval_text) + " (held out from calibration). Sizes are the "
                                                   "model's files on disk (MB = 10⁶ bytes); bits/weight count the "
                                                   "decoder Linear weights with their scales. Hover a number for its "
                                                   "exact value in run.json.</p>\n" + candidates_table(run)});
  sections.push_back(report::frontier_section(d));
  sections.push_back(report::allocation_section(d));
  sections.push_back(report::sensitivity_section(d));
  sections.push_back(report::salience_section(d));
  sections.push_back(report::shapley_section(d));
  std::string commands;
  for (const auto& c : run.commands) commands += esc(c) + "\n";
  sections.push_back({"commands", "Commands that reproduce this run",
                      run.commands.empty() ? report::omitted("commands-omitted", "run.json records no commands.")
                                           : "<pre id=\"commands-list\">" + commands + "</pre>\n"});
  sections.push_back({"settings", "Settings and inputs", settings(d)});

  std::string h = std::string(kReportMagic) + ": drawn from " + esc(run.path) +
                  " and the files it names, which are the source of truth -->\n"
                  "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\" xml:lang=\"en\">\n<head>\n"
                  "<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
                  "<meta name=\"generator\" content=\"mpq report\"/>\n<title>" + esc(title) + "</title>\n<style>" + kCss +
                  "</style>\n</head>\n<body>\n";
  h += "<h1>" + esc("mpq auto — " + std::filesystem::path(run.model_path).filename().string()) + "</h1>\n";
  h += "<p>" + esc(run.model_path) + " (" + esc(run.arch) + ", " + esc(count_text(run.parameters)) +
       " parameters) quantized to a budget of <b>" + esc(run.budget_describe()) + "</b> for " + esc(run.target) + "; " +
       std::to_string(run.candidates.size()) + " candidates measured.</p>\n";
  h += summary(run);
  h += "<nav><p>";
  for (size_t i = 0; i < sections.size(); ++i) {
    h += std::string(i ? " · " : "") + "<a href=\"#" + sections[i].id + "\">" + esc(sections[i].heading) + "</a>";
  }
  h += "</p></nav>\n";
  for (const auto& s : sections) {
    h += "<section id=\"" + s.id + "\">\n<h2>" + esc(s.heading) + "</h2>\n" + s.html + "</section>\n";
  }
  h += "<footer><p class=\"note\">Written by <code>mpq report " + esc(d.run_dir) +
       "</code>. Every number comes from the JSON files listed above; rerun the command to redraw it.</p></footer>\n";
  return h + "</body>\n</html>\n";
}

void write_report(const std::string& run_dir, const std::string& out_arg, bool force) {
  check(std::filesystem::is_directory(run_dir), run_dir, "is not a directory (a run directory of mpq auto is expected)");
  const std::string out = out_arg.empty() ? default_report_path(run_dir) : out_arg;
  const OutputRules rules{report_inputs(run_dir), force};
  check_output_file(out, rules, file_with_magic(kReportMagic));
  const std::string html = render_report(run_dir);
  write_file_atomically(out, html);
}

}  // namespace mpq

// What the report is drawn from, loaded and cross-checked (internal to src/report): the run file,
// the sensitivity file (and its sidecar), the chosen candidate's plan. Every figure and table is
// computed from these; nothing is invented when a part is missing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/plan.h"
#include "plan/planner.h"
#include "report/run_file.h"

namespace mpq::report {

struct InputFile {
  std::string path;    // as opened
  std::string sha256;  // of its bytes
};

struct ReportData {
  std::string run_dir;
  RunRecord run;
  nlohmann::json sensitivity;       // S.json as written by mpq analyze
  SensitivityInput tensors;         // its tensors (with channel saliences when measured)
  std::optional<Plan> chosen_plan;  // the chosen candidate's allocation: its plan file (kind
                                    // plan), or its scheme applied to every tensor (uniform)
  std::string chosen_plan_source;   // where chosen_plan came from (file path or "scheme X")
  std::vector<InputFile> inputs;    // every file read, in reading order
};

// Reads RUN_DIR/run.json and the files it names. Checks: the sensitivity file is of the run's
// model (identity sha256) and its sidecar matches the recorded sha256; the chosen plan is valid
// for the model's tensors, made for the same model, and has the bits/weight the run records.
// Throws mpq::Error naming the file.
ReportData load_report_data(const std::string& run_dir);

// The files load_report_data reads (run.json, S.json, S.bin, the chosen plan), for OutputRules:
// an output must never be one of them.
std::vector<std::string> report_input_paths(const std::string& run_dir);

// Short name of a Linear kind for axes ("q_proj" -> "q", "gate_proj" -> "gate").
std::string short_kind(const std::string& kind);
// Kinds in the order of their first appearance in the sensitivity file (q, k, v, o, gate, up, down).
std::vector<std::string> kinds_in_order(const SensitivityInput& in);
// Mean bits per weight of `format` over the tensors of the file that can hold it (exact storage).
double nominal_bits(const SensitivityInput& in, const std::string& format);

}  // namespace mpq::report

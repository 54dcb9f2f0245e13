#include "report/report_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "calib/sensitivity_file.h"
#include "format/weight_format.h"
#include "io/read_file.h"
#include "mpq/error.h"
#include "quant/scheme.h"

namespace mpq::report {
namespace {

std::string sha_of(const std::string& bytes) { return sha256_hex(bytes.data(), bytes.size()); }

// The chosen uniform scheme as a plan over the sensitivity file's tensors.
Plan uniform_allocation(const RunCandidate& c, const SensitivityInput& in) {
  const Scheme s = parse_scheme(c.scheme, c.name + ": scheme");
  Plan p;
  p.method = "uniform";
  p.budget.bits_per_weight = 16;  // informational only: the run's budget applies
  uint64_t bits = 0, weights = 0;
  for (const auto& t : in.tensors) {
    PlanEntry e;
    e.format = s.format;
    e.quantizer = s.quantizer;
    p.tensors[t.name] = e;
    bits += storage_bits(s.format, t.rows, t.cols);
    weights += static_cast<uint64_t>(t.rows * t.cols);
  }
  p.total_bits = bits;
  p.weights = weights;
  p.bits_per_weight = weights > 0 ? static_cast<double>(bits) / static_cast<double>(weights) : 0;
  return p;
}

std::string sensitivity_path(const std::string& run_dir, const RunRecord& run) {
  return run_path(run_dir, run.sensitivity);
}

}  // namespace

std::vector<std::string> report_input_paths(const std::string& run_dir) {
  const std::string run_json = (std::filesystem::path(run_dir) / "run.json").string();
  std::vector<std::string> paths{run_json};
  try {
    const RunRecord run = read_run_file(run_json);
    const std::string s = sensitivity_path(run_dir, run);
    paths.push_back(s);
    paths.push_back(sensitivity_sidecar_path(s));
    for (const auto& c : run.candidates) {
      if (!c.plan.empty()) paths.push_back(run_path(run_dir, c.plan));
    }
  } catch (const Error&) {
    // An unreadable run file is reported by load_report_data; run.json alone is protected here.
  }
  return paths;
}

ReportData load_report_data(const std::string& run_dir) {
  ReportData d;
  d.run_dir = run_dir;
  const std::string run_json = (std::filesystem::path(run_dir) / "run.json").string();
  check(std::filesystem::is_directory(run_dir), run_dir, "is not a directory (a run directory of mpq auto is expected)");
  const std::string run_bytes = read_file(run_json, "run file");
  d.inputs.push_back({run_json, sha_of(run_bytes)});
  nlohmann::json run_j;
  try {
    run_j = nlohmann::json::parse(run_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail(run_json, std::string("not valid JSON: ") + e.what());
  }
  d.run = run_from_json(run_j, run_json);

  // The sensitivity file: the run's model, and a sidecar that is the one it names.
  const std::string s_path = sensitivity_path(run_dir, d.run);
  const std::string s_bytes = read_file(s_path, "sensitivity file");
  d.inputs.push_back({s_path, sha_of(s_bytes)});
  try {
    d.sensitivity = nlohmann::json::parse(s_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail(s_path, std::string("not valid JSON: ") + e.what());
  }
  const bool has_channels = d.sensitivity.contains("channels");
  d.tensors = read_sensitivity_input(s_path, has_channels);
  const std::string model_sha = d.tensors.model.value("sha256", std::string());
  check(model_sha == d.run.identity.value("sha256", std::string()), s_path,
        "is the sensitivity file of another model (sha256 " + model_sha + ", the run's model has " +
            d.run.identity.value("sha256", std::string()) + ")");
  if (d.sensitivity.contains("sidecar")) {
    const std::string bin_path = sensitivity_sidecar_path(s_path);
    const std::string bin = read_file(bin_path, "sensitivity sidecar");
    const std::string sha = sha_of(bin);
    d.inputs.push_back({bin_path, sha});
    check(sha == d.sensitivity["sidecar"].value("sha256", std::string()), bin_path,
          "does not match the sha256 its sensitivity file " + s_path + " records (a sidecar of another run?)");
  }

  // The chosen candidate's allocation.
  const RunCandidate& chosen = d.run.chosen_candidate();
  if (!chosen.plan.empty()) {  // a plan, or a uniform scheme as applied (fallbacks resolved)
    const std::string p_path = run_path(run_dir, chosen.plan);
    const std::string p_bytes = read_file(p_path, "plan file");
    d.inputs.push_back({p_path, sha_of(p_bytes)});
    Plan plan = read_plan(p_path);
    std::vector<PlanTensorShape> shapes;
    for (const auto& t : d.tensors.tensors) shapes.push_back({t.name, t.rows, t.cols});
    validate_plan(plan, shapes);
    check_plan_model(plan, d.run.identity);
    const double recorded = chosen.bits_per_weight.value_or(0);
    check(std::fabs(plan.bits_per_weight - recorded) <= 1e-9 * std::max(1.0, recorded), run_json,
          "candidate \"" + chosen.name + "\" records " + std::to_string(recorded) + " bits/weight, its plan " + p_path +
              " has " + std::to_string(plan.bits_per_weight));
    d.chosen_plan = std::move(plan);
    d.chosen_plan_source = p_path;
  } else if (chosen.kind == "uniform") {
    d.chosen_plan = uniform_allocation(chosen, d.tensors);
    d.chosen_plan_source = "scheme " + chosen.scheme;
  }
  return d;
}

std::string short_kind(const std::string& kind) {
  const std::string suffix = "_proj";
  if (kind.size() > suffix.size() && kind.compare(kind.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return kind.substr(0, kind.size() - suffix.size());
  }
  return kind;
}

std::vector<std::string> kinds_in_order(const SensitivityInput& in) {
  std::vector<std::string> kinds;
  for (const auto& t : in.tensors) {
    if (std::find(kinds.begin(), kinds.end(), t.kind) == kinds.end()) kinds.push_back(t.kind);
  }
  return kinds;
}

double nominal_bits(const SensitivityInput& in, const std::string& format) {
  const auto id = weight_format_from_name(format);
  if (!id) return 0;
  uint64_t bits = 0, weights = 0;
  for (const auto& t : in.tensors) {
    if (!format_accepts(*id, t.rows, t.cols)) continue;  // ggml blocks on rows of 172: not this tensor
    bits += storage_bits(*id, t.rows, t.cols);
    weights += static_cast<uint64_t>(t.rows * t.cols);
  }
  return weights > 0 ? static_cast<double>(bits) / static_cast<double>(weights) : 0;
}

}  // namespace mpq::report

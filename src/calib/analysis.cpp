#include "calib/analysis.h"

#include "io/model_writer.h"

#include <cstdio>
#include <filesystem>

#include "calib/sensitivity_file.h"
#include "io/read_file.h"
#include "mpq/error.h"

namespace mpq {
namespace {

// The held-out token set's seed: a fixed offset from the calibration seed, so that one seed fixes
// both sets.
constexpr uint64_t kHeldoutSeedOffset = 1000003;

CalibrationOptions heldout_options(const AnalysisRequest& r) {
  CalibrationOptions h = r.calibration;
  h.n_samples = r.heldout_samples;
  h.seq_len = r.heldout_len;
  h.seed = r.calibration.seed + kHeldoutSeedOffset;
  return h;
}

bool needs_heldout(const SensitivityMethods& m) { return m.kld || m.shapley; }

// Reads the progress file of an interrupted run; refuses one made with other settings.
nlohmann::json read_progress(const std::string& path, const nlohmann::json& settings) {
  if (!std::filesystem::exists(path)) {
    std::fprintf(stderr, "[analyze] --resume: no %s, starting from the beginning\n", path.c_str());
    return nlohmann::json::object();
  }
  const nlohmann::json j = read_json_file(path, "progress file");
  if (!j.is_object() || j.value("settings", nlohmann::json()) != settings) {
    fail(path, "progress file is from a run with other settings (model, calibration, methods, formats); "
               "delete it or rerun with the same arguments");
  }
  return j.value("state", nlohmann::json::object());
}

}  // namespace

nlohmann::json analysis_settings(const Model& model, const std::string& model_path, const AnalysisRequest& r) {
  const SensitivityOptions& o = r.options;
  nlohmann::json heldout;
  if (needs_heldout(o.methods)) {
    const CalibrationOptions h = heldout_options(r);
    heldout = {{"n_samples", h.n_samples}, {"seq_len", h.seq_len}, {"seed", h.seed}, {"disjoint_from_calibration", true}};
  }
  nlohmann::json formats = nlohmann::json::array();
  for (WeightFormatId f : o.formats.empty() ? default_sensitivity_formats() : o.formats) {
    formats.push_back(weight_format(f).name);
  }
  return {{"model", sensitivity_model_identity(model, model_path)},
          {"calibration", calibration_json(r.calibration)},
          {"heldout", heldout},
          {"methods", o.methods.names()},
          {"formats", formats},
          {"shapley", {{"players", o.shapley.tensor_players ? "tensors" : "layers"},
                       {"formats", std::string(weight_format(o.shapley.high).name) + "," + weight_format(o.shapley.low).name},
                       {"permutations", o.shapley.permutations},
                       {"independent", !o.shapley.antithetic}}}};
}

AnalysisSummary run_analysis(Model& model, const std::string& model_path, const AnalysisRequest& request,
                             const std::string& out) {
  check_sensitivity_output(out, request.rules);
  if (request.calibration.text_paths.empty()) fail("--calib", "no calibration text given and the default is missing");
  SensitivityOptions options = request.options;
  const CalibrationSet set = sample_calibration(model, request.calibration);
  AnalysisSummary summary;
  if (needs_heldout(options.methods)) {
    const CalibrationOptions h = heldout_options(request);
    options.heldout = sample_calibration(model, h, &set).sequences;
    summary.heldout = {{"n_samples", h.n_samples}, {"seq_len", h.seq_len}, {"seed", h.seed},
                       {"disjoint_from_calibration", true}};
  }
  const nlohmann::json identity = sensitivity_model_identity(model, model_path);
  // Progress of the resumable methods, rewritten atomically after every finished unit and
  // removed when the file is complete.
  const std::string progress_path = sensitivity_progress_path(out);
  const nlohmann::json settings = analysis_settings(model, model_path, request);
  if (request.resume) options.resume = read_progress(progress_path, settings);
  if (needs_heldout(options.methods)) {
    options.checkpoint = [&](const nlohmann::json& state) {
      write_file_atomically(progress_path, nlohmann::json{{"settings", settings}, {"state", state}}.dump() + "\n");
    };
  }
  summary.result = analyze_sensitivity(model, set, options);
  summary.result.heldout = summary.heldout;
  try {
    summary.result.gguf_fixed_bytes = gguf_fixed_bytes(model);
  } catch (const Error&) {
    // No GGUF form (an architecture llama.cpp has no name for): no whole-file GGUF budgets.
  }
  write_sensitivity_file(summary.result, identity, request.calibration, out);
  std::error_code ec;
  std::filesystem::remove(progress_path, ec);
  return summary;
}

}  // namespace mpq

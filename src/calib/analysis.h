// A whole sensitivity analysis as `mpq analyze` and `mpq auto` run it: draw the calibration and
// held-out sets, run the methods (resumable ones checkpointing into <out>.progress.json), write
// S.json + S.bin (calib/sensitivity_file.h). The CLI only parses options into an AnalysisRequest.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "io/output.h"

namespace mpq {

struct AnalysisRequest {
  SensitivityOptions options;     // methods, formats, shapley settings, progress (heldout: drawn here)
  CalibrationOptions calibration; // the calibration set (text_paths must not be empty)
  int heldout_samples = 4;        // kld/shapley: held-out sequences, drawn from the same files
  int heldout_len = 256;          // kld/shapley: tokens per held-out sequence
  bool resume = false;            // continue from <out>.progress.json (same settings only)
  OutputRules rules;              // where the model and calibration files are inputs
};

// What the analysis wrote, with its wall times.
struct AnalysisSummary {
  SensitivityResult result;
  nlohmann::json heldout;  // how the held-out set was drawn (null without kld/shapley)
};

// Runs the analysis of `model` (loaded from `model_path`) and writes `out` (+ sidecar). Throws
// mpq::Error naming the file or option at fault; refuses a progress file of other settings.
AnalysisSummary run_analysis(Model& model, const std::string& model_path, const AnalysisRequest& request,
                             const std::string& out);

// The settings that identify an analysis: the model identity, calibration, held-out set,
// methods, formats, shapley settings. Two requests with equal settings give the same file.
nlohmann::json analysis_settings(const Model& model, const std::string& model_path, const AnalysisRequest& request);

}  // namespace mpq

// mpq auto: from a model and a budget to the best model found, in one call (docs/AUTO.md):
//
//   1. sensitivity analysis (calib/analysis.h) over the formats the target runs, cached by the
//      model's identity and the analysis settings, so a second budget reuses it;
//   2. the candidates at the budget (auto/candidates.h): the plans of each method and the uniform
//      schemes that fit;
//   3. each candidate quantized (GPTQ unless asked otherwise), written as its engine loads it, read
//      back packed and evaluated on held-out text (auto/measure.h): perplexity and KL divergence
//      against the unquantized model's saved log-probs, top-1 agreement, decode speed;
//   4. the best (lowest mean KL divergence) copied to OUT, and the report (report/report.h) written
//      into the run directory and beside OUT.
//
// OUT is a Hugging Face directory (OUT/report.html inside it), or a GGUF file when it ends in
// .gguf (target llama.cpp; the report beside it as NAME.report.html for NAME.gguf).
//
// Run directory (default "<OUT>.run"):
//   auto-state.json              the settings of the run (format "mpq-auto-state"), written first:
//                                what --resume checks; a run directory without it is not ours
//   run.json                     the run's record (report/run_file.h), written once every
//                                candidate is measured, through write_run_file (strictly valid)
//   report.html                  the report
//   sensitivity.json / .bin      the analysis (a copy of the cached one)
//   reference.logits / .json     the unquantized model's top-k log-probs and PPL on the evaluation text
//   plans/<name>.json            every candidate's plan (uniform schemes too, fallbacks resolved)
//   candidates/<name>[.gguf]     every candidate model, as written for the target
//   evals/<name>.json            every candidate's measurements or failure: the resumable progress
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/analysis.h"
#include "plan/plan.h"
#include "quant/quantize_model.h"

namespace mpq {

struct AutoOptions {
  PlanBudget budget;                  // average bits per quantized Linear weight, or bytes
  std::string target;                 // the engines the result must run in (plan/target.h); "":
                                      // llama.cpp for a .gguf OUT, compressed-tensors otherwise
  std::vector<std::string> methods;   // candidate kinds among knapsack, channels, tiers, rule, bqp,
                                      // uniform (empty: all that apply)
  AnalysisRequest analysis;           // sensitivity methods, formats and calibration
  Quantizer quantizer = Quantizer::Gptq;  // every candidate's quantizer
  QuantizeOptions quantize;           // GPTQ options (its calibration is analysis.calibration)
  std::optional<Scheme> head;         // the output head's format (default: kept)
  std::string eval_text;              // held-out evaluation text (e.g. WikiText-2 test)
  int eval_chunks = 40;               // llama.cpp-protocol chunks evaluated
  int eval_ctx = 512;                 // tokens per chunk
  bool measure_speed = true;          // decode tok/s of every candidate (a short benchmark)
  std::string cache_dir;              // where analyses are cached ("" : no cache)
  std::string work_dir;               // the run directory ("" : "<out>.run")
  bool resume = false;                // continue an interrupted run in work_dir
  bool progress = true;               // progress lines with elapsed time and ETA on stderr
  std::vector<std::string> commands;  // the commands that reproduce the run (for the report)
  OutputRules rules;                  // inputs (the model, texts) and --force
};

struct AutoResult {
  std::string run_dir;      // the run directory
  std::string chosen;       // the chosen candidate's name
  nlohmann::json run;       // run.json as written
  std::string report;       // the report written beside (or into) OUT
};

// Where the report of a run whose best model goes to `out` is written: OUT/report.html for a
// directory, NAME.report.html beside NAME.gguf.
std::string auto_report_path(const std::string& out);

// Runs everything for the model at `model_path` (loaded with `load`) and writes the best
// candidate to `out`. Throws mpq::Error naming the step, file or option at fault; a candidate
// that cannot be built (a plan the budget does not admit, a format the target cannot run) is
// recorded as failed with its reason, and the run goes on.
AutoResult run_auto(const std::string& model_path, const LoadOptions& load, const AutoOptions& options,
                    const std::string& out);

// Where analyses are cached by default: $MPQ_CACHE_DIR, else $XDG_CACHE_HOME/mpq, else
// ~/.cache/mpq ("" when none is set).
std::string default_cache_dir();

// The candidate kinds run_auto tries by default, in order.
std::vector<std::string> default_auto_methods();

}  // namespace mpq

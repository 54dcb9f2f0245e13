// Quantize-write-reload-evaluate, the measurement `mpq auto` makes of every candidate and
// `mpq pareto --measure` of every point: one plan applied to a fresh copy of the model, the model
// written as its engine loads it (a Hugging Face directory, or a GGUF file for a name ending in
// .gguf), read back from that file with packed weights (what a user runs), and evaluated on
// held-out text against the unquantized model's saved log-probs (PPL, KL divergence, top-1
// agreement), with a short decode benchmark. The CLI only prints what these return.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/output.h"
#include "mpq/model.h"
#include "plan/plan.h"
#include "quant/quantize_model.h"

namespace mpq {

// The held-out evaluation: the llama.cpp perplexity protocol over the first `chunks` chunks of
// `ctx` tokens of the text (never the calibration split).
struct EvalSettings {
  std::string text_path;      // the file (for messages and provenance)
  std::string text;           // its content
  int ctx = 512;
  int chunks = 40;
  bool measure_speed = true;  // decode tok/s (a short benchmark: 5 runs of 16 tokens)
  bool progress = false;      // "[ppl] chunk i/n ... eta" lines on stderr (every 10 s off a terminal)
};

// The unquantized model on the evaluation text.
struct ReferenceMeasurement {
  double ppl = 0;
  int64_t n_tokens = 0;     // scored tokens
  uint64_t file_bytes = 0;  // the model's file(s) on disk
  nlohmann::json to_json() const;
  static ReferenceMeasurement from_json(const nlohmann::json& j, const std::string& where);
};

// Evaluates the unquantized `model` (loaded from `model_path`) and saves its top-k log-probs to
// `logits_path` (the base every candidate's KL divergence is measured against).
ReferenceMeasurement measure_reference(Model& model, const std::string& model_path, const EvalSettings& eval,
                                       const std::string& logits_path);

// One quantized model, measured.
struct CandidateMeasurement {
  double bits_per_weight = 0;  // the plan's exact storage bits per decoder Linear weight
  uint64_t linear_bytes = 0;   // the plan's Linear bytes
  uint64_t file_bytes = 0;     // the written model's file(s)
  double ppl = 0, ppl_ratio = 0;
  double kld_mean = 0, kld_median = 0, kld_p99 = 0;
  double top1_agree = 0;
  std::optional<double> decode_tok_s;  // unset when not measured
  double seconds_quantize = 0, seconds_evaluate = 0;
  nlohmann::json to_json() const;
  // Strict: every key above present, numbers finite. Throws mpq::Error naming `where`.
  static CandidateMeasurement from_json(const nlohmann::json& j, const std::string& where);
};

// Bytes of a model on disk: a file's size, or the sum of a directory's regular files.
uint64_t model_bytes(const std::string& path);

// Loads the model at `model_path` afresh (`load`), quantizes it by `plan`, writes it to `out` (a
// directory, or a GGUF file when `out` ends in .gguf; replaced when it exists: the caller owns
// it), reloads it packed and measures it against `reference_logits`. Throws mpq::Error naming the
// step or file at fault.
CandidateMeasurement quantize_and_measure(const std::string& model_path, const LoadOptions& load, const Plan& plan,
                                          const QuantizeOptions& quantize, const std::string& out,
                                          const EvalSettings& eval, const std::string& reference_logits,
                                          const OutputRules& rules);

// Measures a model already written at `path` (bits_per_weight and linear_bytes are the caller's).
CandidateMeasurement measure_written_model(const std::string& path, const LoadOptions& load, const EvalSettings& eval,
                                           const std::string& reference_logits);

// One point of a measured sweep: its measurements, or why it could not be measured.
struct PlanPointResult {
  std::optional<CandidateMeasurement> measurement;
  std::string failure;  // "" when measured
};

// `mpq pareto --measure`: the reference measured once (its log-probs saved to `reference_logits`),
// then every plan quantized, written to outs[i] and measured as quantize_and_measure does. A plan
// that fails is reported in its result and the sweep goes on. `progress`: one line per point on
// stderr with the time left.
struct PlanSweep {
  ReferenceMeasurement reference;
  std::vector<PlanPointResult> points;  // one per plan, in order
};
PlanSweep measure_plans(const std::string& model_path, const LoadOptions& load, const std::vector<Plan>& plans,
                        const std::vector<std::string>& outs, const QuantizeOptions& quantize, const EvalSettings& eval,
                        const std::string& reference_logits, const OutputRules& rules, bool progress);

}  // namespace mpq

// The run file of `mpq auto` (RUN_DIR/run.json, docs/REPORT.md): what was run (model, budget,
// target, calibration, evaluation), every candidate it quantized and measured, which one it kept,
// and the commands that reproduce it. The report (report/report.h) is drawn from it and from the
// files it names; it stays the source of truth. Read strictly: unknown keys, kinds and statuses
// are refused by name, numbers must be finite and in range.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mpq {

inline constexpr const char* kRunFileFormat = "mpq-auto-run";
inline constexpr int kRunFileVersion = 1;

// One quantized-and-measured candidate.
struct RunCandidate {
  std::string name;    // unique within the run ("knapsack-fisher", "uniform-int4_g128")
  std::string kind;    // "plan" (an mpq plan file), "uniform" (one scheme), "llama.cpp" (a GGUF)
  std::string method;  // plans: tiers/knapsack/bqp/channels/rule; uniform: "uniform"; llama.cpp: its type (Q4_K_M)
  std::string cost;    // plans: the sensitivity cost (fisher, output, kld, shapley, salience, or "")
  std::string scheme;  // uniform only: "FORMAT:QUANTIZER"
  std::string plan;    // plan: the plan file, relative to RUN_DIR (or absolute); uniform: optional,
                       // the scheme as applied (the target's per-tensor fallbacks resolved)
  std::string model;   // the quantized model (directory or .gguf), relative to RUN_DIR (or absolute)
  std::string status;  // "done" or "failed: <why>"
  // Measurements (all set when done; any may be unset when failed).
  std::optional<double> bits_per_weight;  // exact storage bits per quantized Linear weight
  std::optional<uint64_t> file_bytes;     // bytes of the model's files on disk
  std::optional<double> ppl;              // perplexity on the evaluation text
  std::optional<double> kld_mean, kld_p99;  // KL(unquantized ‖ candidate) per token, nats: mean, 99th percentile
  std::optional<double> top1_agree;       // share of tokens whose argmax equals the unquantized model's, [0, 1]
  std::optional<double> decode_tok_s;     // decode speed (null: not measured, even when done)
  std::optional<double> seconds_quantize, seconds_evaluate;  // wall time of each step

  bool done() const { return status == "done"; }
};

struct RunRecord {
  // model
  std::string model_path;
  std::string arch;
  uint64_t parameters = 0;      // all parameters of the model
  uint64_t linear_weights = 0;  // weights of the decoder Linear tensors (what the budget counts)
  nlohmann::json identity;      // sensitivity_model_identity (calib/sensitivity_file.h)
  // budget: exactly one > 0
  double budget_bits_per_weight = 0;
  uint64_t budget_bytes = 0;
  std::string target;  // "mpq", "transformers", "vllm-cpu" or "llama.cpp"
  // calibration
  std::vector<std::string> calib_files;
  int calib_samples = 0, calib_len = 0;
  uint64_t calib_seed = 0;
  // evaluation (held-out text, never the calibration split)
  std::string eval_text, eval_protocol;
  int eval_ctx = 0, eval_chunks = 0;
  // the unquantized model
  double reference_ppl = 0;
  uint64_t reference_file_bytes = 0;
  std::string sensitivity;  // S.json, relative to RUN_DIR (or absolute); its sidecar beside it
  std::vector<RunCandidate> candidates;
  std::string chosen;  // name of a done candidate
  std::vector<std::string> commands;

  std::string path;  // the file it was read from ("" when built in memory)

  const RunCandidate& chosen_candidate() const;  // throws mpq::Error when absent
  std::string budget_describe() const;           // "4.5 bits/weight" / "90000000 bytes"
};

// The run as JSON (the schema of docs/REPORT.md; unset measurements as null).
nlohmann::json run_to_json(const RunRecord& run);
// Parses and checks a run file's JSON; throws mpq::Error naming `where` and the offending key.
RunRecord run_from_json(const nlohmann::json& j, const std::string& where);
RunRecord read_run_file(const std::string& path);
// json.dump(1) (keys sorted) written atomically (io/output.h). Checks the record first.
void write_run_file(const RunRecord& run, const std::string& path);

// `relative` resolved against the run directory (unchanged when absolute).
std::string run_path(const std::string& run_dir, const std::string& relative);

}  // namespace mpq

// The plan file (docs/PLAN.md): what format and quantizer each decoder Linear tensor gets, the
// budget it was solved for and where its numbers came from. Written by `mpq plan`, editable by
// hand, checked by validate_plan before any work starts.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/weight_format.h"
#include "quant/scheme.h"

namespace mpq {

constexpr int kPlanFileVersion = 1;

struct PlanEntry {
  WeightFormatId format = WeightFormatId::Int4_G128;  // the whole tensor's format (split: = low_format)
  Quantizer quantizer = Quantizer::Rtn;
  bool split = false;                                  // channel-split tensor (method channels)
  WeightFormatId high_format = WeightFormatId::Int8_Channel;  // split only
  WeightFormatId low_format = WeightFormatId::Int4_G128;      // split only
  std::vector<int64_t> high_channels;                  // split only: output channels (rows) in high_format, ascending
};

// Exactly one of the two is set (> 0).
struct PlanBudget {
  double bits_per_weight = 0;  // average over the quantized Linear weights, scales/zeros counted
  uint64_t bytes = 0;          // total storage of the quantized Linear weights
  // A whole-file budget (mpq plan --file-size, GGUF): the file's bytes, from which the planner
  // derived `bytes` for the Linear weights (the rest: the head, norms, metadata); the writer
  // refuses to write a file larger than this. 0: none. Only together with `bytes`.
  uint64_t file_bytes = 0;
  // The cap in bits for `weights` quantized Linear weights: floor(bits_per_weight * weights), or 8 * bytes;
  // UINT64_MAX (no limit) when that does not fit in 64 bits.
  uint64_t cap_bits(uint64_t weights) const;
  std::string describe() const;  // "4.5 bits/weight" / "90000000 bytes"
};

struct Plan {
  std::string method;               // tiers, knapsack, bqp, channels, rule (or anything, hand-written)
  std::string cost;                 // fisher / output / salience
  PlanBudget budget;
  double bits_per_weight = 0;       // achieved, exact (total_bits / weights)
  uint64_t total_bits = 0;          // achieved, exact
  uint64_t weights = 0;             // quantized Linear weights
  double predicted_objective = 0;   // summed measured cost of the chosen formats
  nlohmann::json solver = nlohmann::json::object();       // exact, lower_bound, gap, note, ...
  nlohmann::json sensitivity = nlohmann::json::object();  // path, sha256 (of S.json), model identity
  std::map<std::string, PlanEntry> tensors;               // module name -> entry
  std::vector<std::string> unquantized;                   // Linear modules kept as they are
  // The output head ("lm_head"), quantized into this scheme when set (a tied head stays tied and
  // also serves as the embedding); kept as it is otherwise. Outside the Linear budget above.
  std::optional<Scheme> head;
  // The engines the plan was made for (plan/target.h); quantize refuses a tensor whose format the
  // target does not accept. "mpq" for plans written before targets existed.
  std::string target = "mpq";
  std::string path;                                       // file it was read from ("" if built in memory)
};

// Exact storage bits of one entry for a [rows, cols] tensor (split: both channel sets).
uint64_t plan_entry_bits(const PlanEntry& entry, int64_t rows, int64_t cols);

nlohmann::json plan_to_json(const Plan& plan);
// Parses and checks the structure (names of formats and quantizers, channel lists); throws
// mpq::Error naming `where`.
Plan plan_from_json(const nlohmann::json& j, const std::string& where);
// Atomic: writes path + ".tmp", then renames. Throws mpq::Error naming the file.
void write_plan(const Plan& plan, const std::string& path);
Plan read_plan(const std::string& path);

struct PlanTensorShape {
  std::string name;
  int64_t rows = 0, cols = 0;
};
// Checks `plan` against a model's Linear tensors: every plan name is a model tensor, every model
// tensor is in `tensors` or `unquantized` (not both), channel indices are in range and unique, and
// the exact bits of the quantized tensors fit the budget. Throws mpq::Error naming plan.path (or
// "plan") and the offending tensor.
void validate_plan(const Plan& plan, const std::vector<PlanTensorShape>& tensors);

// Checks that the plan was made for this model: when the plan records a sensitivity model
// identity (sensitivity.model.sha256, from sensitivity_model_identity of calib/sensitivity_file.h),
// it must equal identity["sha256"]. Throws mpq::Error naming plan.path.
void check_plan_model(const Plan& plan, const nlohmann::json& identity);

// What quantize_model's callback should return for `module` (split entries: the channel split);
// throws for names not in the plan.
ModuleChoice plan_module_choice(const Plan& plan, const std::string& module);

// "90MB" (10^6), "90MiB" (2^20), "1.5GB", "512kB", "123456" (bytes). Throws mpq::Error naming `where`.
uint64_t parse_byte_size(const std::string& text, const std::string& where = "--size");

}  // namespace mpq

// From a sensitivity file to a plan (docs/PLAN.md): reads S.json (+ S.bin for channel salience),
// applies pins and the fused-same constraint, runs one solver of plan/solvers.h and returns the
// Plan (already validated against the file's tensors and the budget).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/plan.h"
#include "plan/solvers.h"
#include "plan/target.h"

namespace mpq {

struct SensitivityTensor {
  std::string name;  // HF module name
  int layer = 0;
  std::string kind;  // q_proj, ..., down_proj
  int64_t rows = 0, cols = 0;
  std::map<std::string, double> fisher, output, kld;  // format name -> cost (when measured)
  std::vector<float> channels;                   // per output channel salience (when measured and loaded)
};

struct SensitivityInput {
  std::string path;
  std::string sha256;  // of the S.json bytes
  nlohmann::json model = nlohmann::json::object();
  int n_layers = 0;
  std::vector<std::string> formats;
  std::vector<SensitivityTensor> tensors;
  nlohmann::json shapley;  // the file's "shapley" section (null when not measured)
  SensitivityTensor head;  // the output head ("head": fisher costs), rows == 0 when absent
  bool head_tied = false;  // the head is also the embedding
  std::optional<uint64_t> gguf_fixed_bytes;  // "gguf.fixed_bytes" (whole-file GGUF budgets)
};

// Reads S.json (format "mpq-sensitivity", version 1) and, when `load_channels`, the sidecar's
// channel saliences (checking magic, version and ranges). Throws mpq::Error naming the file.
SensitivityInput read_sensitivity_input(const std::string& path, bool load_channels);

struct PlanPin {
  std::string pattern;  // ECMAScript regex, searched anywhere in the module name
  bool none = false;    // "none": leave the tensor unquantized
  WeightFormatId format = WeightFormatId::BF16;
  std::optional<Quantizer> quantizer;
};
// "REGEX=FORMAT[:QUANTIZER]" or "REGEX=none" (split at the last '='). Throws mpq::Error.
PlanPin parse_pin(const std::string& text);

struct PlanRequest {
  std::string method;                  // tiers, knapsack, bqp, channels, rule
  std::optional<double> bits;          // --bits
  std::optional<uint64_t> bytes;       // --size (the Linear weights' bytes)
  // --high-fraction (channels only, instead of a budget): exactly floor(P * channels) of the most
  // salient output channels take the high format, as MixLLM states its plans ("p = 10%").
  std::optional<double> high_fraction;
  // --file-size: the whole GGUF file (target llama.cpp). The planner takes the file's fixed
  // part (the sensitivity file's gguf.fixed_bytes, a report reserve and the padding) and the
  // head's bytes off, and plans the Linear weights in the rest; the head's format is `head`
  // when given, else the one (of those the sensitivity file has fisher costs for) whose total
  // cost, head plus the best Linear plan in the remaining bytes, is least (knapsack, fisher).
  std::optional<uint64_t> file_bytes;
  std::optional<Scheme> head;          // --head-format: the output head's scheme (any budget)
  std::vector<WeightFormatId> formats; // --formats (empty: the method's default)
  std::vector<PlanPin> pins;           // first matching pin wins
  bool fused_same = false;             // q/k/v and gate/up of a layer share a format
  std::string cost = "fisher";         // fisher, output, kld, or (bqp only) shapley: the Shapley
                                       // fit's linear and pairwise terms over layer players
  Quantizer quantizer = Quantizer::Rtn;  // for every tensor not pinned with a quantizer
  Target target{{Engine::Mpq}};        // the engines the plan must run in (plan/target.h): a tensor
                                       // is only offered the formats they accept for its shape
  int64_t knapsack_cells = 1 << 17;    // DP grid size limit
};

Plan make_plan(const SensitivityInput& input, const PlanRequest& request);

}  // namespace mpq

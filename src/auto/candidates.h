// The candidates `mpq auto` measures at a budget (auto/auto.h): the plans of each method and the
// uniform schemes that fit, all restricted to what the target engines run (plan/target.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "plan/plan.h"
#include "plan/planner.h"
#include "plan/target.h"
#include "quant/scheme.h"

namespace mpq {

struct AutoCandidate {
  std::string name;    // "knapsack-fisher", "uniform-int4sym_g32", ... (a file name in the run directory)
  std::string kind;    // "plan" or "uniform" (report/run_file.h)
  std::string method;  // planner method, or "uniform"
  std::string cost;    // the plan's cost ("" for uniform)
  std::string scheme;  // uniform: "FORMAT:QUANTIZER"
  std::optional<Plan> plan;  // plans: made here; uniform: made against the model (uniform_plan)
  std::string failure;       // why it could not be made ("" when it could)
};

struct CandidateRequest {
  PlanBudget budget;
  Target target;
  std::vector<std::string> methods;  // knapsack, channels, tiers, rule, bqp, uniform (in this order of output)
  std::string cost;                  // the planners' cost (best_cost)
  Quantizer quantizer = Quantizer::Gptq;
  std::optional<Scheme> head;
};

// The candidates, in the order of `methods`. A plan the budget or target does not admit is a
// candidate with its failure set (reported, not fatal); an unknown method throws mpq::Error.
std::vector<AutoCandidate> make_candidates(const SensitivityInput& in, const CandidateRequest& request);

// The formats a sensitivity analysis for `target` measures by default: every quantized format of
// the table the target runs on every one of the tensors (shapes [rows, cols]) — for llama.cpp the
// ggml types whose blocks fit every row, otherwise the default analysis formats it accepts. When
// none fits every tensor, the default formats mpq holds (the plans over them then fail, saying why).
std::vector<WeightFormatId> analysis_formats_for(const Target& target,
                                                 const std::vector<std::pair<int64_t, int64_t>>& shapes);

// The cost the planners use: the most faithful one the analysis measured (kld, fisher, output).
std::string planner_cost(bool kld, bool fisher, bool output);

}  // namespace mpq

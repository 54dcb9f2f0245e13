// Bit-allocation solvers (docs/PLAN.md): pure functions over a small problem description. No
// model, no files: the CLI (tools/cmd_plan.cpp) builds the problem from a sensitivity file.
//
// Vocabulary. An *item* is one unit that gets one format: a Linear tensor, or (with --fused-same)
// a group of fused tensors that must share a format. Each item has *options*: a format, its exact
// storage bits (storage_bits of weight_format.h, summed over the item's tensors) and its measured
// cost. A solution picks one option per item; its bits are the sum of the chosen options' bits
// and must not exceed the budget (in bits).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/channel_split.h"
#include "format/weight_format.h"

namespace mpq {

struct PlanOption {
  WeightFormatId format = WeightFormatId::BF16;
  uint64_t bits = 0;  // exact storage bits of the item in this format
  double cost = 0;    // measured cost (lower is better)
};

struct PlanItem {
  std::string name;                // for messages
  std::vector<PlanOption> options; // at least one
};

struct PlanSolution {
  std::vector<int> choice;  // option index per item
  uint64_t bits = 0;        // sum of the chosen options' bits
  double objective = 0;     // sum of the chosen options' costs
  double lower_bound = 0;   // proven lower bound on the optimal objective (== objective if exact)
  bool exact = false;       // the solution is proven optimal
  std::string note;         // how it was found
};

// Sum of bits / cost of a choice vector.
uint64_t solution_bits(const std::vector<PlanItem>& items, const std::vector<int>& choice);
double solution_cost(const std::vector<PlanItem>& items, const std::vector<int>& choice);

// Lagrangian lower bound of the multiple-choice knapsack min Σ cost s.t. Σ bits <= budget:
// max over λ >= 0 of Σ_i min_j (c_ij + λ b_ij) − λ·budget (equals the LP relaxation's optimum).
double knapsack_lagrangian_bound(const std::vector<PlanItem>& items, uint64_t budget_bits);

// Multiple-choice knapsack, minimising the summed cost under budget_bits. Bits are made relative
// to each item's cheapest option and divided by their common gcd; when the remaining slack fits
// in `max_cells` grid cells the DP is over exact integers (exact = true). Otherwise bits are
// rounded *up* to a grid of max_cells cells (the budget is still never exceeded), the result is
// improved by single-item moves using the true bits, and lower_bound is the Lagrangian bound.
// Throws mpq::Error when even the cheapest-bits choice exceeds the budget.
PlanSolution solve_knapsack(const std::vector<PlanItem>& items, uint64_t budget_bits,
                            int64_t max_cells = 1 << 17);

// Two-format quadratic problem (players choose high = 0 or low = 1):
//   minimise Σ_i a_i x_i + Σ_{i<j} b_ij x_i x_j   s.t.  Σ_i bits_high_i + Σ_i x_i (bits_low_i − bits_high_i) <= budget
// (the constant Σ cost_high is not included: objective = cost relative to all-high).
struct BqpProblem {
  std::vector<double> a;                // per player: cost(low) − cost(high)
  std::vector<std::vector<double>> b;   // symmetric n×n, diagonal ignored; empty = all zero
  std::vector<uint64_t> bits_high, bits_low;
  uint64_t budget_bits = 0;
};
struct BqpSolution {
  std::vector<uint8_t> low;  // 1 = the player takes its low format
  uint64_t bits = 0;
  double objective = 0;      // Σ a_i x_i + Σ_{i<j} b_ij x_i x_j
  bool exact = false;
  int64_t nodes = 0;         // branch-and-bound nodes visited
  std::string note;
};
double bqp_objective(const BqpProblem& p, const std::vector<uint8_t>& low);
// Exact branch and bound for n <= max_exact_players (bound: per-player marginal lower bounds fed
// to a fractional covering knapsack), stopping at max_nodes (then exact = false); local search
// (greedy + 1-flip and swap moves) above. Throws mpq::Error when all-low exceeds the budget.
BqpSolution solve_bqp(const BqpProblem& p, int max_exact_players = 40, int64_t max_nodes = 20'000'000);

// Tiers: each item has exactly three options [high, mid, low] (in that order) and an importance
// (larger = more important). Items sorted by importance descending; the first n_high take high,
// the next n_mid take mid, the rest low. Picks (n_high, n_mid) minimising the summed cost under
// the budget (ties: fewer bits). Throws mpq::Error when all-low exceeds the budget.
PlanSolution solve_tiers(const std::vector<PlanItem>& items, const std::vector<double>& importance,
                         uint64_t budget_bits);

// Channels (MixLLM): tensors with per-output-channel salience; the globally top-k salient channels
// take `high`, the rest `low`. k is the largest count, at most max_high, whose exact bits
// (storage_bits of each tensor's two channel sets) fit the budget. Ties in salience: earlier
// tensor, then lower index.
struct ChannelTensor {
  int64_t rows = 0, cols = 0;
  std::vector<float> salience;  // rows values
};
struct ChannelSolution {
  std::vector<std::vector<int64_t>> high_channels;  // per tensor, ascending
  uint64_t bits = 0;
  int64_t n_high = 0, n_channels = 0;
  double objective = 0;  // Σ salience of the channels left in `low`
};
ChannelSolution solve_channels(const std::vector<ChannelTensor>& tensors, WeightFormatId high,
                               WeightFormatId low, uint64_t budget_bits,
                               int64_t max_high = INT64_MAX);

// llama.cpp's use_more_bits (Q4_K_M): layer < n/8, layer >= 7n/8, or (layer − n/8) % 3 == 2.
bool rule_more_bits(int layer, int n_layers);

}  // namespace mpq

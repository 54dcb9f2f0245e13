// Bit-allocation solvers (plan/solvers.h) against brute force on small random instances.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "mpq/error.h"
#include "plan/solvers.h"

namespace mpq {
namespace {

std::vector<PlanItem> random_items(std::mt19937_64& rng, int n, int max_options) {
  std::uniform_int_distribution<int> nopt(1, max_options);
  std::uniform_int_distribution<uint64_t> bits(10, 120);
  std::uniform_real_distribution<double> cost(0.0, 10.0);
  std::vector<PlanItem> items(n);
  for (int i = 0; i < n; ++i) {
    items[i].name = "t" + std::to_string(i);
    const int k = nopt(rng);
    for (int j = 0; j < k; ++j) items[i].options.push_back({WeightFormatId::Int4_G128, bits(rng), cost(rng)});
  }
  return items;
}

// Optimal cost (infinity if infeasible) by enumeration.
double brute_knapsack(const std::vector<PlanItem>& items, uint64_t budget) {
  std::vector<int> c(items.size(), 0);
  double best = std::numeric_limits<double>::infinity();
  while (true) {
    if (solution_bits(items, c) <= budget) best = std::min(best, solution_cost(items, c));
    size_t i = 0;
    while (i < items.size() && ++c[i] == static_cast<int>(items[i].options.size())) c[i++] = 0;
    if (i == items.size()) break;
  }
  return best;
}

uint64_t total(const std::vector<PlanItem>& items, bool max) {
  uint64_t s = 0;
  for (const auto& it : items) {
    uint64_t v = max ? 0 : std::numeric_limits<uint64_t>::max();
    for (const auto& o : it.options) v = max ? std::max(v, o.bits) : std::min(v, o.bits);
    s += v;
  }
  return s;
}

TEST(PlanKnapsack, EqualsBruteForceOnRandomInstances) {
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 10);
    const auto items = random_items(rng, n, 3);
    const uint64_t lo = total(items, false), hi = total(items, true);
    const uint64_t budget = lo + rng() % (hi - lo + 1);
    const double best = brute_knapsack(items, budget);
    const PlanSolution s = solve_knapsack(items, budget);
    ASSERT_TRUE(s.exact);
    EXPECT_LE(s.bits, budget);
    EXPECT_EQ(s.bits, solution_bits(items, s.choice));
    EXPECT_NEAR(s.objective, best, 1e-9) << "trial " << trial;
    EXPECT_LE(knapsack_lagrangian_bound(items, budget), best + 1e-9);
  }
}

TEST(PlanKnapsack, CoarseGridNeverExceedsBudgetAndBoundsTheOptimum) {
  std::mt19937_64 rng(2);
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 9);
    const auto items = random_items(rng, n, 3);
    const uint64_t lo = total(items, false), hi = total(items, true);
    const uint64_t budget = lo + rng() % (hi - lo + 1);
    const double best = brute_knapsack(items, budget);
    const PlanSolution s = solve_knapsack(items, budget, /*max_cells=*/4);
    EXPECT_LE(s.bits, budget);
    EXPECT_GE(s.objective, best - 1e-9);
    EXPECT_LE(s.lower_bound, best + 1e-9);
    if (!s.exact) EXPECT_GE(s.objective - s.lower_bound, -1e-9);
  }
}

TEST(PlanKnapsack, ExactWhenBudgetCoversEverythingAndRefusesImpossibleBudget) {
  std::mt19937_64 rng(3);
  const auto items = random_items(rng, 6, 3);
  const PlanSolution s = solve_knapsack(items, total(items, true));
  double unconstrained = 0;
  for (const auto& it : items) {
    double m = 1e300;
    for (const auto& o : it.options) m = std::min(m, o.cost);
    unconstrained += m;
  }
  EXPECT_NEAR(s.objective, unconstrained, 1e-9);
  EXPECT_THROW(solve_knapsack(items, total(items, false) - 1), Error);
}

BqpProblem random_bqp(std::mt19937_64& rng, int n) {
  std::uniform_real_distribution<double> a(-2.0, 6.0), b(-1.5, 1.5);
  std::uniform_int_distribution<uint64_t> bh(60, 160), save(5, 50);
  BqpProblem p;
  p.b.assign(n, std::vector<double>(n, 0.0));
  for (int i = 0; i < n; ++i) {
    p.a.push_back(a(rng));
    p.bits_high.push_back(bh(rng));
    p.bits_low.push_back(p.bits_high.back() - save(rng));
    for (int j = 0; j < i; ++j) p.b[i][j] = p.b[j][i] = b(rng);
  }
  uint64_t lo = 0, hi = 0;
  for (int i = 0; i < n; ++i) lo += p.bits_low[i], hi += p.bits_high[i];
  p.budget_bits = lo + rng() % (hi - lo + 1);
  return p;
}

double brute_bqp(const BqpProblem& p) {
  const size_t n = p.a.size();
  double best = std::numeric_limits<double>::infinity();
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    std::vector<uint8_t> x(n);
    uint64_t bits = 0;
    for (size_t i = 0; i < n; ++i) {
      x[i] = (mask >> i) & 1;
      bits += x[i] ? p.bits_low[i] : p.bits_high[i];
    }
    if (bits <= p.budget_bits) best = std::min(best, bqp_objective(p, x));
  }
  return best;
}

TEST(PlanBqp, BranchAndBoundEqualsBruteForce) {
  std::mt19937_64 rng(4);
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 12);
    const BqpProblem p = random_bqp(rng, n);
    const double best = brute_bqp(p);
    const BqpSolution s = solve_bqp(p);
    ASSERT_TRUE(s.exact);
    EXPECT_LE(s.bits, p.budget_bits);
    EXPECT_NEAR(s.objective, best, 1e-9) << "trial " << trial << " n " << n;
    EXPECT_NEAR(s.objective, bqp_objective(p, s.low), 1e-12);
  }
}

TEST(PlanBqp, LocalSearchFallbackIsFeasibleAndNoWorseThanGreedyStart) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const BqpProblem p = random_bqp(rng, 12);
    const BqpSolution s = solve_bqp(p, /*max_exact_players=*/0);
    EXPECT_FALSE(s.exact);
    EXPECT_LE(s.bits, p.budget_bits);
    EXPECT_GE(s.objective, brute_bqp(p) - 1e-9);
  }
  BqpProblem p = random_bqp(rng, 5);
  uint64_t lo = 0;
  for (uint64_t b : p.bits_low) lo += b;
  p.budget_bits = lo - 1;
  EXPECT_THROW(solve_bqp(p), Error);
}

TEST(PlanTiers, BestSplitUnderBudgetRespectsImportanceOrder) {
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 3 + static_cast<int>(rng() % 8);
    std::vector<PlanItem> items(n);
    std::vector<double> importance(n);
    for (int i = 0; i < n; ++i) {
      const uint64_t w = 64 + rng() % 64;
      importance[i] = u(rng);
      items[i].options = {{WeightFormatId::BF16, 16 * w, 0.0},
                          {WeightFormatId::FP8_E4M3_Channel, 8 * w + 16, 0.1 * importance[i]},
                          {WeightFormatId::NVFP4, 4 * w + 8, importance[i]}};
    }
    const uint64_t budget = total(items, false) + rng() % (total(items, true) - total(items, false) + 1);
    const PlanSolution s = solve_tiers(items, importance, budget);
    EXPECT_LE(s.bits, budget);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if (importance[i] > importance[j]) EXPECT_LE(s.choice[i], s.choice[j]);
    // Brute force over all tier splits of the sorted order.
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int l, int r) { return importance[l] > importance[r]; });
    double best = 1e300;
    for (int h = 0; h <= n; ++h)
      for (int m = 0; h + m <= n; ++m) {
        std::vector<int> c(n);
        for (int k = 0; k < n; ++k) c[order[k]] = k < h ? 0 : (k < h + m ? 1 : 2);
        if (solution_bits(items, c) <= budget) best = std::min(best, solution_cost(items, c));
      }
    EXPECT_NEAR(s.objective, best, 1e-12);
  }
}

TEST(PlanChannels, TopSalientChannelsLargestCountWithinBudget) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<ChannelTensor> ts = {{32, 256, {}}, {48, 128, {}}, {16, 384, {}}};
  for (auto& t : ts)
    for (int64_t r = 0; r < t.rows; ++r) t.salience.push_back(u(rng));
  const auto hi = WeightFormatId::Int8_Channel, lo = WeightFormatId::Int4_G128;
  uint64_t all_low = 0;
  for (auto& t : ts) all_low += storage_bits(lo, t.rows, t.cols);
  for (uint64_t budget : {all_low, all_low + 5000, all_low + 40000, all_low * 3}) {
    const ChannelSolution s = solve_channels(ts, hi, lo, budget);
    EXPECT_LE(s.bits, budget);
    uint64_t bits = 0;
    float min_high = 2, max_low = -1;
    int64_t n_high = 0;
    for (size_t k = 0; k < ts.size(); ++k) {
      bits += split_storage_bits(hi, lo, static_cast<int64_t>(s.high_channels[k].size()), ts[k].rows, ts[k].cols);
      std::vector<bool> is_high(ts[k].rows, false);
      for (int64_t c : s.high_channels[k]) is_high[c] = true, ++n_high;
      for (int64_t r = 0; r < ts[k].rows; ++r)
        if (is_high[r]) min_high = std::min(min_high, ts[k].salience[r]);
        else max_low = std::max(max_low, ts[k].salience[r]);
    }
    EXPECT_EQ(bits, s.bits);
    EXPECT_EQ(n_high, s.n_high);
    if (s.n_high > 0 && s.n_high < s.n_channels) EXPECT_GE(min_high, max_low);
    // The next channel (at most 4*384 + 16 - 3*20 = 1492 more bits) did not fit.
    if (s.n_high < s.n_channels) EXPECT_GT(s.bits + 1492, budget);
  }
  EXPECT_EQ(split_storage_bits(hi, lo, 5, 32, 256), storage_bits(hi, 5, 256) + storage_bits(lo, 27, 256));
  EXPECT_THROW(solve_channels(ts, hi, lo, all_low - 1), Error);
}

TEST(PlanRule, MatchesLlamaCppUseMoreBits) {
  // n_layers 32: layers 0-3 and 28-31, plus 6, 9, ..., 27.
  std::vector<int> more;
  for (int l = 0; l < 32; ++l)
    if (rule_more_bits(l, 32)) more.push_back(l);
  const std::vector<int> expect = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  EXPECT_EQ(more, expect);
}

}  // namespace
}  // namespace mpq

#include "plan/solvers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "mpq/error.h"

namespace mpq {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_items(const std::vector<PlanItem>& items, const char* where) {
  for (const PlanItem& it : items) check(!it.options.empty(), where, "item " + it.name + " has no options");
}

uint64_t min_bits_total(const std::vector<PlanItem>& items) {
  uint64_t s = 0;
  for (const PlanItem& it : items) {
    uint64_t m = std::numeric_limits<uint64_t>::max();
    for (const PlanOption& o : it.options) m = std::min(m, o.bits);
    s += m;
  }
  return s;
}

void fail_budget(const char* where, uint64_t need, uint64_t budget) {
  fail(where, "budget of " + std::to_string(budget) + " bits is below the smallest possible plan (" +
                  std::to_string(need) + " bits, every tensor in its smallest candidate format)");
}

// Single-option moves that lower the cost and keep the true bits within the budget.
void improve_moves(const std::vector<PlanItem>& items, uint64_t budget, std::vector<int>& choice) {
  uint64_t bits = solution_bits(items, choice);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < items.size(); ++i) {
      const PlanOption& cur = items[i].options[choice[i]];
      int best = choice[i];
      double best_cost = cur.cost;
      for (size_t j = 0; j < items[i].options.size(); ++j) {
        const PlanOption& o = items[i].options[j];
        if (bits - cur.bits + o.bits <= budget && o.cost < best_cost) best = static_cast<int>(j), best_cost = o.cost;
      }
      if (best != choice[i]) {
        bits = bits - cur.bits + items[i].options[best].bits;
        choice[i] = best;
        changed = true;
      }
    }
  }
}

}  // namespace

uint64_t solution_bits(const std::vector<PlanItem>& items, const std::vector<int>& choice) {
  uint64_t s = 0;
  for (size_t i = 0; i < items.size(); ++i) s += items[i].options[choice[i]].bits;
  return s;
}

double solution_cost(const std::vector<PlanItem>& items, const std::vector<int>& choice) {
  double s = 0;
  for (size_t i = 0; i < items.size(); ++i) s += items[i].options[choice[i]].cost;
  return s;
}

double knapsack_lagrangian_bound(const std::vector<PlanItem>& items, uint64_t budget_bits) {
  const double B = static_cast<double>(budget_bits);
  // Returns L(λ) and the bits of the minimisers (smallest bits among cost ties).
  auto eval = [&](double lambda, double& bits) {
    double L = -lambda * B;
    bits = 0;
    for (const PlanItem& it : items) {
      double best = kInf, best_bits = 0;
      for (const PlanOption& o : it.options) {
        const double v = o.cost + lambda * static_cast<double>(o.bits);
        if (v < best || (v == best && o.bits < best_bits)) best = v, best_bits = static_cast<double>(o.bits);
      }
      L += best;
      bits += best_bits;
    }
    return L;
  };
  double bits = 0;
  double bound = eval(0, bits);
  if (bits <= B) return bound;
  double hi = 1e-30;
  for (int k = 0; k < 400; ++k, hi *= 2) {
    bound = std::max(bound, eval(hi, bits));
    if (bits <= B) break;
  }
  double lo = hi / 2;
  for (int k = 0; k < 200; ++k) {
    const double mid = 0.5 * (lo + hi);
    bound = std::max(bound, eval(mid, bits));
    if (bits > B) lo = mid; else hi = mid;
  }
  return bound;
}

PlanSolution solve_knapsack(const std::vector<PlanItem>& items, uint64_t budget_bits, int64_t max_cells) {
  check_items(items, "knapsack");
  const size_t n = items.size();
  const uint64_t base_total = min_bits_total(items);
  if (base_total > budget_bits) fail_budget("knapsack", base_total, budget_bits);
  const uint64_t slack = budget_bits - base_total;
  std::vector<uint64_t> base(n);
  uint64_t g = 0;
  for (size_t i = 0; i < n; ++i) {
    base[i] = std::numeric_limits<uint64_t>::max();
    for (const PlanOption& o : items[i].options) base[i] = std::min(base[i], o.bits);
    for (const PlanOption& o : items[i].options) g = std::gcd(g, o.bits - base[i]);
  }
  if (g == 0) g = 1;
  uint64_t unit = g;
  bool exact = true;
  if (slack / g > static_cast<uint64_t>(max_cells)) {
    unit = g * ((slack / g + static_cast<uint64_t>(max_cells) - 1) / static_cast<uint64_t>(max_cells));
    exact = false;
  }
  const int64_t S = static_cast<int64_t>(slack / unit);
  // dp[c]: min cost of items so far using at most c units.
  std::vector<double> dp(S + 1, 0.0), next(S + 1);
  std::vector<std::vector<uint8_t>> pick(n, std::vector<uint8_t>(S + 1, 0));
  for (size_t i = 0; i < n; ++i) {
    std::fill(next.begin(), next.end(), kInf);
    for (size_t j = 0; j < items[i].options.size(); ++j) {
      const uint64_t extra = items[i].options[j].bits - base[i];
      const uint64_t w64 = (extra + unit - 1) / unit;  // rounded up: never under-counts bits
      if (w64 > static_cast<uint64_t>(S)) continue;
      const int64_t w = static_cast<int64_t>(w64);
      const double c = items[i].options[j].cost;
      for (int64_t cap = w; cap <= S; ++cap) {
        const double v = dp[cap - w] + c;
        if (v < next[cap]) next[cap] = v, pick[i][cap] = static_cast<uint8_t>(j);
      }
    }
    dp.swap(next);
  }
  PlanSolution sol;
  sol.choice.assign(n, 0);
  int64_t cap = S;
  for (size_t i = n; i-- > 0;) {
    const int j = pick[i][cap];
    sol.choice[i] = j;
    cap -= static_cast<int64_t>((items[i].options[j].bits - base[i] + unit - 1) / unit);
  }
  if (!exact) improve_moves(items, budget_bits, sol.choice);
  sol.bits = solution_bits(items, sol.choice);
  sol.objective = solution_cost(items, sol.choice);
  sol.exact = exact;
  sol.lower_bound = exact ? sol.objective : std::min(sol.objective, knapsack_lagrangian_bound(items, budget_bits));
  sol.note = exact ? "exact DP over " + std::to_string(S + 1) + " cells of " + std::to_string(unit) + " bits"
                   : "DP over " + std::to_string(S + 1) + " cells of " + std::to_string(unit) +
                         " bits (rounded up) + repair moves; lower bound: Lagrangian";
  return sol;
}

// ---------------------------------------------------------------------------------------------
// BQP

double bqp_objective(const BqpProblem& p, const std::vector<uint8_t>& low) {
  double s = 0;
  const size_t n = p.a.size();
  for (size_t i = 0; i < n; ++i) {
    if (!low[i]) continue;
    s += p.a[i];
    if (!p.b.empty())
      for (size_t j = i + 1; j < n; ++j)
        if (low[j]) s += p.b[i][j];
  }
  return s;
}

namespace {

uint64_t bqp_bits(const BqpProblem& p, const std::vector<uint8_t>& low) {
  uint64_t s = 0;
  for (size_t i = 0; i < p.a.size(); ++i) s += low[i] ? p.bits_low[i] : p.bits_high[i];
  return s;
}

double bq(const BqpProblem& p, size_t i, size_t j) { return p.b.empty() ? 0.0 : p.b[i][j]; }

// Greedy (flip to low by best cost per saved bit until feasible) + 1-flip and swap descent.
std::vector<uint8_t> bqp_local_search(const BqpProblem& p) {
  const size_t n = p.a.size();
  std::vector<uint8_t> x(n, 0);
  // Marginal of flipping i to low given the current low set: a_i + Σ_{j low} b_ij.
  auto marginal = [&](size_t i) {
    double m = p.a[i];
    for (size_t j = 0; j < n; ++j)
      if (j != i && x[j]) m += bq(p, i, j);
    return m;
  };
  uint64_t bits = bqp_bits(p, x);
  while (bits > p.budget_bits) {
    size_t best = n;
    double best_ratio = kInf;
    for (size_t i = 0; i < n; ++i) {
      if (x[i] || p.bits_low[i] >= p.bits_high[i]) continue;
      const double r = marginal(i) / static_cast<double>(p.bits_high[i] - p.bits_low[i]);
      if (r < best_ratio) best_ratio = r, best = i;
    }
    if (best == n) break;
    x[best] = 1;
    bits = bits - p.bits_high[best] + p.bits_low[best];
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < n; ++i) {  // 1-flips
      const double m = marginal(i);
      const double delta = x[i] ? -m : m;
      const uint64_t nb = x[i] ? bits - p.bits_low[i] + p.bits_high[i] : bits - p.bits_high[i] + p.bits_low[i];
      if (delta < -1e-15 && nb <= p.budget_bits) x[i] ^= 1, bits = nb, changed = true;
    }
    for (size_t i = 0; i < n && !changed; ++i) {  // swaps: i high -> low, j low -> high
      if (x[i]) continue;
      const double mi = marginal(i);
      for (size_t j = 0; j < n; ++j) {
        if (!x[j]) continue;
        const double delta = (mi - bq(p, i, j)) - marginal(j);
        const uint64_t nb = bits - p.bits_high[i] + p.bits_low[i] - p.bits_low[j] + p.bits_high[j];
        if (delta < -1e-15 && nb <= p.budget_bits) {
          x[i] = 1, x[j] = 0, bits = nb, changed = true;
          break;
        }
      }
    }
  }
  return x;
}

struct BqpSearch {
  BqpSearch(const BqpProblem& problem, size_t players) : p(problem), n(players) {}
  const BqpProblem& p;
  size_t n;
  std::vector<size_t> order;
  std::vector<uint8_t> x, best;
  std::vector<double> lin;    // a_i + Σ_{assigned low j} b_ij
  std::vector<double> negu;   // ½ Σ_{unassigned k != i} min(0, b_ik)
  std::vector<uint8_t> assigned;
  double best_obj = kInf;
  int64_t nodes = 0, max_nodes = 0;
  bool aborted = false;

  // Lower bound on the remaining objective: per-player marginal bounds v_i into a fractional
  // covering knapsack (savings relaxed to max(0, s_i)).
  double bound(size_t depth, double need_now) {
    double lb = 0, covered = 0;
    std::vector<std::pair<double, double>> pos;  // (v, s) with v >= 0, s > 0
    for (size_t d = depth; d < n; ++d) {
      const size_t i = order[d];
      const double v = lin[i] + negu[i];
      const double s = std::max(0.0, static_cast<double>(p.bits_high[i]) - static_cast<double>(p.bits_low[i]));
      if (v < 0) lb += v, covered += s;
      else if (s > 0) pos.push_back({v, s});
    }
    double deficit = need_now - covered;
    if (deficit <= 0) return lb;
    std::sort(pos.begin(), pos.end(), [](auto& l, auto& r) { return l.first * r.second < r.first * l.second; });
    for (auto& [v, s] : pos) {
      if (deficit <= 0) break;
      const double take = std::min(1.0, deficit / s);
      lb += take * v;
      deficit -= take * s;
    }
    return deficit > 1e-9 ? kInf : lb;
  }

  void assign(size_t i, uint8_t v) {
    assigned[i] = 1;
    x[i] = v;
    for (size_t k = 0; k < n; ++k) {
      if (k == i) continue;
      const double b = bq(p, i, k);
      if (!assigned[k]) {
        negu[k] -= 0.5 * std::min(0.0, b);
        if (v) lin[k] += b;
      }
    }
  }
  void unassign(size_t i) {
    const uint8_t v = x[i];
    assigned[i] = 0;
    x[i] = 0;
    for (size_t k = 0; k < n; ++k) {
      if (k == i) continue;
      const double b = bq(p, i, k);
      if (!assigned[k]) {
        negu[k] += 0.5 * std::min(0.0, b);
        if (v) lin[k] -= b;
      }
    }
  }

  void dfs(size_t depth, double obj, double need_now) {
    if (aborted) return;
    if (++nodes > max_nodes) { aborted = true; return; }
    if (depth == n) {
      if (need_now <= 0 && obj < best_obj) best_obj = obj, best = x;
      return;
    }
    if (obj + bound(depth, need_now) >= best_obj - 1e-12 * std::max(1.0, std::fabs(best_obj))) return;
    const size_t i = order[depth];
    const double gain_low = lin[i];  // exact marginal given the assigned players
    const double s = static_cast<double>(p.bits_high[i]) - static_cast<double>(p.bits_low[i]);
    const uint8_t first = (gain_low + negu[i] < 0) ? 1 : 0;
    for (int t = 0; t < 2; ++t) {
      const uint8_t v = t == 0 ? first : static_cast<uint8_t>(1 - first);
      assign(i, v);
      dfs(depth + 1, obj + (v ? gain_low : 0.0), need_now - (v ? s : 0.0));
      unassign(i);
    }
  }
};

}  // namespace

BqpSolution solve_bqp(const BqpProblem& p, int max_exact_players, int64_t max_nodes) {
  const size_t n = p.a.size();
  check(p.bits_high.size() == n && p.bits_low.size() == n && (p.b.empty() || p.b.size() == n), "bqp",
        "inconsistent problem sizes");
  std::vector<uint8_t> minbits(n);
  for (size_t i = 0; i < n; ++i) minbits[i] = p.bits_low[i] < p.bits_high[i];
  if (bqp_bits(p, minbits) > p.budget_bits) fail_budget("bqp", bqp_bits(p, minbits), p.budget_bits);

  BqpSolution sol;
  std::vector<uint8_t> ls = bqp_local_search(p);
  if (bqp_bits(p, ls) > p.budget_bits) ls = minbits;
  sol.low = ls;
  sol.objective = bqp_objective(p, ls);
  sol.note = "local search";
  if (static_cast<int>(n) <= max_exact_players) {
    BqpSearch s(p, n);
    s.order.resize(n);
    std::iota(s.order.begin(), s.order.end(), size_t{0});
    std::sort(s.order.begin(), s.order.end(), [&](size_t l, size_t r) { return std::fabs(p.a[l]) > std::fabs(p.a[r]); });
    s.x.assign(n, 0);
    s.assigned.assign(n, 0);
    s.lin = p.a;
    s.negu.assign(n, 0);
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < n; ++k)
        if (k != i) s.negu[i] += 0.5 * std::min(0.0, bq(p, i, k));
    s.best = ls;
    s.best_obj = sol.objective;
    s.max_nodes = max_nodes;
    double total_high = 0;
    for (size_t i = 0; i < n; ++i) total_high += static_cast<double>(p.bits_high[i]);
    s.dfs(0, 0.0, total_high - static_cast<double>(p.budget_bits));
    sol.low = s.best;
    sol.objective = bqp_objective(p, s.best);
    sol.nodes = s.nodes;
    sol.exact = !s.aborted;
    sol.note = s.aborted ? "branch and bound stopped at " + std::to_string(max_nodes) + " nodes (best found)"
                         : "exact branch and bound (" + std::to_string(s.nodes) + " nodes)";
  }
  sol.bits = bqp_bits(p, sol.low);
  return sol;
}

// ---------------------------------------------------------------------------------------------
// Tiers

PlanSolution solve_tiers(const std::vector<PlanItem>& items, const std::vector<double>& importance,
                         uint64_t budget_bits) {
  const size_t n = items.size();
  check(importance.size() == n, "tiers", "importance size mismatch");
  for (const PlanItem& it : items) check(it.options.size() == 3, "tiers", "item " + it.name + " needs 3 options");
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t l, size_t r) { return importance[l] > importance[r]; });
  // Prefix sums over the sorted order, per tier.
  std::vector<uint64_t> pb[3];
  std::vector<double> pc[3];
  for (int t = 0; t < 3; ++t) {
    pb[t].assign(n + 1, 0);
    pc[t].assign(n + 1, 0);
    for (size_t k = 0; k < n; ++k) {
      pb[t][k + 1] = pb[t][k] + items[order[k]].options[t].bits;
      pc[t][k + 1] = pc[t][k] + items[order[k]].options[t].cost;
    }
  }
  size_t best_h = 0, best_m = 0;
  double best_cost = kInf;
  uint64_t best_bits = 0;
  for (size_t h = 0; h <= n; ++h)
    for (size_t m = 0; h + m <= n; ++m) {
      const uint64_t bits = pb[0][h] + (pb[1][h + m] - pb[1][h]) + (pb[2][n] - pb[2][h + m]);
      if (bits > budget_bits) continue;
      const double cost = pc[0][h] + (pc[1][h + m] - pc[1][h]) + (pc[2][n] - pc[2][h + m]);
      if (cost < best_cost || (cost == best_cost && bits < best_bits)) best_cost = cost, best_bits = bits, best_h = h, best_m = m;
    }
  if (best_cost == kInf) fail_budget("tiers", pb[2][n], budget_bits);
  PlanSolution sol;
  sol.choice.assign(n, 2);
  for (size_t k = 0; k < n; ++k) sol.choice[order[k]] = k < best_h ? 0 : (k < best_h + best_m ? 1 : 2);
  sol.bits = best_bits;
  sol.objective = best_cost;
  sol.lower_bound = best_cost;
  sol.exact = true;  // optimal among tier splits
  sol.note = std::to_string(best_h) + " high, " + std::to_string(best_m) + " mid, " +
             std::to_string(n - best_h - best_m) + " low";
  return sol;
}

// ---------------------------------------------------------------------------------------------
// Channels

ChannelSolution solve_channels(const std::vector<ChannelTensor>& tensors, WeightFormatId high, WeightFormatId low,
                               uint64_t budget_bits, int64_t max_high) {
  struct Ch {
    float s;
    uint32_t t;
    int64_t row;
  };
  std::vector<Ch> all;
  double total_salience = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    check(static_cast<int64_t>(tensors[t].salience.size()) == tensors[t].rows, "channels",
          "tensor " + std::to_string(t) + ": salience count differs from rows");
    for (int64_t r = 0; r < tensors[t].rows; ++r) {
      all.push_back({tensors[t].salience[r], static_cast<uint32_t>(t), r});
      total_salience += tensors[t].salience[r];
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const Ch& l, const Ch& r) { return l.s > r.s; });
  std::vector<int64_t> count(tensors.size(), 0);
  uint64_t bits = 0;
  for (const ChannelTensor& t : tensors) bits += split_storage_bits(high, low, 0, t.rows, t.cols);
  if (bits > budget_bits) fail_budget("channels", bits, budget_bits);
  int64_t best_k = 0;
  uint64_t best_bits = bits;
  for (size_t k = 0; k < all.size() && static_cast<int64_t>(k) < max_high; ++k) {
    const ChannelTensor& t = tensors[all[k].t];
    int64_t& c = count[all[k].t];
    bits = bits - split_storage_bits(high, low, c, t.rows, t.cols) + split_storage_bits(high, low, c + 1, t.rows, t.cols);
    ++c;
    if (bits <= budget_bits) best_k = static_cast<int64_t>(k) + 1, best_bits = bits;
  }
  ChannelSolution sol;
  sol.high_channels.assign(tensors.size(), {});
  double top = 0;
  for (int64_t k = 0; k < best_k; ++k) {
    sol.high_channels[all[k].t].push_back(all[k].row);
    top += all[k].s;
  }
  for (auto& v : sol.high_channels) std::sort(v.begin(), v.end());
  sol.bits = best_bits;
  sol.n_high = best_k;
  sol.n_channels = static_cast<int64_t>(all.size());
  sol.objective = total_salience - top;
  return sol;
}

bool rule_more_bits(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

}  // namespace mpq

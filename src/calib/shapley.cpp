// Shapley values and pairwise interactions from chains of progressive quantization
// (calib/shapley.h). Design notes:
//
// * The quadratic model has p = 1 + n + (#pairs) unknowns θ = (L0, a, b). Features are products
//   of x's, so along one chain a feature, once "born" (all its players low), stays on for the rest
//   of the chain. The chain's contribution to the normal matrix XᵀX is therefore
//   G[u][v] += n + 1 − max(birth_u, birth_v) and to Xᵀy it is r[u] += Σ_{k ≥ birth_u} y_k: O(p²)
//   per chain instead of O(Σ_k nnz_k²) for point-by-point accumulation (≈ 6× less for n = 30).
// * Every chain point enters the fit with weight 1, duplicates included (L(∅) and L(all) are in
//   every chain). This keeps a chain the unit of the data both for the fit and for the bootstrap,
//   and the heavy weight on the two end points pulls the fit towards L(all) − L(∅) = Σ(a + b),
//   i.e. towards efficiency of the fitted Shapley values.
// * The normal equations are solved by Cholesky (LAPACK dpotrf/dpotrs from OpenBLAS); the rank of
//   the design by pivoted Cholesky (dpstrf) of the unpenalized XᵀX, whose entries are point
//   counts, so exact in floating point: an exactly singular design shows up as pivots at
//   round-off level, well below the tolerance.
// * The bootstrap resamples sampling units (chains, or antithetic pairs) with replacement; the
//   replicate's normal matrix is built with the units' multiplicities as weights.
#include "calib/shapley.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "mpq/error.h"

// LAPACK (Fortran ABI, 32-bit integers as in Debian's OpenBLAS; the trailing size_t is the hidden
// length of the character argument). No lapacke.h is installed, so we declare what we use.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda,
             double* b, const int* ldb, int* info, size_t uplo_len);
void dpstrf_(const char* uplo, const int* n, double* a, const int* lda, int* piv, int* rank,
             const double* tol, double* work, int* info, size_t uplo_len);
}

namespace mpq {
namespace {

constexpr const char* kWhere = "shapley";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Relative ridge used for bootstrap replicates that do not identify the model when the caller
// asked for plain least squares (ridge = 0): the main fit is identified (else it is an error),
// a replicate with few distinct units may not be.
constexpr double kFallbackRidge = 1e-9;
// Pivots of the pivoted Cholesky below this fraction of the largest diagonal entry count as zero.
constexpr double kRankTolerance = 1e-10;

// SplitMix64 finalizer: a bijective 64-bit mixer, used to derive independent streams from
// (seed, index) pairs so that results do not depend on how many draws are made or in which order.
uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Small deterministic generator (SplitMix64 stream). std:: distributions are not specified
// bit-exactly across standard libraries, so bounded draws are done here (Lemire's method).
class Rng {
 public:
  explicit Rng(uint64_t state) : state_(state) {}
  uint64_t next() { return mix64(state_ += 0x9E3779B97F4A7C15ULL); }
  // Uniform in [0, bound), bound ≥ 1, without modulo bias.
  uint64_t below(uint64_t bound) {
    __uint128_t m = static_cast<__uint128_t>(next()) * bound;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < bound) {
      const uint64_t threshold = -bound % bound;
      while (low < threshold) {
        m = static_cast<__uint128_t>(next()) * bound;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

 private:
  uint64_t state_;
};

Rng stream(uint64_t seed, uint64_t index) { return Rng(mix64(mix64(seed) ^ mix64(~index))); }

// ----------------------------------------------------------------------------- validation

void validate_chains(int n, const std::vector<ShapleyChain>& chains, bool antithetic) {
  check(n >= 1, kWhere, "need at least one player (n = " + std::to_string(n) + ")");
  check(!chains.empty(), kWhere, "no chains to estimate from");
  std::vector<uint8_t> seen(n);
  for (size_t c = 0; c < chains.size(); ++c) {
    const auto& chain = chains[c];
    const std::string which = "chain " + std::to_string(c);
    check(chain.order.size() == static_cast<size_t>(n), kWhere,
          which + ": order has " + std::to_string(chain.order.size()) + " players, expected " +
              std::to_string(n));
    check(chain.cost.size() == static_cast<size_t>(n) + 1, kWhere,
          which + ": " + std::to_string(chain.cost.size()) + " costs, expected n+1 = " +
              std::to_string(n + 1));
    std::fill(seen.begin(), seen.end(), 0);
    for (int player : chain.order) {
      check(player >= 0 && player < n && !seen[player], kWhere,
            which + ": order is not a permutation of 0.." + std::to_string(n - 1) +
                " (bad or repeated player " + std::to_string(player) + ")");
      seen[player] = 1;
    }
    for (double y : chain.cost)
      check(std::isfinite(y), kWhere, which + ": non-finite cost");
    if (antithetic && c % 2 == 1) {
      const auto& previous = chains[c - 1].order;
      check(std::equal(chain.order.begin(), chain.order.end(), previous.rbegin()), kWhere,
            which + ": not the reverse of chain " + std::to_string(c - 1) +
                " (antithetic pairs expected; set antithetic = false for independent chains)");
    }
  }
}

// Sampling units: independent groups of chains (an antithetic pair, or one chain).
std::vector<std::vector<int>> sampling_units(int64_t chain_count, bool antithetic,
                                             bool keep_unpaired) {
  std::vector<std::vector<int>> units;
  const int step = antithetic ? 2 : 1;
  int64_t c = 0;
  for (; c + step <= chain_count; c += step) {
    units.push_back({static_cast<int>(c)});
    if (antithetic) units.back().push_back(static_cast<int>(c + 1));
  }
  if (keep_unpaired && c < chain_count) units.push_back({static_cast<int>(c)});
  return units;
}

// ----------------------------------------------------------------------------- permutation means

struct PermutationMeans {
  std::vector<double> value, std_error;
  int64_t units = 0;
};

// Means of the marginal contributions over the first `chain_count` chains, grouped in units.
PermutationMeans permutation_means(int n, const std::vector<ShapleyChain>& chains,
                                   int64_t chain_count, bool antithetic) {
  const auto units = sampling_units(chain_count, antithetic, /*keep_unpaired=*/false);
  PermutationMeans out;
  out.units = static_cast<int64_t>(units.size());
  out.value.assign(n, 0.0);
  out.std_error.assign(n, kNaN);
  if (units.empty()) return out;
  // Per unit, the mean marginal of each player over the unit's chains.
  std::vector<std::vector<double>> unit_marginal(units.size(), std::vector<double>(n, 0.0));
  for (size_t u = 0; u < units.size(); ++u) {
    for (int c : units[u]) {
      const auto& chain = chains[c];
      for (int j = 0; j < n; ++j)
        unit_marginal[u][chain.order[j]] += (chain.cost[j + 1] - chain.cost[j]) / units[u].size();
    }
  }
  const double count = static_cast<double>(units.size());
  for (int i = 0; i < n; ++i) {
    double sum = 0;
    for (const auto& m : unit_marginal) sum += m[i];
    const double mean = sum / count;
    out.value[i] = mean;
    if (units.size() >= 2) {
      double squares = 0;  // two-pass variance: the marginals can share a large offset
      for (const auto& m : unit_marginal) squares += (m[i] - mean) * (m[i] - mean);
      out.std_error[i] = std::sqrt(squares / (count - 1) / count);
    }
  }
  return out;
}

// ----------------------------------------------------------------------------- quadratic fit

// Which unknowns the model has: θ[0] = L0, θ[1 + i] = a_i, θ[1 + n + q] = b of pair q.
struct FitModel {
  int n = 0;
  int window = -1;                         // as ShapleyEstimate::interaction_window
  std::vector<std::pair<int, int>> pairs;  // fitted pairs (i < j)
  std::vector<int> pair_index;             // [n*n] → q, or −1 when the pair is not fitted
  int64_t parameters() const { return 1 + n + static_cast<int64_t>(pairs.size()); }
  int pair_feature(int i, int j) const {
    const int q = pair_index[static_cast<size_t>(i) * n + j];
    return q < 0 ? -1 : 1 + n + q;
  }
};

FitModel make_fit_model(int n, int window) {
  FitModel model;
  model.n = n;
  model.window = window < 0 ? -1 : window;
  model.pair_index.assign(static_cast<size_t>(n) * n, -1);
  if (window < 0) return model;
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (window == 0 || j - i <= window) {
        model.pair_index[static_cast<size_t>(i) * n + j] = static_cast<int>(model.pairs.size());
        model.pair_index[static_cast<size_t>(j) * n + i] = static_cast<int>(model.pairs.size());
        model.pairs.emplace_back(i, j);
      }
  return model;
}

// A chain seen by the fit: its features in birth order (birth = number of players low when the
// feature turns on) and the suffix sums of its costs.
struct ChainDesign {
  std::vector<int> feature, birth;
  std::vector<double> cost_suffix;  // [n+2]: Σ_{k ≥ t} cost[k]
};

ChainDesign chain_design(const FitModel& model, const ShapleyChain& chain) {
  const int n = model.n;
  ChainDesign d;
  d.feature.push_back(0);  // intercept: on from the empty set
  d.birth.push_back(0);
  for (int j = 0; j < n; ++j) {
    const int player = chain.order[j];
    d.feature.push_back(1 + player);
    d.birth.push_back(j + 1);
    for (int m = 0; m < j; ++m) {
      const int f = model.pair_feature(player, chain.order[m]);
      if (f >= 0) {
        d.feature.push_back(f);
        d.birth.push_back(j + 1);
      }
    }
  }
  d.cost_suffix.assign(n + 2, 0.0);
  for (int k = n; k >= 0; --k) d.cost_suffix[k] = d.cost_suffix[k + 1] + chain.cost[k];
  return d;
}

// Normal equations Σ_chains weight·(XᵀX, Xᵀy), upper triangle (column-major) of G filled.
void normal_equations(int n, int64_t p, const std::vector<ChainDesign>& designs,
                      const std::vector<double>& weight, std::vector<double>& G,
                      std::vector<double>& r) {
  G.assign(static_cast<size_t>(p * p), 0.0);
  r.assign(static_cast<size_t>(p), 0.0);
  for (size_t c = 0; c < designs.size(); ++c) {
    if (weight[c] == 0) continue;
    const auto& d = designs[c];
    const size_t m = d.feature.size();
    for (size_t a = 0; a < m; ++a) {
      // Features are listed in non-decreasing birth, so max(birth_a, birth_b) = birth_a for b ≤ a.
      const double count = weight[c] * (n + 1 - d.birth[a]);
      const int64_t fa = d.feature[a];
      r[fa] += weight[c] * d.cost_suffix[d.birth[a]];
      for (size_t b = 0; b <= a; ++b) {
        const int64_t fb = d.feature[b];
        // Column-major upper triangle: element (min, max) at min + max·p.
        G[fa < fb ? fa + fb * p : fb + fa * p] += count;
      }
    }
  }
}

// Numerical rank of the symmetric positive semi-definite G (upper triangle), by pivoted Cholesky.
int64_t design_rank(std::vector<double> G, int64_t p) {
  double largest = 0;
  for (int64_t i = 0; i < p; ++i) largest = std::max(largest, G[i + i * p]);
  if (largest <= 0) return 0;
  const int dim = static_cast<int>(p);
  std::vector<int> pivots(p);
  std::vector<double> work(2 * p);
  int rank = 0, info = 0;
  const double tol = kRankTolerance * largest;
  dpstrf_("U", &dim, G.data(), &dim, pivots.data(), &rank, &tol, work.data(), &info, 1);
  // info < 0 (an invalid argument) cannot happen with these arguments; count it as rank 0
  // rather than throw, since this also runs inside the parallel bootstrap loop.
  if (info < 0) return 0;
  return info == 0 ? p : rank;
}

// The absolute ridge for a relative one: relative × mean diagonal of G over the b columns.
double absolute_ridge(double relative, const FitModel& model, const std::vector<double>& G) {
  const int64_t p = model.parameters();
  const int64_t first_pair = 1 + model.n;
  if (relative <= 0 || p == first_pair) return 0;
  double sum = 0;
  for (int64_t f = first_pair; f < p; ++f) sum += G[f + f * p];
  return relative * sum / static_cast<double>(p - first_pair);
}

// Solves (G + λ·diag(0, 0…, 1…)) θ = r with λ on the b unknowns. False if not positive definite.
bool solve_normal(const FitModel& model, std::vector<double> G, std::vector<double> r,
                  double ridge, std::vector<double>& theta) {
  const int64_t p = model.parameters();
  for (int64_t f = 1 + model.n; f < p; ++f) G[f + f * p] += ridge;
  const int dim = static_cast<int>(p), one = 1;
  int info = 0;
  dpotrf_("U", &dim, G.data(), &dim, &info, 1);
  if (info != 0) return false;
  dpotrs_("U", &dim, &one, G.data(), &dim, r.data(), &dim, &info, 1);
  if (info != 0) return false;
  theta = std::move(r);
  return true;
}

// Shapley values of the fitted quadratic: a_i + ½ Σ_j b_ij.
std::vector<double> fitted_values(const FitModel& model, const std::vector<double>& theta) {
  std::vector<double> phi(model.n);
  for (int i = 0; i < model.n; ++i) phi[i] = theta[1 + i];
  for (size_t q = 0; q < model.pairs.size(); ++q) {
    const double half = 0.5 * theta[1 + model.n + q];
    phi[model.pairs[q].first] += half;
    phi[model.pairs[q].second] += half;
  }
  return phi;
}

std::vector<std::vector<double>> pair_matrix(const FitModel& model, const std::vector<double>& per_pair) {
  std::vector<std::vector<double>> m(model.n, std::vector<double>(model.n, 0.0));
  for (size_t q = 0; q < model.pairs.size(); ++q) {
    const auto [i, j] = model.pairs[q];
    m[i][j] = m[j][i] = per_pair[q];
  }
  return m;
}

std::string chains_needed_hint(const FitModel& model) {
  // Each chain adds at most n−1 new points (L(∅) and L(all) are shared), so p unknowns need at
  // least ⌈(p − 2)/(n − 1)⌉ independent chains. An antithetic pair adds only about n−1 new
  // equations, not 2(n−1): the pair's mean marginal of player i is a_i + ½ Σ_j b_ij whatever the
  // permutation, so after the first pair those n combinations are already known.
  const int64_t n = model.n;
  const int64_t minimum = n > 1 ? (model.parameters() - 2 + n - 2) / (n - 1) : 1;
  return "at least " + std::to_string(minimum) + " independent chains (about twice as many in " +
         "antithetic pairs) are needed for " + std::to_string(model.parameters()) +
         " unknowns, more for a stable fit";
}

// Fills the fit part of `est` (linear, interaction, fitted_value, their std errors, quality).
void fit_quadratic(int n, const std::vector<ShapleyChain>& chains, const ShapleyOptions& options,
                   ShapleyEstimate& est) {
  int window = options.interaction_window;
  if (n < 2) window = -1;
  FitModel model = make_fit_model(n, window);
  if (model.parameters() > options.max_fit_parameters && !model.pairs.empty()) {
    est.fit_note = "pairwise fit skipped: " + std::to_string(model.parameters()) +
                   " unknowns exceed max_fit_parameters = " +
                   std::to_string(options.max_fit_parameters) +
                   " (use interaction_window to fit neighbouring pairs only); linear fit";
    model = make_fit_model(n, -1);
  } else if (options.interaction_window < 0 && n >= 2) {
    est.fit_note = "no pairs fitted (interaction_window < 0): linear fit";
  }
  const int64_t p = model.parameters();
  est.interaction_window = model.window;
  est.fit_parameters = p;

  std::vector<ChainDesign> designs;
  designs.reserve(chains.size());
  for (const auto& chain : chains) designs.push_back(chain_design(model, chain));

  std::vector<double> G, r;
  normal_equations(n, p, designs, std::vector<double>(chains.size(), 1.0), G, r);
  est.fit_rank = design_rank(G, p);
  const bool identified = est.fit_rank == p;
  if (!identified) {
    check(options.ridge > 0, kWhere,
          "the chains do not identify the model: design rank " + std::to_string(est.fit_rank) +
              " of " + std::to_string(p) + " unknowns (" + chains_needed_hint(model) +
              "); use a ridge > 0 or more chains");
    if (!est.fit_note.empty()) est.fit_note += "; ";
    est.fit_note += "design rank " + std::to_string(est.fit_rank) + " of " + std::to_string(p) +
                    " unknowns: the chains do not identify every interaction (" +
                    chains_needed_hint(model) +
                    "); unidentified directions take the smallest-interaction (ridge) solution";
  }
  est.fit_ridge = absolute_ridge(options.ridge, model, G);
  std::vector<double> theta;
  check(solve_normal(model, G, r, est.fit_ridge, theta), kWhere,
        "the normal equations of the fit are not positive definite (" + chains_needed_hint(model) + ")");

  est.fit_intercept = theta[0];
  est.linear.assign(theta.begin() + 1, theta.begin() + 1 + n);
  if (!model.pairs.empty())
    est.interaction = pair_matrix(model, std::vector<double>(theta.begin() + 1 + n, theta.end()));
  est.fitted_value = fitted_values(model, theta);

  // Quality over all chain points: predictions grow along a chain as features are born.
  double ss_res = 0, sum = 0, sum_sq = 0;
  int64_t points = 0;
  for (size_t c = 0; c < chains.size(); ++c) {
    const auto& d = designs[c];
    double prediction = 0;
    size_t next = 0;
    for (int k = 0; k <= n; ++k) {
      while (next < d.feature.size() && d.birth[next] == k) prediction += theta[d.feature[next++]];
      const double y = chains[c].cost[k];
      ss_res += (y - prediction) * (y - prediction);
      sum += y;
      sum_sq += y * y;
      ++points;
    }
  }
  const double ss_tot = sum_sq - sum * sum / points;
  est.fit_rmse = std::sqrt(ss_res / points);
  est.fit_r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : kNaN;

  // Bootstrap over sampling units (a trailing unpaired chain is a unit of its own here).
  const auto units = sampling_units(static_cast<int64_t>(chains.size()), options.antithetic,
                                    /*keep_unpaired=*/true);
  const int replicates = options.bootstrap_samples;
  if (replicates <= 0 || units.size() < 2) return;
  std::vector<std::vector<double>> replicate_theta(replicates), replicate_phi(replicates);
  std::vector<uint8_t> rank_deficient(replicates, 0);
  std::vector<uint8_t> failed(replicates, 0);
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < replicates; ++b) {
    Rng rng = stream(options.bootstrap_seed, static_cast<uint64_t>(b));
    std::vector<double> weight(chains.size(), 0.0);
    for (size_t draw = 0; draw < units.size(); ++draw)
      for (int c : units[rng.below(units.size())]) weight[c] += 1;
    std::vector<double> Gb, rb, theta_b;
    normal_equations(n, p, designs, weight, Gb, rb);
    double ridge = absolute_ridge(options.ridge, model, Gb);
    if (design_rank(Gb, p) < p) {
      rank_deficient[b] = 1;
      if (ridge == 0) ridge = absolute_ridge(kFallbackRidge, model, Gb);
    }
    if (!solve_normal(model, std::move(Gb), std::move(rb), ridge, theta_b)) {
      failed[b] = 1;  // only possible for a linear fit from a degenerate resample
      continue;
    }
    replicate_phi[b] = fitted_values(model, theta_b);
    replicate_theta[b] = std::move(theta_b);
  }

  // Standard deviation of each quantity over the successful replicates, in replicate order.
  std::vector<int> good;
  for (int b = 0; b < replicates; ++b)
    if (!failed[b]) good.push_back(b);
  est.bootstrap_samples = static_cast<int64_t>(good.size());
  est.bootstrap_rank_deficient = std::count(rank_deficient.begin(), rank_deficient.end(), 1);
  if (est.bootstrap_rank_deficient * 20 > replicates) {
    // Such replicates fall back on the ridge in the directions they do not identify, so their
    // spread mixes sampling noise with "not measured": the std errors of a and b are inflated.
    if (!est.fit_note.empty()) est.fit_note += "; ";
    est.fit_note += std::to_string(est.bootstrap_rank_deficient) + " of " +
                    std::to_string(replicates) +
                    " bootstrap replicates do not identify the model: the std errors of the fit "
                    "are inflated by unidentified directions (more chains fix this)";
  }
  if (good.size() < 2) return;
  auto spread = [&](const std::vector<std::vector<double>>& samples, size_t index) {
    double mean = 0;
    for (int b : good) mean += samples[b][index];
    mean /= good.size();
    double squares = 0;
    for (int b : good) squares += (samples[b][index] - mean) * (samples[b][index] - mean);
    return std::sqrt(squares / (good.size() - 1));
  };
  est.linear_std_error.resize(n);
  est.fitted_value_std_error.resize(n);
  for (int i = 0; i < n; ++i) {
    est.linear_std_error[i] = spread(replicate_theta, 1 + i);
    est.fitted_value_std_error[i] = spread(replicate_phi, i);
  }
  if (!model.pairs.empty()) {
    std::vector<double> pair_se(model.pairs.size());
    for (size_t q = 0; q < model.pairs.size(); ++q) pair_se[q] = spread(replicate_theta, 1 + n + q);
    est.interaction_std_error = pair_matrix(model, pair_se);
  }
}

}  // namespace

// ----------------------------------------------------------------------------- public API

std::vector<int> shapley_permutation(int n, uint64_t seed, int64_t k, bool antithetic) {
  check(n >= 1, kWhere, "permutation of " + std::to_string(n) + " players");
  check(k >= 0, kWhere, "permutation index " + std::to_string(k) + " is negative");
  const bool reversed = antithetic && k % 2 == 1;
  const int64_t drawn = reversed ? k - 1 : k;
  Rng rng = stream(seed, static_cast<uint64_t>(drawn));
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int i = n - 1; i > 0; --i)  // Fisher–Yates
    std::swap(order[i], order[rng.below(static_cast<uint64_t>(i) + 1)]);
  if (reversed) std::reverse(order.begin(), order.end());
  return order;
}

ShapleyEstimate estimate_shapley(int n, const std::vector<ShapleyChain>& chains,
                                 const ShapleyOptions& options) {
  check(options.ridge >= 0 && std::isfinite(options.ridge), kWhere,
        "ridge must be finite and >= 0 (got " + std::to_string(options.ridge) + ")");
  validate_chains(n, chains, options.antithetic);
  ShapleyEstimate est;
  est.n = n;
  est.chains = static_cast<int64_t>(chains.size());
  est.evaluations = n >= 2 ? est.chains * (n - 1) + 2 : 2;
  for (const auto& chain : chains) {
    est.base_cost += chain.cost.front() / chains.size();
    est.full_cost += chain.cost.back() / chains.size();
  }
  {
    // Distinct subsets by Zobrist hashing (random 64-bit key per player, XOR over the set).
    std::vector<uint64_t> key(n);
    Rng rng(0x2b992ddfa23249d6ULL);
    for (auto& k : key) k = rng.next();
    std::unordered_set<uint64_t> seen;
    for (const auto& chain : chains) {
      uint64_t h = 0;
      seen.insert(h);
      for (int player : chain.order) seen.insert(h ^= key[player]);
    }
    est.distinct_points = static_cast<int64_t>(seen.size());
  }

  const auto means = permutation_means(n, chains, est.chains, options.antithetic);
  est.value = means.value;
  est.value_std_error = means.std_error;
  est.value_units = means.units;
  const int64_t unit_size = options.antithetic ? 2 : 1;
  for (int64_t used = 2; used <= est.chains; used *= 2) {
    if (used / unit_size < 2) continue;
    const auto partial = permutation_means(n, chains, used, options.antithetic);
    est.std_error_curve.emplace_back(
        used, std::accumulate(partial.std_error.begin(), partial.std_error.end(), 0.0) / n);
  }
  if (means.units >= 2 && (est.std_error_curve.empty() || est.std_error_curve.back().first != est.chains))
    est.std_error_curve.emplace_back(
        est.chains, std::accumulate(means.std_error.begin(), means.std_error.end(), 0.0) / n);

  fit_quadratic(n, chains, options, est);
  return est;
}

std::vector<ShapleyChain> run_shapley_chains(
    int n, const std::function<double(const std::vector<uint8_t>&)>& cost, uint64_t seed,
    int64_t first, int64_t count, bool antithetic,
    const std::function<void(const ShapleyChain&)>& on_chain) {
  check(n >= 1, kWhere, "need at least one player (n = " + std::to_string(n) + ")");
  check(first >= 0 && count >= 0, kWhere, "bad chain range (first " + std::to_string(first) +
                                              ", count " + std::to_string(count) + ")");
  std::vector<ShapleyChain> chains;
  chains.reserve(static_cast<size_t>(count));
  // L(∅) and L(all) are the same set in every chain: measured once (lazily, in chain order).
  double empty_cost = kNaN, full_cost = kNaN;
  bool have_empty = false, have_full = false;
  std::vector<uint8_t> x(n);
  for (int64_t k = first; k < first + count; ++k) {
    ShapleyChain chain;
    chain.order = shapley_permutation(n, seed, k, antithetic);
    chain.cost.resize(n + 1);
    std::fill(x.begin(), x.end(), 0);
    if (!have_empty) {
      empty_cost = cost(x);
      have_empty = true;
    }
    chain.cost[0] = empty_cost;
    for (int j = 0; j < n; ++j) {
      x[chain.order[j]] = 1;
      if (j == n - 1 && have_full) {
        chain.cost[j + 1] = full_cost;
        continue;
      }
      chain.cost[j + 1] = cost(x);
    }
    if (!have_full) {
      full_cost = chain.cost[n];
      have_full = true;
    }
    if (on_chain) on_chain(chain);
    chains.push_back(std::move(chain));
  }
  return chains;
}

ExactShapley exact_shapley(int n, const std::function<double(const std::vector<uint8_t>&)>& cost) {
  check(n >= 1 && n <= 20, kWhere,
        "exact Shapley values enumerate 2^n subsets: need 1 <= n <= 20 (got " + std::to_string(n) + ")");
  const uint32_t subsets = 1u << n;
  std::vector<double> v(subsets);
  // Gray-code order: consecutive subsets differ by one player (cheap for a caching oracle).
  std::vector<uint8_t> x(n, 0);
  v[0] = cost(x);
  for (uint32_t g = 1; g < subsets; ++g) {
    const int flipped = __builtin_ctz(g);
    x[flipped] ^= 1;
    const uint32_t mask = g ^ (g >> 1);
    v[mask] = cost(x);
  }
  // Weights |S|!(n−|S|−1)!/n! = 1/(n·C(n−1,s)) and |S|!(n−|S|−2)!/(n−1)! = 1/((n−1)·C(n−2,s)).
  auto binomials = [](int m) {
    std::vector<double> row(m + 1, 1.0);
    for (int s = 1; s <= m; ++s) row[s] = row[s - 1] * (m - s + 1) / s;
    return row;
  };
  const auto c1 = binomials(n - 1);
  const auto c2 = binomials(std::max(n - 2, 0));
  ExactShapley out;
  out.value.assign(n, 0.0);
  out.interaction.assign(n, std::vector<double>(n, 0.0));
  for (int i = 0; i < n; ++i) {
    const uint32_t bit_i = 1u << i;
    double sum = 0;
    for (uint32_t s = 0; s < subsets; ++s) {
      if (s & bit_i) continue;
      sum += (v[s | bit_i] - v[s]) / (n * c1[__builtin_popcount(s)]);
    }
    out.value[i] = sum;
  }
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      const uint32_t bi = 1u << i, bj = 1u << j;
      double sum = 0;
      for (uint32_t s = 0; s < subsets; ++s) {
        if (s & (bi | bj)) continue;
        const double delta = v[s | bi | bj] - v[s | bi] - v[s | bj] + v[s];
        sum += delta / ((n - 1) * c2[__builtin_popcount(s)]);
      }
      out.interaction[i][j] = out.interaction[j][i] = sum;
    }
  }
  return out;
}

}  // namespace mpq

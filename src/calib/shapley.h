// Shapley values and pairwise interactions of a loss over "players" (decoder layers or single
// tensors) that each either keep a high weight format (x_i = 0) or move to a low one (x_i = 1),
// estimated by progressive quantization along sampled permutations (IMPQ-style SPQE).
//
// Pure math: the loss is an oracle L(x), x ∈ {0,1}^n, supplied by the caller (in `mpq analyze`
// the mean KL divergence of the partly quantized model against the unquantized one). One chain
// along permutation π measures L(∅), L({π1}), L({π1,π2}), …, L(all): n+1 points whose successive
// differences are one marginal contribution per player. From a set of chains we estimate
//   * value      φ_i = mean over chains of L(S∪i) − L(S) (the Monte-Carlo permutation estimate of
//                the Shapley value; exact for every game as the number of chains grows);
//   * a quadratic pseudo-Boolean fit L(x) ≈ L0 + Σ a_i x_i + Σ_{i<j} b_ij x_i x_j to all measured
//                points (least squares, tiny relative ridge on b). For a quadratic game the
//                Shapley value is a_i + ½ Σ_j b_ij and b_ij is the Shapley interaction index, so
//                the fit is a second estimate of φ, and (a, b) is what the planner's BQP needs.
// Standard errors: permutation means from the spread over independent sampling units (a chain,
// or an antithetic pair of chains); the fit from a bootstrap over the same units. See
// docs/SENSITIVITY.md ("Shapley values") for the reasoning, costs and validation.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mpq {

// Permutation k (k = 0, 1, 2, …) of the players 0..n−1 for `seed`. Deterministic and a function
// of (n, seed, k) only — not of how many permutations are drawn — so an interrupted run resumes
// with the same permutations. With `antithetic`, odd k is the reverse of permutation k−1 (even k
// is the same permutation as without `antithetic`). Throws mpq::Error for n < 1 or k < 0.
std::vector<int> shapley_permutation(int n, uint64_t seed, int64_t k, bool antithetic);

// One chain of progressive quantization.
struct ShapleyChain {
  std::vector<int> order;    // a permutation of 0..n−1: the order the players move to low
  std::vector<double> cost;  // [n+1]: cost[j] = L(first j players of `order` low), j = 0..n
};

struct ShapleyOptions {
  // Chains come in antithetic pairs: chain 2m+1 is chain 2m reversed (checked). A pair is then
  // one sampling unit for the standard errors (its two halves are not independent). A trailing
  // unpaired chain (odd count) enters the fit but not the permutation means.
  bool antithetic = true;
  // Ridge on the interactions: λ Σ b_ij² is added to the least-squares objective with
  // λ = ridge × (mean diagonal of the normal matrix over the b columns), i.e. relative to how
  // many points each pair was measured at. It keeps the solve well-posed when the chains do not
  // identify every b (then the unidentified directions get the smallest-interaction solution,
  // and fit_rank < fit_parameters says so); on identified data its bias is ~ridge relative.
  // 0 = plain least squares (then an unidentified design is an error, and bootstrap replicates
  // that do not identify the model use 1e-9). Must be ≥ 0. Identification needs at least
  // ⌈(p − 2)/(n − 1)⌉ independent chains (16 for n = 30 with all pairs) and about twice as many
  // in antithetic pairs, whose two halves share the combinations a_i + ½ Σ_j b_ij.
  double ridge = 1e-9;
  // Which pairs are fitted: 0 = all pairs; w > 0 = only pairs with |i − j| ≤ w (players are in
  // model order, so these are neighbours: useful for tensor players, n up to ~210); w < 0 = no
  // pairs (a linear fit L0 + Σ a_i x_i). Pairs that are not fitted have b_ij = 0.
  int interaction_window = 0;
  // If the selected model has more unknowns than this, the pairs are dropped (linear fit) and
  // fit_note says so: the normal equations cost O(p³) per solve and O(p²) memory per thread.
  int64_t max_fit_parameters = 2048;
  // Bootstrap over sampling units for the std errors of the fit (0 = none: the fit's std-error
  // vectors are left empty). Resample b uses an RNG seeded from (bootstrap_seed, b) only, so the
  // result does not depend on the thread count.
  int bootstrap_samples = 200;
  uint64_t bootstrap_seed = 0x5eed5eedULL;
};

struct ShapleyEstimate {
  int n = 0;  // players

  // Permutation estimate (mean marginal contribution). Efficient by construction: Σ value =
  // mean over units of L(all) − L(∅).
  std::vector<double> value;             // [n]
  std::vector<double> value_std_error;   // [n] sd over units / √units; NaN with fewer than 2 units
  int64_t value_units = 0;               // sampling units behind value (chains, or pairs)

  // Quadratic fit L(x) ≈ fit_intercept + Σ a_i x_i + Σ_{i<j} b_ij x_i x_j.
  double fit_intercept = 0;                                  // L0 of the fit
  std::vector<double> linear;                                // [n] a_i
  std::vector<std::vector<double>> interaction;              // [n][n] b_ij, symmetric, diagonal 0;
                                                             // empty when no pairs were fitted
  std::vector<double> fitted_value;                          // [n] a_i + ½ Σ_j b_ij
  // Bootstrap std errors (sd of the bootstrap replicates); empty when bootstrap_samples = 0 or
  // with fewer than 2 units. Pairs outside the window have std error 0 (not estimated).
  std::vector<double> linear_std_error;                      // [n]
  std::vector<std::vector<double>> interaction_std_error;    // [n][n] (empty with interaction)
  std::vector<double> fitted_value_std_error;                // [n]
  int64_t bootstrap_samples = 0;         // replicates behind the std errors above
  int64_t bootstrap_rank_deficient = 0;  // replicates whose design did not identify the model
                                         // (solved with the ridge; their spread inflates the std
                                         // errors of a and b; > 5% is noted in fit_note)

  // Fit quality and identification.
  int interaction_window = 0;   // pairs fitted: 0 all, w > 0 |i−j| ≤ w, −1 none
  int64_t fit_parameters = 0;   // unknowns: 1 + n + number of fitted pairs
  int64_t fit_rank = 0;         // numerical rank of the design (= fit_parameters: identified)
  double fit_ridge = 0;         // the absolute λ used
  double fit_r2 = 0;            // 1 − SS_res/SS_tot over all chain points (NaN if SS_tot = 0)
  double fit_rmse = 0;          // √(SS_res / points)
  std::string fit_note;         // empty, or why the fit is restricted / not fully identified

  // Data.
  double base_cost = 0;         // mean L(∅) over the chains
  double full_cost = 0;         // mean L(all) over the chains
  int64_t chains = 0;           // chains used
  int64_t evaluations = 0;      // oracle calls run_shapley_chains makes for them in one run:
                                // chains·(n−1) + 2 (L(∅) and L(all) are measured once)
  int64_t distinct_points = 0;  // distinct subsets among all chain points

  // (chains used, mean over players of value_std_error) for the first 2, 4, 8, … chains (4, 8,
  // 16, … with antithetic pairs: a point needs ≥ 2 units) and for all chains: how the std error
  // shrinks with the budget (~1/√chains).
  std::vector<std::pair<int64_t, double>> std_error_curve;
};

// Estimates from measured chains (any number ≥ 1, each of length n+1 over a permutation of
// 0..n−1). Throws mpq::Error for malformed chains (wrong length, order not a permutation,
// non-finite cost, broken antithetic pairs), a negative ridge, or a design that does not
// identify the model when ridge = 0.
ShapleyEstimate estimate_shapley(int n, const std::vector<ShapleyChain>& chains,
                                 const ShapleyOptions& options = {});

// Draws permutations k = first .. first+count−1 (shapley_permutation with `seed`, `antithetic`)
// and measures each chain with cost(x) (x[i] = 1: player i low). Calls come in chain order, each
// differing from the previous one by one player except at chain starts; L(∅) and L(all) are the
// same for every chain, so they are measured once per call of this function (the cost must be
// deterministic). `on_chain` is called after each finished chain (progress, checkpointing).
std::vector<ShapleyChain> run_shapley_chains(
    int n, const std::function<double(const std::vector<uint8_t>&)>& cost, uint64_t seed,
    int64_t first, int64_t count, bool antithetic,
    const std::function<void(const ShapleyChain&)>& on_chain = {});

// Exact Shapley values and pairwise Shapley interaction indices by enumerating all 2^n subsets
// (1 ≤ n ≤ 20; cost is called 2^n times in Gray-code order, so consecutive calls differ by one
// player). interaction[i][j] = Σ_{S ⊆ N∖{i,j}} |S|!(n−|S|−2)!/(n−1)! ·
// [L(S∪ij) − L(S∪i) − L(S∪j) + L(S)], symmetric with diagonal 0.
struct ExactShapley {
  std::vector<double> value;                      // [n]
  std::vector<std::vector<double>> interaction;   // [n][n]
};
ExactShapley exact_shapley(int n, const std::function<double(const std::vector<uint8_t>&)>& cost);

}  // namespace mpq

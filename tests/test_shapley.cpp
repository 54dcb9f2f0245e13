// Shapley estimation (calib/shapley.h): permutations, the exact enumeration on games whose values
// are known by hand, the quadratic fit on exactly quadratic games, the permutation estimate
// against exact values on a cubic game (error within the reported std errors), the shrinking of
// the std errors with the number of chains, the chain driver's call pattern, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "calib/shapley.h"
#include "mpq/error.h"

namespace {

using Cost = std::function<double(const std::vector<uint8_t>&)>;

// L(x) = c0 + Σ a_i x_i + Σ_{i<j} b_ij x_i x_j + Σ_{i<j<k} t_ijk x_i x_j x_k.
struct PolynomialGame {
  int n = 0;
  double c0 = 0;
  std::vector<double> a;
  std::vector<std::vector<double>> b;                // symmetric, diagonal 0
  std::vector<std::tuple<int, int, int, double>> t;  // cubic terms

  double operator()(const std::vector<uint8_t>& x) const {
    double y = c0;
    for (int i = 0; i < n; ++i) {
      if (!x[i]) continue;
      y += a[i];
      for (int j = i + 1; j < n; ++j)
        if (x[j]) y += b[i][j];
    }
    for (const auto& [i, j, k, w] : t)
      if (x[i] && x[j] && x[k]) y += w;
    return y;
  }
};

PolynomialGame random_game(int n, uint32_t seed, int cubic_terms) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  PolynomialGame g;
  g.n = n;
  g.c0 = 0.01 * unit(rng);
  g.a.resize(n);
  // Positive, layer-like main effects of different sizes; interactions of either sign.
  for (auto& v : g.a) v = 0.5 + std::abs(unit(rng));
  g.b.assign(n, std::vector<double>(n, 0.0));
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) g.b[i][j] = g.b[j][i] = 0.3 * unit(rng);
  for (int q = 0; q < cubic_terms; ++q) {
    std::vector<int> players(n);
    std::iota(players.begin(), players.end(), 0);
    std::shuffle(players.begin(), players.end(), rng);
    g.t.emplace_back(players[0], players[1], players[2], 0.8 * unit(rng));
  }
  return g;
}

std::vector<mpq::ShapleyChain> chains_for(const PolynomialGame& game, uint64_t seed, int64_t count,
                                          bool antithetic) {
  return mpq::run_shapley_chains(game.n, Cost(game), seed, 0, count, antithetic);
}

bool is_permutation_of_n(const std::vector<int>& order, int n) {
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < n; ++i)
    if (sorted[i] != i) return false;
  return static_cast<int>(order.size()) == n;
}

// ------------------------------------------------------------------------------ permutations

TEST(ShapleyPermutation, DeterministicValidAndIndependentOfCount) {
  for (int n : {1, 2, 7, 30, 210}) {
    for (int64_t k = 0; k < 20; ++k) {
      const auto order = mpq::shapley_permutation(n, 42, k, false);
      EXPECT_TRUE(is_permutation_of_n(order, n)) << "n " << n << " k " << k;
      EXPECT_EQ(order, mpq::shapley_permutation(n, 42, k, false));
    }
  }
  // A run of chains first..first+count−1 draws exactly the permutations of a longer run.
  auto costless = [](const std::vector<uint8_t>&) { return 0.0; };
  const auto all = mpq::run_shapley_chains(9, costless, 5, 0, 10, true);
  const auto tail = mpq::run_shapley_chains(9, costless, 5, 6, 4, true);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(all[6 + c].order, tail[c].order);
  // Different seeds and different k give different permutations (n = 30: collisions are
  // astronomically unlikely).
  EXPECT_NE(mpq::shapley_permutation(30, 1, 0, false), mpq::shapley_permutation(30, 2, 0, false));
  EXPECT_NE(mpq::shapley_permutation(30, 1, 0, false), mpq::shapley_permutation(30, 1, 1, false));
}

TEST(ShapleyPermutation, AntitheticPairsAreReverses) {
  for (int64_t k = 0; k < 10; k += 2) {
    const auto forward = mpq::shapley_permutation(12, 3, k, true);
    auto backward = mpq::shapley_permutation(12, 3, k + 1, true);
    EXPECT_EQ(forward, mpq::shapley_permutation(12, 3, k, false));  // even k: same draw
    std::reverse(backward.begin(), backward.end());
    EXPECT_EQ(forward, backward);
  }
}

TEST(ShapleyPermutation, PositionsAreUniform) {
  // Each player is first with probability 1/n: 4000 draws, n = 5, expected 800 ± 25 (sd).
  std::vector<int> first(5, 0);
  for (int64_t k = 0; k < 4000; ++k) ++first[mpq::shapley_permutation(5, 11, k, false)[0]];
  for (int count : first) EXPECT_NEAR(count, 800, 110);
}

// ------------------------------------------------------------------------------ exact values

TEST(ShapleyExact, AdditiveGame) {
  const std::vector<double> a = {0.5, -1.0, 2.0, 0.25, 3.0};
  const auto exact = mpq::exact_shapley(5, [&](const std::vector<uint8_t>& x) {
    double y = 7.0;  // a constant does not change any value
    for (int i = 0; i < 5; ++i) y += a[i] * x[i];
    return y;
  });
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(exact.value[i], a[i], 1e-12);
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(exact.interaction[i][j], 0.0, 1e-12);
  }
}

TEST(ShapleyExact, SymmetricGame) {
  // L depends on |S| only: every player gets (g(n) − g(0))/n, every pair the same interaction.
  const std::vector<double> g = {0.0, 0.1, 0.5, 0.6, 2.0, 2.2};
  const auto exact = mpq::exact_shapley(5, [&](const std::vector<uint8_t>& x) {
    return g[std::count(x.begin(), x.end(), 1)];
  });
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(exact.value[i], (g[5] - g[0]) / 5, 1e-12);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j)
      if (i != j) {
        EXPECT_NEAR(exact.interaction[i][j], exact.interaction[0][1], 1e-12);
      }
}

TEST(ShapleyExact, TwoPlayersByHand) {
  // v(∅) = 0, v(1) = 1, v(2) = 2, v(12) = 5:
  // φ1 = ½(1 − 0) + ½(5 − 2) = 2, φ2 = ½(2 − 0) + ½(5 − 1) = 3, I12 = 5 − 1 − 2 + 0 = 2.
  const auto exact = mpq::exact_shapley(2, [](const std::vector<uint8_t>& x) {
    static const double v[4] = {0.0, 1.0, 2.0, 5.0};
    return v[x[0] + 2 * x[1]];
  });
  EXPECT_NEAR(exact.value[0], 2.0, 1e-15);
  EXPECT_NEAR(exact.value[1], 3.0, 1e-15);
  EXPECT_NEAR(exact.interaction[0][1], 2.0, 1e-15);
  EXPECT_NEAR(exact.interaction[1][0], 2.0, 1e-15);
  EXPECT_EQ(exact.interaction[0][0], 0.0);
}

TEST(ShapleyExact, UnanimityGameAndGrayCodeCalls) {
  // L = 1 if players 1, 3, 4 are all low: each of them gets 1/3, the others 0.
  std::vector<uint8_t> previous;
  int calls = 0;
  const auto exact = mpq::exact_shapley(6, [&](const std::vector<uint8_t>& x) {
    if (calls++ > 0) {
      int changed = 0;
      for (int i = 0; i < 6; ++i) changed += x[i] != previous[i];
      EXPECT_EQ(changed, 1);
    }
    previous = x;
    return (x[1] && x[3] && x[4]) ? 1.0 : 0.0;
  });
  EXPECT_EQ(calls, 64);
  const std::vector<double> expected = {0, 1.0 / 3, 0, 1.0 / 3, 1.0 / 3, 0};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(exact.value[i], expected[i], 1e-12);
}

TEST(ShapleyExact, QuadraticGameValuesAreLinearPlusHalfInteractions) {
  const auto game = random_game(8, 1, 0);
  const auto exact = mpq::exact_shapley(8, Cost(game));
  for (int i = 0; i < 8; ++i) {
    double phi = game.a[i];
    for (int j = 0; j < 8; ++j) phi += 0.5 * game.b[i][j];
    EXPECT_NEAR(exact.value[i], phi, 1e-12);
    for (int j = 0; j < 8; ++j) EXPECT_NEAR(exact.interaction[i][j], game.b[i][j], 1e-12);
  }
}

// ------------------------------------------------------------------------------ the fit

TEST(ShapleyFit, RecoversExactlyQuadraticGame) {
  for (int n : {6, 7, 8}) {
    const auto game = random_game(n, 100 + n, 0);
    const auto exact = mpq::exact_shapley(n, Cost(game));
    mpq::ShapleyOptions plain;
    plain.antithetic = false;
    plain.ridge = 0;
    // 40 independent chains: ~3× the minimum, so every bootstrap replicate identifies the model.
    const auto chains = chains_for(game, 9, 40, false);
    const auto est = mpq::estimate_shapley(n, chains, plain);
    ASSERT_EQ(est.fit_rank, est.fit_parameters) << est.fit_note;
    ASSERT_EQ(est.bootstrap_rank_deficient, 0);
    EXPECT_EQ(est.fit_parameters, 1 + n + n * (n - 1) / 2);
    EXPECT_NEAR(est.fit_intercept, game.c0, 1e-11);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(est.linear[i], game.a[i], 1e-11) << "n " << n << " player " << i;
      EXPECT_NEAR(est.fitted_value[i], exact.value[i], 1e-11);
      for (int j = 0; j < n; ++j) EXPECT_NEAR(est.interaction[i][j], game.b[i][j], 1e-11);
      // Every replicate recovers the same quadratic: zero spread.
      EXPECT_LT(est.fitted_value_std_error[i], 1e-10);
    }
    EXPECT_NEAR(est.fit_r2, 1.0, 1e-12);
    EXPECT_LT(est.fit_rmse, 1e-12);
    // The default relative ridge (1e-9) changes the fit only at the 1e-8 level here.
    const auto ridged =
        mpq::estimate_shapley(n, chains, mpq::ShapleyOptions{.antithetic = false});
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) EXPECT_NEAR(ridged.interaction[i][j], game.b[i][j], 1e-7);
  }
}

TEST(ShapleyFit, UnidentifiedDesignIsRefusedOrFlagged) {
  // n = 10: 56 unknowns, 2 + 9 per chain distinct points at most, so 3 chains cannot identify it.
  const auto game = random_game(10, 5, 0);
  const auto chains = chains_for(game, 1, 3, false);
  mpq::ShapleyOptions plain;
  plain.antithetic = false;
  plain.ridge = 0;
  EXPECT_THROW(mpq::estimate_shapley(10, chains, plain), mpq::Error);
  plain.ridge = 1e-6;
  const auto est = mpq::estimate_shapley(10, chains, plain);
  EXPECT_LT(est.fit_rank, est.fit_parameters);
  EXPECT_NE(est.fit_note.find("do not identify"), std::string::npos) << est.fit_note;
  // The identified part still reproduces the measured points.
  EXPECT_GT(est.fit_r2, 0.999999);
  // Efficiency of the permutation estimate holds chain by chain.
  EXPECT_NEAR(std::accumulate(est.value.begin(), est.value.end(), 0.0),
              est.full_cost - est.base_cost, 1e-12);
}

TEST(ShapleyFit, AntitheticPairsIdentifyValuesBeforeInteractions) {
  // A pair's mean marginal is a_i + ½ Σ_j b_ij for every permutation, so after the first pair
  // each further pair adds only ~n−1 equations: 8 chains in pairs leave b under-determined at
  // n = 8 (37 unknowns), while the fitted values — estimable functions — are already exact.
  const int n = 8;
  const auto game = random_game(n, 71, 0);
  const auto exact = mpq::exact_shapley(n, Cost(game));
  const auto paired = mpq::estimate_shapley(n, chains_for(game, 12, 8, true));
  EXPECT_LT(paired.fit_rank, paired.fit_parameters);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(paired.fitted_value[i], exact.value[i], 1e-6);
  mpq::ShapleyOptions independent;
  independent.antithetic = false;
  independent.bootstrap_samples = 0;
  EXPECT_EQ(mpq::estimate_shapley(n, chains_for(game, 12, 8, false), independent).fit_rank,
            paired.fit_parameters);
}

TEST(ShapleyFit, WindowAndParameterCap) {
  const auto game = random_game(12, 8, 0);
  const auto chains = chains_for(game, 2, 16, true);
  mpq::ShapleyOptions windowed;
  windowed.interaction_window = 2;
  windowed.bootstrap_samples = 20;
  const auto w = mpq::estimate_shapley(12, chains, windowed);
  EXPECT_EQ(w.interaction_window, 2);
  EXPECT_EQ(w.fit_parameters, 1 + 12 + 11 + 10);
  ASSERT_EQ(w.interaction.size(), 12u);
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j) {
      if (std::abs(i - j) > 2) {
        EXPECT_EQ(w.interaction[i][j], 0.0);
      }
      EXPECT_EQ(w.interaction[i][j], w.interaction[j][i]);
    }
  EXPECT_LT(w.fit_r2, 1.0);  // the game has pairs outside the window

  mpq::ShapleyOptions capped;
  capped.max_fit_parameters = 40;  // all pairs would be 79 unknowns
  capped.bootstrap_samples = 20;
  const auto c = mpq::estimate_shapley(12, chains, capped);
  EXPECT_TRUE(c.interaction.empty());
  EXPECT_TRUE(c.interaction_std_error.empty());
  EXPECT_EQ(c.interaction_window, -1);
  EXPECT_EQ(c.fit_parameters, 13);
  EXPECT_NE(c.fit_note.find("max_fit_parameters"), std::string::npos);
  EXPECT_EQ(c.fitted_value, c.linear);
  EXPECT_EQ(c.linear_std_error.size(), 12u);
}

// ------------------------------------------------------------------------------ permutation means

TEST(ShapleyValue, AntitheticPairsAreExactOnQuadraticGames) {
  // For a quadratic game, a permutation and its reverse see each pair once before and once after:
  // their mean marginal is a_i + ½ Σ_j b_ij exactly, so the estimate is exact with zero spread.
  const auto game = random_game(7, 21, 0);
  const auto exact = mpq::exact_shapley(7, Cost(game));
  const auto est = mpq::estimate_shapley(7, chains_for(game, 4, 6, true));
  EXPECT_EQ(est.value_units, 3);
  for (int i = 0; i < 7; ++i) {
    EXPECT_NEAR(est.value[i], exact.value[i], 1e-12);
    EXPECT_LT(est.value_std_error[i], 1e-12);
  }
}

TEST(ShapleyValue, IndependentChainsConvergeOnQuadraticGame) {
  const auto game = random_game(6, 22, 0);
  const auto exact = mpq::exact_shapley(6, Cost(game));
  const auto chains = chains_for(game, 6, 400, false);
  mpq::ShapleyOptions options;
  options.antithetic = false;
  options.bootstrap_samples = 0;
  const auto est = mpq::estimate_shapley(6, chains, options);
  EXPECT_EQ(est.value_units, 400);
  EXPECT_TRUE(est.linear_std_error.empty());
  for (int i = 0; i < 6; ++i) {
    EXPECT_GT(est.value_std_error[i], 0.0);
    EXPECT_LT(est.value_std_error[i], 0.03);
    EXPECT_LE(std::abs(est.value[i] - exact.value[i]), 4 * est.value_std_error[i]) << "player " << i;
  }
}

TEST(ShapleyValue, CubicGameWithinReportedStdErrors) {
  const int n = 8;
  const auto game = random_game(n, 31, 12);
  const auto exact = mpq::exact_shapley(n, Cost(game));
  const auto chains = chains_for(game, 17, 64, true);
  const auto est = mpq::estimate_shapley(n, chains);
  EXPECT_EQ(est.value_units, 32);
  EXPECT_EQ(est.evaluations, 64 * (n - 1) + 2);
  double worst_z = 0, worst_fit_z = 0;
  for (int i = 0; i < n; ++i) {
    ASSERT_GT(est.value_std_error[i], 0.0);
    const double z = std::abs(est.value[i] - exact.value[i]) / est.value_std_error[i];
    worst_z = std::max(worst_z, z);
    const double fit_z = std::abs(est.fitted_value[i] - exact.value[i]) / est.fitted_value_std_error[i];
    worst_fit_z = std::max(worst_fit_z, fit_z);
  }
  EXPECT_LT(worst_z, 4.0);
  // The quadratic fit is biased on a cubic game and the bootstrap sees only sampling noise (over
  // 60 such games its std error was ~30% below the rms error), so it gets a looser bound.
  EXPECT_LT(worst_fit_z, 6.0);
  EXPECT_GT(est.fit_r2, 0.9);
  EXPECT_GT(est.bootstrap_samples, 100);
  EXPECT_EQ(est.bootstrap_rank_deficient, 0);
  EXPECT_NEAR(std::accumulate(est.value.begin(), est.value.end(), 0.0),
              est.full_cost - est.base_cost, 1e-12);
}

TEST(ShapleyValue, StdErrorsShrinkLikeOneOverSqrtChains) {
  const int n = 8;
  const auto game = random_game(n, 41, 12);
  for (bool antithetic : {false, true}) {
    const auto chains = chains_for(game, 3, 512, antithetic);
    mpq::ShapleyOptions options;
    options.antithetic = antithetic;
    options.bootstrap_samples = 0;
    const auto est = mpq::estimate_shapley(n, chains, options);
    const auto& curve = est.std_error_curve;
    ASSERT_FALSE(curve.empty());
    EXPECT_EQ(curve.front().first, antithetic ? 4 : 2);
    EXPECT_EQ(curve.back().first, 512);
    // From 32 chains on (the early points are themselves noisy), ×4 chains → std error × ~½.
    for (size_t k = 0; k + 2 < curve.size(); ++k) {
      if (curve[k].first < 32) continue;
      ASSERT_EQ(curve[k + 2].first, 4 * curve[k].first);
      const double ratio = curve[k + 2].second / curve[k].second;
      EXPECT_GT(ratio, 0.35) << "chains " << curve[k].first << " antithetic " << antithetic;
      EXPECT_LT(ratio, 0.7) << "chains " << curve[k].first << " antithetic " << antithetic;
    }
  }
}

// ------------------------------------------------------------------------------ chain driver

TEST(ShapleyRun, CallPatternAndEndpointReuse) {
  const int n = 6;
  const auto game = random_game(n, 51, 3);
  std::vector<uint8_t> previous;
  int calls = 0, jumps = 0, chains_seen = 0;
  const auto chains = mpq::run_shapley_chains(
      n,
      [&](const std::vector<uint8_t>& x) {
        if (calls++ > 0) {
          int changed = 0;
          for (int i = 0; i < n; ++i) changed += x[i] != previous[i];
          if (changed != 1) ++jumps;
        }
        previous = x;
        return game(x);
      },
      77, 0, 5, false, [&](const mpq::ShapleyChain& chain) {
        ++chains_seen;
        EXPECT_EQ(chain.cost.size(), static_cast<size_t>(n + 1));
      });
  EXPECT_EQ(chains_seen, 5);
  EXPECT_EQ(calls, 5 * (n - 1) + 2);  // L(∅) and L(all) once
  EXPECT_EQ(jumps, 4);                // only at the starts of chains 1..4
  for (const auto& chain : chains) {
    std::vector<uint8_t> x(n, 0);
    EXPECT_EQ(chain.cost[0], game(x));
    for (int j = 0; j < n; ++j) {
      x[chain.order[j]] = 1;
      EXPECT_EQ(chain.cost[j + 1], game(x));
    }
  }
}

// ------------------------------------------------------------------------------ bad input

TEST(ShapleyInput, BadInputsAreRefused) {
  const auto game = random_game(5, 61, 0);
  const auto good = chains_for(game, 1, 8, true);
  auto refuses = [&](std::vector<mpq::ShapleyChain> chains, mpq::ShapleyOptions options = {}) {
    EXPECT_THROW(mpq::estimate_shapley(5, chains, options), mpq::Error);
  };
  EXPECT_NO_THROW(mpq::estimate_shapley(5, good));
  refuses({});  // no chains
  auto bad = good;
  bad[2].cost.pop_back();  // wrong number of costs
  refuses(bad);
  bad = good;
  bad[3].order.push_back(0);  // wrong length
  refuses(bad);
  bad = good;
  bad[4].order[0] = bad[4].order[1];  // repeated player
  refuses(bad);
  bad = good;
  bad[4].order[0] = 5;  // out of range
  refuses(bad);
  bad = good;
  bad[1].cost[2] = std::nan("");
  refuses(bad);
  bad = good;
  std::swap(bad[1].order[0], bad[1].order[1]);  // antithetic partner is no longer the reverse
  refuses(bad);
  mpq::ShapleyOptions negative;
  negative.ridge = -1;
  refuses(good, negative);
  EXPECT_THROW(mpq::estimate_shapley(0, good), mpq::Error);
  EXPECT_THROW(mpq::shapley_permutation(0, 1, 0, false), mpq::Error);
  EXPECT_THROW(mpq::shapley_permutation(4, 1, -1, false), mpq::Error);
  EXPECT_THROW(mpq::run_shapley_chains(4, Cost(game), 1, -1, 2, false), mpq::Error);
  EXPECT_THROW(mpq::exact_shapley(21, Cost(game)), mpq::Error);
  EXPECT_THROW(mpq::exact_shapley(0, Cost(game)), mpq::Error);
  // A single chain: values but no std errors (NaN), and no bootstrap.
  mpq::ShapleyOptions single;
  single.antithetic = false;
  const auto one = mpq::estimate_shapley(5, {good[0]}, single);
  EXPECT_TRUE(std::isnan(one.value_std_error[0]));
  EXPECT_TRUE(one.std_error_curve.empty());
  EXPECT_TRUE(one.linear_std_error.empty());
}

}  // namespace

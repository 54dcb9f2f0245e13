// Speed measurement: prompt processing (one batch of pp_tokens) and decoding (one token after a
// tg_prompt-token prompt), each repeated; medians are reported.
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "mpq/eval.h"

namespace mpq {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

BenchResult benchmark_model(Model& model, const BenchOptions& options) {
  BenchResult result;
  result.threads = omp_get_max_threads();
  const int vocab = model.config.vocab_size;
  // Synthetic but valid token ids; speed does not depend on which tokens they are.
  auto tokens_of = [&](int n) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
    return t;
  };
  const std::vector<int32_t> pp = tokens_of(options.pp_tokens);
  const std::vector<int32_t> prompt = tokens_of(options.tg_prompt);
  KVCache cache = model.make_cache(std::max(options.pp_tokens, options.tg_prompt + 1));
  // One untimed warm-up of each path (page faults, thread pools).
  model.forward_last(pp, cache);
  for (int r = 0; r < options.repetitions; ++r) {
    cache.n_past = 0;
    const auto t0 = std::chrono::steady_clock::now();
    model.forward_last(pp, cache);
    result.pp_runs_s.push_back(seconds_since(t0));
  }
  for (int r = 0; r <= options.tg_repetitions; ++r) {
    cache.n_past = 0;
    model.forward_last(prompt, cache);
    const int32_t next = 1 % vocab;
    const auto t0 = std::chrono::steady_clock::now();
    model.forward_last(std::span(&next, 1), cache);
    if (r > 0) result.tg_runs_s.push_back(seconds_since(t0));  // r == 0 is the warm-up
  }
  result.pp_tok_s = options.pp_tokens / median(result.pp_runs_s);
  result.tg_tok_s = 1.0 / median(result.tg_runs_s);
  return result;
}

}  // namespace mpq

#include "calib/kld_eval.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mpq/error.h"

namespace mpq {
namespace {

// Rows of logits computed at once by the output head (bounds the [rows, vocab] buffer).
constexpr int kHeadRows = 128;

// log-softmax of one row in place; returns nothing. Serial and in order (deterministic).
void log_softmax(float* row, int64_t n) {
  const float max = *std::max_element(row, row + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i] - max));
  const float log_sum = static_cast<float>(std::log(sum)) + max;
  for (int64_t i = 0; i < n; ++i) row[i] -= log_sum;
}

}  // namespace

KldEvaluator::KldEvaluator(const Model& model, std::vector<std::vector<int32_t>> sequences)
    : model_(model), sequences_(std::move(sequences)) {
  check(!sequences_.empty(), "kld", "empty token set");
  const int n_layers = model_.config.n_layers;
  caches_.resize(sequences_.size());
  std::vector<SequenceInput> inputs;
  for (size_t i = 0; i < sequences_.size(); ++i) {
    check(!sequences_[i].empty(), "kld", "empty sequence in the token set");
    caches_[i].capacity = static_cast<int>(sequences_[i].size());
    caches_[i].k.resize(n_layers);  // allocated by run_layer on first use
    caches_[i].v.resize(n_layers);
    inputs.push_back({sequences_[i].data(), caches_[i].capacity, &caches_[i]});
    n_tokens_ += static_cast<int64_t>(sequences_[i].size());
  }
  plan_ = model_.plan_batch(inputs);
  hidden_.resize(n_layers + 1);
  hidden_[0] = model_.embed(plan_);
  std::vector<float> x = hidden_[0];
  for (int l = 0; l < n_layers; ++l) {
    model_.run_layer(l, plan_, x.data());
    hidden_[l + 1] = x;
  }
  ref_logprobs_.resize(static_cast<size_t>(n_tokens_) * model_.config.vocab_size);
  head_kl(x.data(), /*store_reference=*/true);
}

double KldEvaluator::evaluate(int from_layer, bool commit) {
  const int n_layers = model_.config.n_layers;
  check(from_layer >= 0 && from_layer <= n_layers, "kld", "layer out of range");
  std::vector<float> x = hidden_[from_layer];
  for (int l = from_layer; l < n_layers; ++l) {
    model_.run_layer(l, plan_, x.data());
    if (commit) hidden_[l + 1] = x;
  }
  return head_kl(x.data(), false);
}

double KldEvaluator::head_kl(const float* x, bool store_reference) {
  const int64_t vocab = model_.config.vocab_size;
  std::vector<double> row_kl(static_cast<size_t>(n_tokens_), 0.0);
  for (int64_t begin = 0; begin < n_tokens_; begin += kHeadRows) {
    const int64_t count = std::min<int64_t>(kHeadRows, n_tokens_ - begin);
    std::vector<int> rows(count);
    std::iota(rows.begin(), rows.end(), static_cast<int>(begin));
    std::vector<float> logits = model_.head(x, n_tokens_, rows);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < count; ++r) {
      float* q = logits.data() + r * vocab;
      log_softmax(q, vocab);
      float* ref = ref_logprobs_.data() + (begin + r) * vocab;
      if (store_reference) {
        std::copy_n(q, vocab, ref);
        continue;
      }
      double kl = 0;  // Σ p (log p − log q), serial
      for (int64_t i = 0; i < vocab; ++i) {
        const double lp = ref[i];
        kl += std::exp(lp) * (lp - static_cast<double>(q[i]));
      }
      row_kl[begin + r] = kl;
    }
  }
  double sum = 0;  // fixed order
  for (double v : row_kl) sum += v;
  return sum / static_cast<double>(n_tokens_);
}

}  // namespace mpq

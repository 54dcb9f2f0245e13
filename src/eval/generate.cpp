// Token sampling (greedy, temperature, nucleus) and the generation loop over the KV cache.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "mpq/error.h"
#include "mpq/eval.h"
#include "mpq/tokenizer.h"

namespace mpq {

int32_t sample_token(const float* logits, int vocab, const SamplerOptions& options,
                     std::mt19937_64& rng) {
  if (options.temperature <= 0.f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  if (!(options.top_p > 0.f && options.top_p <= 1.f)) fail("sampler", "top-p must be in (0, 1]");
  // Softmax at the given temperature, in double for a stable cumulative sum.
  const float max_logit = *std::max_element(logits, logits + vocab);
  std::vector<double> probs(vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) {
    probs[i] = std::exp((logits[i] - max_logit) / options.temperature);
    sum += probs[i];
  }
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  // Sort by probability (ties by id, so the result does not depend on the sort's stability).
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  });
  // Keep the smallest prefix whose mass reaches top_p.
  double kept = 0;
  size_t n_kept = 0;
  while (n_kept < order.size()) {
    kept += probs[order[n_kept]] / sum;
    ++n_kept;
    if (kept >= options.top_p) break;
  }
  // Draw from the kept set with our own uniform so results do not depend on the standard
  // library's distribution implementations.
  const double u = (rng() >> 11) * (1.0 / 9007199254740992.0) * kept * sum;
  double acc = 0;
  for (size_t i = 0; i < n_kept; ++i) {
    acc += probs[order[i]];
    if (u < acc) return order[i];
  }
  return order[n_kept - 1];
}

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, int n_new,
                              const SamplerOptions& options,
                              const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate", "empty prompt");
  const int capacity = static_cast<int>(prompt.size()) + std::max(n_new, 0);
  KVCache cache = model.make_cache(capacity);
  std::mt19937_64 rng(options.seed);
  std::vector<int32_t> out;
  std::vector<float> logits = model.forward_last(prompt, cache);
  const int32_t eos = model.tokenizer ? model.tokenizer->spec().eos_id : -1;
  for (int i = 0; i < n_new; ++i) {
    if (!std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); })) {
      fail(model.source_path, "the model's logits are not finite at generated token " + std::to_string(i + 1));
    }
    const int32_t token = sample_token(logits.data(), model.config.vocab_size, options, rng);
    if (token == eos) break;
    out.push_back(token);
    if (on_token) on_token(token);
    if (i + 1 < n_new) logits = model.forward_last(std::span(&token, 1), cache);
  }
  return out;
}

}  // namespace mpq

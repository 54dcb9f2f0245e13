#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernel/matmul_f32.h"
#include "model/ops.h"

namespace mpq {

void route_token(const float* logits, int n_experts, int k, bool renormalize, int* experts, float* weights) {
  // Softmax over all experts in double (max-shifted), then the k largest.
  const float max_logit = *std::max_element(logits, logits + n_experts);
  std::vector<double> p(n_experts);
  double sum = 0;
  for (int e = 0; e < n_experts; ++e) sum += p[e] = std::exp(static_cast<double>(logits[e]) - max_logit);
  std::vector<int> order(n_experts);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  double chosen = 0;
  for (int i = 0; i < k; ++i) chosen += p[order[i]];
  const double norm = renormalize ? chosen : sum;
  for (int i = 0; i < k; ++i) {
    experts[i] = order[i];
    weights[i] = static_cast<float>(p[order[i]] / norm);
  }
}

void moe_mlp(const ModelConfig& c, const DecoderLayer& layer, int layer_index, const float* xn,
             int64_t n_tokens, float* x, ForwardHooks* hooks) {
  const int n_experts = c.n_experts, k = c.n_experts_per_token, dim = c.dim, ffn = c.ffn_dim;
  std::vector<float> logits(n_tokens * n_experts);
  matmul_f32(xn, n_tokens, layer.router.data(), n_experts, dim, logits.data());
  // Per expert: the tokens routed to it (ascending) and their weights.
  std::vector<std::vector<int64_t>> tokens(n_experts);
  std::vector<std::vector<float>> token_weights(n_experts);
  std::vector<int> chosen(k);
  std::vector<float> weights(k);
  for (int64_t t = 0; t < n_tokens; ++t) {
    route_token(&logits[t * n_experts], n_experts, k, c.norm_topk_prob, chosen.data(), weights.data());
    for (int i = 0; i < k; ++i) {
      tokens[chosen[i]].push_back(t);
      token_weights[chosen[i]].push_back(weights[i]);
    }
  }
  if (hooks != nullptr) {
    std::vector<int64_t> counts(n_experts);
    for (int e = 0; e < n_experts; ++e) counts[e] = static_cast<int64_t>(tokens[e].size());
    hooks->on_routing(layer_index, counts.data(), n_experts);
  }
  std::vector<float> xe, gate, up, ye;
  for (int e = 0; e < n_experts; ++e) {
    const int64_t n = static_cast<int64_t>(tokens[e].size());
    if (n == 0) continue;
    const Expert& expert = layer.experts[e];
    xe.resize(n * dim);
    for (int64_t i = 0; i < n; ++i) std::copy_n(&xn[tokens[e][i] * dim], dim, &xe[i * dim]);
    if (hooks != nullptr) hooks->on_expert_input(layer_index, e, LinearKind::Gate, xe.data(), n, dim);
    gate.resize(n * ffn);
    up.resize(n * ffn);
    const Linear* gate_up[] = {&expert.gate, &expert.up};
    float* outputs[] = {gate.data(), up.data()};
    Linear::apply_group(gate_up, xe.data(), n, outputs);
    ops::swiglu(gate.data(), up.data(), n * ffn);
    if (hooks != nullptr) hooks->on_expert_input(layer_index, e, LinearKind::Down, gate.data(), n, ffn);
    ye.resize(n * dim);
    expert.down.apply(gate.data(), n, ye.data());
    for (int64_t i = 0; i < n; ++i) {
      const float w = token_weights[e][i];
      float* xt = &x[tokens[e][i] * dim];
      for (int d = 0; d < dim; ++d) xt[d] += w * ye[i * dim + d];
    }
  }
}

}  // namespace mpq

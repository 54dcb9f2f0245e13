// Internal to src/model: the mixture-of-experts MLP of one decoder layer (mixtral, qwen3_moe).
#pragma once

#include <cstdint>

#include "mpq/model.h"

namespace mpq {

// x[t, :] += Σ_{e in top-k(t)} p_e(t) · expert_e(xn[t, :]) for t < n_tokens, where the router's
// softmax over all experts gives p (renormalized over the chosen k when c.norm_topk_prob), ties
// going to the lower expert index. Experts run on the rows routed to them, in expert order, so
// the sum is deterministic. Reports routing counts and expert inputs to `hooks`.
void moe_mlp(const ModelConfig& c, const DecoderLayer& layer, int layer_index, const float* xn,
             int64_t n_tokens, float* x, ForwardHooks* hooks);

// The k experts of one token's router logits, best first, and their weights (see moe_mlp).
void route_token(const float* logits, int n_experts, int k, bool renormalize, int* experts, float* weights);

}  // namespace mpq

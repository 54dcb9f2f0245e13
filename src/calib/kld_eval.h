// Mean KL divergence of a (partly) quantized model against the unquantized one on a fixed token
// set, re-running only the layers from the first changed one onward.
//
// The evaluator runs the reference (fp) model once, keeping every layer's input hidden states
// for the whole token set ([n_tokens, dim] per layer, n_layers + 1 of them; the last is the
// input of the final norm) and the reference log-probabilities of every position ([n_tokens,
// vocab]). Evaluating after a change to layer l's weights then costs layers l..n−1 plus the
// output head: on average about half a forward pass for single-tensor sensitivities (`kld`) and
// one layer per step for progressive quantization (Shapley chains).
//
// Memory: (n_layers + 1) · n_tokens · dim + n_tokens · vocab floats (SmolLM2-135M with 1,024
// tokens: 73 MB + 201 MB).
#pragma once

#include <cstdint>
#include <vector>

#include "mpq/model.h"

namespace mpq {

class KldEvaluator {
 public:
  // Runs `model` as it is now (the reference) over `sequences` (each its own causal context,
  // positions from 0). The model must outlive the evaluator; its weights may be changed between
  // calls (see evaluate).
  KldEvaluator(const Model& model, std::vector<std::vector<int32_t>> sequences);

  // Mean over all positions of KL(reference ‖ current) in nats, where "current" is the model's
  // weights now. Only layers >= from_layer are recomputed: the caller guarantees that layers
  // < from_layer have the weights the cached hidden states were computed with (the reference
  // weights, or those of the last evaluation with commit = true). With commit, the hidden
  // states this run computes replace the cached ones for layers > from_layer.
  double evaluate(int from_layer, bool commit = false);

  // The cached hidden states, to save and restore around a series of committed evaluations.
  using HiddenStates = std::vector<std::vector<float>>;
  const HiddenStates& hidden() const { return hidden_; }
  void set_hidden(const HiddenStates& hidden) { hidden_ = hidden; }

  int64_t n_tokens() const { return n_tokens_; }

 private:
  // Mean KL of the logits of `x` (final hidden states [n_tokens, dim]) against the reference,
  // or, when `store_reference`, stores their log-probabilities as the reference (returns 0).
  double head_kl(const float* x, bool store_reference);

  const Model& model_;
  std::vector<std::vector<int32_t>> sequences_;  // the token set
  std::vector<KVCache> caches_;                  // one per sequence, never committed
  BatchPlan plan_;                               // all sequences as one batch
  int64_t n_tokens_ = 0;                         // positions of all sequences
  HiddenStates hidden_;            // [n_layers + 1][n_tokens * dim]: input of each layer
  std::vector<float> ref_logprobs_;  // [n_tokens, vocab] reference log-softmax
};

}  // namespace mpq

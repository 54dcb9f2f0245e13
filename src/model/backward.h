// Reverse-mode gradients of the fp32 decoder (docs/GRADIENTS.md): the loss is the mean token
// cross-entropy of next-token prediction over one sequence, and the result is dLoss/dW for every
// decoder Linear weight, summed into a LinearGradients and/or handed per sequence to a
// LinearGradientSink as the pair (input X, output gradient dY), from which dW = dYᵀ·X.
//
// Memory is bounded by checkpointing: the forward pass keeps only each layer's residual input
// ([n, dim] per layer); the backward pass recomputes one layer's activations at a time, and the
// output head runs in row chunks. See docs/GRADIENTS.md for the numbers.
//
// The per-op forward/backward functions are public for the finite-difference tests.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "mpq/model.h"

namespace mpq {

// Summed weight gradients: w[layer][kind] is [out * in] row-major like the weight, or empty to
// skip that Linear (its dW is then not formed; the chain through it is still exact).
struct LinearGradients {
  std::vector<std::array<std::vector<float>, kLinearKinds>> w;
  int64_t n_sequences = 0;  // sequences accumulated
  double loss_sum = 0;      // sum of the sequences' mean losses (unscaled)

  // Zero gradients for every Linear of every layer of `model` (fp32: 4 bytes per weight).
  static LinearGradients zeros(const Model& model);
  std::vector<float>& at(int layer, LinearKind kind) { return w[layer][static_cast<int>(kind)]; }
  const std::vector<float>& at(int layer, LinearKind kind) const {
    return w[layer][static_cast<int>(kind)];
  }
};

// Receives each Linear's per-sequence gradient factors during the backward pass (layers from
// last to first, kinds Down, Up, Gate, O, V, K, Q). x is the Linear's input [n, in] and dy is
// dLoss/dY [n, out] (already multiplied by GradientOptions::scale); this sequence's weight
// gradient is dyᵀ·x ([out, in], see weight_gradient). Rows are token positions; the last row of
// dy is zero (the last position has no target and, attention being causal, feeds no other
// position). Pointers are valid during the call only.
class LinearGradientSink {
 public:
  virtual ~LinearGradientSink() = default;
  virtual void on_linear(int layer, LinearKind kind, const float* x, const float* dy,
                         int64_t n_tokens, int64_t in, int64_t out) = 0;
  // The output head, one chunk of rows at a time (before any on_linear of the sequence): x the
  // final-normed hidden states [rows, in], dy = dLoss/dlogits [rows, out] (scaled); the head's
  // weight gradient is the sum over chunks of dyᵀ·x. Default: ignored.
  virtual void on_head(const float* x, const float* dy, int64_t rows, int64_t in, int64_t out) {}
  // After every on_linear: dLoss/d(embedding output) [n, dim] of the sequence's tokens, i.e. the
  // gradient of embedding row tokens[t] is the sum of dx rows t with that token (a tied head
  // adds it to the head's gradient). Default: ignored.
  virtual void on_embedding(const int32_t* tokens, const float* dx, int64_t n, int64_t dim) {}
};

struct GradientOptions {
  float scale = 1.f;                     // multiplies every gradient (not the returned loss)
  LinearGradientSink* sink = nullptr;    // per-sequence (X, dY) pairs, optional
  int head_chunk_rows = 128;             // rows of logits alive at once in the output head
};

// Loss = mean over positions i = 0..n-2 of -log softmax(logits[i])[tokens[i+1]] for one
// sequence at positions 0..n-1 (no KV reuse). Adds scale * dLoss/dW of every decoder Linear into
// `grads` (unless grads.w is empty: then only the sink sees gradients), calls the sink, and
// returns the loss computed by the same forward pass. Weights in any format: the gradient is at
// the weights the forward pass multiplies by (LinearWeights::forward / to_f32). Embedding, norm
// and output-head gradients are not formed (a sink sees their factors: on_head, on_embedding);
// tied and untied heads both work.
// Throws mpq::Error for fewer than 2 tokens or an out-of-range token id.
double accumulate_linear_gradients(const Model& model, std::span<const int32_t> tokens,
                                   LinearGradients& grads, const GradientOptions& options = {});

// dw[out, in] (+)= dyᵀ·x for x [n, in], dy [n, out] (threaded; single-threaded BLAS inside).
void weight_gradient(const float* x, const float* dy, int64_t n, int64_t in, int64_t out, float* dw,
                     bool accumulate);

// ---------------------------------------------------------------------------------------------
// The ops, forward and backward (row-major, rows of `width`). Backward functions take the
// forward's inputs (they recompute what they need) and write (accumulate = false) or add
// (accumulate = true) the input gradient.
namespace grad {

// y = x / sqrt(mean(x²) + eps) * w, per row; y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t width, float eps);
void rms_norm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows,
                       int64_t width, float eps, bool accumulate);

// Rotate-half RoPE in place on rows of n_heads * head_dim; cos/sin are [rows, head_dim/2].
// The backward is the inverse rotation applied to the gradient (in place).
void rope(float* x, int64_t rows, int n_heads, int head_dim, const float* cos_t, const float* sin_t);
void rope_backward(float* dx, int64_t rows, int n_heads, int head_dim, const float* cos_t,
                   const float* sin_t);

// Causal self-attention of one sequence at positions 0..n-1: q [n, n_heads*hd],
// k/v [n, n_kv_heads*hd], out [n, n_heads*hd]; query head h uses KV head h / (n_heads/n_kv_heads);
// sliding_window > 0 limits each query to the latest `sliding_window` positions. Scores are
// scale · q·k (scale 0: 1/sqrt(head_dim)).
struct AttentionShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, sliding_window = 0;
  float scale = 0.f;
};
void attention(const AttentionShape& s, const float* q, const float* k, const float* v, int64_t n,
               float* out);
// Gradients of q, k, v (overwritten) from dout; probabilities are recomputed per head.
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const float* dout, int64_t n, float* dq, float* dk, float* dv);

// h = silu(g) * u; backward gives dg and du (overwritten).
void swiglu(const float* g, const float* u, float* h, int64_t count);
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du,
                     int64_t count);
// h = gelu_tanh(g) * u (gemma3); backward gives dg and du (overwritten).
void geglu_tanh(const float* g, const float* u, float* h, int64_t count);
void geglu_tanh_backward(const float* g, const float* u, const float* dh, float* dg, float* du,
                         int64_t count);

// Cross-entropy of `rows` logit rows against targets: returns Σ_rows -log softmax[target] (in
// double) and writes dlogits = (softmax - onehot) * grad_scale.
double cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                     float grad_scale, float* dlogits);

}  // namespace grad
}  // namespace mpq

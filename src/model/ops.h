// Element-wise and row-wise operations of the decoder, shared by the forward pass
// (model/forward.cpp) and the gradient pass (model/backward.cpp), so both compute exactly the
// same function.
#pragma once

#include <cstdint>

namespace mpq::ops {

// y[t] = x[t] / rms(x[t]) * weight for each of `rows` rows of `width` (sum of squares in double).
// y may alias x.
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t width, float eps);

// Rotate-half RoPE (Hugging Face / NEOX order) in place on the heads of each row: within a head
// of size head_dim, element i pairs with element i + head_dim/2. cos/sin are [rows, head_dim/2].
// `inverse` rotates by the opposite angles: the transpose of the rotation, which is what carries
// gradients back through it.
void rope(float* x, int64_t rows, int n_heads, int head_dim, const float* cos_t, const float* sin_t,
          bool inverse = false);

// In place, for each of `rows` query rows of `n_keys` attention scores: the causal (optionally
// windowed) softmax. Query i sits at position n_past + i and sees keys
// [max(0, n_past + i + 1 - window), n_past + i] (window 0: no limit); the others become 0.
// exp is kernel/fast_exp.h's exp_approx (within 2^-23 relative), the sum in double.
void causal_softmax(float* scores, int64_t rows, int64_t n_keys, int64_t n_past, int window);

// SwiGLU in place: gate[i] = silu(gate[i]) * up[i] for i < n (dense MLPs and MoE experts), with
// silu(g) = g / (1 + exp_approx(-g)) (kernel/swiglu.h on the best instruction set).
void swiglu(float* gate, const float* up, int64_t n);

// GeGLU in place: gate[i] = gelu_tanh(gate[i]) * up[i] (gemma3; kernel/swiglu.h).
void geglu_tanh(float* gate, const float* up, int64_t n);

// The MLP activation: geglu_tanh when `gelu` (ModelConfig::gelu_mlp), else swiglu.
inline void gated_activation(bool gelu, float* gate, const float* up, int64_t n) {
  if (gelu) return geglu_tanh(gate, up, n);
  swiglu(gate, up, n);
}

}  // namespace mpq::ops

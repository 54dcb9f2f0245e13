// A decode step's decoder layers in one parallel region.
//
// Why: a decode step of a small model is ~150 short operations (per layer a q/k/v group, the
// attention, o, gate/up, down; 5-30 us each), and libgomp charges ~1.5 us to start and end a
// parallel region, ~10% of a SmolLM2 step (docs/RUNTIME.md, "One parallel region per decode
// step"). Here the threads enter one region for all layers and meet at a SpinBarrier (~0.3 us)
// where one phase needs another's results.
//
// How the work is shared, per layer (thread t of T; "own" = computed by every thread for itself,
// identical copies, so that no meeting is needed to share it):
//   own:    x (the residual stream), its RMSNorm and its int8 quantization
//   shared: q/k/v group, each thread its packed_matmul_group_share                    | meet
//           bias, q/k norm and RoPE of a range of heads; their new keys/values stored | meet
//           attention: stretches of the keys (as attend_decode splits them) or, when
//           it keeps one stretch, ranges of KV heads                                   | meet
//           merging the stretches, by query heads                                     | meet
//   own:    attention output quantized; o, each thread its share                      | meet
//   own:    residual (gemma3: after the output's RMSNorm), RMSNorm, quantization;
//           gate/up shares                                                             | meet
//   shared: bias and SwiGLU (gemma3: GeGLU) over ranges of the hidden values          | meet
//   own:    quantization; down shares                                                  | meet
//   own:    residual (gemma3: after the output's RMSNorm)
// Every output value is computed by the same code on the same inputs as in run_layer (the
// products' tiles, attention's stretches and the elementwise steps do not depend on which thread
// runs them), so the results are bit for bit those of the fork-per-operation path.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernel/attention.h"
#include "kernel/packed.h"
#include "kernel/threads.h"
#include "model/forward_internal.h"
#include "model/ops.h"

namespace mpq {
namespace {

// [begin, end) of `n` items for thread t of T, optionally in whole multiples of `unit`.
struct Range {
  int64_t begin, end;
};
Range share_of(int64_t n, int t, int n_threads, int64_t unit = 1) {
  const int64_t units = (n + unit - 1) / unit;
  return {std::min(n, units * t / n_threads * unit), std::min(n, units * (t + 1) / n_threads * unit)};
}

// One layer's products, writing into the step's shared buffers.
struct LayerProducts {
  std::vector<PackedProduct> qkv, o, gate_up, down;
};

// The products of `kinds` (sharing one input) into `outputs`; false when one is not packed.
bool collect(const DecoderLayer& layer, std::initializer_list<LinearKind> kinds, std::initializer_list<float*> outputs,
             std::vector<PackedProduct>& products) {
  auto out = outputs.begin();
  for (LinearKind kind : kinds) {
    if (!layer.at(kind).weights->packed_products(*out++, products)) return false;
  }
  const int64_t cols = products.front().w->cols();
  return std::all_of(products.begin(), products.end(), [&](const PackedProduct& p) { return p.w->cols() == cols; });
}

// y[t, i] += bias[i] for the columns [begin, end) of n_tokens rows of `width` (run_layer's
// add_bias, restricted to a range).
void add_bias_range(const std::vector<float>& bias, int64_t n_tokens, int64_t width, int64_t begin, int64_t end,
                    float* y) {
  if (bias.empty()) return;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = begin; i < end; ++i) y[t * width + i] += bias[i];
  }
}

// A sequence's attention set-up for this step (the same in every layer).
struct SequenceAttention {
  int64_t first_token;                   // its first row in the batch
  int n_parts;                           // key stretches (decode_attention_parts)
  std::vector<AttentionPartial> parts;   // decode_attention_slots entries
  std::vector<float> accs;               // head_dim floats per slot
};

}  // namespace

bool run_layers_in_one_region(const Model& model, const BatchPlan& plan, float* x, const ForwardHooks* hooks) {
  const ModelConfig& c = model.config;
  const int n_threads = omp_get_max_threads();
  if (!model.decode_in_one_region || hooks != nullptr || c.is_moe() || plan.n_tokens < 1 ||
      plan.n_tokens > kMaxDecodeTokens || n_threads < 2 || n_threads > usable_cpus() || omp_in_parallel() ||
      omp_get_dynamic() || n_threads > omp_get_thread_limit()) {
    // (With dynamic teams or a thread limit the region could get fewer threads than the
    // barrier waits for.)
    return false;
  }
  for (const SequenceInput& seq : plan.sequences) {
    for (int l = 0; l < c.n_layers; ++l) {
      if (!cache_layer_allocated(c, *seq.cache, l)) return false;
    }
  }
  const int64_t n = plan.n_tokens, dim = c.dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), ffn = c.ffn_dim;
  // The step's shared buffers, and every layer's products writing into them.
  std::vector<float> q(n * q_dim), k(n * kv_dim), v(n * kv_dim), att(n * q_dim), proj(n * dim), gate(n * ffn),
      up(n * ffn);
  std::vector<LayerProducts> products(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const DecoderLayer& layer = model.layers[l];
    LayerProducts& p = products[l];
    using K = LinearKind;
    if (!collect(layer, {K::Q, K::K, K::V}, {q.data(), k.data(), v.data()}, p.qkv) ||
        !collect(layer, {K::O}, {proj.data()}, p.o) ||
        !collect(layer, {K::Gate, K::Up}, {gate.data(), up.data()}, p.gate_up) ||
        !collect(layer, {K::Down}, {proj.data()}, p.down)) {
      return false;
    }
  }
  // The shape of layers without a window: the split into stretches does not depend on it (one per
  // layer is made in the loop below).
  const DecodeAttentionShape shape{c.n_heads, c.n_kv_heads, c.head_dim, 0, c.attn_scale()};
  std::vector<SequenceAttention> attention;
  int64_t first = 0, max_keys = 0;
  for (const SequenceInput& seq : plan.sequences) {
    SequenceAttention a;
    a.first_token = first;
    // attend_decode's split for the same thread count: 1 or n_threads stretches.
    a.n_parts = decode_attention_parts(shape, seq.n_tokens, seq.cache->n_past, n_threads);
    a.parts.resize(decode_attention_slots(shape, seq.n_tokens, a.n_parts));
    a.accs.resize(a.parts.size() * c.head_dim);
    attention.push_back(std::move(a));
    first += seq.n_tokens;
    max_keys = std::max<int64_t>(max_keys, seq.cache->n_past + seq.n_tokens);
  }
  const int group = c.n_heads / c.n_kv_heads, half = c.head_dim / 2;
  const Isa isa = best_isa();
  SpinBarrier barrier(n_threads);

#pragma omp parallel num_threads(n_threads)
  {
    const int t = omp_get_thread_num();
    // Each thread's own copies (identical in every thread).
    std::vector<float> x_own(x, x + n * dim), xn(n * dim), scores(group * max_keys);
    Int8Activations x_int8;
    auto run_products = [&](const std::vector<PackedProduct>& group_products, const float* input, int64_t width) {
      if (group_uses_int8(group_products)) quantize_activations_int8(isa, input, n, width, x_int8);
      packed_matmul_group_share(group_products, input, &x_int8, n, t, n_threads, isa);
      barrier.wait();
    };
    std::vector<float> normed(c.post_norms ? n * dim : 0);
    // x += proj + bias, or (post_norms) x += rms_norm(proj + bias) computed in this thread's own copy.
    auto add_residual = [&](const std::vector<float>& bias, const std::vector<float>& post_norm) {
      if (!post_norm.empty()) {
        for (int64_t i = 0; i < n * dim; ++i) normed[i] = bias.empty() ? proj[i] : proj[i] + bias[i % dim];
        ops::rms_norm(normed.data(), post_norm.data(), normed.data(), n, dim, c.rms_eps);
        for (int64_t i = 0; i < n * dim; ++i) x_own[i] += normed[i];
        return;
      }
      for (int64_t r = 0; r < n; ++r) {
        const float* from = &proj[r * dim];
        for (int64_t i = 0; i < dim; ++i) x_own[r * dim + i] += bias.empty() ? from[i] : from[i] + bias[i];
      }
    };
    const Range q_heads = share_of(c.n_heads, t, n_threads), kv_heads = share_of(c.n_kv_heads, t, n_threads);

    for (int l = 0; l < c.n_layers; ++l) {
      const DecoderLayer& layer = model.layers[l];
      DecodeAttentionShape layer_shape = shape;
      layer_shape.sliding_window = c.layer_window(l);
      const float* rope_cos = plan.cos_of(c, l);
      const float* rope_sin = plan.sin_of(c, l);
      // --- attention block
      ops::rms_norm(x_own.data(), layer.attn_norm.data(), xn.data(), n, dim, c.rms_eps);
      run_products(products[l].qkv, xn.data(), dim);
      // This thread's heads: bias, q/k norm, RoPE, and the new keys/values into the caches.
      add_bias_range(layer.at(LinearKind::Q).bias, n, q_dim, q_heads.begin * c.head_dim, q_heads.end * c.head_dim,
                     q.data());
      for (LinearKind kind : {LinearKind::K, LinearKind::V}) {
        add_bias_range(layer.at(kind).bias, n, kv_dim, kv_heads.begin * c.head_dim, kv_heads.end * c.head_dim,
                       kind == LinearKind::K ? k.data() : v.data());
      }
      for (int64_t r = 0; r < n; ++r) {
        float* q_row = &q[r * q_dim + q_heads.begin * c.head_dim];
        float* k_row = &k[r * kv_dim + kv_heads.begin * c.head_dim];
        const int n_q = static_cast<int>(q_heads.end - q_heads.begin);
        const int n_kv = static_cast<int>(kv_heads.end - kv_heads.begin);
        if (c.qk_norm) {  // head by head: rms_norm forks for more than a few rows
          for (int h = 0; h < n_q; ++h) {
            float* head = q_row + h * c.head_dim;
            ops::rms_norm(head, layer.q_norm.data(), head, 1, c.head_dim, c.rms_eps);
          }
          for (int h = 0; h < n_kv; ++h) {
            float* head = k_row + h * c.head_dim;
            ops::rms_norm(head, layer.k_norm.data(), head, 1, c.head_dim, c.rms_eps);
          }
        }
        ops::rope(q_row, 1, n_q, c.head_dim, &rope_cos[r * half], &rope_sin[r * half]);
        ops::rope(k_row, 1, n_kv, c.head_dim, &rope_cos[r * half], &rope_sin[r * half]);
      }
      for (size_t s = 0; s < plan.sequences.size(); ++s) {
        const SequenceInput& seq = plan.sequences[s];
        const int64_t row = attention[s].first_token;
        store_keys_values(c, *seq.cache, l, &k[row * kv_dim], &v[row * kv_dim], seq.n_tokens,
                          static_cast<int>(kv_heads.begin), static_cast<int>(kv_heads.end));
      }
      barrier.wait();
      // Attention: this thread's stretch of every KV head's keys, or (one stretch) its KV heads.
      for (size_t s = 0; s < plan.sequences.size(); ++s) {
        const SequenceInput& seq = plan.sequences[s];
        SequenceAttention& a = attention[s];
        const int part = a.n_parts > 1 ? t : 0;
        const Range heads = a.n_parts > 1 ? Range{0, c.n_kv_heads} : kv_heads;
        const int64_t head_stride = static_cast<int64_t>(seq.cache->capacity) * c.head_dim;
        const float* q_seq = &q[a.first_token * q_dim];
        if (seq.cache->type == KvCacheType::F16) {
          attend_decode_part(isa, layer_shape, q_seq, seq.n_tokens, seq.cache->n_past, seq.cache->k16[l].data(),
                             seq.cache->v16[l].data(), head_stride, part, a.n_parts, static_cast<int>(heads.begin),
                             static_cast<int>(heads.end), a.parts.data(), a.accs.data(), scores.data());
        } else {
          attend_decode_part(isa, layer_shape, q_seq, seq.n_tokens, seq.cache->n_past, seq.cache->k[l].data(),
                             seq.cache->v[l].data(), head_stride, part, a.n_parts, static_cast<int>(heads.begin),
                             static_cast<int>(heads.end), a.parts.data(), a.accs.data(), scores.data());
        }
      }
      barrier.wait();
      for (size_t s = 0; s < plan.sequences.size(); ++s) {
        const SequenceAttention& a = attention[s];
        merge_decode_parts(layer_shape, plan.sequences[s].n_tokens, a.n_parts, a.parts.data(), a.accs.data(),
                           static_cast<int>(q_heads.begin), static_cast<int>(q_heads.end), &att[a.first_token * q_dim]);
      }
      barrier.wait();
      run_products(products[l].o, att.data(), q_dim);
      add_residual(layer.at(LinearKind::O).bias, layer.post_attn_norm);

      // --- gated MLP
      ops::rms_norm(x_own.data(), layer.ffn_norm.data(), xn.data(), n, dim, c.rms_eps);
      run_products(products[l].gate_up, xn.data(), dim);
      // This thread's stretch of the [n_tokens, ffn] hidden values, in whole 64-byte lines from
      // the start (so the vector loops split them where one call over all of them would).
      const Range hidden = share_of(n * ffn, t, n_threads, 16);
      for (LinearKind kind : {LinearKind::Gate, LinearKind::Up}) {
        const std::vector<float>& bias = layer.at(kind).bias;
        float* values = kind == LinearKind::Gate ? gate.data() : up.data();
        if (!bias.empty()) {
          for (int64_t i = hidden.begin; i < hidden.end; ++i) values[i] += bias[i % ffn];
        }
      }
      ops::gated_activation(c.gelu_mlp, &gate[hidden.begin], &up[hidden.begin], hidden.end - hidden.begin);
      barrier.wait();
      run_products(products[l].down, gate.data(), ffn);
      add_residual(layer.at(LinearKind::Down).bias, layer.post_ffn_norm);
    }
    if (t == 0) std::copy(x_own.begin(), x_own.end(), x);
  }
  return true;
}

}  // namespace mpq

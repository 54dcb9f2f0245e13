// The fp32 forward pass of the Llama-family decoder, for a batch of sequences that each append
// new tokens to their own KV cache. Linear layers of all sequences run as one matrix product;
// attention runs per sequence and per KV head as two sgemm calls (scores, then values).
//
// Activations are row-major [n_tokens, width] buffers; token t of the batch is row t, where the
// sequences' new tokens are concatenated in batch order.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "mpq/error.h"
#include "kernel/attention.h"
#include "kernel/half.h"
#include "model/forward_internal.h"
#include "model/moe.h"
#include "model/ops.h"
#include "mpq/model.h"

namespace mpq {
namespace {

// Causal attention of a prompt batch (more than a few new tokens) against an fp32 cache that
// already holds their keys/values, as two sgemm calls per head (scores, then values). q and out
// are [n_new, q_dim] with row stride q_dim; KV head g's keys are the rows of
// k_cache + g * head_stride, head_dim floats each (KVCache). Heads sharing a KV head (GQA) read
// the same block.
void attend_batch(const ModelConfig& c, int window, const float* q, int64_t n_new, int n_past, const float* k_cache,
                  const float* v_cache, int64_t head_stride, float* out) {
  const int hd = c.head_dim;
  const int n_keys = n_past + static_cast<int>(n_new);
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = c.attn_scale();
  // One head per thread; the BLAS calls inside run single-threaded (see kernel/matmul_f32.h).
  // A short batch over a short context stays on one thread, where a fork would cost more.
#pragma omp parallel if (n_new * n_keys > 4096)
  {
    std::vector<float> scores(static_cast<size_t>(n_new) * n_keys);
#pragma omp for schedule(dynamic)
    for (int h = 0; h < c.n_heads; ++h) {
      const int kv = h / group;
      // scores[i, j] = scale * q_i · k_j
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_new, n_keys, hd, scale, q + h * hd,
                  c.q_dim(), k_cache + kv * head_stride, hd, 0.f, scores.data(), n_keys);
      // Causal softmax: query i sits at position n_past + i and sees keys 0..n_past + i (only the
      // latest `window` of them in a sliding-window layer).
      ops::causal_softmax(scores.data(), n_new, n_keys, n_past, window);
      // out_h = P · V_kv
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_new, hd, n_keys, 1.f, scores.data(),
                  n_keys, v_cache + kv * head_stride, hd, 0.f, out + h * hd, c.q_dim());
    }
  }
}

// Rows [0, n) of `rows` (n rows of kv_dim) to positions n_past.. of a layer's cache block, for
// KV heads [kv_begin, kv_end): token t's key for KV head g goes to row n_past + t of head g's
// block (KVCache layout), as fp32 or rounded to half.
template <class T>
void store_rows(const ModelConfig& c, const KVCache& cache, const float* rows, int64_t n, T* block, int kv_begin,
                int kv_end) {
  const int64_t head_stride = static_cast<int64_t>(cache.capacity) * c.head_dim;
  for (int64_t t = 0; t < n; ++t) {
    for (int g = kv_begin; g < kv_end; ++g) {
      const float* from = rows + t * c.kv_dim() + g * c.head_dim;
      T* to = block + g * head_stride + (cache.n_past + t) * c.head_dim;
      if constexpr (std::is_same_v<T, float>) {
        std::copy_n(from, c.head_dim, to);
      } else {
        f32_to_f16_row(best_isa(), from, c.head_dim, to);
      }
    }
  }
}

}  // namespace

bool cache_layer_allocated(const ModelConfig& c, const KVCache& cache, int l) {
  const size_t size = static_cast<size_t>(cache.capacity) * c.kv_dim();
  if (cache.type == KvCacheType::F16) return cache.k16[l].size() == size && cache.v16[l].size() == size;
  return cache.k[l].size() == size && cache.v[l].size() == size;
}

void store_keys_values(const ModelConfig& c, KVCache& cache, int l, const float* keys, const float* values,
                       int64_t n, int kv_begin, int kv_end) {
  if (cache.type == KvCacheType::F16) {
    store_rows(c, cache, keys, n, cache.k16[l].data(), kv_begin, kv_end);
    store_rows(c, cache, values, n, cache.v16[l].data(), kv_begin, kv_end);
  } else {
    store_rows(c, cache, keys, n, cache.k[l].data(), kv_begin, kv_end);
    store_rows(c, cache, values, n, cache.v[l].data(), kv_begin, kv_end);
  }
}

namespace {

// Attention of n_new new tokens (already stored) against layer l's cache. A few new tokens
// (decode) go through kernel/attention.h, which reads either cache type; a prompt batch through
// attend_batch, a half cache widened to fp32 for it first.
void attend_cache(const ModelConfig& c, const KVCache& cache, int l, const float* q, int64_t n_new, float* out) {
  const int64_t head_stride = static_cast<int64_t>(cache.capacity) * c.head_dim;
  const bool f16 = cache.type == KvCacheType::F16;
  const int window = c.layer_window(l);
  if (n_new <= kMaxDecodeTokens) {
    const DecodeAttentionShape shape{c.n_heads, c.n_kv_heads, c.head_dim, window, c.attn_scale()};
    if (f16) {
      return attend_decode(best_isa(), shape, q, n_new, cache.n_past, cache.k16[l].data(), cache.v16[l].data(),
                           head_stride, out);
    }
    return attend_decode(best_isa(), shape, q, n_new, cache.n_past, cache.k[l].data(), cache.v[l].data(),
                         head_stride, out);
  }
  if (!f16) return attend_batch(c, window, q, n_new, cache.n_past, cache.k[l].data(), cache.v[l].data(), head_stride, out);
  // The filled rows of every head's block, widened (with the same strides, so attend_batch reads
  // them where it would read an fp32 cache).
  const int64_t n_keys = cache.n_past + n_new;
  std::vector<float> keys(cache.k16[l].size()), values(cache.v16[l].size());
  for (int g = 0; g < c.n_kv_heads; ++g) {
    f16_to_f32_row(best_isa(), &cache.k16[l][g * head_stride], n_keys * c.head_dim, &keys[g * head_stride]);
    f16_to_f32_row(best_isa(), &cache.v16[l][g * head_stride], n_keys * c.head_dim, &values[g * head_stride]);
  }
  attend_batch(c, window, q, n_new, cache.n_past, keys.data(), values.data(), head_stride, out);
}

}  // namespace

BatchPlan Model::plan_batch(std::span<const SequenceInput> batch) const {
  const ModelConfig& c = config;
  BatchPlan plan;
  plan.sequences.assign(batch.begin(), batch.end());
  for (const SequenceInput& seq : batch) {
    if (seq.cache == nullptr || seq.n_tokens < 0) fail("forward", "invalid batch entry");
    if (seq.cache->n_past + seq.n_tokens > seq.cache->capacity) {
      fail("forward", "KV cache too small: " + std::to_string(seq.cache->n_past + seq.n_tokens) +
                          " positions needed, capacity " + std::to_string(seq.cache->capacity));
    }
    for (int i = 0; i < seq.n_tokens; ++i) {
      if (seq.tokens[i] < 0 || seq.tokens[i] >= c.vocab_size) {
        fail("forward", "token id " + std::to_string(seq.tokens[i]) + " out of range [0, " +
                            std::to_string(c.vocab_size) + ")");
      }
    }
    plan.n_tokens += seq.n_tokens;
  }
  // RoPE angles of every token: position / linear factor * inv_freq (with Llama-3 divisors),
  // computed in double so that long contexts keep their precision. The local layers of a gemma3
  // model have their own base, unscaled.
  const int half = c.head_dim / 2;
  auto tables = [&](double theta, double linear_factor, const std::vector<float>& divisors, std::vector<float>& cos_t,
                    std::vector<float>& sin_t) {
    std::vector<double> inv_freq(half);
    for (int i = 0; i < half; ++i) {
      inv_freq[i] = std::pow(theta, -2.0 * i / c.head_dim);
      if (!divisors.empty()) inv_freq[i] /= divisors[i];
    }
    cos_t.resize(plan.n_tokens * half);
    sin_t.resize(plan.n_tokens * half);
    int64_t t = 0;
    for (const SequenceInput& seq : batch) {
      for (int i = 0; i < seq.n_tokens; ++i, ++t) {
        const double pos = (seq.cache->n_past + i) / linear_factor;
        for (int f = 0; f < half; ++f) {
          cos_t[t * half + f] = static_cast<float>(std::cos(pos * inv_freq[f]));
          sin_t[t * half + f] = static_cast<float>(std::sin(pos * inv_freq[f]));
        }
      }
    }
  };
  tables(c.rope_theta, c.rope_linear_factor, c.rope_freq_divisors, plan.rope_cos, plan.rope_sin);
  if (c.rope_local_theta > 0) tables(c.rope_local_theta, 1.0, {}, plan.rope_cos_local, plan.rope_sin_local);
  return plan;
}

std::vector<float> Model::embed(const BatchPlan& plan) const {
  const int dim = config.dim;
  std::vector<float> x(plan.n_tokens * dim);
  int64_t t = 0;
  for (const SequenceInput& seq : plan.sequences) {
    for (int i = 0; i < seq.n_tokens; ++i, ++t) {
      embedding_row(seq.tokens[i], &x[t * dim]);
    }
  }
  if (config.embed_scale != 1.f) {  // gemma3: sqrt(dim), in float as transformers does
    for (float& v : x) v *= config.embed_scale;
  }
  return x;
}

void Model::run_layer(int l, const BatchPlan& plan, float* x, ForwardHooks* hooks) const {
  const ModelConfig& c = config;
  const DecoderLayer& layer = layers[l];
  const int64_t n_tokens = plan.n_tokens;
  const int64_t dense_ffn = c.is_moe() ? 0 : c.ffn_dim;  // MoE experts have their own buffers
  std::vector<float> xn(n_tokens * c.dim), q(n_tokens * c.q_dim()), k(n_tokens * c.kv_dim()),
      v(n_tokens * c.kv_dim()), att(n_tokens * c.q_dim()), proj(n_tokens * c.dim),
      gate(n_tokens * dense_ffn), up(n_tokens * dense_ffn);
  auto hook = [&](LinearKind kind, const float* input, int64_t width) {
    if (hooks != nullptr) hooks->on_linear_input(l, kind, input, n_tokens, width);
  };

  // --- attention block
  ops::rms_norm(x, layer.attn_norm.data(), xn.data(), n_tokens, c.dim, c.rms_eps);
  for (LinearKind kind : {LinearKind::Q, LinearKind::K, LinearKind::V}) hook(kind, xn.data(), c.dim);
  {
    const Linear* qkv[] = {&layer.at(LinearKind::Q), &layer.at(LinearKind::K), &layer.at(LinearKind::V)};
    float* outputs[] = {q.data(), k.data(), v.data()};
    Linear::apply_group(qkv, xn.data(), n_tokens, outputs);
  }
  if (c.qk_norm) {
    ops::rms_norm(q.data(), layer.q_norm.data(), q.data(), n_tokens * c.n_heads, c.head_dim, c.rms_eps);
    ops::rms_norm(k.data(), layer.k_norm.data(), k.data(), n_tokens * c.n_kv_heads, c.head_dim, c.rms_eps);
  }
  ops::rope(q.data(), n_tokens, c.n_heads, c.head_dim, plan.cos_of(c, l), plan.sin_of(c, l));
  ops::rope(k.data(), n_tokens, c.n_kv_heads, c.head_dim, plan.cos_of(c, l), plan.sin_of(c, l));
  int64_t start = 0;
  for (const SequenceInput& seq : plan.sequences) {
    KVCache& cache = *seq.cache;
    // Caches made for a single layer's use (calibration) get their rows on first use.
    if (!cache_layer_allocated(c, cache, l)) {
      const size_t size = static_cast<size_t>(cache.capacity) * c.kv_dim();
      if (cache.type == KvCacheType::F16) {
        cache.k16[l].resize(size);
        cache.v16[l].resize(size);
      } else {
        cache.k[l].resize(size);
        cache.v[l].resize(size);
      }
    }
    store_keys_values(c, cache, l, &k[start * c.kv_dim()], &v[start * c.kv_dim()], seq.n_tokens, 0, c.n_kv_heads);
    attend_cache(c, cache, l, &q[start * c.q_dim()], seq.n_tokens, &att[start * c.q_dim()]);
    start += seq.n_tokens;
  }
  hook(LinearKind::O, att.data(), c.q_dim());
  layer.at(LinearKind::O).apply(att.data(), n_tokens, proj.data());
  if (c.post_norms) ops::rms_norm(proj.data(), layer.post_attn_norm.data(), proj.data(), n_tokens, c.dim, c.rms_eps);
  for (int64_t i = 0; i < n_tokens * c.dim; ++i) x[i] += proj[i];

  // --- gated MLP (or the experts of a MoE layer)
  ops::rms_norm(x, layer.ffn_norm.data(), xn.data(), n_tokens, c.dim, c.rms_eps);
  if (c.is_moe()) return moe_mlp(c, layer, l, xn.data(), n_tokens, x, hooks);
  for (LinearKind kind : {LinearKind::Gate, LinearKind::Up}) hook(kind, xn.data(), c.dim);
  {
    const Linear* gate_up[] = {&layer.at(LinearKind::Gate), &layer.at(LinearKind::Up)};
    float* outputs[] = {gate.data(), up.data()};
    Linear::apply_group(gate_up, xn.data(), n_tokens, outputs);
  }
  ops::gated_activation(c.gelu_mlp, gate.data(), up.data(), n_tokens * c.ffn_dim);
  hook(LinearKind::Down, gate.data(), c.ffn_dim);
  layer.at(LinearKind::Down).apply(gate.data(), n_tokens, proj.data());
  if (c.post_norms) ops::rms_norm(proj.data(), layer.post_ffn_norm.data(), proj.data(), n_tokens, c.dim, c.rms_eps);
  for (int64_t i = 0; i < n_tokens * c.dim; ++i) x[i] += proj[i];
}

void Model::commit_batch(const BatchPlan& plan) const {
  for (const SequenceInput& seq : plan.sequences) seq.cache->n_past += seq.n_tokens;
}

std::vector<float> Model::head(const float* x, int64_t n_tokens, std::span<const int> rows) const {
  const ModelConfig& c = config;
  const int64_t n_out = static_cast<int64_t>(rows.size());
  std::vector<float> selected(n_out * c.dim);
  for (int64_t r = 0; r < n_out; ++r) {
    if (rows[r] < 0 || rows[r] >= n_tokens) fail("forward", "output row out of range");
    std::copy_n(&x[static_cast<int64_t>(rows[r]) * c.dim], c.dim, &selected[r * c.dim]);
  }
  ops::rms_norm(selected.data(), final_norm.data(), selected.data(), n_out, c.dim, c.rms_eps);
  std::vector<float> logits(n_out * c.vocab_size);
  if (n_out > 0) lm_head.apply(selected.data(), n_out, logits.data());
  return logits;
}

std::vector<float> Model::forward(std::span<const SequenceInput> batch,
                                  std::span<const int> output_rows, ForwardHooks* hooks) {
  const BatchPlan plan = plan_batch(batch);
  for (int row : output_rows) {
    if (row < 0 || row >= plan.n_tokens) fail("forward", "output row out of range");
  }
  std::vector<float> x = embed(plan);
  if (!run_layers_in_one_region(*this, plan, x.data(), hooks)) {
    for (int l = 0; l < config.n_layers; ++l) run_layer(l, plan, x.data(), hooks);
  }
  commit_batch(plan);
  return head(x.data(), plan.n_tokens, output_rows);
}

std::vector<float> Model::forward_all(std::span<const int32_t> tokens, KVCache& cache,
                                      ForwardHooks* hooks) {
  SequenceInput seq{tokens.data(), static_cast<int>(tokens.size()), &cache};
  std::vector<int> rows(tokens.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int>(i);
  return forward(std::span(&seq, 1), rows, hooks);
}

std::vector<float> Model::forward_last(std::span<const int32_t> tokens, KVCache& cache) {
  if (tokens.empty()) fail("forward", "no tokens");
  SequenceInput seq{tokens.data(), static_cast<int>(tokens.size()), &cache};
  const int last = static_cast<int>(tokens.size()) - 1;
  return forward(std::span(&seq, 1), std::span(&last, 1));
}

const char* kv_cache_type_name(KvCacheType type) { return type == KvCacheType::F16 ? "f16" : "f32"; }

KVCache Model::make_cache(int capacity) const { return make_cache(capacity, kv_cache_type); }

KVCache Model::make_cache(int capacity, KvCacheType type) const {
  KVCache cache;
  cache.capacity = capacity;
  cache.type = type;
  const size_t size = static_cast<size_t>(capacity) * config.kv_dim();
  if (type == KvCacheType::F16) {
    cache.k16.assign(config.n_layers, std::vector<uint16_t>(size));
    cache.v16.assign(config.n_layers, std::vector<uint16_t>(size));
  } else {
    cache.k.assign(config.n_layers, std::vector<float>(size));
    cache.v.assign(config.n_layers, std::vector<float>(size));
  }
  return cache;
}

}  // namespace mpq

// The in-memory decoder-only transformer (Llama family: llama, mistral, qwen2, qwen3, the MoE
// models mixtral and qwen3_moe; and gemma3) and its fp32 forward pass. Every Linear layer is a `Linear` whose weights sit behind the LinearWeights
// interface, so a quantizer can swap them for another format and a calibration pass can watch
// their inputs through ForwardHooks.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mpq {

class Tokenizer;
struct QuantizedMatrix;
struct ChannelSplit;
struct PackedProduct;  // kernel/packed.h

// ---------------------------------------------------------------------------------------------
// Configuration

struct ModelConfig {
  std::string arch;            // the forward pass's family: "llama", "qwen2", "qwen3" or "gemma3"
  int n_layers = 0;            // decoder blocks
  int dim = 0;                 // hidden size
  int ffn_dim = 0;             // MLP intermediate size
  int n_heads = 0;             // query heads
  int n_kv_heads = 0;          // key/value heads (GQA when < n_heads)
  int head_dim = 0;            // per-head size (dim / n_heads unless the config says otherwise)
  int vocab_size = 0;          // rows of the embedding and of the output head
  int max_context = 0;         // max_position_embeddings
  float rms_eps = 1e-5f;       // RMSNorm epsilon
  float rope_theta = 10000.f;  // RoPE base
  float rope_linear_factor = 1.f;       // "linear" rope scaling: positions divided by this
  std::vector<float> rope_freq_divisors;  // per frequency (head_dim/2), Llama-3 scaling; empty
                                          // when unscaled
  bool tied_embeddings = false;  // output head shares the embedding matrix
  bool qkv_bias = false;         // q/k/v projections have biases (qwen2; llama attention_bias)
  bool o_bias = false;           // o_proj has a bias (llama attention_bias)
  bool mlp_bias = false;         // gate/up/down have biases (llama mlp_bias)
  int sliding_window = 0;        // attend to at most this many latest positions (0: no limit),
                                 // in every layer or (local_layers) in the local ones
  bool qk_norm = false;          // per-head RMSNorm on q and k before RoPE (qwen3, gemma3)
  // Gemma 3 (family "gemma3"); the defaults are the Llama family's.
  float embed_scale = 1.f;             // embedding rows are multiplied by this (gemma3: sqrt(dim))
  float query_pre_attn_scalar = 0.f;   // attention scores scale by its -1/2 power; 0: head_dim
  bool post_norms = false;             // RMSNorm of the attention and MLP outputs before each
                                       // residual add (post_attention / post_feedforward_layernorm)
  bool gelu_mlp = false;               // MLP gelu_tanh(gate) * up instead of silu(gate) * up
  // Hugging Face files hold every RMSNorm weight of this model as w and the model multiplies by
  // (1 + w); mpq keeps the multiplier 1 + w in memory (as GGUF files hold it), so the HF reader
  // adds 1 and the HF writer subtracts it.
  bool hf_norm_offset = false;
  std::vector<uint8_t> local_layers;   // per layer: 1 = sliding-window (local) layer, 0 = full;
                                       // empty: sliding_window applies to every layer
  float rope_local_theta = 0.f;        // RoPE base of the local layers (unscaled); 0: rope_theta
  // Mixture of experts (mixtral, qwen3_moe): every layer's MLP is n_experts SwiGLU experts of
  // width ffn_dim, of which a router picks n_experts_per_token per token. 0: a dense MLP.
  int n_experts = 0;
  int n_experts_per_token = 0;
  bool norm_topk_prob = false;   // renormalize the chosen experts' softmax weights to sum to 1

  bool is_moe() const { return n_experts > 0; }
  // The window of layer l (0: none).
  int layer_window(int l) const {
    return local_layers.empty() || local_layers[l] != 0 ? sliding_window : 0;
  }
  // True when layer l uses the local RoPE tables (BatchPlan::rope_cos_local).
  bool layer_local_rope(int l) const { return rope_local_theta > 0 && !local_layers.empty() && local_layers[l] != 0; }
  // Scale of the attention scores q·k: 1/sqrt(query_pre_attn_scalar or head_dim), in float.
  float attn_scale() const {
    return 1.0f / std::sqrt(query_pre_attn_scalar > 0 ? query_pre_attn_scalar : static_cast<float>(head_dim));
  }

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// ---------------------------------------------------------------------------------------------
// Linear layers

// The seven Linear layers of a decoder block, in a fixed order.
enum class LinearKind : uint8_t { Q, K, V, O, Gate, Up, Down, kCount };
constexpr int kLinearKinds = static_cast<int>(LinearKind::kCount);
// "q_proj", "k_proj", ... (the Hugging Face module names)
const char* linear_kind_name(LinearKind kind);

// The weights of one Linear layer, W of shape [out_features, in_features], in some format.
class LinearWeights {
 public:
  virtual ~LinearWeights() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // y[t, :] = W · x[t, :] for t < n_tokens; x is [n_tokens, in], y is [n_tokens, out], row-major.
  virtual void forward(const float* x, int64_t n_tokens, float* y) const = 0;
  // Writes W as fp32 [out, in] (exact for fp32 weights, the decoded values otherwise).
  virtual void to_f32(float* dst) const = 0;
  // Writes row r of W (r < out_features) as fp32 [in], the same values to_f32 gives: the
  // embedding lookup of a model whose tied head is quantized. The default decodes the whole
  // matrix; every format of the runtime overrides it with a one-row read.
  virtual void decode_row(int64_t r, float* dst) const;
  // Name of the weight format ("f32", "int4_g128", ...) and bytes of weight storage.
  virtual std::string format_name() const = 0;
  virtual uint64_t storage_bytes() const = 0;
  // The quantized form (a copy, in the interchange layout of format/weight_format.h), for
  // weights of one quantized format; nullptr for dense fp32 and channel-split weights.
  // (Defined in linear.cpp: the pointees are incomplete here.)
  virtual std::unique_ptr<QuantizedMatrix> quantized() const;
  // The two channel sets of a channel-split layer (MixLLM); nullptr otherwise.
  virtual std::unique_ptr<ChannelSplit> channel_split() const;
  // Packed runtime: appends to `out` the packed products that compute forward()'s output into
  // y ([n_tokens, out_features]) and returns true, so that layers sharing their input run as one
  // group (Linear::apply_group); false, appending nothing, for weights that do not run from
  // packed matrices.
  virtual bool packed_products(float* y, std::vector<PackedProduct>& out) const;
};

// How quantized weights run.
// Element type of the KV cache.
enum class KvCacheType : uint8_t {
  F32,  // fp32: the reference arithmetic
  F16,  // IEEE half: half the bytes a decode step reads (keys and values rounded to 11 bits)
};
const char* kv_cache_type_name(KvCacheType type);  // "f32", "f16"

struct RuntimeOptions {
  // true: straight from weights packed for the CPU kernels (kernel/packed.h), resident memory
  // about the packed size; false: through a decoded fp32 copy and sgemm ("fake quantization",
  // the reference arithmetic, used while quantizing and analysing).
  bool packed = false;
  // With packed = false: quantized weights keep only their stored form and are decoded to fp32
  // each time they are used (forward, to_f32), instead of holding a decoded fp32 copy: the same
  // products bit for bit, in the memory of the stored weights (a 1.5B model's analysis and GPTQ
  // in well under half the RAM). The loader then also keeps a GGUF's ggml blocks as stored
  // (LoadOptions::keep_gguf_quantized). Slower: every use decodes the matrix again.
  bool decode_on_use = false;
  // Packed integer formats only: quantize activations to int8 per token and per 128 values
  // (W8A8 / W4A8 with integer dot products); other formats ignore it.
  bool int8_activations = false;
  // What Model::make_cache allocates by default. Unset: F16 for a quantized model run from packed
  // weights (a decode step then reads half the cache bytes, at no measurable accuracy cost:
  // docs/RUNTIME.md), F32 otherwise (fp models and the decoded reference runtime keep the
  // reference arithmetic).
  std::optional<KvCacheType> kv_cache;
  // Packed runtime, decode steps (a few new tokens): run all decoder layers in one parallel
  // region whose threads meet at spin barriers, instead of one fork per product and attention
  // (same results bit for bit; docs/RUNTIME.md). false: the fork-per-operation path.
  bool decode_in_one_region = true;
};

// Dense fp32 weights; the product goes through sgemm (OpenBLAS). The storage can be shared (the
// output head of a tied-embedding model views the embedding matrix).
std::unique_ptr<LinearWeights> make_dense_f32_weights(std::shared_ptr<const std::vector<float>> w,
                                                      int64_t out_features, int64_t in_features);

// Quantized weights (any format of format/weight_format.h), run as RuntimeOptions says.
std::unique_ptr<LinearWeights> make_quantized_weights(QuantizedMatrix q, const RuntimeOptions& runtime = {});
// A channel-split layer: its `high` rows in one format, the rest in another (format/channel_split.h).
std::unique_ptr<LinearWeights> make_split_weights(ChannelSplit split, const RuntimeOptions& runtime = {});

struct Linear {
  std::string name;                       // HF tensor name without ".weight"
  std::unique_ptr<LinearWeights> weights;  // never null in a loaded model
  std::vector<float> bias;                 // [out_features] or empty

  // y[t, :] = W · x[t, :] + bias for t < n_tokens (x [n_tokens, in], y [n_tokens, out]).
  void apply(const float* x, int64_t n_tokens, float* y) const;
  // apply() of several layers with the same input x (a layer's q/k/v, or gate/up): ys[i] gets
  // linears[i]'s output. When all of them run from packed weights they run as one threaded
  // group (kernel/packed.h: one fork, activations quantized once); otherwise one after another.
  static void apply_group(std::span<const Linear* const> linears, const float* x, int64_t n_tokens,
                          std::span<float* const> ys);
};

// Callbacks a calibration pass uses to watch the forward pass. Default: do nothing.
struct ForwardHooks {
  virtual ~ForwardHooks() = default;
  // Called with the input of a decoder Linear layer before it runs: x is [n_tokens, in].
  // q/k/v share one input, and gate/up share one input; the hook is called once for each kind.
  virtual void on_linear_input(int layer, LinearKind kind, const float* x, int64_t n_tokens,
                               int64_t in_features) {}
  // MoE layers: how many of the batch's tokens the router sent to each expert (counts has
  // n_experts entries; zeros included), once per layer and batch.
  virtual void on_routing(int layer, const int64_t* counts, int n_experts) {}
  // MoE layers: the input of expert `expert`'s gate/up (kind Gate, called once for both) or down
  // projection (kind Down), over the rows of the tokens routed to it (n_tokens may be 0: not
  // called then).
  virtual void on_expert_input(int layer, int expert, LinearKind kind, const float* x, int64_t n_tokens,
                               int64_t in_features) {}
};

// ---------------------------------------------------------------------------------------------
// Weights

// One expert of a MoE layer: a SwiGLU MLP of width ffn_dim.
struct Expert {
  Linear gate;  // [ffn_dim, dim]  "model.layers.L.mlp.experts.E.gate_proj"
  Linear up;    // [ffn_dim, dim]
  Linear down;  // [dim, ffn_dim]
};

struct DecoderLayer {
  std::vector<float> attn_norm;    // [dim] RMSNorm before attention
  std::vector<float> ffn_norm;     // [dim] RMSNorm before the MLP
  std::vector<float> post_attn_norm;  // [dim] RMSNorm of the attention output (post_norms) or empty
  std::vector<float> post_ffn_norm;   // [dim] RMSNorm of the MLP output (post_norms) or empty
  std::vector<float> q_norm;       // [head_dim] (qwen3, gemma3) or empty
  std::vector<float> k_norm;       // [head_dim] (qwen3, gemma3) or empty
  // Every norm holds the multiplier of x / rms(x) (gemma3: 1 + the Hugging Face weight).
  // Indexed by LinearKind. In a MoE layer gate/up/down are unused (null weights, empty names):
  // the MLP is `experts`, chosen per token by `router`.
  Linear linear[kLinearKinds];
  std::vector<float> router;       // MoE: [n_experts, dim] fp32 router ("mlp.gate"); else empty
  std::vector<Expert> experts;     // MoE: n_experts experts; else empty

  Linear& at(LinearKind kind) { return linear[static_cast<int>(kind)]; }
  const Linear& at(LinearKind kind) const { return linear[static_cast<int>(kind)]; }
};

// ---------------------------------------------------------------------------------------------
// KV cache and batches

// Keys and values of one sequence, for every layer: k[layer] is [n_kv_heads, capacity, head_dim]
// row-major, each KV head's keys in one block, so that a decode step's attention reads every
// head's keys (and values) as one sequential stream, which the hardware prefetchers follow,
// instead of a strided piece of every position's row. An F32 cache fills k and v, an F16 cache
// k16 and v16 (IEEE half bits, same layout); the other pair stays empty.
struct KVCache {
  int capacity = 0;                        // positions it can hold
  int n_past = 0;                          // positions filled
  KvCacheType type = KvCacheType::F32;     // which pair below holds the values
  std::vector<std::vector<float>> k;       // F32: per layer, [n_kv_heads * capacity * head_dim]
  std::vector<std::vector<float>> v;       // F32: per layer, the values, same shape
  std::vector<std::vector<uint16_t>> k16;  // F16: per layer, [n_kv_heads * capacity * head_dim]
  std::vector<std::vector<uint16_t>> v16;  // F16: per layer, the values, same shape
};

// One sequence's part of a batch: `n_tokens` new tokens appended after cache->n_past.
struct SequenceInput {
  const int32_t* tokens = nullptr;
  int n_tokens = 0;
  KVCache* cache = nullptr;
};

// A batch laid out for the layer-by-layer API: the sequences, and every token's RoPE angles.
struct BatchPlan {
  std::vector<SequenceInput> sequences;  // in batch order
  int64_t n_tokens = 0;                  // new tokens of all sequences
  std::vector<float> rope_cos;           // [n_tokens, head_dim/2]
  std::vector<float> rope_sin;           // [n_tokens, head_dim/2]
  // The local layers' tables (ModelConfig::layer_local_rope), same shape; empty when unused.
  std::vector<float> rope_cos_local;
  std::vector<float> rope_sin_local;
  const float* cos_of(const ModelConfig& c, int layer) const {
    return c.layer_local_rope(layer) ? rope_cos_local.data() : rope_cos.data();
  }
  const float* sin_of(const ModelConfig& c, int layer) const {
    return c.layer_local_rope(layer) ? rope_sin_local.data() : rope_sin.data();
  }
};

// ---------------------------------------------------------------------------------------------
// Model

struct LoadOptions {
  std::string tokenizer_path;  // for llama2.c checkpoints (tokenizer .bin); optional otherwise
  bool need_tokenizer = true;  // fail when no tokenizer can be found
  RuntimeOptions runtime;      // how quantized Linear weights run, and the KV cache type
  // GGUF: decoder Linear tensors stored in a ggml block type mpq has as a weight format (q4_K,
  // q8_0, iq4_nl, ...; not MoE experts) stay in that format (their blocks, as in the file)
  // instead of being decoded to fp32, so they take their file size in memory and run through the
  // runtime's ggml path. Off by default: the decoded fp32 weights run faster.
  bool keep_gguf_quantized = false;
};

// One entry of `mpq info`'s tensor list: as stored in the source file.
struct SourceTensorInfo {
  std::string name;            // canonical (HF) name
  std::string dtype;           // storage type in the file
  std::vector<int64_t> shape;  // outermost first
};

class Model {
 public:
  ModelConfig config;
  std::string source_path;     // what was loaded
  std::string source_layout;   // "gguf", "hf" or "llama2c"
  std::vector<SourceTensorInfo> source_tensors;  // as found in the file, for `mpq info`
  // [vocab, dim] fp32; null when the embedding is a quantized tied head (`mpq quantize
  // --head-format`): rows then come from lm_head (embedding_row).
  std::shared_ptr<const std::vector<float>> embedding;
  std::vector<DecoderLayer> layers;
  std::vector<float> final_norm;   // [dim]
  Linear lm_head;                  // [vocab, dim]; views `embedding` when tied
  std::unique_ptr<Tokenizer> tokenizer;  // may be null when LoadOptions::need_tokenizer is false
  KvCacheType kv_cache_type = KvCacheType::F32;  // make_cache's default (RuntimeOptions::kv_cache)
  bool decode_in_one_region = true;  // RuntimeOptions::decode_in_one_region

  Model();
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  // Parameter count: embedding + all layers + norms + head (the head counted only when untied).
  int64_t parameter_count() const;
  // Every Linear layer of the decoder in order: per layer the dense kinds it has, then (MoE) each
  // expert's gate, up, down. The output head is not included.
  std::vector<const Linear*> linears() const;
  // Throws mpq::Error naming `what` for a mixture-of-experts model: the steps that do not handle
  // experts yet (quantizing, writing, gradients) call it first.
  void require_dense(const std::string& what) const;
  // The embedding of `token` (0 <= token < vocab) into out[dim].
  void embedding_row(int32_t token, float* out) const;

  // A cache of `capacity` positions for every layer, of the type LoadOptions::runtime asked for
  // (kv_cache_type), or of `type`.
  KVCache make_cache(int capacity) const;
  KVCache make_cache(int capacity, KvCacheType type) const;

  // Runs the new tokens of every sequence through the model (their Linear layers batched
  // together), appends their keys/values to the caches and returns logits for the rows listed
  // in `output_rows` (indices into the concatenation of all sequences' new tokens), as
  // [output_rows.size(), vocab].
  std::vector<float> forward(std::span<const SequenceInput> batch,
                             std::span<const int> output_rows, ForwardHooks* hooks = nullptr);

  // The same pass one decoder layer at a time, for calibration: plan the batch (validates it),
  // embed its tokens ([n_tokens, dim]), run layers in place (each writes its own KV-cache rows;
  // a cache whose k[l]/v[l] are empty gets them allocated), then advance the caches, and apply
  // the final norm and output head to chosen rows.
  BatchPlan plan_batch(std::span<const SequenceInput> batch) const;
  std::vector<float> embed(const BatchPlan& plan) const;
  void run_layer(int layer, const BatchPlan& plan, float* x, ForwardHooks* hooks = nullptr) const;
  void commit_batch(const BatchPlan& plan) const;
  std::vector<float> head(const float* x, int64_t n_tokens, std::span<const int> rows) const;

  // Convenience: one sequence, logits of every position ([n, vocab]).
  std::vector<float> forward_all(std::span<const int32_t> tokens, KVCache& cache,
                                 ForwardHooks* hooks = nullptr);
  // Convenience: one sequence, logits of its last position ([vocab]).
  std::vector<float> forward_last(std::span<const int32_t> tokens, KVCache& cache);
};

// Loads GGUF, Hugging Face directories and llama2.c checkpoints. Throws mpq::Error naming the
// file and the problem: unknown architecture, missing tensors, shape mismatches, ...
Model load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace mpq

// Synthetic Hugging Face checkpoints for tests: a config.json and a model.safetensors of seeded
// random weights under the HF tensor names of the Llama family (llama, mistral, qwen2 with q/k/v
// biases, qwen3 with per-head q/k norms; mixtral and qwen3_moe with a router "mlp.gate" and
// experts "mlp.experts.E.*_proj" of width `ffn`) and of gemma3_text (four norms per block, q/k
// norms, norm weights stored as w for a multiplier 1 + w), in F32 or BF16. Tests can edit the config and the
// tensor map before writing, to make malformed checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/dtype.h"

namespace mpq::synth {

using nlohmann::json;

// Hyperparameters of a synthetic model. Defaults: llama with GQA (4 query heads, 2 KV heads).
struct Spec {
  std::string model_type = "llama";
  int dim = 32, ffn = 48, layers = 2, heads = 4, kv_heads = 2, head_dim = 8, vocab = 61;
  int max_pos = 64;
  double eps = 1e-5, theta = 10000;
  bool tied = false;
  json rope_scaling;         // null: no "rope_scaling" entry
  bool attention_bias = false;  // llama "attention_bias": biases on q/k/v/o
  bool mlp_bias = false;        // llama "mlp_bias": biases on gate/up/down
  int sliding_window = 0;       // mistral / gemma3 "sliding_window" (0: none written)
  // gemma3_text: layer l is a sliding-window (local) layer when (l + 1) % pattern != 0, written
  // as "layer_types"; local layers use RoPE base local_theta; scores scale by
  // query_pre_attn_scalar^-1/2.
  int sliding_window_pattern = 2;
  double local_theta = 10000;
  double query_pre_attn_scalar = 12;
  int experts = 0;              // MoE (model_type mixtral or qwen3_moe): experts per layer
  int experts_per_token = 0;    // MoE: num_experts_per_tok
  bool norm_topk_prob = true;   // qwen3_moe's norm_topk_prob (mixtral always renormalizes)
  DType dtype = DType::F32;  // storage type of every tensor: F32 or BF16
  uint32_t seed = 1;

  bool qkv_bias() const { return model_type == "qwen2" || attention_bias; }
  bool qk_norm() const { return model_type == "qwen3" || model_type == "qwen3_moe" || gemma(); }
  bool gemma() const { return model_type == "gemma3_text"; }
  bool local_layer(int l) const { return gemma() && sliding_window > 0 && (l + 1) % sliding_window_pattern != 0; }
  int q_dim() const { return heads * head_dim; }
  int kv_dim() const { return kv_heads * head_dim; }
};

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // exactly representable in the spec's storage type
};

// A checkpoint before it is written: tests edit `config` and `tensors` to make malformed ones.
struct SynthModel {
  Spec spec;
  json config;
  std::map<std::string, Tensor> tensors;  // under Hugging Face names
  const std::vector<float>& at(const std::string& name) const { return tensors.at(name).values; }
};

// fp32 -> the nearest bfloat16 (ties to even), returned as fp32. Written here rather than taken
// from format/dtype.h so that a decoding bug there cannot cancel out.
float round_to_bf16(float f);

// Seeded random weights (matrices and biases ~ N(0, 0.2), norm multipliers ~ N(1, 0.2) (gemma3
// stores w = multiplier - 1 ~ N(0, 0.2)), rounded to
// the spec's dtype) and the matching config.json content.
SynthModel make_model(const Spec& s);

// Writes <dir>/config.json and <dir>/model.safetensors (creating dir).
void write_model(const SynthModel& m, const std::string& dir);

}  // namespace mpq::synth

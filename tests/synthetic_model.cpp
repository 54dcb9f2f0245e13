#include "synthetic_model.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/safetensors.h"

namespace mpq::synth {

namespace fs = std::filesystem;

float round_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  bits &= 0xFFFF0000u;
  std::memcpy(&f, &bits, 4);
  return f;
}

SynthModel make_model(const Spec& s) {
  SynthModel m;
  m.spec = s;
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> noise(0.f, 0.2f);
  // Matrices and biases ~ N(0, 0.2); norm multipliers ~ N(1, 0.2) so that they matter too (a
  // gemma3 file stores the multiplier minus one).
  const float norm_mean = s.gemma() ? 0.f : 1.f;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean = 0.f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Tensor t{std::move(shape), std::vector<float>(n)};
    for (float& v : t.values) {
      v = mean + noise(rng);
      if (s.dtype == DType::BF16) v = round_to_bf16(v);
    }
    m.tensors[name] = std::move(t);
  };
  add("model.embed_tokens.weight", {s.vocab, s.dim});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {s.dim}, norm_mean);
    add(p + "post_attention_layernorm.weight", {s.dim}, norm_mean);
    if (s.gemma()) {
      add(p + "pre_feedforward_layernorm.weight", {s.dim}, norm_mean);
      add(p + "post_feedforward_layernorm.weight", {s.dim}, norm_mean);
    }
    add(p + "self_attn.q_proj.weight", {s.q_dim(), s.dim});
    add(p + "self_attn.k_proj.weight", {s.kv_dim(), s.dim});
    add(p + "self_attn.v_proj.weight", {s.kv_dim(), s.dim});
    add(p + "self_attn.o_proj.weight", {s.dim, s.q_dim()});
    if (s.qkv_bias()) {
      add(p + "self_attn.q_proj.bias", {s.q_dim()});
      add(p + "self_attn.k_proj.bias", {s.kv_dim()});
      add(p + "self_attn.v_proj.bias", {s.kv_dim()});
    }
    if (s.attention_bias) add(p + "self_attn.o_proj.bias", {s.dim});
    if (s.qk_norm()) {
      add(p + "self_attn.q_norm.weight", {s.head_dim}, norm_mean);
      add(p + "self_attn.k_norm.weight", {s.head_dim}, norm_mean);
    }
    if (s.experts > 0) {
      add(p + "mlp.gate.weight", {s.experts, s.dim});
      for (int e = 0; e < s.experts; ++e) {
        const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
        add(ep + "gate_proj.weight", {s.ffn, s.dim});
        add(ep + "up_proj.weight", {s.ffn, s.dim});
        add(ep + "down_proj.weight", {s.dim, s.ffn});
      }
      continue;
    }
    add(p + "mlp.gate_proj.weight", {s.ffn, s.dim});
    add(p + "mlp.up_proj.weight", {s.ffn, s.dim});
    add(p + "mlp.down_proj.weight", {s.dim, s.ffn});
    if (s.mlp_bias) {
      add(p + "mlp.gate_proj.bias", {s.ffn});
      add(p + "mlp.up_proj.bias", {s.ffn});
      add(p + "mlp.down_proj.bias", {s.dim});
    }
  }
  add("model.norm.weight", {s.dim}, norm_mean);
  if (!s.tied) add("lm_head.weight", {s.vocab, s.dim});

  m.config = {{"model_type", s.model_type},
              {"hidden_act", "silu"},
              {"hidden_size", s.dim},
              {"intermediate_size", s.ffn},
              {"num_hidden_layers", s.layers},
              {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kv_heads},
              {"head_dim", s.head_dim},
              {"vocab_size", s.vocab},
              {"max_position_embeddings", s.max_pos},
              {"rms_norm_eps", s.eps},
              {"rope_theta", s.theta},
              {"tie_word_embeddings", s.tied}};
  if (!s.rope_scaling.is_null()) m.config["rope_scaling"] = s.rope_scaling;
  if (s.attention_bias) m.config["attention_bias"] = true;
  if (s.mlp_bias) m.config["mlp_bias"] = true;
  if (s.sliding_window > 0) m.config["sliding_window"] = s.sliding_window;
  if (s.gemma()) {
    m.config.erase("hidden_act");
    m.config["hidden_activation"] = "gelu_pytorch_tanh";
    m.config["query_pre_attn_scalar"] = s.query_pre_attn_scalar;
    m.config["rope_local_base_freq"] = s.local_theta;
    json types = json::array();
    for (int l = 0; l < s.layers; ++l) types.push_back(s.local_layer(l) ? "sliding_attention" : "full_attention");
    m.config["layer_types"] = types;
  }
  if (s.experts > 0) {
    m.config[s.model_type == "mixtral" ? "num_local_experts" : "num_experts"] = s.experts;
    m.config["num_experts_per_tok"] = s.experts_per_token;
    if (s.model_type == "qwen3_moe") {
      m.config["moe_intermediate_size"] = s.ffn;
      m.config["norm_topk_prob"] = s.norm_topk_prob;
    }
  }
  return m;
}

void write_model(const SynthModel& m, const std::string& dir) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << m.config.dump(2);
  SafetensorsWriter writer;
  for (const auto& [name, t] : m.tensors) {
    if (m.spec.dtype == DType::BF16) {
      std::vector<uint16_t> bits(t.values.size());
      for (size_t i = 0; i < bits.size(); ++i) {
        uint32_t b;
        std::memcpy(&b, &t.values[i], 4);
        bits[i] = static_cast<uint16_t>(b >> 16);  // exact: the values are bf16 already
      }
      writer.add(name, DType::BF16, t.shape, bits.data(), bits.size() * 2);
    } else {
      writer.add(name, DType::F32, t.shape, t.values.data(), t.values.size() * 4);
    }
  }
  writer.write(dir + "/model.safetensors");
}

}  // namespace mpq::synth

// GGUF file -> Checkpoint: llama.cpp tensor names to Hugging Face names, GGUF metadata to
// config.json keys.
#include <cstring>
#include <memory>
#include <cstdio>
#include <filesystem>

#include "io/checkpoint.h"
#include "io/gguf.h"
#include "mpq/error.h"

namespace mpq {
namespace {

// blk.N.<gguf suffix> -> model.layers.N.<hf suffix>
struct NameRow {
  const char* gguf;  // suffix after "blk.N."
  const char* hf;    // suffix after "model.layers.N."
};
constexpr NameRow kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};
// gemma3 (looked up first for that architecture): four norms per block, where the Llama family
// has two. Its post_attention_layernorm is the attention output's norm, not the MLP's input norm.
constexpr NameRow kGemma3LayerNames[] = {
    {"ffn_norm.weight", "pre_feedforward_layernorm.weight"},
    {"post_attention_norm.weight", "post_attention_layernorm.weight"},
    {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
};
constexpr NameRow kGlobalNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
    {"rope_freqs.weight", "model.rope_freqs"},
};

// The HF name of a GGUF tensor, or "" when it has none.
std::string hf_name(const std::string& gguf_name, const std::string& arch) {
  for (const auto& row : kGlobalNames) {
    if (gguf_name == row.gguf) return row.hf;
  }
  if (gguf_name.rfind("blk.", 0) != 0) return "";
  const size_t dot = gguf_name.find('.', 4);
  if (dot == std::string::npos) return "";
  const std::string layer = gguf_name.substr(4, dot - 4);
  const std::string suffix = gguf_name.substr(dot + 1);
  if (arch == "gemma3") {
    for (const auto& row : kGemma3LayerNames) {
      if (suffix == row.gguf) return "model.layers." + layer + "." + row.hf;
    }
  }
  for (const auto& row : kLayerNames) {
    if (suffix == row.gguf) return "model.layers." + layer + "." + row.hf;
  }
  return "";
}

// gemma3 metadata as transformers' Gemma3TextConfig keys, by llama.cpp's rules
// (src/models/gemma3.cpp): attention scale 1/sqrt(key_length) except for the 27B model (62 layers:
// 1/sqrt(embedding_length / head_count)); local layers from attention.sliding_window and
// attention.sliding_window_pattern (a per-layer bool array, or P: layer l is local when
// l % P < P - 1; default 6); local RoPE base rope.freq_base_swa (default 10000). The RMSNorm
// weights hold 1 + w already (the loader keeps them as they are).
void gemma3_config(const GgufFile& gguf, nlohmann::json& c) {
  const std::string p = "gemma3.";
  c["model_type"] = "gemma3_text";
  c["hidden_activation"] = "gelu_pytorch_tanh";
  const int64_t n_layers = c["num_hidden_layers"].get<int64_t>();
  const int64_t heads = c["num_attention_heads"].get<int64_t>();
  const int64_t head_dim = c.contains("head_dim") ? c["head_dim"].get<int64_t>()
                                                  : (heads > 0 ? c["hidden_size"].get<int64_t>() / heads : 0);
  c["query_pre_attn_scalar"] = n_layers == 62 && heads > 0 ? c["hidden_size"].get<int64_t>() / heads : head_dim;
  const int64_t window = gguf.get_int(p + "attention.sliding_window", 0);
  std::vector<std::string> types(static_cast<size_t>(std::max<int64_t>(0, n_layers)), "full_attention");
  if (window > 0) {
    c["sliding_window"] = window;
    const std::string key = p + "attention.sliding_window_pattern";
    auto it = gguf.metadata().find(key);
    if (it != gguf.metadata().end() && it->second.type == GgufType::ARRAY) {
      const auto* flags = std::get_if<std::vector<int64_t>>(&it->second.value);
      if (flags == nullptr || static_cast<int64_t>(flags->size()) != n_layers) {
        fail(gguf.path(), key + " must hold one bool per layer");
      }
      for (int64_t l = 0; l < n_layers; ++l) {
        if ((*flags)[l] != 0) types[l] = "sliding_attention";
      }
    } else {
      const int64_t pattern = gguf.get_int(key, 6);
      for (int64_t l = 0; l < n_layers; ++l) {
        if (pattern == 0 || l % pattern < pattern - 1) types[l] = "sliding_attention";
      }
    }
  }
  c["layer_types"] = types;
  c["rope_local_base_freq"] = gguf.get_float(p + "rope.freq_base_swa", 10000.0);
  // Soft-capping changes the function: passed on, for the config to refuse.
  if (gguf.has(p + "final_logit_softcapping")) c["final_logit_softcapping"] = gguf.get_float(p + "final_logit_softcapping");
  if (gguf.has(p + "attn_logit_softcapping")) c["attn_logit_softcapping"] = gguf.get_float(p + "attn_logit_softcapping");
}

}  // namespace

std::string gguf_tensor_name(const std::string& hf, const std::string& arch) {
  for (const auto& row : kGlobalNames) {
    if (hf == row.hf) return row.gguf;
  }
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    const size_t dot = hf.find('.', prefix.size());
    if (dot != std::string::npos) {
      const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
      const std::string suffix = hf.substr(dot + 1);
      if (arch == "gemma3") {
        for (const auto& row : kGemma3LayerNames) {
          if (suffix == row.hf) return "blk." + layer + "." + row.gguf;
        }
      }
      for (const auto& row : kLayerNames) {
        if (suffix == row.hf) return "blk." + layer + "." + row.gguf;
      }
    }
  }
  return "";
}

Checkpoint open_gguf_checkpoint(const std::string& path) {
  auto gguf = std::make_shared<GgufFile>(path);
  const std::string arch = gguf->get_string("general.architecture");
  Checkpoint ck;
  ck.path = path;
  ck.layout = "gguf";
  ck.gguf = gguf;
  ck.owners.push_back(gguf);
  for (const TensorRecord& record : gguf->tensors()) {
    // Names without a Hugging Face equivalent keep their GGUF name, so that the model builder
    // can refuse a file holding tensors it would otherwise ignore.
    std::string name = hf_name(record.name, arch);
    if (name.empty()) name = record.name;
    TensorRecord renamed = record;
    renamed.name = name;
    ck.tensors.emplace(name, std::move(renamed));
  }

  const std::string p = arch + ".";
  if (gguf->get_int(p + "expert_count", 0) > 0) {
    // GGUF stacks the experts of a layer into one 3-D tensor (ffn_gate_exps, ...); mpq reads MoE
    // models from Hugging Face directories only.
    fail(path, "mixture-of-experts GGUF files are not supported (use the Hugging Face checkpoint)");
  }
  nlohmann::json& c = ck.config;
  c["model_type"] = arch;
  c["hidden_size"] = gguf->get_int(p + "embedding_length");
  c["intermediate_size"] = gguf->get_int(p + "feed_forward_length");
  c["num_hidden_layers"] = gguf->get_int(p + "block_count");
  c["num_attention_heads"] = gguf->get_int(p + "attention.head_count");
  c["num_key_value_heads"] =
      gguf->get_int(p + "attention.head_count_kv", gguf->get_int(p + "attention.head_count"));
  if (gguf->has(p + "attention.key_length")) c["head_dim"] = gguf->get_int(p + "attention.key_length");
  // Metadata that would change the computation is honoured or refused, never ignored.
  {
    const int64_t heads = c["num_attention_heads"].get<int64_t>();
    const int64_t head_dim = c.contains("head_dim") ? c["head_dim"].get<int64_t>()
                                                    : (heads > 0 ? c["hidden_size"].get<int64_t>() / heads : 0);
    if (gguf->has(p + "attention.value_length") && gguf->get_int(p + "attention.value_length") != head_dim) {
      fail(path, p + "attention.value_length (" + std::to_string(gguf->get_int(p + "attention.value_length")) +
                     ") differs from the key length (" + std::to_string(head_dim) + "): not supported");
    }
    if (gguf->has(p + "rope.dimension_count") && gguf->get_int(p + "rope.dimension_count") != head_dim) {
      fail(path, p + "rope.dimension_count is " + std::to_string(gguf->get_int(p + "rope.dimension_count")) +
                     " but each attention head has " + std::to_string(head_dim) +
                     " dimensions: partial rotary embeddings are not supported");
    }
  }
  c["max_position_embeddings"] = gguf->get_int(p + "context_length", 4096);
  c["rms_norm_eps"] = gguf->get_float(p + "attention.layer_norm_rms_epsilon", 1e-5);
  c["rope_theta"] = gguf->get_float(p + "rope.freq_base", 10000.0);
  // The vocabulary size: explicit, else the tokenizer's, else the embedding's rows.
  if (gguf->has(p + "vocab_size")) {
    c["vocab_size"] = gguf->get_int(p + "vocab_size");
  } else if (gguf->has("tokenizer.ggml.tokens")) {
    c["vocab_size"] = gguf->get_string_array("tokenizer.ggml.tokens").size();
  } else if (auto it = ck.tensors.find("model.embed_tokens.weight"); it != ck.tensors.end()) {
    c["vocab_size"] = it->second.shape.at(0);
  }
  c["tie_word_embeddings"] = ck.tensors.count("lm_head.weight") == 0;
  if (gguf->has(p + "rope.scaling.type")) {
    const std::string type = gguf->get_string(p + "rope.scaling.type");
    if (type == "linear") {
      c["rope_scaling"] = {{"rope_type", "linear"},
                           {"factor", gguf->get_float(p + "rope.scaling.factor", 1.0)}};
    } else if (type != "none") {
      // YaRN and friends change attention scaling too; refuse rather than run them wrong.
      fail(path, "unsupported rope scaling type '" + type + "'");
    }
  }
  if (arch == "gemma3") gemma3_config(*gguf, c);
  // llama.cpp's converter permutes q/k rows of llama-architecture models back to Meta's
  // interleaved RoPE order; qwen2/qwen3 are stored in rotate-half (NEOX) order.
  ck.qk_rope_interleaved = (arch == "llama" || arch == "mistral");
  return ck;
}

Checkpoint open_checkpoint(const std::string& path) {
  std::error_code ec;
  // A directory is a Hugging Face checkpoint.
  if (std::filesystem::is_directory(path, ec)) return open_hf_checkpoint(path);
  if (!std::filesystem::exists(path, ec)) fail(path, "no such file or directory");
  char magic[4] = {0, 0, 0, 0};
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) fail(path, "cannot open");
    const size_t got = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (got == 4 && std::memcmp(magic, "GGUF", 4) == 0) return open_gguf_checkpoint(path);
  }
  return open_llama2c_checkpoint(path);
}

}  // namespace mpq

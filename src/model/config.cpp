#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "mpq/error.h"

namespace mpq {
namespace {

using nlohmann::json;

// Architectures this build can run, and what each needs beyond the llama baseline.
struct ArchRow {
  const char* model_type;  // HF model_type (a GGUF general.architecture is translated to it)
  const char* family;      // the forward pass it runs on
  bool qkv_bias;           // q/k/v projections carry biases
  bool qk_norm;            // per-head RMSNorm on q and k
  bool gemma;              // Gemma 3's decoder: embedding scaled by sqrt(dim), RMSNorm weights
                           // stored as w for a multiplier 1 + w, norms after attention and MLP
                           // too, gelu_tanh MLP, query_pre_attn_scalar, local/global layers with
                           // their own RoPE bases (parse_gemma3)
};
constexpr ArchRow kArchTable[] = {
    {"llama", "llama", false, false, false},
    {"mistral", "llama", false, false, false},
    {"qwen2", "qwen2", true, false, false},
    {"qwen3", "qwen3", false, true, false},
    // Mixture-of-experts MLPs (every layer): Mixtral is llama with experts; Qwen3-MoE is qwen3.
    {"mixtral", "llama", false, false, false},
    {"qwen3_moe", "qwen3", false, true, false},
    // Gemma 3's text decoder (Gemma3ForCausalLM; GGUF architecture "gemma3").
    {"gemma3_text", "gemma3", false, true, true},
};

std::string supported_list() {
  std::string s;
  for (const auto& row : kArchTable) s += (s.empty() ? "" : ", ") + std::string(row.model_type);
  return s;
}

int get_positive_int(const json& config, const char* key, const std::string& where) {
  auto it = config.find(key);
  if (it == config.end()) fail(where, std::string("config is missing field '") + key + "'");
  if (!it->is_number_integer()) fail(where, std::string("config field '") + key + "' must be an integer");
  long long v = it->get<long long>();
  if (v <= 0 || v > (1LL << 30)) {
    fail(where, std::string("config field '") + key + "' has invalid value " + std::to_string(v));
  }
  return static_cast<int>(v);
}

bool has_value(const json& config, const char* key) {
  auto it = config.find(key);
  return it != config.end() && !it->is_null();
}

bool get_bool(const json& config, const char* key, bool fallback, const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(where, std::string("config field '") + key + "' must be true or false");
  return it->get<bool>();
}

std::string get_string(const json& config, const char* key, const std::string& fallback,
                       const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_string()) fail(where, std::string("config field '") + key + "' must be a string");
  return it->get<std::string>();
}

double get_number(const json& config, const char* key, double fallback, const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail(where, std::string("config field '") + key + "' must be a number");
  return it->get<double>();
}

// A number the model keeps as a float and that must be > 0: refused when it is not, or when it
// does not fit a float (it would become infinite).
float get_positive_float(const json& config, const char* key, double fallback, const std::string& where) {
  const double v = get_number(config, key, fallback, where);
  if (!(v > 0) || v > std::numeric_limits<float>::max()) {
    fail(where, std::string("config field '") + key + "' must be a positive number, got " + std::to_string(v));
  }
  return static_cast<float>(v);
}

}  // namespace

std::vector<float> llama3_rope_divisors(int head_dim, float theta, float factor,
                                        float low_freq_factor, float high_freq_factor,
                                        int original_max_position) {
  // Following the Llama 3.1 recipe: long wavelengths (low frequencies) are slowed down by
  // `factor`, short ones are kept, and the band in between is interpolated smoothly.
  const double low_freq_wavelen = original_max_position / low_freq_factor;
  const double high_freq_wavelen = original_max_position / high_freq_factor;
  std::vector<float> divisors(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    double scaled;
    if (wavelen < high_freq_wavelen) {
      scaled = freq;
    } else if (wavelen > low_freq_wavelen) {
      scaled = freq / factor;
    } else {
      const double smooth = (original_max_position / wavelen - low_freq_factor) /
                            (high_freq_factor - low_freq_factor);
      scaled = (1 - smooth) * freq / factor + smooth * freq;
    }
    divisors[i] = static_cast<float>(freq / scaled);
  }
  return divisors;
}

namespace {

// RoPE, as transformers 4 writes it (top-level "rope_theta", optional "rope_scaling") or as
// transformers 5 does ("rope_parameters": {"rope_type", "rope_theta", ...}). Both may be present
// (a config converted from one to the other): they must then agree. Every key of the RoPE object
// is understood or refused by name, and so is every RoPE type mpq does not implement: a wrong base
// or a skipped scaling runs without any error and gives a silently different model.
void parse_rope(const json& config, ModelConfig& c, const std::string& where) {
  const bool has_theta = has_value(config, "rope_theta");
  const double top_theta = get_positive_float(config, "rope_theta", 10000.0, where);
  const json* params = nullptr;  // the RoPE object: rope_parameters (v5) or rope_scaling (v4)
  std::string params_key;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    if (!it->is_object()) fail(where, std::string("config field '") + key + "' must be an object");
    if (params != nullptr && *params != *it) {
      // transformers 5 may keep both; identical content is the same statement twice.
      const json& a = *params;
      const json& b = *it;
      for (const auto& [k, v] : b.items()) {
        if (a.contains(k) && a[k] != v) fail(where, "rope_parameters and rope_scaling disagree on '" + k + "'");
      }
    }
    if (params == nullptr) {
      params = &*it;
      params_key = key;
    }
  }
  if (has_value(config, "partial_rotary_factor") && get_number(config, "partial_rotary_factor", 1.0, where) != 1.0) {
    fail(where, "partial_rotary_factor != 1 (partial rotary embeddings) is not supported");
  }
  c.rope_theta = static_cast<float>(top_theta);
  if (params == nullptr) return;
  const json& p = *params;
  static const char* kKnown[] = {"rope_type", "type", "rope_theta", "factor", "low_freq_factor",
                                 "high_freq_factor", "original_max_position_embeddings", "partial_rotary_factor"};
  for (const auto& [key, value] : p.items()) {
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      fail(where, "config field '" + params_key + "." + key + "' is not understood by mpq (refusing to guess)");
    }
  }
  if (p.contains("rope_theta")) {
    const double theta = get_positive_float(p, "rope_theta", 10000.0, where + ": " + params_key);
    if (has_theta && theta != top_theta) {
      fail(where, "rope_theta (" + std::to_string(top_theta) + ") and " + params_key + ".rope_theta (" +
                      std::to_string(theta) + ") disagree");
    }
    c.rope_theta = static_cast<float>(theta);
  }
  if (p.contains("partial_rotary_factor") && get_number(p, "partial_rotary_factor", 1.0, where) != 1.0) {
    fail(where, params_key + ".partial_rotary_factor != 1 (partial rotary embeddings) is not supported");
  }
  const std::string type = get_string(p, "rope_type", get_string(p, "type", "default", where), where);
  const double factor = get_number(p, "factor", 1.0, where);
  auto unused = [&](std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
      if (p.contains(k)) fail(where, params_key + "." + k + " has no meaning for rope_type '" + type + "'");
    }
  };
  if (type == "llama3") {
    // Positive factors, the band [low, high) not empty (its width divides), and an integer
    // original context (a float one was converted with a plain cast).
    const std::string w = where + ": " + params_key;
    const float llama3_factor = get_positive_float(p, "factor", 1.0, w);
    const float low = get_positive_float(p, "low_freq_factor", 1.0, w);
    const float high = get_positive_float(p, "high_freq_factor", 4.0, w);
    if (!(high > low)) fail(w, "high_freq_factor must be larger than low_freq_factor");
    const int original = has_value(p, "original_max_position_embeddings")
                             ? get_positive_int(p, "original_max_position_embeddings", w)
                             : 8192;
    c.rope_freq_divisors = llama3_rope_divisors(c.head_dim, c.rope_theta, llama3_factor, low, high, original);
  } else if (type == "linear") {
    unused({"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
    if (!(factor > 0)) fail(where, params_key + ".factor must be positive");
    c.rope_linear_factor = static_cast<float>(factor);
  } else if (type == "default") {
    unused({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  } else {
    fail(where, "unsupported " + params_key + " type '" + type + "' (supported: default, linear, llama3)");
  }
}

// Gemma 3's configuration beyond the common keys (transformers' Gemma3TextConfig):
// - local (sliding-window) and global layers: "layer_types" ("sliding_attention" /
//   "full_attention" per layer), else "sliding_window_pattern" P (default 6: every P-th layer is
//   global, the rule of transformers and of llama.cpp), with window "sliding_window";
// - RoPE per layer type: transformers 4 writes "rope_theta" (global, default 1e6),
//   "rope_local_base_freq" (local, default 1e4) and "rope_scaling" (global layers only);
//   transformers 5 writes "rope_parameters": {"full_attention": {...}, "sliding_attention": {...}}.
//   The local layers' RoPE must be unscaled;
// - attention scores scaled by query_pre_attn_scalar^-1/2; gelu_pytorch_tanh MLP;
// - soft-capping of attention scores or logits and bidirectional attention are refused.
void parse_gemma3(const json& config, ModelConfig& c, const std::string& where) {
  c.embed_scale = std::sqrt(static_cast<float>(c.dim));  // transformers: the scale cast to the (fp32) dtype
  c.post_norms = true;
  c.gelu_mlp = true;
  c.hf_norm_offset = true;
  c.query_pre_attn_scalar = get_positive_float(config, "query_pre_attn_scalar", 256.0, where);
  for (const char* key : {"hidden_activation", "hidden_act"}) {
    const std::string act = get_string(config, key, "gelu_pytorch_tanh", where);
    if (act != "gelu_pytorch_tanh") {
      fail(where, std::string("unsupported ") + key + " '" + act + "' for gemma3 (expected gelu_pytorch_tanh)");
    }
  }
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    if (has_value(config, key)) fail(where, std::string("config field '") + key + "' (soft-capping) is not supported");
  }
  if (get_bool(config, "use_bidirectional_attention", false, where)) {
    fail(where, "use_bidirectional_attention is not supported (mpq runs causal decoders)");
  }
  // Layer types.
  c.local_layers.assign(c.n_layers, 0);
  if (auto it = config.find("layer_types"); it != config.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != static_cast<size_t>(c.n_layers)) {
      fail(where, "config field 'layer_types' must be a list of num_hidden_layers entries");
    }
    for (int l = 0; l < c.n_layers; ++l) {
      const json& t = (*it)[l];
      if (t == "sliding_attention") {
        c.local_layers[l] = 1;
      } else if (t != "full_attention") {
        fail(where, "layer_types[" + std::to_string(l) + "] is " + t.dump() +
                        " (expected \"sliding_attention\" or \"full_attention\")");
      }
    }
  } else {
    const int pattern = has_value(config, "sliding_window_pattern") ? get_positive_int(config, "sliding_window_pattern", where) : 6;
    for (int l = 0; l < c.n_layers; ++l) c.local_layers[l] = (l + 1) % pattern != 0;
  }
  const bool any_local = std::find(c.local_layers.begin(), c.local_layers.end(), 1) != c.local_layers.end();
  if (any_local) c.sliding_window = get_positive_int(config, "sliding_window", where);
  // RoPE: each layer type's keys as a plain config for parse_rope.
  const json* per_type = nullptr;
  if (auto it = config.find("rope_parameters"); it != config.end() && !it->is_null()) {
    if (!it->is_object()) fail(where, "config field 'rope_parameters' must be an object");
    for (const auto& [key, value] : it->items()) {
      if (key != "full_attention" && key != "sliding_attention") {
        fail(where, "config field 'rope_parameters." + key +
                        "' is not understood by mpq for gemma3 (expected full_attention and sliding_attention)");
      }
    }
    per_type = &*it;
  }
  json global = json::object(), local = json::object();
  if (has_value(config, "rope_theta")) global["rope_theta"] = config["rope_theta"];
  if (has_value(config, "rope_scaling")) global["rope_scaling"] = config["rope_scaling"];
  if (has_value(config, "rope_local_base_freq")) local["rope_theta"] = config["rope_local_base_freq"];
  if (per_type != nullptr && per_type->contains("full_attention")) global["rope_parameters"] = (*per_type)["full_attention"];
  if (per_type != nullptr && per_type->contains("sliding_attention")) local["rope_parameters"] = (*per_type)["sliding_attention"];
  auto theta_given = [](const json& j) {
    return j.contains("rope_theta") || (j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
                                        j["rope_parameters"].contains("rope_theta"));
  };
  if (!theta_given(global)) global["rope_theta"] = 1000000.0;  // Gemma3TextConfig.default_theta
  if (!theta_given(local)) local["rope_theta"] = 10000.0;
  parse_rope(global, c, where);
  ModelConfig lc;
  lc.head_dim = c.head_dim;
  parse_rope(local, lc, where + " (sliding_attention RoPE)");
  if (!lc.rope_freq_divisors.empty() || lc.rope_linear_factor != 1.f) {
    fail(where, "scaled RoPE on the sliding-window layers is not supported");
  }
  c.rope_local_theta = lc.rope_theta;
}

ModelConfig parse_config(const json& config, const std::string& where) {
  if (!config.is_object()) fail(where, "config is not a JSON object");
  ModelConfig c;
  auto type_it = config.find("model_type");
  if (type_it == config.end() || !type_it->is_string()) fail(where, "config is missing field 'model_type'");
  const std::string model_type = type_it->get<std::string>();
  const ArchRow* arch = nullptr;
  for (const auto& row : kArchTable) {
    if (model_type == row.model_type) arch = &row;
  }
  if (arch == nullptr) {
    fail(where, "unsupported architecture '" + model_type + "' (supported: " + supported_list() + ")");
  }
  c.arch = arch->family;
  // Hugging Face's attention_bias puts a bias on all four attention projections; qwen2 has
  // q/k/v biases only, whatever the flag says.
  const bool attention_bias = get_bool(config, "attention_bias", false, where);
  c.qkv_bias = arch->qkv_bias || attention_bias;
  c.o_bias = attention_bias;
  c.mlp_bias = get_bool(config, "mlp_bias", false, where);
  c.qk_norm = arch->qk_norm;
  c.n_layers = get_positive_int(config, "num_hidden_layers", where);
  c.dim = get_positive_int(config, "hidden_size", where);
  c.ffn_dim = get_positive_int(config, "intermediate_size", where);
  c.n_heads = get_positive_int(config, "num_attention_heads", where);
  c.n_kv_heads = has_value(config, "num_key_value_heads")
                     ? get_positive_int(config, "num_key_value_heads", where)
                     : c.n_heads;
  const bool explicit_head_dim = has_value(config, "head_dim");
  c.head_dim = explicit_head_dim ? get_positive_int(config, "head_dim", where) : c.dim / c.n_heads;
  c.vocab_size = get_positive_int(config, "vocab_size", where);
  c.max_context = has_value(config, "max_position_embeddings")
                      ? get_positive_int(config, "max_position_embeddings", where)
                      : 4096;
  c.rms_eps = get_positive_float(config, "rms_norm_eps", 1e-6, where);
  c.tied_embeddings = get_bool(config, "tie_word_embeddings", false, where);
  // Sliding-window attention: mistral declares "sliding_window"; qwen2 only uses it when
  // "use_sliding_window" is true.
  const bool window_applies =
      !arch->gemma && (model_type == "mistral" || get_bool(config, "use_sliding_window", false, where));
  if (window_applies && has_value(config, "sliding_window")) {
    c.sliding_window = get_positive_int(config, "sliding_window", where);
  }
  // Mixture of experts: Mixtral says num_local_experts, Qwen3-MoE num_experts (and the expert
  // width moe_intermediate_size). Mixtral always renormalizes the top-k routing weights.
  const char* experts_key = model_type == "mixtral" ? "num_local_experts" : "num_experts";
  if (model_type == "mixtral" || model_type == "qwen3_moe") {
    c.n_experts = get_positive_int(config, experts_key, where);
    c.n_experts_per_token = get_positive_int(config, "num_experts_per_tok", where);
    if (c.n_experts_per_token > c.n_experts) {
      fail(where, "num_experts_per_tok (" + std::to_string(c.n_experts_per_token) + ") exceeds " + experts_key +
                      " (" + std::to_string(c.n_experts) + ")");
    }
    if (model_type == "qwen3_moe") {
      if (has_value(config, "moe_intermediate_size")) c.ffn_dim = get_positive_int(config, "moe_intermediate_size", where);
      c.norm_topk_prob = get_bool(config, "norm_topk_prob", false, where);
      // Dense MLP layers inside a MoE model (mlp_only_layers, decoder_sparse_step > 1).
      const auto only = config.find("mlp_only_layers");
      const bool dense_layers = (only != config.end() && only->is_array() && !only->empty()) ||
                                get_number(config, "decoder_sparse_step", 1, where) != 1;
      if (dense_layers) fail(where, "MoE models with dense MLP layers (mlp_only_layers / decoder_sparse_step) are not supported");
    } else {
      c.norm_topk_prob = true;
    }
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    fail(where, "num_attention_heads (" + std::to_string(c.n_heads) +
                    ") is not a multiple of num_key_value_heads (" + std::to_string(c.n_kv_heads) + ")");
  }
  if (c.head_dim % 2 != 0) fail(where, "head_dim must be even for RoPE");
  if (!explicit_head_dim && c.dim % c.n_heads != 0) {
    fail(where, "hidden_size is not a multiple of num_attention_heads");
  }
  if (arch->gemma) {
    parse_gemma3(config, c, where);
  } else {
    parse_rope(config, c, where);
    const std::string hidden_act = get_string(config, "hidden_act", "silu", where);
    if (hidden_act != "silu") fail(where, "unsupported hidden_act '" + hidden_act + "' (expected silu)");
  }
  if (!(c.rms_eps > 0) || !(c.rope_theta > 0)) fail(where, "rms_norm_eps and rope_theta must be positive");
  return c;
}

}  // namespace

ModelConfig model_config_from_hf(const json& config, const std::string& where) {
  try {
    return parse_config(config, where);
  } catch (const json::exception& e) {
    // A field of an unexpected JSON type that a getter above did not catch.
    fail(where, std::string("invalid config: ") + e.what());
  }
}

}  // namespace mpq

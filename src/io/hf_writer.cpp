// Writing a (quantized) model as a Hugging Face directory: config.json with a compressed-tensors
// quantization_config, model.safetensors, the tokenizer and a report.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "format/channel_split.h"
#include "io/compressed_tensors.h"
#include "io/model_writer.h"
#include "io/safetensors.h"
#include "io/tokenizer_hf_writer.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace mpq {
namespace fs = std::filesystem;
namespace {

// config.json keys of a ModelConfig (Hugging Face names).
nlohmann::json hf_config(const ModelConfig& c) {
  static const std::map<std::string, std::string> kArchitectures = {
      {"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
      {"gemma3", "Gemma3ForCausalLM"}};
  const bool gemma = c.arch == "gemma3";
  nlohmann::json j = {{"model_type", gemma ? "gemma3_text" : c.arch},
                      {"architectures", {kArchitectures.at(c.arch)}},
                      {"hidden_size", c.dim},
                      {"intermediate_size", c.ffn_dim},
                      {"num_hidden_layers", c.n_layers},
                      {"num_attention_heads", c.n_heads},
                      {"num_key_value_heads", c.n_kv_heads},
                      {"head_dim", c.head_dim},
                      {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.max_context},
                      {"rms_norm_eps", c.rms_eps},
                      {"rope_theta", c.rope_theta},
                      {"hidden_act", "silu"},
                      {"tie_word_embeddings", c.tied_embeddings},
                      {"torch_dtype", "float32"}};
  if (c.arch == "llama") {
    j["attention_bias"] = c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  if (c.rope_linear_factor != 1.f) j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_linear_factor}};
  if (gemma) {
    // transformers 4's Gemma3TextConfig keys (transformers 5 reads them too).
    j.erase("hidden_act");
    j["hidden_activation"] = "gelu_pytorch_tanh";
    // An integer where it is one: transformers' Gemma3TextConfig declares it `int` and its strict
    // validation refuses 256.0.
    const float scalar = c.query_pre_attn_scalar;
    if (scalar == std::floor(scalar) && scalar < 1e9f) {
      j["query_pre_attn_scalar"] = static_cast<int64_t>(scalar);
    } else {
      j["query_pre_attn_scalar"] = scalar;
    }
    j["rope_local_base_freq"] = c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta;
    nlohmann::json types = nlohmann::json::array();
    for (int l = 0; l < c.n_layers; ++l) types.push_back(c.layer_window(l) > 0 ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
    if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
    return j;
  }
  if (c.sliding_window > 0) {
    j["sliding_window"] = c.sliding_window;
    j["use_sliding_window"] = true;
  }
  return j;
}

void add_f32(SafetensorsWriter& w, const std::string& name, const std::vector<float>& v,
             std::vector<int64_t> shape) {
  w.add(name, DType::F32, shape, v.data(), v.size() * sizeof(float));
}

// An RMSNorm weight: the multiplier mpq keeps, or (gemma3, hf_norm_offset) the multiplier minus
// one, which is what the Hugging Face model stores.
void add_norm(SafetensorsWriter& w, const ModelConfig& c, const std::string& name, const std::vector<float>& v) {
  if (!c.hf_norm_offset) return add_f32(w, name, v, {static_cast<int64_t>(v.size())});
  std::vector<float> stored(v.size());
  for (size_t i = 0; i < v.size(); ++i) stored[i] = v[i] - 1.f;
  add_f32(w, name, stored, {static_cast<int64_t>(v.size())});
}

// A large tensor in F32, or rounded to BF16/F16 (round to nearest even).
void add_matrix(SafetensorsWriter& w, const std::string& name, const std::vector<float>& v,
                std::vector<int64_t> shape, DType dtype) {
  if (dtype == DType::F32) return add_f32(w, name, v, std::move(shape));
  if (dtype != DType::BF16 && dtype != DType::F16) fail(name, "embedding dtype must be F32, BF16 or F16");
  std::vector<uint16_t> half(v.size());
  for (size_t i = 0; i < v.size(); ++i) half[i] = dtype == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
  w.add(name, dtype, shape, half.data(), half.size() * sizeof(uint16_t));
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.flush();
  if (!out) fail(path, "cannot write (disk full?)");
}

// The quantizer of a module as mpq_report.json's "modules" records it ("" when unknown).
std::string quantizer_of(const nlohmann::json& report, const std::string& module) {
  if (!report.contains("modules") || !report["modules"].contains(module)) return "";
  return report["modules"][module].value("quantizer", std::string());
}

void write_hf_files(const Model& model, const ModelWriteOptions& options, StagedDirectory& staged);

OutputRules with_source(const Model& model, OutputRules rules) {
  rules.inputs.push_back(model.source_path);
  return rules;
}

}  // namespace

bool is_gguf_output(const std::string& out) {
  return out.size() > 5 && out.compare(out.size() - 5, 5, ".gguf") == 0;
}

void check_model_output(const Model& model, const std::string& out, const ModelWriteOptions& options) {
  if (is_gguf_output(out)) {
    check_output_file(out, with_source(model, options.rules), is_mpq_gguf);
    return;
  }
  check_output_dir(out, with_source(model, options.rules));
  // The tokenizer files are built (not written) now: one that cannot be written exactly fails
  // before any quantization work.
  if (model.tokenizer && !(model.source_layout == "hf" && fs::exists(fs::path(model.source_path) / "tokenizer.json"))) {
    hf_tokenizer_files(model.tokenizer->spec(), model.source_path, model.config.max_context);
  }
}

void write_model(const Model& model, const std::string& out, const ModelWriteOptions& options) {
  if (is_gguf_output(out)) {
    write_gguf_model(model, out, options);
  } else {
    write_hf_directory(model, out, options);
  }
}

void write_hf_directory(const Model& model, const std::string& out_dir, const ModelWriteOptions& options) {
  model.require_dense(out_dir);
  const OutputRules rules = with_source(model, options.rules);
  check_output_dir(out_dir, rules);
  StagedDirectory staged(out_dir, "hf-model");
  try {
    write_hf_files(model, options, staged);
  } catch (const Error& e) {
    throw Error(staged.final_names(e.what()));
  }
  staged.commit(rules);
}

namespace {

void write_hf_files(const Model& model, const ModelWriteOptions& options, StagedDirectory& staged) {
  const ModelConfig& c = model.config;
  const std::string& out_dir = staged.dir();
  const DType embedding_dtype = options.embedding_dtype;
  const nlohmann::json& report = options.report;

  SafetensorsWriter st;
  // A tied quantized head is the embedding too (model.embedding is null): no separate copy.
  if (model.embedding) {
    add_matrix(st, "model.embed_tokens.weight", *model.embedding, {c.vocab_size, c.dim}, embedding_dtype);
  }
  add_norm(st, c, "model.norm.weight", model.final_norm);
  const std::unique_ptr<QuantizedMatrix> quantized_head = model.lm_head.weights->quantized();
  if (!c.tied_embeddings && !quantized_head) {
    std::vector<float> head(static_cast<size_t>(c.vocab_size) * c.dim);
    model.lm_head.weights->to_f32(head.data());
    add_matrix(st, "lm_head.weight", head, {c.vocab_size, c.dim}, embedding_dtype);
  }
  if (!c.rope_freq_divisors.empty()) add_f32(st, "model.rope_freqs", c.rope_freq_divisors, {c.head_dim / 2});
  // Per format, the modules that use it (compressed-tensors config groups).
  std::map<std::string, std::vector<std::string>> modules_by_format;
  nlohmann::json mpq_modules = nlohmann::json::object();
  std::vector<std::string> split_modules;  // channel-split: no compressed-tensors equivalent
  std::map<std::string, std::pair<int64_t, int64_t>> shapes;  // module -> rows, cols
  for (int l = 0; l < c.n_layers; ++l) {
    const DecoderLayer& layer = model.layers[l];
    const std::string base = "model.layers." + std::to_string(l) + ".";
    add_norm(st, c, base + "input_layernorm.weight", layer.attn_norm);
    if (c.post_norms) {
      add_norm(st, c, base + "post_attention_layernorm.weight", layer.post_attn_norm);
      add_norm(st, c, base + "pre_feedforward_layernorm.weight", layer.ffn_norm);
      add_norm(st, c, base + "post_feedforward_layernorm.weight", layer.post_ffn_norm);
    } else {
      add_norm(st, c, base + "post_attention_layernorm.weight", layer.ffn_norm);
    }
    if (c.qk_norm) {
      add_norm(st, c, base + "self_attn.q_norm.weight", layer.q_norm);
      add_norm(st, c, base + "self_attn.k_norm.weight", layer.k_norm);
    }
    for (const Linear& linear : layer.linear) {
      const int64_t rows = linear.weights->out_features(), cols = linear.weights->in_features();
      shapes[linear.name] = {rows, cols};
      if (!linear.bias.empty()) add_f32(st, linear.name + ".bias", linear.bias, {rows});
      if (const auto split = linear.weights->channel_split()) {
        // Two modules "<m>.high" / "<m>.low" plus the high set's row indices (docs/FORMAT.md).
        const std::vector<int32_t>& hr = split->high_rows;
        st.add(linear.name + ".high_channels", "I32", {static_cast<int64_t>(hr.size())},
               reinterpret_cast<const uint8_t*>(hr.data()), hr.size() * sizeof(int32_t));
        for (const auto& [suffix, part] : {std::pair{".high", &split->high}, std::pair{".low", &split->low}}) {
          if (part->rows == 0) continue;
          for (const StoredTensor& t : encode_module(linear.name + suffix, *part)) {
            st.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
          }
        }
        split_modules.push_back(linear.name);
        mpq_modules[linear.name] = {{"format", split->low.traits().name},
                                    {"split", true},
                                    {"high_format", split->high.traits().name},
                                    {"n_high", static_cast<int64_t>(hr.size())},
                                    {"quantizer", quantizer_of(report, linear.name)}};
        continue;
      }
      const auto q = linear.weights->quantized();
      if (q == nullptr) {
        std::vector<float> w(rows * cols);
        linear.weights->to_f32(w.data());
        add_f32(st, linear.name + ".weight", w, {rows, cols});
        continue;
      }
      for (const StoredTensor& t : encode_module(linear.name, *q)) {
        st.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
      }
      modules_by_format[q->traits().name].push_back(linear.name);
      mpq_modules[linear.name] = {{"format", q->traits().name}, {"quantizer", quantizer_of(report, linear.name)}};
    }
  }
  if (quantized_head) {  // mpq quantize --head-format
    for (const StoredTensor& t : encode_module("lm_head", *quantized_head)) {
      st.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    }
    modules_by_format[quantized_head->traits().name].push_back("lm_head");
    shapes["lm_head"] = {quantized_head->rows, quantized_head->cols};
    mpq_modules["lm_head"] = {{"format", quantized_head->traits().name}, {"quantizer", quantizer_of(report, "lm_head")}};
  }
  st.set_metadata("format", "pt");
  st.write(staged.path("model.safetensors"));

  nlohmann::json config = hf_config(c);
  if (!modules_by_format.empty() || !split_modules.empty()) {
    nlohmann::json groups = nlohmann::json::object();
    nlohmann::json ignore = nlohmann::json::array();
    if (!quantized_head) ignore.push_back("lm_head");
    std::set<std::string> formats;     // the groups' formats
    std::vector<std::string> foreign;  // modules compressed-tensors cannot express (partial groups)
    bool fp4 = false;
    auto add_group = [&](const std::string& format, const std::vector<std::string>& targets, nlohmann::json weights) {
      groups["group_" + std::to_string(groups.size())] = {{"format", format},
                                                         {"targets", targets},
                                                         {"weights", std::move(weights)},
                                                         {"input_activations", nullptr},
                                                         {"output_activations", nullptr}};
      formats.insert(format);
    };
    for (const auto& [format, modules] : modules_by_format) {
      const WeightFormatId id = *weight_format_from_name(format);
      if (weight_format(id).value_kind == ValueKind::Half) {
        for (const auto& m : modules) ignore.push_back(m);
        continue;
      }
      std::vector<std::string> targets;
      for (const auto& m : modules) {
        const auto [rows, cols] = shapes.at(m);
        (ct_expressible(id, rows, cols) ? targets : foreign).push_back(m);
      }
      if (targets.empty()) continue;
      fp4 |= weight_format(id).value_kind == ValueKind::FP4_E2M1;
      add_group(compressed_tensors_format(id), targets, compressed_tensors_weight_args(id));
    }
    // mpq-native modules (channel splits, groups that do not divide a row) sit in config groups
    // whose format is not a compressed-tensors format: transformers and vLLM then refuse the
    // directory by name instead of loading those modules as random weights (docs/INTEROP.md).
    if (!split_modules.empty()) add_group("mpq-channel-split", split_modules, nullptr);
    if (!foreign.empty()) add_group("mpq-partial-groups", foreign, nullptr);
    config["quantization_config"] = {{"quant_method", "compressed-tensors"},
                                     {"format", formats.size() == 1 ? *formats.begin() : "mixed-precision"},
                                     {"quantization_status", "compressed"},
                                     {"config_groups", groups},
                                     {"ignore", ignore},
                                     {"kv_cache_scheme", nullptr},
                                     {"global_compression_ratio", nullptr},
                                     {"sparsity_config", nlohmann::json::object()},
                                     {"transform_config", nlohmann::json::object()},
                                     // The compressed-tensors release whose conventions this follows.
                                     {"version", "0.20.1"},
                                     // mpq's own record: the exact format of every module.
                                     {"mpq", {{"version", 1}, {"layout", kCtLayout}, {"modules", mpq_modules}}}};
    // transformers decompresses fp4 weights to bf16: a float32 model then fails to load them.
    if (fp4) config["torch_dtype"] = config["dtype"] = "bfloat16";
  }
  write_text(staged.path("config.json"), config.dump(2) + "\n");
  if (model.tokenizer) {
    write_tokenizer_gguf(model.tokenizer->spec(), staged.path("tokenizer.gguf"));
    // The tokenizer as transformers loads it: the source's own files when it is a Hugging Face
    // directory that has them, else written from the tokenizer mpq runs (io/tokenizer_hf_writer.h).
    const fs::path source_json = fs::path(model.source_path) / "tokenizer.json";
    if (model.source_layout == "hf" && fs::exists(source_json)) {
      for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                               "special_tokens_map.json", "chat_template.jinja"}) {
        const fs::path src = fs::path(model.source_path) / name;
        std::error_code ec;
        if (fs::exists(src)) fs::copy_file(src, staged.path(name), ec);
        if (ec) fail(out_dir, std::string("cannot copy ") + src.string() + ": " + ec.message());
      }
    } else {
      write_hf_tokenizer_files(model.tokenizer->spec(), model.source_path, c.max_context,
                               [&](const std::string& name) { return staged.path(name); });
    }
  }
  write_text(staged.path("mpq_report.json"), report.dump(2) + "\n");
}

}  // namespace

}  // namespace mpq

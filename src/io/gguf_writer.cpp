// Writing a model as a GGUF file llama.cpp runs unchanged (docs/FORMAT.md "GGUF output",
// docs/GGUF_NOTES.md): llama.cpp's tensor names and dimension order, its RoPE row order for the
// llama architecture, each Linear tensor in the ggml type its plan chose, norms in F32, the
// architecture and tokenizer metadata copied from a GGUF source (or built from the config and
// tokenizer of another source).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "format/channel_split.h"
#include "format/dtype.h"
#include "format/ggml_codec.h"
#include "format/ggml_fp4.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "io/model_writer.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace mpq {
namespace fs = std::filesystem;
namespace {

// GGUF tensor names go through gguf_tensor_name (io/checkpoint.h); these are mpq's module names.
std::string gguf_name(const std::string& hf, const std::string& arch) {
  const std::string g = gguf_tensor_name(hf, arch);
  check(!g.empty(), hf, "has no GGUF tensor name");
  return g;
}

// Hugging Face rotate-half rows -> llama.cpp's interleaved order (GGUF llama q/k): GGUF row
// h*hd + 2j + i holds HF row h*hd + i*hd/2 + j. Rows are independent in every format, so the
// quantized rows move as they are.
std::vector<int64_t> interleave_permutation(int n_heads, int head_dim) {
  std::vector<int64_t> from(static_cast<size_t>(n_heads) * head_dim);
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    for (int j = 0; j < half; ++j) {
      for (int i = 0; i < 2; ++i) from[static_cast<size_t>(h) * head_dim + 2 * j + i] = int64_t{h} * head_dim + i * half + j;
    }
  }
  return from;
}

// The bytes of rows [0, rows) of `data` (row_bytes each) in the order `from` lists.
std::vector<uint8_t> permute_rows(const uint8_t* data, int64_t row_bytes, const std::vector<int64_t>& from) {
  std::vector<uint8_t> out(from.size() * static_cast<size_t>(row_bytes));
  for (size_t r = 0; r < from.size(); ++r) std::memcpy(out.data() + r * row_bytes, data + from[r] * row_bytes, row_bytes);
  return out;
}

class ModelGguf {
 public:
  // `measure`: tensors planned by mpq (Linear, head) are counted as tensor infos only and the
  // report as empty, for gguf_fixed_bytes; the writer then cannot finish().
  ModelGguf(const Model& model, const std::string& path, const ModelWriteOptions& options, bool measure = false)
      : model_(model), w_(path), options_(options), measure_(measure) {}

  // Bytes of the file without the planned tensors' data and the report (measure mode).
  uint64_t fixed_bytes() const { return w_.file_bytes() + dense_bytes_; }

  void metadata() {
    const ModelConfig& c = model_.config;
    if (model_.source_layout == "gguf") {
      // The source's architecture and tokenizer keys, as llama.cpp wrote them.
      const GgufFile src(model_.source_path);
      for (const auto& [key, value] : src.metadata()) {
        if (key == "general.alignment" || key == "general.file_type" || key == "general.quantization_version") continue;
        w_.set(key, value);
      }
    } else {
      check(c.arch == "llama" || c.arch == "qwen2" || c.arch == "qwen3" || c.arch == "gemma3", model_.source_path,
            "no GGUF architecture for '" + c.arch + "'");
      check(c.sliding_window == 0 || c.arch == "gemma3", model_.source_path,
            "llama.cpp's " + c.arch + " architecture has no sliding window");
      check(c.rope_linear_factor == 1.f, model_.source_path, "linear RoPE scaling is not written to GGUF by mpq");
      const std::string a = c.arch;
      w_.set("general.architecture", gguf_string(a));
      w_.set("general.name", gguf_string(fs::path(model_.source_path).filename().string()));
      w_.set(a + ".context_length", gguf_u32(c.max_context));
      w_.set(a + ".embedding_length", gguf_u32(c.dim));
      w_.set(a + ".block_count", gguf_u32(c.n_layers));
      w_.set(a + ".feed_forward_length", gguf_u32(c.ffn_dim));
      w_.set(a + ".attention.head_count", gguf_u32(c.n_heads));
      w_.set(a + ".attention.head_count_kv", gguf_u32(c.n_kv_heads));
      w_.set(a + ".attention.layer_norm_rms_epsilon", gguf_f32(c.rms_eps));
      w_.set(a + ".rope.freq_base", gguf_f32(c.rope_theta));
      w_.set(a + ".rope.dimension_count", gguf_u32(c.head_dim));
      w_.set(a + ".attention.key_length", gguf_u32(c.head_dim));
      w_.set(a + ".attention.value_length", gguf_u32(c.head_dim));
      w_.set(a + ".vocab_size", gguf_u32(c.vocab_size));
      if (c.arch == "gemma3") gemma3_metadata();
      check(model_.tokenizer != nullptr, model_.source_path, "a GGUF file needs the model's tokenizer");
      const TokenizerSpec& spec = model_.tokenizer->spec();
      static const char* kKnownPre[] = {"default", "llama-bpe", "smollm", "qwen2", "gpt-2", "llama3"};
      if (spec.kind == TokenizerSpec::Kind::ByteLevelBpe &&
          std::find(std::begin(kKnownPre), std::end(kKnownPre), spec.pre_name) == std::end(kKnownPre)) {
        fail(model_.source_path, "the tokenizer's llama.cpp pre-tokenizer name is not known (it came from '" +
                                     spec.pre_name + "'): convert the model to GGUF with llama.cpp first, then "
                                     "quantize that GGUF with mpq");
      }
      add_tokenizer_metadata(w_, spec);
    }
    w_.set("general.quantization_version", gguf_u32(2));
    w_.set("general.quantized_by", gguf_string("mpq"));
    // mpq's record of the run (provenance, quantizer per module: the types are the tensors'
    // own); llama.cpp ignores unknown keys. Compact, so that a size budget can reserve its bytes
    // (gguf_report_reserve).
    nlohmann::json report = options_.report;
    if (report.contains("modules") && report["modules"].is_object()) {
      for (auto& [name, m] : report["modules"].items()) {
        if (m.is_object() && m.contains("quantizer")) m = m["quantizer"];
      }
    }
    w_.set("mpq.report", gguf_string(measure_ ? std::string() : report.dump()));
  }

  // gemma3 keys llama.cpp reads (src/models/gemma3.cpp), for a model from another layout. llama.cpp
  // derives the attention scale from the shape: a query_pre_attn_scalar it would not derive is
  // refused. The local layers go as a per-layer bool array (what llama.cpp's
  // attention.sliding_window_pattern may hold), their RoPE base as rope.freq_base_swa.
  void gemma3_metadata() {
    const ModelConfig& c = model_.config;
    const std::string a = "gemma3.";
    const float derived = c.n_layers == 62 ? static_cast<float>(c.dim / c.n_heads) : static_cast<float>(c.head_dim);
    check(c.query_pre_attn_scalar == derived, model_.source_path,
          "query_pre_attn_scalar " + std::to_string(c.query_pre_attn_scalar) + " is not the " + std::to_string(derived) +
              " llama.cpp derives from the shape: the GGUF file would compute a different model");
    if (c.sliding_window > 0) {
      w_.set(a + "attention.sliding_window", gguf_u32(c.sliding_window));
      GgufValue pattern;
      pattern.type = GgufType::ARRAY;
      pattern.array_type = GgufType::BOOL;
      std::vector<int64_t> flags(c.n_layers);
      for (int l = 0; l < c.n_layers; ++l) flags[l] = c.layer_window(l) > 0;
      pattern.value = flags;
      w_.set(a + "attention.sliding_window_pattern", pattern);
    }
    w_.set(a + "rope.freq_base_swa", gguf_f32(c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta));
  }

  // One Linear (or head/embedding) tensor in its format. `from` (optional) reorders rows.
  void weights(const std::string& hf, const LinearWeights& weights, const std::vector<int64_t>* from = nullptr) {
    const std::string name = gguf_name(hf + ".weight", model_.config.arch);
    const int64_t rows = weights.out_features(), cols = weights.in_features();
    if (measure_) {
      w_.add_tensor_info(name, {rows, cols});
      return;
    }
    check(weights.channel_split() == nullptr, hf, "a channel-split tensor has no GGUF form (use --target llama.cpp)");
    const std::unique_ptr<QuantizedMatrix> q = weights.quantized();
    if (q == nullptr) {  // dense fp32
      std::vector<float> w(static_cast<size_t>(rows * cols));
      weights.to_f32(w.data());
      dense(name, w, {rows, cols}, from);
      return;
    }
    const WeightFormatTraits& f = q->traits();
    std::vector<uint8_t> bytes;
    uint32_t type = 0;
    int block_values = 1, block_bytes = 0;
    if (is_ggml_format(f)) {
      bytes = q->codes;
      type = f.ggml->ggml_type;
      block_values = f.ggml->block_values;
      block_bytes = f.ggml->block_bytes;
    } else if (f.id == WeightFormatId::BF16 || f.id == WeightFormatId::F16) {
      bytes = q->codes;
      type = ggml_type_of(f.id == WeightFormatId::BF16 ? DType::BF16 : DType::F16);
      block_bytes = 2;
    } else if (f.id == WeightFormatId::MXFP4) {
      check(cols % 32 == 0, hf, "mxfp4 rows of " + std::to_string(cols) + " are not whole ggml MXFP4 blocks of 32");
      bytes = mxfp4_to_ggml(*q);
      type = ggml_type_of(DType::MXFP4);
      block_values = 32;
      block_bytes = 17;
    } else if (f.id == WeightFormatId::NVFP4) {
      check(cols % 64 == 0, hf, "nvfp4 rows of " + std::to_string(cols) + " are not whole ggml NVFP4 blocks of 64");
      GgmlNvfp4 g = nvfp4_to_ggml(*q);
      bytes = std::move(g.blocks);
      type = kGgmlNvfp4Type;
      block_values = 64;
      block_bytes = 36;
      if (g.scale != 1.f) {  // llama.cpp multiplies the product by "<name>.scale"
        const std::string scale_name = name.substr(0, name.size() - std::string(".weight").size()) + ".scale";
        w_.add_tensor(scale_name, DType::F32, {1}, &g.scale, 4);
      }
    } else {
      fail(hf, std::string("format ") + f.name + " has no GGUF type (llama.cpp runs ggml types: q4_K, q6_K, q8_0, "
                                                 "...; plan with --target llama.cpp)");
    }
    const int64_t row_bytes = cols / block_values * block_bytes;
    if (from != nullptr) bytes = permute_rows(bytes.data(), row_bytes, *from);
    w_.add_tensor(name, type, block_values, block_bytes, {rows, cols}, bytes.data(), bytes.size());
    ++types_[type];
  }

  void dense(const std::string& name, const std::vector<float>& v, const std::vector<int64_t>& shape,
             const std::vector<int64_t>* from = nullptr) {
    const int64_t cols = shape.back();
    const DType d = shape.size() > 1 ? options_.embedding_dtype : DType::F32;
    if (measure_) {  // counted, padded to the alignment, without converting the table
      w_.add_tensor_info(name, shape);
      dense_bytes_ += (v.size() * static_cast<uint64_t>(dtype_traits(d).block_bytes) + 31) / 32 * 32;  // scalar types: 1 value per block
      return;
    }
    std::vector<float> data = v;
    if (from != nullptr) {
      const auto bytes = permute_rows(reinterpret_cast<const uint8_t*>(v.data()), cols * 4, *from);
      std::memcpy(data.data(), bytes.data(), bytes.size());
    }
    if (d == DType::F32) {
      w_.add_tensor(name, DType::F32, shape, data.data(), data.size() * 4);
      return;
    }
    std::vector<uint16_t> half(data.size());
    for (size_t i = 0; i < data.size(); ++i) half[i] = d == DType::BF16 ? f32_to_bf16(data[i]) : f32_to_f16(data[i]);
    w_.add_tensor(name, d, shape, half.data(), half.size() * 2);
  }

  void norm(const std::string& hf, const std::vector<float>& v) {
    w_.add_tensor(gguf_name(hf, model_.config.arch), DType::F32, {static_cast<int64_t>(v.size())}, v.data(), v.size() * 4);
  }

  void tensors() {
    const ModelConfig& c = model_.config;
    // Embedding: the fp32 table, or (a tied, quantized head) the head's tensor serves both.
    const std::unique_ptr<QuantizedMatrix> head_q = model_.lm_head.weights->quantized();
    // (measure: a tied head is planned, and the plan's head is what the file will hold)
    if (model_.embedding && !(measure_ && c.tied_embeddings)) {
      dense("token_embd.weight", *model_.embedding, {c.vocab_size, c.dim});
    } else {
      weights("model.embed_tokens", *model_.lm_head.weights);
    }
    norm("model.norm.weight", model_.final_norm);
    if (!c.tied_embeddings) weights("lm_head", *model_.lm_head.weights);
    if (!c.rope_freq_divisors.empty()) norm("model.rope_freqs", c.rope_freq_divisors);
    // llama.cpp's llama architecture holds q/k in the interleaved RoPE order; qwen2/qwen3 in
    // rotate-half (mpq's order).
    const bool interleave = model_.config.arch == "llama";
    const std::vector<int64_t> q_from = interleave_permutation(c.n_heads, c.head_dim);
    const std::vector<int64_t> k_from = interleave_permutation(c.n_kv_heads, c.head_dim);
    for (int l = 0; l < c.n_layers; ++l) {
      const DecoderLayer& layer = model_.layers[l];
      const std::string base = "model.layers." + std::to_string(l) + ".";
      // (gemma3: mpq's norms hold 1 + w, as llama.cpp's do.)
      norm(base + "input_layernorm.weight", layer.attn_norm);
      if (c.post_norms) {
        norm(base + "post_attention_layernorm.weight", layer.post_attn_norm);
        norm(base + "pre_feedforward_layernorm.weight", layer.ffn_norm);
        norm(base + "post_feedforward_layernorm.weight", layer.post_ffn_norm);
      } else {
        norm(base + "post_attention_layernorm.weight", layer.ffn_norm);
      }
      if (c.qk_norm) {
        norm(base + "self_attn.q_norm.weight", layer.q_norm);
        norm(base + "self_attn.k_norm.weight", layer.k_norm);
      }
      for (int k = 0; k < kLinearKinds; ++k) {
        const Linear& linear = layer.linear[k];
        const std::vector<int64_t>* from = nullptr;
        if (interleave && k == static_cast<int>(LinearKind::Q)) from = &q_from;
        if (interleave && k == static_cast<int>(LinearKind::K)) from = &k_from;
        weights(linear.name, *linear.weights, from);
        if (!linear.bias.empty()) {
          std::vector<float> bias = linear.bias;
          if (from != nullptr) {
            for (size_t r = 0; r < from->size(); ++r) bias[r] = linear.bias[(*from)[r]];
          }
          const std::string name = gguf_name(linear.name + ".bias", c.arch);
          w_.add_tensor(name, DType::F32, {static_cast<int64_t>(bias.size())}, bias.data(), bias.size() * 4);
        }
      }
    }
  }

  void finish() { w_.finish(options_.max_file_bytes); }

 private:
  const Model& model_;
  GgufWriter w_;
  const ModelWriteOptions& options_;
  std::map<uint32_t, int> types_;  // ggml type -> Linear tensors written in it
  bool measure_ = false;
  uint64_t dense_bytes_ = 0;  // measure: data of dense 2-D tables (an untied embedding)
};

}  // namespace

bool is_mpq_gguf(const std::string& path) {
  try {
    const GgufFile f(path);
    return f.get_string("general.quantized_by", "") == "mpq";
  } catch (const Error&) {
    return false;
  }
}

void write_gguf_model(const Model& model, const std::string& path, const ModelWriteOptions& options) {
  model.require_dense(path);
  OutputRules rules = options.rules;
  rules.inputs.push_back(model.source_path);
  check_output_file(path, rules, is_mpq_gguf);
  ModelGguf out(model, path, options);
  out.metadata();
  out.tensors();
  out.finish();
}

uint64_t gguf_fixed_bytes(const Model& model) {
  const ModelWriteOptions defaults;  // outlives `out`, which keeps a reference
  ModelGguf out(model, "(size estimate)", defaults, /*measure=*/true);
  out.metadata();
  out.tensors();
  return out.fixed_bytes();
}

}  // namespace mpq

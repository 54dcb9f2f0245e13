// Checkpoint -> Model: find every tensor the architecture needs under its Hugging Face name,
// check its shape, decode it to fp32, and undo the interleaved RoPE row order where the file
// uses it.
#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>
#include <tuple>

#include "io/checkpoint.h"
#include "io/compressed_tensors.h"
#include "format/weight_format.h"
#include "model/config.h"
#include "format/channel_split.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"

namespace mpq {
namespace {

// Compares names with digit runs as numbers: "layers.2" < "layers.10".
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      const std::string da = a.substr(i, i_end - i), db = b.substr(j, j_end - j);
      if (da.size() != db.size()) return da.size() < db.size();
      if (da != db) return da < db;
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

class TensorReader {
 public:
  explicit TensorReader(const Checkpoint& ck) : ck_(ck) {}

  bool has(const std::string& name) const { return ck_.tensors.count(name) != 0; }

  // A quantized module (compressed-tensors layout) of `format`, [rows, cols].
  QuantizedMatrix read_quantized(const std::string& module, WeightFormatId format, int64_t rows, int64_t cols) const {
    std::map<std::string, StoredTensor> fetched;
    std::string where = ck_.path;
    auto find = [&](const std::string& name) -> const StoredTensor* {
      auto it = ck_.raw.find(name);
      if (it == ck_.raw.end()) return nullptr;
      used_.insert(name);
      where = it->second.file;
      const auto& raw = it->second;
      auto& t = fetched[name];
      t = {name, raw.dtype, raw.shape, std::vector<uint8_t>(raw.data, raw.data + raw.nbytes)};
      return &t;
    };
    // Messages name the safetensors file once a tensor of the module was found in it.
    const auto* any = ck_.raw.count(module + ".weight_scale") ? &ck_.raw.at(module + ".weight_scale") : nullptr;
    if (any != nullptr) where = any->file;
    return decode_module(module, format, rows, cols, find, where);
  }

  // A channel-split module: "<m>.high_channels" (I32 [n_high], ascending) and the two sets stored
  // as modules "<m>.high" and "<m>.low" (a set without rows is not stored).
  ChannelSplit read_split(const std::string& module, WeightFormatId high, WeightFormatId low, int64_t n_high,
                          int64_t rows, int64_t cols) const {
    ChannelSplit s;
    s.rows = rows;
    s.cols = cols;
    const std::string index_name = module + ".high_channels";
    auto it = ck_.raw.find(index_name);
    if (it == ck_.raw.end()) fail(ck_.path, "missing tensor " + index_name);
    const auto& raw = it->second;
    used_.insert(index_name);
    if (n_high > rows || raw.dtype != "I32" || raw.shape != std::vector<int64_t>{n_high} ||
        raw.nbytes != static_cast<uint64_t>(n_high) * 4) {
      fail(raw.file, index_name + ": expected I32 [" + std::to_string(n_high) + "] with n_high <= " +
                         std::to_string(rows));
    }
    s.high_rows.resize(static_cast<size_t>(n_high));
    std::memcpy(s.high_rows.data(), raw.data, raw.nbytes);
    s.low_rows = complement_rows(s.high_rows, rows, raw.file + ": " + index_name);
    const int64_t n_low = rows - n_high;
    s.high = n_high > 0 ? read_quantized(module + ".high", high, n_high, cols) : make_quantized_matrix(high, 0, 0);
    s.low = n_low > 0 ? read_quantized(module + ".low", low, n_low, cols) : make_quantized_matrix(low, 0, 0);
    return s;
  }

  // Every tensor of the checkpoint must have been read: a weight that nothing uses means the
  // config does not describe the file (a bias flag missing, another architecture), and running
  // without it would give silently wrong results.
  void check_all_used(const std::string& arch) const {
    auto check = [&](const std::string& name, const std::string& file) {
      if (used_.count(name) || name.ends_with("rotary_emb.inv_freq")) return;
      fail(file, "tensor '" + name + "' is not used by a " + arch +
                     " model with this config (a missing config flag, or another architecture?)");
    };
    for (const auto& [name, record] : ck_.tensors) check(name, record.file);
    for (const auto& [name, raw] : ck_.raw) check(name, raw.file);
  }

  // The tensor decoded to fp32; its shape must equal `shape` (a 1-D tensor of n values also
  // matches {n}).
  std::vector<float> read(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = ck_.tensors.find(name);
    if (it == ck_.tensors.end()) fail(ck_.path, "missing tensor '" + name + "'");
    used_.insert(name);
    const TensorRecord& record = it->second;
    if (record.shape != shape) {
      fail(record.file, "tensor '" + name + "' has shape " + shape_str(record.shape) +
                            ", expected " + shape_str(shape));
    }
    if (!dtype_traits(record.dtype).is_float_input) {
      fail(record.file, "tensor '" + name + "' has type " + dtype_name(record.dtype) +
                            ", which cannot hold weights");
    }
    std::vector<float> out(record.numel());
    dequantize_to_f32(record.dtype, record.data, out.data(), record.numel(),
                      record.file + ": tensor '" + name + "'");
    return out;
  }

 private:
  const Checkpoint& ck_;
  mutable std::set<std::string> used_;  // names read so far
};

// Interleaved RoPE rows (pairs 2j, 2j+1 rotate together) -> rotate-half rows (j, j + hd/2).
// Within each head: new row i*hd/2 + j takes old row 2*j + i.
std::vector<float> deinterleave_rope_rows(const std::vector<float>& w, int n_heads, int head_dim,
                                          int64_t cols) {
  std::vector<float> out(w.size());
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < half; ++j) {
        const int64_t dst = static_cast<int64_t>(h) * head_dim + i * half + j;
        const int64_t src = static_cast<int64_t>(h) * head_dim + 2 * j + i;
        std::copy_n(&w[src * cols], cols, &out[dst * cols]);
      }
    }
  }
  return out;
}

// How one module is stored quantized (quantization_config.mpq.modules[module]).
struct StoredModule {
  WeightFormatId format = WeightFormatId::BF16;  // the whole module's (split: the low set's)
  bool split = false;                            // channel split (docs/FORMAT.md)
  WeightFormatId high_format = WeightFormatId::BF16;  // split: the high set's format
  int64_t n_high = 0;                            // split: output channels in the high set
};

// The modules stored quantized by mpq (config.json: quantization_config.mpq.modules) and their
// formats. A quantization_config without that record came from another tool: refused clearly.
std::map<std::string, StoredModule> quantized_module_formats_unchecked(const Checkpoint& ck, const std::string& path) {
  std::map<std::string, StoredModule> out;
  auto qc = ck.config.find("quantization_config");
  if (qc == ck.config.end() || qc->is_null()) return out;
  const std::string where = path + "/config.json";
  const nlohmann::json* modules = nullptr;
  if (qc->is_object() && qc->contains("mpq") && (*qc)["mpq"].is_object() && (*qc)["mpq"].contains("modules")) {
    modules = &(*qc)["mpq"]["modules"];
  }
  if (modules == nullptr || !modules->is_object()) {
    fail(where, "quantization_config has no mpq module list: only quantized models written by mpq "
                "can be loaded so far");
  }
  for (const auto& item : modules->items()) {
    // Named copies, not structured bindings: the lambda below captures them (Clang 14 does not
    // capture structured bindings).
    const std::string& module = item.key();
    const nlohmann::json& entry = item.value();
    if (!entry.is_object() || !entry.contains("format") || !entry["format"].is_string()) {
      fail(where, "quantization_config.mpq.modules['" + module + "'] has no format");
    }
    auto format_of = [&](const char* key) {
      if (!entry.contains(key) || !entry[key].is_string()) fail(where, "module '" + module + "' has no " + key);
      const std::string name = entry[key].get<std::string>();
      auto id = weight_format_from_name(name);
      if (!id) fail(where, "module '" + module + "' declares unknown weight format '" + name + "'");
      return *id;
    };
    StoredModule m;
    m.format = format_of("format");
    if (entry.contains("split") && !entry["split"].is_boolean()) {
      fail(where, "module '" + module + "': split must be true or false");
    }
    if (entry.value("split", false)) {
      m.split = true;
      m.high_format = format_of("high_format");
      if (!entry.contains("n_high") || !entry["n_high"].is_number_integer() || entry["n_high"].get<int64_t>() < 0) {
        fail(where, "split module '" + module + "' has no valid n_high");
      }
      m.n_high = entry["n_high"].get<int64_t>();
    }
    out[module] = m;
  }
  return out;
}

std::map<std::string, StoredModule> quantized_module_formats(const Checkpoint& ck, const std::string& path) {
  try {
    return quantized_module_formats_unchecked(ck, path);
  } catch (const nlohmann::json::exception& e) {
    // A field of an unexpected JSON type ("split": 3, ...) that the checks above did not name.
    fail(path + "/config.json", std::string("malformed quantization_config: ") + e.what());
  }
}

}  // namespace

Model::Model() = default;
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

std::vector<const Linear*> Model::linears() const {
  std::vector<const Linear*> out;
  for (const DecoderLayer& layer : layers) {
    for (const Linear& linear : layer.linear) {
      if (linear.weights) out.push_back(&linear);
    }
    for (const Expert& e : layer.experts) out.insert(out.end(), {&e.gate, &e.up, &e.down});
  }
  return out;
}

void Model::require_dense(const std::string& what) const {
  if (!config.is_moe()) return;
  fail(what, "mixture-of-experts models (" + std::to_string(config.n_experts) +
                 " experts per layer) are not supported by this step yet: mpq runs, evaluates and "
                 "analyses them (analyze --methods output), but does not quantize experts");
}

void Model::embedding_row(int32_t token, float* out) const {
  const int64_t dim = config.dim;
  if (embedding) {
    std::copy_n(embedding->data() + token * dim, dim, out);
  } else {
    lm_head.weights->decode_row(token, out);
  }
}

int64_t Model::parameter_count() const {
  int64_t n = static_cast<int64_t>(config.vocab_size) * config.dim + static_cast<int64_t>(final_norm.size());
  for (const DecoderLayer& layer : layers) {
    n += layer.attn_norm.size() + layer.ffn_norm.size() + layer.q_norm.size() + layer.k_norm.size();
    for (const Linear& linear : layer.linear) {
      if (!linear.weights) continue;  // a MoE layer's unused dense MLP slots
      n += linear.weights->out_features() * linear.weights->in_features() + linear.bias.size();
    }
    n += layer.router.size();
    for (const Expert& e : layer.experts) {
      for (const Linear* lin : {&e.gate, &e.up, &e.down}) n += lin->weights->out_features() * lin->weights->in_features();
    }
  }
  if (!config.tied_embeddings) n += lm_head.weights->out_features() * lm_head.weights->in_features();
  return n;
}

Model load_model(const std::string& path, const LoadOptions& options) {
  Checkpoint ck = open_checkpoint(path);
  Model model;
  model.decode_in_one_region = options.runtime.decode_in_one_region;
  model.config = model_config_from_hf(ck.config, ck.layout == "hf" ? path + "/config.json" : path);
  ModelConfig& c = model.config;
  model.source_path = path;
  model.source_layout = ck.layout;
  if (!ck.raw.empty()) {  // safetensors: every tensor, quantized parts (U8, F8_E4M3, ...) too
    for (const auto& [name, raw] : ck.raw) model.source_tensors.push_back({name, raw.dtype, raw.shape});
  } else {
    for (const auto& [name, record] : ck.tensors) {
      model.source_tensors.push_back({name, dtype_name(record.dtype), record.shape});
    }
  }
  // Layer order (layers.2 before layers.10), as a person reads the list.
  std::sort(model.source_tensors.begin(), model.source_tensors.end(),
            [](const SourceTensorInfo& a, const SourceTensorInfo& b) { return natural_less(a.name, b.name); });
  TensorReader reader(ck);

  std::map<std::string, StoredModule> quantized_modules = quantized_module_formats(ck, path);
  // A quantized output head (mpq quantize --head-format). When it is tied, the file holds no
  // separate embedding: the head's decoded rows are the embedding.
  const auto head_module = quantized_modules.find("lm_head");
  const bool quantized_head = head_module != quantized_modules.end();
  model.kv_cache_type = options.runtime.kv_cache.value_or(
      options.runtime.packed && !quantized_modules.empty() ? KvCacheType::F16 : KvCacheType::F32);
  if (!(quantized_head && c.tied_embeddings) || reader.has("model.embed_tokens.weight")) {
    model.embedding = std::make_shared<const std::vector<float>>(
        reader.read("model.embed_tokens.weight", {c.vocab_size, c.dim}));
  }
  model.final_norm = reader.read("model.norm.weight", {c.dim});
  if (reader.has("model.rope_freqs")) {
    // GGUF Llama-3 models carry their frequency divisors as a tensor.
    auto divisors = reader.read("model.rope_freqs", {c.head_dim / 2});
    c.rope_freq_divisors = divisors;
  }

  // Output dimension of each Linear kind, and its input dimension.
  const int64_t out_dims[kLinearKinds] = {c.q_dim(), c.kv_dim(), c.kv_dim(), c.dim,
                                          c.ffn_dim, c.ffn_dim, c.dim};
  const int64_t in_dims[kLinearKinds] = {c.dim, c.dim, c.dim, c.q_dim(), c.dim, c.dim, c.ffn_dim};
  const char* const prefixes[kLinearKinds] = {"self_attn.", "self_attn.", "self_attn.", "self_attn.",
                                              "mlp.",       "mlp.",       "mlp."};
  auto read_bias = [&](Linear& linear, int kind) {
    const bool has_bias = kind <= static_cast<int>(LinearKind::V) ? c.qkv_bias
                          : kind == static_cast<int>(LinearKind::O) ? c.o_bias
                                                                    : c.mlp_bias;
    if (has_bias) linear.bias = reader.read(linear.name + ".bias", {out_dims[kind]});
  };
  model.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    DecoderLayer& layer = model.layers[l];
    const std::string base = "model.layers." + std::to_string(l) + ".";
    layer.attn_norm = reader.read(base + "input_layernorm.weight", {c.dim});
    layer.ffn_norm = reader.read(base + "post_attention_layernorm.weight", {c.dim});
    if (c.qk_norm) {
      layer.q_norm = reader.read(base + "self_attn.q_norm.weight", {c.head_dim});
      layer.k_norm = reader.read(base + "self_attn.k_norm.weight", {c.head_dim});
    }
    if (c.is_moe()) {
      // Router and experts, fp32 (mpq does not quantize MoE models yet).
      layer.router = reader.read(base + "mlp.gate.weight", {c.n_experts, c.dim});
      layer.experts.resize(c.n_experts);
      for (int e = 0; e < c.n_experts; ++e) {
        const std::string eb = base + "mlp.experts." + std::to_string(e) + ".";
        Expert& ex = layer.experts[e];
        for (auto [lin, name, out, in] : {std::tuple{&ex.gate, "gate_proj", c.ffn_dim, c.dim},
                                          std::tuple{&ex.up, "up_proj", c.ffn_dim, c.dim},
                                          std::tuple{&ex.down, "down_proj", c.dim, c.ffn_dim}}) {
          lin->name = eb + name;
          lin->weights = make_dense_f32_weights(
              std::make_shared<const std::vector<float>>(reader.read(lin->name + ".weight", {out, in})), out, in);
        }
      }
    }
    for (int kind = 0; kind < kLinearKinds; ++kind) {
      if (c.is_moe() && kind >= static_cast<int>(LinearKind::Gate)) break;  // the experts above
      Linear& linear = layer.linear[kind];
      linear.name = base + prefixes[kind] + linear_kind_name(static_cast<LinearKind>(kind));
      if (auto it = quantized_modules.find(linear.name); it != quantized_modules.end()) {
        // Stored by mpq in a quantized format: already in rotate-half order.
        const StoredModule& m = it->second;
        if (m.split) {
          linear.weights = make_split_weights(
              reader.read_split(linear.name, m.high_format, m.format, m.n_high, out_dims[kind], in_dims[kind]),
              options.runtime);
        } else {
          linear.weights = make_quantized_weights(
              reader.read_quantized(linear.name, m.format, out_dims[kind], in_dims[kind]), options.runtime);
        }
        quantized_modules.erase(it);
        read_bias(linear, kind);
        continue;
      }
      std::vector<float> w = reader.read(linear.name + ".weight", {out_dims[kind], in_dims[kind]});
      const bool is_q = kind == static_cast<int>(LinearKind::Q);
      const bool is_k = kind == static_cast<int>(LinearKind::K);
      if (ck.qk_rope_interleaved && (is_q || is_k)) {
        w = deinterleave_rope_rows(w, is_q ? c.n_heads : c.n_kv_heads, c.head_dim, in_dims[kind]);
      }
      read_bias(linear, kind);
      if (ck.qk_rope_interleaved && (is_q || is_k) && !linear.bias.empty()) {
        linear.bias = deinterleave_rope_rows(linear.bias, is_q ? c.n_heads : c.n_kv_heads, c.head_dim, 1);
      }
      linear.weights = make_dense_f32_weights(
          std::make_shared<const std::vector<float>>(std::move(w)), out_dims[kind], in_dims[kind]);
    }
  }
  model.lm_head.name = "lm_head";
  if (quantized_head) {
    const StoredModule& m = head_module->second;
    if (m.split) fail(path, "a channel-split output head is not supported");
    model.lm_head.weights = make_quantized_weights(
        reader.read_quantized("lm_head", m.format, c.vocab_size, c.dim), options.runtime);
    quantized_modules.erase(head_module);
  } else if (c.tied_embeddings && !reader.has("lm_head.weight")) {
    model.lm_head.weights = make_dense_f32_weights(model.embedding, c.vocab_size, c.dim);
  } else {
    auto head = std::make_shared<const std::vector<float>>(reader.read("lm_head.weight", {c.vocab_size, c.dim}));
    // Some converters store a tied head as a second copy (stories260K's GGUF does): share the
    // embedding instead, so every layout of one model has the same parameters and memory.
    c.tied_embeddings = *head == *model.embedding;
    model.lm_head.weights =
        make_dense_f32_weights(c.tied_embeddings ? model.embedding : head, c.vocab_size, c.dim);
  }
  if (!quantized_modules.empty()) {
    fail(path, "quantization_config names module '" + quantized_modules.begin()->first +
                   "', which this model does not have");
  }
  reader.check_all_used(c.arch);
  if (options.need_tokenizer || !options.tokenizer_path.empty()) {
    model.tokenizer = load_tokenizer(path, options.tokenizer_path);
  }
  return model;
}

}  // namespace mpq

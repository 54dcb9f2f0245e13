// Checkpoint -> Model: find every tensor the architecture needs under its Hugging Face name,
// check its shape, decode it to fp32, and undo the interleaved RoPE row order where the file
// uses it.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "io/checkpoint.h"
#include "io/compressed_tensors.h"
#include "io/gguf.h"
#include "format/weight_format.h"
#include "model/config.h"
#include "format/channel_split.h"
#include "mpq/error.h"
#include "util/json_number.h"
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

  // A quantized module (compressed-tensors layout `layout`) of `format`, [rows, cols].
  QuantizedMatrix read_quantized(const std::string& module, WeightFormatId format, int64_t rows, int64_t cols,
                                 int layout) const {
    std::map<std::string, StoredTensor> fetched;
    std::string where = file_of(module);
    QuantizedMatrix q = decode_module(module, format, rows, cols, finder(fetched), where, layout);
    const std::string bad = first_non_finite(q);
    if (!bad.empty()) fail(where, "module '" + module + "' (" + q.traits().name + ") holds " + bad);
    return q;
  }

  // A module another tool stored under a compressed-tensors scheme no table format matches,
  // decoded to fp32 exactly as the library decompresses it.
  std::vector<float> read_ct_f32(const std::string& module, const CtScheme& scheme, int64_t rows, int64_t cols) const {
    std::map<std::string, StoredTensor> fetched;
    return decode_ct_module_f32(module, scheme, rows, cols, finder(fetched), file_of(module));
  }

  // The table format that holds a module of another tool's checkpoint exactly, if any.
  std::optional<WeightFormatId> ct_format(const std::string& module, const CtScheme& scheme) const {
    std::map<std::string, StoredTensor> fetched;
    return ct_table_format(scheme, [&](const std::string& name) -> const StoredTensor* {
      auto it = ck_.raw.find(name);
      if (it == ck_.raw.end()) return nullptr;
      auto& t = fetched[name];
      t = {name, it->second.dtype, it->second.shape, {}};
      return &t;
    }, module);
  }

  // A channel-split module: "<m>.high_channels" (I32 [n_high], ascending) and the two sets stored
  // as modules "<m>.high" and "<m>.low" (a set without rows is not stored).
  ChannelSplit read_split(const std::string& module, WeightFormatId high, WeightFormatId low, int64_t n_high,
                          int64_t rows, int64_t cols, int layout) const {
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
    // (an empty index tensor has no data pointer: memcpy from null is undefined even for 0 bytes)
    if (n_high > 0) std::memcpy(s.high_rows.data(), raw.data, raw.nbytes);
    s.low_rows = complement_rows(s.high_rows, rows, raw.file + ": " + index_name);
    const int64_t n_low = rows - n_high;
    s.high = n_high > 0 ? read_quantized(module + ".high", high, n_high, cols, layout) : make_quantized_matrix(high, 0, 0);
    s.low = n_low > 0 ? read_quantized(module + ".low", low, n_low, cols, layout) : make_quantized_matrix(low, 0, 0);
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

  // The stored tensor, marked as used; its shape must equal `shape`.
  const TensorRecord& record(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = ck_.tensors.find(name);
    if (it == ck_.tensors.end()) fail(ck_.path, "missing tensor '" + name + "'");
    used_.insert(name);
    const TensorRecord& record = it->second;
    if (record.shape != shape) {
      fail(record.file, "tensor '" + name + "' has shape " + shape_str(record.shape) +
                            ", expected " + shape_str(shape));
    }
    return record;
  }

  // The tensor decoded to fp32; its shape must equal `shape` (a 1-D tensor of n values also
  // matches {n}).
  std::vector<float> read(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorRecord& record = this->record(name, shape);
    if (!dtype_traits(record.dtype).is_float_input) {
      fail(record.file, "tensor '" + name + "' has type " + dtype_name(record.dtype) +
                            ", which cannot hold weights");
    }
    std::vector<float> out(record.numel());
    dequantize_to_f32(record.dtype, record.data, out.data(), record.numel(),
                      record.file + ": tensor '" + name + "'");
    // A NaN or infinity in the weights would only show as a NaN perplexity much later.
    const auto bad = std::find_if(out.begin(), out.end(), [](float v) { return !std::isfinite(v); });
    if (bad != out.end()) {
      const int64_t i = bad - out.begin(), cols = shape.size() > 1 ? shape.back() : int64_t{1};
      fail(record.file, "tensor '" + name + "' holds a non-finite value (" + std::to_string(*bad) + ") at " +
                            (shape.size() > 1 ? "row " + std::to_string(i / cols) + ", column " + std::to_string(i % cols)
                                              : "index " + std::to_string(i)));
    }
    return out;
  }

 private:
  // Finds raw (safetensors) tensors by name, copying each into `fetched` and marking it used.
  FindTensor finder(std::map<std::string, StoredTensor>& fetched) const {
    return [this, &fetched](const std::string& name) -> const StoredTensor* {
      auto it = ck_.raw.find(name);
      if (it == ck_.raw.end()) return nullptr;
      used_.insert(name);
      const auto& raw = it->second;
      auto& t = fetched[name];
      t = {name, raw.dtype, raw.shape, std::vector<uint8_t>(raw.data, raw.data + raw.nbytes)};
      return &t;
    };
  }
  // The safetensors file that holds a module's tensors (for messages), else the checkpoint.
  std::string file_of(const std::string& module) const {
    for (const char* suffix : {".weight_scale", ".weight_packed", ".weight"}) {
      auto it = ck_.raw.find(module + suffix);
      if (it != ck_.raw.end()) return it->second.file;
    }
    return ck_.path;
  }

  const Checkpoint& ck_;
  mutable std::set<std::string> used_;  // names read so far
};

// Interleaved RoPE rows (pairs 2j, 2j+1 rotate together) -> rotate-half rows (j, j + hd/2).
// Within each head: new row i*hd/2 + j takes old row 2*j + i. A row is `cols` elements (floats,
// or the bytes of a row of ggml blocks: rows are independent there too).
template <typename T>
std::vector<T> deinterleave_rope_rows(const std::vector<T>& w, int n_heads, int head_dim, int64_t cols) {
  std::vector<T> out(w.size());
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

// The weight format of a GGUF tensor stored in a ggml block type mpq has (whole blocks per row),
// if any.
std::optional<WeightFormatId> gguf_block_format(const TensorRecord& record) {
  const DTypeTraits& t = dtype_traits(record.dtype);
  if (t.block_size == 1 || record.shape.size() != 2) return std::nullopt;
  const auto format = weight_format_of_ggml_type(ggml_type_of(record.dtype));
  if (!format || !format_accepts(*format, record.shape[0], record.shape[1])) return std::nullopt;
  return format;
}

// How one module is stored quantized (quantization_config.mpq.modules[module]).
struct StoredModule {
  WeightFormatId format = WeightFormatId::BF16;  // the whole module's (split: the low set's)
  bool split = false;                            // channel split (docs/FORMAT.md)
  WeightFormatId high_format = WeightFormatId::BF16;  // split: the high set's format
  int64_t n_high = 0;                            // split: output channels in the high set
};

// How the checkpoint's quantized modules are stored: mpq's own record
// (quantization_config.mpq: every module's format, the layout), or the compressed-tensors config
// of another tool (each module's scheme comes from the config groups).
struct StoredModules {
  int layout = 1;                                // mpq's layout (io/compressed_tensors.h)
  std::map<std::string, StoredModule> modules;   // mpq's record: module -> format
  std::optional<CtConfig> foreign;               // another tool's compressed-tensors config
  bool any() const { return !modules.empty() || foreign.has_value(); }
};

StoredModules quantized_module_formats_unchecked(const Checkpoint& ck, const std::string& path) {
  StoredModules stored;
  std::map<std::string, StoredModule>& out = stored.modules;
  auto qc = ck.config.find("quantization_config");
  if (qc == ck.config.end() || qc->is_null()) return stored;
  const std::string where = path + "/config.json";
  const nlohmann::json* modules = nullptr;
  if (qc->is_object() && qc->contains("mpq") && (*qc)["mpq"].is_object() && (*qc)["mpq"].contains("modules")) {
    modules = &(*qc)["mpq"]["modules"];
    const nlohmann::json& record = (*qc)["mpq"];
    // A checked integer: a number like 1e19 converted to int is undefined behaviour (fuzz finding).
    stored.layout = record.contains("layout") ? static_cast<int>(json_integer(record["layout"], 1, 1000, where, "quantization_config.mpq.layout")) : 1;
    check(stored.layout == 1 || stored.layout == kCtLayout, where, "unknown mpq layout " + std::to_string(stored.layout));
  }
  if (modules == nullptr) {
    stored.foreign.emplace(*qc, where);
    return stored;
  }
  if (!modules->is_object()) fail(where, "quantization_config.mpq.modules is not an object");
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
  return stored;
}

StoredModules quantized_module_formats(const Checkpoint& ck, const std::string& path) {
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
    n += layer.attn_norm.size() + layer.ffn_norm.size() + layer.q_norm.size() + layer.k_norm.size() +
         layer.post_attn_norm.size() + layer.post_ffn_norm.size();
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

  StoredModules stored = quantized_module_formats(ck, path);
  std::map<std::string, StoredModule>& quantized_modules = stored.modules;
  // A module stored quantized (mpq's record, or another tool's compressed-tensors scheme):
  // its weights, or null when the module is stored as a plain tensor.
  auto stored_weights = [&](const std::string& name, int64_t rows, int64_t cols) -> std::unique_ptr<LinearWeights> {
    if (auto it = quantized_modules.find(name); it != quantized_modules.end()) {
      const StoredModule m = it->second;
      quantized_modules.erase(it);
      if (m.split) {
        return make_split_weights(reader.read_split(name, m.high_format, m.format, m.n_high, rows, cols, stored.layout),
                                  options.runtime);
      }
      return make_quantized_weights(reader.read_quantized(name, m.format, rows, cols, stored.layout), options.runtime);
    }
    if (!stored.foreign) return nullptr;
    const std::optional<CtScheme> scheme = stored.foreign->scheme_of(name);
    if (!scheme) return nullptr;
    if (const auto format = reader.ct_format(name, *scheme)) {
      return make_quantized_weights(reader.read_quantized(name, *format, rows, cols, kCtLayout), options.runtime);
    }
    return make_dense_f32_weights(std::make_shared<const std::vector<float>>(reader.read_ct_f32(name, *scheme, rows, cols)),
                                  rows, cols);
  };
  // A quantized output head (mpq quantize --head-format, or another tool's). When it is tied, the
  // file holds no separate embedding: the head's decoded rows are the embedding.
  const bool quantized_head = quantized_modules.count("lm_head") > 0 ||
                              (stored.foreign && stored.foreign->scheme_of("lm_head").has_value());
  model.kv_cache_type = options.runtime.kv_cache.value_or(
      options.runtime.packed && stored.any() ? KvCacheType::F16 : KvCacheType::F32);
  if (!(quantized_head && c.tied_embeddings) || reader.has("model.embed_tokens.weight")) {
    model.embedding = std::make_shared<const std::vector<float>>(
        reader.read("model.embed_tokens.weight", {c.vocab_size, c.dim}));
  }
  // RMSNorm weights as the multipliers the forward pass uses: a gemma3 Hugging Face file holds w
  // for a multiplier 1 + w (GGUF files hold 1 + w already: llama.cpp's converter adds the 1).
  const bool add_one = c.hf_norm_offset && ck.layout != "gguf";
  auto read_norm = [&](const std::string& name, int64_t size) {
    std::vector<float> w = reader.read(name, {size});
    if (add_one) {
      for (float& v : w) v += 1.f;
    }
    return w;
  };
  model.final_norm = read_norm("model.norm.weight", c.dim);
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
    layer.attn_norm = read_norm(base + "input_layernorm.weight", c.dim);
    if (c.post_norms) {  // gemma3: post_attention_layernorm is the attention output's norm
      layer.post_attn_norm = read_norm(base + "post_attention_layernorm.weight", c.dim);
      layer.ffn_norm = read_norm(base + "pre_feedforward_layernorm.weight", c.dim);
      layer.post_ffn_norm = read_norm(base + "post_feedforward_layernorm.weight", c.dim);
    } else {
      layer.ffn_norm = read_norm(base + "post_attention_layernorm.weight", c.dim);
    }
    if (c.qk_norm) {
      layer.q_norm = read_norm(base + "self_attn.q_norm.weight", c.head_dim);
      layer.k_norm = read_norm(base + "self_attn.k_norm.weight", c.head_dim);
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
      if (auto weights = stored_weights(linear.name, out_dims[kind], in_dims[kind])) {
        // Stored quantized by mpq or another tool (Hugging Face layout: already rotate-half).
        linear.weights = std::move(weights);
        read_bias(linear, kind);
        continue;
      }
      const bool is_q = kind == static_cast<int>(LinearKind::Q);
      const bool is_k = kind == static_cast<int>(LinearKind::K);
      if (options.keep_gguf_quantized && ck.layout == "gguf") {
        const TensorRecord& record = reader.record(linear.name + ".weight", {out_dims[kind], in_dims[kind]});
        if (auto format = gguf_block_format(record)) {
          // The blocks as the file holds them; GGUF's interleaved q/k rows moved like the fp32 ones.
          QuantizedMatrix q = make_quantized_matrix(*format, out_dims[kind], in_dims[kind]);
          check(q.codes.size() == record.nbytes, record.file, "tensor '" + record.name + "' has the wrong size");
          std::copy_n(record.data, record.nbytes, q.codes.data());
          if (ck.qk_rope_interleaved && (is_q || is_k)) {
            q.codes = deinterleave_rope_rows(q.codes, is_q ? c.n_heads : c.n_kv_heads, c.head_dim, q.block_row_bytes());
          }
          read_bias(linear, kind);
          if (ck.qk_rope_interleaved && (is_q || is_k) && !linear.bias.empty()) {
            linear.bias = deinterleave_rope_rows(linear.bias, is_q ? c.n_heads : c.n_kv_heads, c.head_dim, 1);
          }
          linear.weights = make_quantized_weights(std::move(q), options.runtime);
          continue;
        }
      }
      std::vector<float> w = reader.read(linear.name + ".weight", {out_dims[kind], in_dims[kind]});
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
    if (quantized_modules.count("lm_head") && quantized_modules.at("lm_head").split) {
      fail(path, "a channel-split output head is not supported");
    }
    model.lm_head.weights = stored_weights("lm_head", c.vocab_size, c.dim);
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

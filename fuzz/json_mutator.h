// A structure-aware mutator for the harnesses whose inputs are (or hold) JSON: config.json,
// tokenizer.json, plan and sensitivity files, safetensors headers. Byte-level mutations of JSON
// mostly produce text that does not parse, so the interesting inputs -- a valid file with one
// number out of range, a field of another type, a missing or extra key -- are rare. This mutator
// parses the JSON, changes one to three nodes of the tree (numbers to edge values, values to other
// types, strings to names the readers look for, keys removed or added, arrays grown or emptied) and
// writes it back; half of the time, or when the JSON does not parse, it leaves the input to
// libFuzzer's own byte-level mutations.
//
// A harness opts in with
//   extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
//     return mpq::fuzz::mutate_files(data, size, max_size, seed, {FileKind::Json, FileKind::Safetensors});
//   }
// naming what each file of its input (fuzz_util.h's separator) holds.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace mpq::fuzz {

enum class FileKind {
  Json,         // the whole file is JSON
  Safetensors,  // u64 header length + JSON header + data: the header is mutated, the length fixed
  Binary,       // left to the byte-level mutations
};

namespace json_mutator_detail {

using nlohmann::json;

// Names the readers look for: keys of every JSON file mpq reads and the values they compare with.
inline const std::vector<std::string>& words() {
  static const std::vector<std::string> w = {
      // config.json
      "model_type", "llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen3_moe", "hidden_size", "intermediate_size",
      "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
      "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "attention_bias", "mlp_bias",
      "sliding_window", "use_sliding_window", "num_local_experts", "num_experts", "num_experts_per_tok",
      "moe_intermediate_size", "norm_topk_prob", "mlp_only_layers", "decoder_sparse_step", "hidden_act", "silu",
      "rope_scaling", "rope_type", "type", "factor", "low_freq_factor", "high_freq_factor",
      "original_max_position_embeddings", "linear", "llama3", "default", "quantization_config", "mpq", "modules",
      "format", "split", "high_format", "n_high", "lm_head", "model.layers.0.self_attn.q_proj",
      "model.layers.1.mlp.down_proj",
      // weight formats and safetensors dtypes
      "bf16", "f16", "fp8_e4m3_channel", "fp8_e4m3_b128", "nvfp4", "mxfp4", "int8_channel", "int4_g32", "int4_g64",
      "int4_g128", "int3_g32", "int3_g64", "int3_g128", "int2_g32", "int2_g64", "int2_g128", "int4sym_g128", "BOOL",
      "U8", "I8", "F8_E4M3", "F8_E5M2", "U16", "I16", "F16", "BF16", "U32", "I32", "F32", "U64", "I64", "F64", "dtype",
      "shape", "data_offsets", "__metadata__",
      // tokenizer.json / tokenizer_config.json
      "model", "vocab", "merges", "added_tokens", "id", "content", "special", "BPE", "byte_fallback", "unk_token",
      "ignore_merges", "pre_tokenizer", "normalizer", "post_processor", "decoder", "Sequence", "pretokenizers",
      "normalizers", "processors", "ByteLevel", "Split", "Digits", "Metaspace", "Prepend", "Replace", "NFC",
      "pattern", "Regex", "String", "behavior", "Isolated", "invert", "individual_digits", "use_regex",
      "add_prefix_space", "replacement", "prepend_scheme", "prepend", "TemplateProcessing", "single",
      "SpecialToken", "add_bos_token", "add_eos_token", "bos_token", "eos_token", "pad_token", "<s>", "</s>",
      "<unk>", "<0x41>", "\xE2\x96\x81", "\xC4\xA0", "(\\p{L}+)*$", "\\p{N}{1,3}", "a b",
      // plan.json
      "mpq-plan", "version", "method", "cost", "budget", "bits_per_weight", "bytes", "total_bits", "weights",
      "tensors", "unquantized", "quantizer", "rtn", "rtn_clip", "gptq", "hqq", "low_format", "high_channels",
      "solver", "sensitivity", "sha256",
      // S.json
      "mpq-sensitivity", "formats", "name", "layer", "kind", "rows", "cols", "fisher", "output", "kld", "channels",
      "offset", "count", "shapley", "players", "estimate", "values", "interactions", "linear_terms",
      "player_bits_high", "player_bits_low", "high", "low", "n_layers", "base_cost", "q_proj", "down_proj",
      "layer.0", "layer.1"};
  return w;
}

// Numbers at the edges of the types the readers convert to.
inline json edge_number(std::mt19937& rng) {
  static const json kEdges[] = {0, 1, -1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 64, 127, 128, 255, 256, 1024, 65536,
                                2147483647, 2147483648LL, -2147483648LL, 4294967295LL, 4294967296LL,
                                std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<uint64_t>::max(), 1e300, -1e300, 1e-300, 0.5, 2.5, -0.0,
                                3.0, 1e19, -1e19, 9.3e18};
  return kEdges[rng() % std::size(kEdges)];
}

inline json random_scalar(std::mt19937& rng) {
  switch (rng() % 6) {
    case 0: return nullptr;
    case 1: return rng() % 2 == 0;
    case 2: return words()[rng() % words().size()];
    case 3: return json::array();
    case 4: return json::object();
    default: return edge_number(rng);
  }
}

// Every node of the tree, parents before children.
inline void collect(json& j, std::vector<json*>& out) {
  out.push_back(&j);
  if (j.is_object() || j.is_array()) {
    for (auto& child : j) collect(child, out);
  }
}

inline void mutate_node(json& node, std::mt19937& rng) {
  const unsigned op = rng() % 8;
  if (node.is_number() && op < 4) {
    if (op == 0 && node.is_number_integer()) {
      // Small steps around the value (off by one, sign).
      // (Wrapping arithmetic: the mutator itself must not overflow under UBSan.)
      const uint64_t v = static_cast<uint64_t>(node.get<int64_t>());
      const uint64_t deltas[] = {1, ~uint64_t{0}, 2, ~uint64_t{1}};  // +1, -1, +2, -2
      node = static_cast<int64_t>(v + deltas[rng() % 4]);
    } else if (op == 1) {
      node = -node.get<double>();
    } else {
      node = edge_number(rng);
    }
    return;
  }
  if (node.is_string() && op < 4) {
    std::string s = node.get<std::string>();
    switch (op) {
      case 0: node = words()[rng() % words().size()]; return;
      case 1: node = s + s; return;
      case 2: node = s.substr(0, s.empty() ? 0 : rng() % s.size()); return;
      default: node = ""; return;
    }
  }
  if (node.is_object() && !node.empty() && op < 3) {
    auto it = node.begin();
    std::advance(it, rng() % node.size());
    if (op == 0) {
      node.erase(it);
    } else if (op == 1) {
      json value = *it;  // the same value under a name the readers know
      node[words()[rng() % words().size()]] = std::move(value);
    } else {
      node[words()[rng() % words().size()]] = random_scalar(rng);
    }
    return;
  }
  if (node.is_array() && op < 4) {
    if (node.empty()) {
      node.push_back(random_scalar(rng));
      return;
    }
    const size_t i = rng() % node.size();
    json copy = node[i];  // copied first: inserting may move the elements
    switch (op) {
      case 0: node.erase(i); return;
      case 1: node.push_back(std::move(copy)); return;
      case 2: node.insert(node.begin(), std::move(copy)); return;
      default: node = json::array(); return;
    }
  }
  node = random_scalar(rng);  // another type altogether
}

// Mutates JSON text in place; false when it does not parse (or the result would not fit).
inline bool mutate_json_text(std::string& text, size_t max_size, std::mt19937& rng) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return false;
  const int n_ops = 1 + static_cast<int>(rng() % 3);
  for (int k = 0; k < n_ops; ++k) {
    std::vector<json*> nodes;
    collect(root, nodes);
    mutate_node(*nodes[rng() % nodes.size()], rng);
  }
  std::string out = root.dump(rng() % 2 == 0 ? -1 : 1, ' ', false, json::error_handler_t::replace);
  if (out.size() > max_size) return false;
  text = std::move(out);
  return true;
}

// The same for a safetensors file: the JSON header, with the length prefix rewritten.
inline bool mutate_safetensors_text(std::string& file, size_t max_size, std::mt19937& rng) {
  if (file.size() < 8) return false;
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  if (n > file.size() - 8) return false;
  std::string header = file.substr(8, n);
  if (!mutate_json_text(header, max_size, rng)) return false;
  std::string out(8, '\0');
  const uint64_t new_n = header.size();
  std::memcpy(out.data(), &new_n, 8);
  out += header;
  out.append(file, 8 + n, std::string::npos);
  if (out.size() > max_size) return false;
  file = std::move(out);
  return true;
}

}  // namespace json_mutator_detail

// The mutator entry point (see the top of this file). `kinds[i]` says what file i holds; files
// beyond the list are Binary.
inline size_t mutate_files(uint8_t* data, size_t size, size_t max_size, unsigned seed,
                           std::initializer_list<FileKind> kinds) {
  std::mt19937 rng(seed);
  if (rng() % 2 == 0) return LLVMFuzzerMutate(data, size, max_size);
  auto views = split_files(data, size, kinds.size());
  std::vector<std::string> files(views.begin(), views.end());
  const size_t i = rng() % files.size();
  const FileKind kind = i < kinds.size() ? kinds.begin()[i] : FileKind::Binary;
  bool changed = false;
  if (kind == FileKind::Json) changed = json_mutator_detail::mutate_json_text(files[i], max_size, rng);
  if (kind == FileKind::Safetensors) changed = json_mutator_detail::mutate_safetensors_text(files[i], max_size, rng);
  if (!changed) return LLVMFuzzerMutate(data, size, max_size);
  std::string out;
  for (size_t k = 0; k < files.size(); ++k) {
    if (k > 0) out += kFileSeparator;
    out += files[k];
  }
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace mpq::fuzz

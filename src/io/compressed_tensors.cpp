#include "io/compressed_tensors.h"

#include <cmath>
#include <cstring>
#include <algorithm>
#include <regex>
#include <set>

#include "format/dtype.h"
#include "format/fp4.h"
#include "format/fp8.h"
#include "mpq/error.h"
#include "util/json_number.h"

namespace mpq {
namespace {

enum class Family { Half, IntPacked, Fp8, Fp4Packed };

// ggml block formats have no compressed-tensors form: refused with one line naming the format
// (a GGUF writer stores them).
void require_compressed_tensors_form(const WeightFormatTraits& f, const std::string& where) {
  if (is_ggml_format(f)) {
    fail(where, std::string("weight format ") + f.name +
                    " is a ggml block type with no compressed-tensors form: write it as GGUF");
  }
}

Family family_of(const WeightFormatTraits& f) {
  switch (f.value_kind) {
    case ValueKind::Half: return Family::Half;
    case ValueKind::FP8_E4M3: return Family::Fp8;
    case ValueKind::FP4_E2M1: return Family::Fp4Packed;
    case ValueKind::Int: return Family::IntPacked;
    case ValueKind::GgmlBlock: require_compressed_tensors_form(f, "compressed-tensors"); break;
  }
  return Family::Half;
}

const char* scale_dtype(ScaleType type) {
  switch (type) {
    case ScaleType::F32: return "F32";
    case ScaleType::F16: return "F16";
    case ScaleType::BF16: return "BF16";
    case ScaleType::E4M3: return "F8_E4M3";
    case ScaleType::E8M0: return "U8";
    case ScaleType::None: break;
  }
  return "";
}

template <class T>
void append(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

// ---- dense bit packing (compressed-tensors' pack_to_int32)
//
// Value i of a sequence takes bits [i*bits, (i+1)*bits) of a little-endian stream of 32-bit words:
// word i*bits/32 from bit i*bits%32, its high part spilling into the next word when it crosses
// the boundary. ceil(n*bits/32) words.

int64_t dense_words(int64_t n, int bits) { return (n * bits + 31) / 32; }

void pack_dense(int64_t n, int bits, const std::function<uint32_t(int64_t)>& code, std::vector<uint8_t>& out) {
  std::vector<uint32_t> words(static_cast<size_t>(dense_words(n, bits)), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    const uint32_t v = code(i) & ((1u << bits) - 1);
    const int64_t w = bit / 32;
    const int off = static_cast<int>(bit % 32);
    words[w] |= v << off;
    if (off + bits > 32) words[w + 1] |= v >> (32 - off);
  }
  for (uint32_t w : words) append(out, w);
}

uint32_t unpack_dense(const uint8_t* words, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int off = static_cast<int>(bit % 32);
  uint32_t lo;
  std::memcpy(&lo, words + 4 * (bit / 32), 4);
  uint32_t v = lo >> off;
  if (off + bits > 32) {
    uint32_t hi;
    std::memcpy(&hi, words + 4 * (bit / 32 + 1), 4);
    v |= hi << (32 - off);
  }
  return v & ((1u << bits) - 1);
}

// Layout 1 (mpq before dense packing): 32/bits values per word, first in the low bits.
int64_t legacy_words(int64_t n, int bits) { return (n + 32 / bits - 1) / (32 / bits); }
uint32_t unpack_legacy(const uint8_t* words, int64_t i, int bits) {
  const int per_word = 32 / bits;
  uint32_t word;
  std::memcpy(&word, words + 4 * (i / per_word), 4);
  return (word >> (bits * (i % per_word))) & ((1u << bits) - 1);
}

// Finds a tensor and checks its dtype (one of `dtypes`) and shape.
const StoredTensor& need(const FindTensor& find, const std::string& name, std::initializer_list<const char*> dtypes,
                         const std::vector<int64_t>& shape, const std::string& where, const std::string& what) {
  const StoredTensor* t = find(name);
  if (t == nullptr) fail(where, "missing tensor '" + name + "' (" + what + ")");
  bool dtype_ok = false;
  std::string wanted;
  for (const char* d : dtypes) {
    dtype_ok |= t->dtype == d;
    wanted += (wanted.empty() ? "" : " or ") + std::string(d);
  }
  if (!dtype_ok) fail(where, "tensor '" + name + "' has dtype " + t->dtype + ", expected " + wanted + " for " + what);
  if (t->shape != shape) {
    fail(where, "tensor '" + name + "' has shape " + shape_text(t->shape) + ", expected " + shape_text(shape) + " for " + what);
  }
  return *t;
}

// The [rows, cols] a weight_shape tensor (I32 or I64 [2]) states.
void check_weight_shape(const StoredTensor& t, int64_t rows, int64_t cols, const std::string& where) {
  int64_t dims[2];
  if (t.dtype == "I64") {
    std::memcpy(dims, t.bytes.data(), 16);
  } else {
    int32_t d32[2];
    std::memcpy(d32, t.bytes.data(), 8);
    dims[0] = d32[0], dims[1] = d32[1];
  }
  if (dims[0] != rows || dims[1] != cols) {
    fail(where, "tensor '" + t.name + "' says [" + std::to_string(dims[0]) + ", " + std::to_string(dims[1]) +
                    "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Writing (and reading back) mpq's own modules

bool ct_expressible(WeightFormatId format, int64_t rows, int64_t cols, std::string* why) {
  const WeightFormatTraits& f = weight_format(format);
  auto no = [&](const std::string& reason) {
    if (why != nullptr) *why = reason;
    return false;
  };
  if (is_ggml_format(f)) return no(std::string(f.name) + ": a ggml block type (GGUF only)");
  if (f.value_kind == ValueKind::Half) return true;
  if (f.group_size > 0 && cols % f.group_size != 0) {
    return no(std::string(f.name) + ": groups of " + std::to_string(f.group_size) + " do not divide rows of " +
              std::to_string(cols) + " (compressed-tensors, transformers and vLLM need whole groups)");
  }
  if (f.value_kind == ValueKind::FP4_E2M1 && cols % 2 != 0) return no(std::string(f.name) + ": rows of odd length");
  return true;
}

const char* compressed_tensors_format(WeightFormatId format) {
  const WeightFormatTraits& f = weight_format(format);
  require_compressed_tensors_form(f, "compressed-tensors");
  switch (family_of(f)) {
    case Family::Half: return "dense";
    case Family::IntPacked: return "pack-quantized";
    case Family::Fp8: return "float-quantized";
    case Family::Fp4Packed: return format == WeightFormatId::NVFP4 ? "nvfp4-pack-quantized" : "mxfp4-pack-quantized";
  }
  return "dense";
}

nlohmann::json compressed_tensors_weight_args(WeightFormatId format) {
  const WeightFormatTraits& f = weight_format(format);
  require_compressed_tensors_form(f, "compressed-tensors");
  if (f.value_kind == ValueKind::Half) return nullptr;
  const bool fp = f.value_kind != ValueKind::Int;
  std::string strategy = f.group_size == 0 ? "channel" : "group";
  if (format == WeightFormatId::NVFP4) strategy = "tensor_group";
  nlohmann::json args = {{"num_bits", f.bits},
                         {"type", fp ? "float" : "int"},
                         {"symmetric", f.symmetric},
                         {"strategy", strategy},
                         {"group_size", f.group_size == 0 ? nlohmann::json(nullptr) : nlohmann::json(f.group_size)},
                         {"dynamic", false}};
  // The library states the stored scale type only where it is not the model's dtype.
  if (format == WeightFormatId::NVFP4) args["scale_dtype"] = "torch.float8_e4m3fn";
  if (format == WeightFormatId::MXFP4) args["scale_dtype"] = "torch.uint8";
  return args;
}

std::vector<StoredTensor> encode_module(const std::string& module, const QuantizedMatrix& q) {
  const WeightFormatTraits& f = q.traits();
  require_compressed_tensors_form(f, module);
  const int64_t rows = q.rows, cols = q.cols, groups = q.groups;
  std::vector<StoredTensor> out;
  auto add = [&](const std::string& suffix, const char* dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    out.push_back({module + "." + suffix, dtype, std::move(shape), std::move(bytes)});
  };
  auto scales = [&]() { add("weight_scale", scale_dtype(f.scale_type), {rows, groups}, q.scales); };
  switch (family_of(f)) {
    case Family::Half:
      add("weight", f.id == WeightFormatId::BF16 ? "BF16" : "F16", {rows, cols}, q.codes);
      break;
    case Family::Fp8:
      add("weight", "F8_E4M3", {rows, cols}, q.codes);
      scales();
      break;
    case Family::Fp4Packed: {
      const int64_t packed_cols = (cols + 1) / 2;
      std::vector<uint8_t> packed(rows * packed_cols, 0);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          packed[r * packed_cols + c / 2] |= static_cast<uint8_t>((q.codes[r * cols + c] & 0xF) << (4 * (c % 2)));
        }
      }
      add("weight_packed", "U8", {rows, packed_cols}, std::move(packed));
      scales();
      if (f.has_tensor_scale) {
        std::vector<uint8_t> bytes;
        append(bytes, q.tensor_scale);
        add("weight_global_scale", "F32", {1}, std::move(bytes));
      }
      break;
    }
    case Family::IntPacked: {
      std::vector<uint8_t> packed;
      for (int64_t r = 0; r < rows; ++r) {
        pack_dense(cols, f.bits, [&](int64_t c) { return q.codes[r * cols + c]; }, packed);
      }
      add("weight_packed", "I32", {rows, dense_words(cols, f.bits)}, std::move(packed));
      scales();
      if (!f.symmetric) {
        // The library transposes, packs each group's column of zero points like a row, transposes
        // back: word (k, g) holds rows 32k/bits... of group g.
        const int32_t offset = 1 << (f.bits - 1);
        std::vector<std::vector<uint8_t>> columns(static_cast<size_t>(groups));
        for (int64_t g = 0; g < groups; ++g) {
          pack_dense(rows, f.bits, [&](int64_t r) { return static_cast<uint32_t>(q.zeros[r * groups + g] + offset); },
                     columns[g]);
        }
        const int64_t row_words = dense_words(rows, f.bits);
        std::vector<uint8_t> packed_zero;
        for (int64_t k = 0; k < row_words; ++k) {
          for (int64_t g = 0; g < groups; ++g) packed_zero.insert(packed_zero.end(), &columns[g][4 * k], &columns[g][4 * k] + 4);
        }
        add("weight_zero_point", "I32", {row_words, groups}, std::move(packed_zero));
      }
      std::vector<uint8_t> shape;
      append(shape, rows);
      append(shape, cols);
      add("weight_shape", "I64", {2}, std::move(shape));
      break;
    }
  }
  return out;
}

QuantizedMatrix decode_module(const std::string& module, WeightFormatId format, int64_t rows, int64_t cols,
                              const FindTensor& find, const std::string& where, int layout) {
  check(layout == 1 || layout == 2, where, "unknown mpq layout " + std::to_string(layout));
  require_compressed_tensors_form(weight_format(format), where + ": " + module);
  QuantizedMatrix q = make_quantized_matrix(format, rows, cols);
  const WeightFormatTraits& f = q.traits();
  const int64_t groups = q.groups;
  const std::string what = f.name;
  auto read_scales = [&]() {
    q.scales = need(find, module + ".weight_scale", {scale_dtype(f.scale_type)}, {rows, groups}, where, what).bytes;
  };
  switch (family_of(f)) {
    case Family::Half:
      q.codes = need(find, module + ".weight", {f.id == WeightFormatId::BF16 ? "BF16" : "F16"}, {rows, cols}, where, what).bytes;
      break;
    case Family::Fp8:
      q.codes = need(find, module + ".weight", {"F8_E4M3"}, {rows, cols}, where, what).bytes;
      read_scales();
      break;
    case Family::Fp4Packed: {
      const int64_t packed_cols = (cols + 1) / 2;
      const StoredTensor& w = need(find, module + ".weight_packed", {"U8"}, {rows, packed_cols}, where, what);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) q.codes[r * cols + c] = (w.bytes[r * packed_cols + c / 2] >> (4 * (c % 2))) & 0xF;
      }
      read_scales();
      if (f.has_tensor_scale) {
        std::memcpy(&q.tensor_scale, need(find, module + ".weight_global_scale", {"F32"}, {1}, where, what).bytes.data(), 4);
        if (!(q.tensor_scale > 0) || !std::isfinite(q.tensor_scale)) {
          fail(where, "tensor '" + module + ".weight_global_scale' is not a positive finite number");
        }
      }
      break;
    }
    case Family::IntPacked: {
      const int bits = f.bits;
      if (layout == 1 && bits == 8) {  // layout 1 stored int8 as "int-quantized": the signed values
        const StoredTensor& w = need(find, module + ".weight", {"I8"}, {rows, cols}, where, what);
        for (size_t i = 0; i < q.codes.size(); ++i) q.codes[i] = static_cast<uint8_t>(w.bytes[i] + 128);
        read_scales();
        break;
      }
      const bool dense = layout == 2;
      const int64_t words = dense ? dense_words(cols, bits) : legacy_words(cols, bits);
      const StoredTensor& w = need(find, module + ".weight_packed", {"I32"}, {rows, words}, where, what);
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* row = w.bytes.data() + 4 * r * words;
        for (int64_t c = 0; c < cols; ++c) {
          q.codes[r * cols + c] = static_cast<uint8_t>(dense ? unpack_dense(row, c, bits) : unpack_legacy(row, c, bits));
        }
      }
      read_scales();
      check_weight_shape(need(find, module + ".weight_shape", {"I64", "I32"}, {2}, where, what), rows, cols, where);
      if (!f.symmetric) {
        const int64_t row_words = dense ? dense_words(rows, bits) : legacy_words(rows, bits);
        const StoredTensor& z = need(find, module + ".weight_zero_point", {"I32"}, {row_words, groups}, where, what);
        const int32_t offset = 1 << (bits - 1);
        std::vector<uint8_t> column(static_cast<size_t>(4 * row_words));
        for (int64_t g = 0; g < groups; ++g) {
          for (int64_t k = 0; k < row_words; ++k) std::memcpy(&column[4 * k], &z.bytes[4 * (k * groups + g)], 4);
          for (int64_t r = 0; r < rows; ++r) {
            const uint32_t code = dense ? unpack_dense(column.data(), r, bits) : unpack_legacy(column.data(), r, bits);
            q.zeros[r * groups + g] = static_cast<int8_t>(static_cast<int32_t>(code) - offset);
          }
        }
      }
      break;
    }
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints written by other tools

CtScheme ct_scheme_from_group(const nlohmann::json& group, const std::string& top_format, const std::string& where) {
  check(group.is_object(), where, "a config group is not an object");
  static const std::set<std::string> kGroupKeys = {"targets", "weights", "input_activations", "output_activations", "format"};
  for (const auto& [key, value] : group.items()) {
    check(kGroupKeys.count(key) > 0, where, "config group key '" + key + "' is not a compressed-tensors key");
  }
  for (const char* act : {"input_activations", "output_activations"}) {
    if (group.contains(act) && !group[act].is_null()) {
      fail(where, std::string("config group quantizes ") + act + " (W8A8 and the like): mpq reads weight-only schemes");
    }
  }
  {
    const std::string format =
        group.contains("format") && group["format"].is_string() ? group["format"].get<std::string>() : top_format;
    static const std::set<std::string> kKnown = {"pack-quantized", "int-quantized", "float-quantized", "naive-quantized",
                                                 "nvfp4-pack-quantized", "mxfp4-pack-quantized"};
    check(kKnown.count(format) > 0, where, "compressed-tensors format '" + format + "' is not supported by mpq");
  }
  check(group.contains("weights") && group["weights"].is_object(), where, "config group has no \"weights\" scheme");
  const nlohmann::json& w = group["weights"];
  static const std::set<std::string> kArgs = {"num_bits", "type", "symmetric", "group_size", "strategy", "block_structure",
                                              "dynamic", "actorder", "scale_dtype", "zp_dtype", "observer", "observer_kwargs"};
  for (const auto& [key, value] : w.items()) {
    check(kArgs.count(key) > 0, where, "weights key '" + key + "' is not a compressed-tensors quantization arg");
  }
  CtScheme s;
  try {
    s.format = group.value("format", nlohmann::json(nullptr)).is_string() ? group["format"].get<std::string>() : top_format;
    s.num_bits = w.contains("num_bits") ? static_cast<int>(json_integer(w["num_bits"], 1, 64, where, "weights.num_bits")) : 8;
    s.type = w.value("type", std::string("int"));
    s.symmetric = w.value("symmetric", true);
    check(!w.value("dynamic", false), where, "dynamic weight quantization has no stored scales");
    if (w.contains("actorder") && w["actorder"].is_string() && w["actorder"] == "group") {
      fail(where, "actorder \"group\" (a stored g_idx permutation) is not supported");
    }
    const nlohmann::json gs = w.value("group_size", nlohmann::json(nullptr));
    s.group_size = gs.is_number_integer() ? gs.get<int64_t>() : 0;
    if (w.contains("strategy") && w["strategy"].is_string()) {
      s.strategy = w["strategy"].get<std::string>();
    } else {
      s.strategy = gs.is_null() ? "tensor" : (s.group_size > 0 ? "group" : "channel");
    }
    if (w.contains("block_structure") && w["block_structure"].is_array()) s.block = w["block_structure"].get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("malformed weights scheme: ") + e.what());
  }
  static const std::set<std::string> kStrategies = {"channel", "group", "tensor", "tensor_group", "block"};
  check(kStrategies.count(s.strategy) > 0, where, "weight strategy '" + s.strategy + "' is not supported");
  check(s.strategy != "block" || s.block.size() == 2, where, "block strategy without a [rows, cols] block_structure");
  check((s.strategy != "group" && s.strategy != "tensor_group") || s.group_size > 0, where,
        "group strategy without a positive group_size");
  static const std::set<std::string> kFormats = {"pack-quantized", "int-quantized", "float-quantized",
                                                 "naive-quantized", "nvfp4-pack-quantized", "mxfp4-pack-quantized"};
  check(kFormats.count(s.format) > 0, where, "compressed-tensors format '" + s.format + "' is not supported by mpq");
  check(s.type == "int" || s.type == "float", where, "weight type '" + s.type + "' is not int or float");
  if (s.format == "pack-quantized" || s.format == "int-quantized") {
    check(s.type == "int" && s.num_bits >= 1 && s.num_bits <= 8, where, s.format + " with " + s.type + " " +
                                                                            std::to_string(s.num_bits) + "-bit weights");
  } else if (s.format == "nvfp4-pack-quantized" || s.format == "mxfp4-pack-quantized") {
    check(s.type == "float" && s.num_bits == 4, where, s.format + " needs float 4-bit weights");
  } else {
    check(s.type == "float" && s.num_bits == 8, where, s.format + ": only FP8 (E4M3) float weights are supported");
  }
  return s;
}

namespace {

// compressed-tensors' target forms: "re:REGEX" (Python re.match: anchored at the start), a
// module class name (every decoder module mpq maps is a Linear), or an exact module name.
bool target_matches(const std::string& target, const std::string& module) {
  if (target.rfind("re:", 0) == 0) {
    return std::regex_search(module, std::regex(target.substr(3)), std::regex_constants::match_continuous);
  }
  if (target == "Linear") return true;
  return target == module;
}

// "group_10" after "group_2".
bool group_name_less(const std::string& a, const std::string& b) {
  auto number = [](const std::string& s) {
    const size_t at = s.find_last_not_of("0123456789");
    return at + 1 < s.size() ? std::stoll(s.substr(at + 1)) : -1LL;
  };
  const std::string pa = a.substr(0, a.find_last_not_of("0123456789") + 1), pb = b.substr(0, b.find_last_not_of("0123456789") + 1);
  if (pa != pb) return pa < pb;
  return number(a) < number(b);
}

}  // namespace

CtConfig::CtConfig(const nlohmann::json& qc, const std::string& where) : where_(where) {
  check(qc.is_object(), where, "quantization_config is not an object");
  static const std::set<std::string> kKeys = {"quant_method", "format", "quantization_status", "config_groups", "ignore",
                                              "kv_cache_scheme", "global_compression_ratio", "sparsity_config",
                                              "transform_config", "version", "moe_sparsity_config"};
  for (const auto& [key, value] : qc.items()) {
    check(kKeys.count(key) > 0, where, "quantization_config key '" + key + "' is not understood by mpq");
  }
  check(qc.value("quant_method", std::string()) == "compressed-tensors", where,
        "quant_method '" + qc.value("quant_method", std::string("?")) + "' is not supported (only compressed-tensors)");
  check(qc.value("quantization_status", std::string("compressed")) == "compressed", where,
        "quantization_status is not \"compressed\": the weights are not stored packed");
  for (const char* key : {"kv_cache_scheme", "moe_sparsity_config"}) {
    check(!qc.contains(key) || qc[key].is_null(), where, std::string(key) + " is set: not supported by mpq");
  }
  for (const char* key : {"sparsity_config", "transform_config"}) {
    check(!qc.contains(key) || qc[key].is_null() || (qc[key].is_object() && qc[key].empty()), where,
          std::string(key) + " is set (sparse or rotated weights): not supported by mpq");
  }
  const std::string top = qc.value("format", std::string());
  check(qc.contains("config_groups") && qc["config_groups"].is_object(), where, "quantization_config has no config_groups");
  for (const auto& [name, group] : qc["config_groups"].items()) {
    Group g{name, ct_scheme_from_group(group, top, where + ": config_groups." + name), {}};
    check(group.contains("targets") && group["targets"].is_array(), where, "config_groups." + name + " has no targets");
    for (const auto& t : group["targets"]) {
      check(t.is_string(), where, "config_groups." + name + ": targets must be strings");
      const std::string target = t.get<std::string>();
      if (target.rfind("re:", 0) == 0) {
        try {
          std::regex re(target.substr(3));
        } catch (const std::regex_error& e) {
          fail(where, "config_groups." + name + ": target '" + target + "' is not a valid regex");
        }
      }
      g.targets.push_back(target);
    }
    groups_.push_back(std::move(g));
  }
  std::sort(groups_.begin(), groups_.end(), [](const Group& a, const Group& b) { return group_name_less(a.name, b.name); });
  if (qc.contains("ignore") && !qc["ignore"].is_null()) {
    check(qc["ignore"].is_array(), where, "ignore must be a list");
    for (const auto& t : qc["ignore"]) {
      check(t.is_string(), where, "ignore must hold strings");
      check(t.get<std::string>() != "Linear", where, "ignore names the Linear class: nothing would be quantized");
      if (t.get<std::string>().rfind("re:", 0) == 0) {
        try {
          std::regex re(t.get<std::string>().substr(3));
        } catch (const std::regex_error& e) {
          fail(where, "ignore: '" + t.get<std::string>() + "' is not a valid regex");
        }
      }
      ignore_.push_back(t.get<std::string>());
    }
  }
}

std::optional<CtScheme> CtConfig::scheme_of(const std::string& module) const {
  for (const std::string& t : ignore_) {
    if (target_matches(t, module)) return std::nullopt;
  }
  const Group* found = nullptr;
  for (const Group& g : groups_) {
    bool hit = false;
    for (const std::string& t : g.targets) hit |= target_matches(t, module);
    if (!hit) continue;
    if (found == nullptr) {
      found = &g;
      continue;
    }
    const CtScheme &a = found->scheme, &b = g.scheme;
    const bool same = a.format == b.format && a.type == b.type && a.num_bits == b.num_bits && a.symmetric == b.symmetric &&
                      a.strategy == b.strategy && a.group_size == b.group_size && a.block == b.block;
    check(same, where_, "module '" + module + "' is targeted by config groups " + found->name + " and " + g.name +
                            " with different schemes");
  }
  return found ? std::optional<CtScheme>(found->scheme) : std::nullopt;
}

std::optional<WeightFormatId> ct_table_format(const CtScheme& s, const FindTensor& find, const std::string& module) {
  const StoredTensor* scale = find(module + ".weight_scale");
  if (scale == nullptr) return std::nullopt;
  for (const WeightFormatTraits& f : weight_formats()) {
    if (scale->dtype != scale_dtype(f.scale_type)) continue;
    const bool grouped = s.strategy == "group" || s.strategy == "tensor_group";
    const int64_t group = grouped ? s.group_size : (s.strategy == "channel" ? 0 : -1);
    if (group < 0 || group != f.group_size) continue;
    if (s.format == "pack-quantized" && f.value_kind == ValueKind::Int && f.bits == s.num_bits &&
        f.symmetric == s.symmetric) {
      return f.id;
    }
    if ((s.format == "float-quantized" || s.format == "naive-quantized") && f.value_kind == ValueKind::FP8_E4M3) return f.id;
    if (s.format == "nvfp4-pack-quantized" && f.id == WeightFormatId::NVFP4 && s.strategy == "tensor_group") return f.id;
    if (s.format == "mxfp4-pack-quantized" && f.id == WeightFormatId::MXFP4) return f.id;
  }
  return std::nullopt;
}

namespace {

// A stored scale of dtype `dtype` (F32/F16/BF16/F8_E4M3/U8 as E8M0) as a float.
float stored_scale(const StoredTensor& t, int64_t i) {
  if (t.dtype == "F32") {
    float v;
    std::memcpy(&v, t.bytes.data() + 4 * i, 4);
    return v;
  }
  if (t.dtype == "F16" || t.dtype == "BF16") {
    uint16_t h;
    std::memcpy(&h, t.bytes.data() + 2 * i, 2);
    return t.dtype == "F16" ? f16_to_f32(h) : bf16_to_f32(h);
  }
  if (t.dtype == "F8_E4M3") return e4m3_to_f32(t.bytes[i]);
  return decode_scale(ScaleType::E8M0, t.bytes[i]);
}

}  // namespace

std::vector<float> decode_ct_module_f32(const std::string& module, const CtScheme& s, int64_t rows, int64_t cols,
                                        const FindTensor& find, const std::string& where) {
  const std::string what = s.format + " " + s.type + std::to_string(s.num_bits) + " " + s.strategy;
  // Scale grid: which scale entry covers (r, c).
  int64_t scale_rows = rows, scale_cols = 1, block_r = 1, block_c = cols;
  if (s.strategy == "tensor") {
    scale_rows = 1, block_r = rows;
  } else if (s.strategy == "group" || s.strategy == "tensor_group") {
    if (cols % s.group_size != 0) {
      fail(where, "module '" + module + "': group_size " + std::to_string(s.group_size) + " does not divide its rows of " +
                      std::to_string(cols) + " (compressed-tensors cannot store that)");
    }
    scale_cols = cols / s.group_size, block_c = s.group_size;
  } else if (s.strategy == "block") {
    block_r = s.block[0], block_c = s.block[1];
    scale_rows = (rows + block_r - 1) / block_r, scale_cols = (cols + block_c - 1) / block_c;
  }
  const std::vector<int64_t> scale_shape =
      s.strategy == "tensor" ? std::vector<int64_t>{1} : std::vector<int64_t>{scale_rows, scale_cols};
  const bool fp4 = s.format == "nvfp4-pack-quantized" || s.format == "mxfp4-pack-quantized";
  const char* fp4_scale = s.format == "nvfp4-pack-quantized" ? "F8_E4M3" : "U8";
  const StoredTensor& scale = fp4 ? need(find, module + ".weight_scale", {fp4_scale}, scale_shape, where, what)
                                  : need(find, module + ".weight_scale", {"F32", "F16", "BF16"}, scale_shape, where, what);
  std::vector<float> scales(static_cast<size_t>(scale_rows * scale_cols));
  for (size_t i = 0; i < scales.size(); ++i) {
    scales[i] = stored_scale(scale, static_cast<int64_t>(i));
    if (!std::isfinite(scales[i]) || scales[i] < 0) {
      fail(where, "tensor '" + scale.name + "' holds a non-finite or negative scale at index " + std::to_string(i));
    }
  }
  auto scale_at = [&](int64_t r, int64_t c) { return scales[(r / block_r) * scale_cols + c / block_c]; };
  std::vector<float> out(static_cast<size_t>(rows * cols));
  if (s.format == "pack-quantized" || s.format == "int-quantized") {
    const int bits = s.num_bits;
    const int32_t offset = 1 << (bits - 1);
    std::vector<int32_t> q(out.size());
    if (s.format == "pack-quantized") {
      const int64_t words = dense_words(cols, bits);
      const StoredTensor& w = need(find, module + ".weight_packed", {"I32"}, {rows, words}, where, what);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          q[r * cols + c] = static_cast<int32_t>(unpack_dense(w.bytes.data() + 4 * r * words, c, bits)) - offset;
        }
      }
      check_weight_shape(need(find, module + ".weight_shape", {"I64", "I32"}, {2}, where, what), rows, cols, where);
    } else {
      const StoredTensor& w = need(find, module + ".weight", {"I8"}, {rows, cols}, where, what);
      for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<int8_t>(w.bytes[i]);
    }
    std::vector<int32_t> zero(scales.size(), 0);
    if (!s.symmetric) {
      if (s.format == "pack-quantized" && s.strategy != "tensor") {
        const int64_t row_words = dense_words(scale_rows, bits);
        const StoredTensor& z = need(find, module + ".weight_zero_point", {"I32"}, {row_words, scale_cols}, where, what);
        std::vector<uint8_t> column(static_cast<size_t>(4 * row_words));
        for (int64_t g = 0; g < scale_cols; ++g) {
          for (int64_t k = 0; k < row_words; ++k) std::memcpy(&column[4 * k], &z.bytes[4 * (k * scale_cols + g)], 4);
          for (int64_t r = 0; r < scale_rows; ++r) {
            zero[r * scale_cols + g] = static_cast<int32_t>(unpack_dense(column.data(), r, bits)) - offset;
          }
        }
      } else {
        const StoredTensor& z = need(find, module + ".weight_zero_point", {"I8"}, scale_shape, where, what);
        for (size_t i = 0; i < zero.size(); ++i) zero[i] = static_cast<int8_t>(z.bytes[i]);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t si = (r / block_r) * scale_cols + c / block_c;
        out[r * cols + c] = static_cast<float>(q[r * cols + c] - zero[si]) * scales[si];
      }
    }
  } else if (fp4) {
    check(cols % 2 == 0, where, "module '" + module + "': fp4 rows of odd length");
    const StoredTensor& w = need(find, module + ".weight_packed", {"U8"}, {rows, cols / 2}, where, what);
    float global = 1.f;
    if (s.format == "nvfp4-pack-quantized") {
      std::memcpy(&global, need(find, module + ".weight_global_scale", {"F32"}, {1}, where, what).bytes.data(), 4);
      check(global > 0 && std::isfinite(global), where, "tensor '" + module + ".weight_global_scale' is not positive");
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint8_t code = (w.bytes[r * (cols / 2) + c / 2] >> (4 * (c % 2))) & 0xF;
        // compressed-tensors: x * (scale / global_scale), in fp32.
        out[r * cols + c] = e2m1_to_f32(code) * (scale_at(r, c) / global);
      }
    }
  } else {
    const StoredTensor& w = need(find, module + ".weight", {"F8_E4M3"}, {rows, cols}, where, what);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        out[r * cols + c] = e4m3_to_f32(w.bytes[r * cols + c]) * scale_at(r, c);
      }
    }
  }
  return out;
}

}  // namespace mpq

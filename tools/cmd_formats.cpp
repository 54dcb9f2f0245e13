// mpq formats [--json]
// Prints the table of weight formats: name, bits per weight of a 4096 x 4096 matrix and the
// formula behind it, group size, symmetry, value type, scale type and the row lengths a format
// can hold (ggml block formats: multiples of their block).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "format/ggml_codec.h"
#include "format/weight_format.h"

namespace mpq::cli {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;  // the matrix the bits column is computed for

const char* value_kind_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::Half: return "float16";
    case ValueKind::FP8_E4M3: return "e4m3";
    case ValueKind::FP4_E2M1: return "e2m1";
    case ValueKind::Int: return "int";
    case ValueKind::GgmlBlock: return "ggml";
  }
  return "?";
}

const char* scale_type_name(ScaleType type) {
  switch (type) {
    case ScaleType::None: return "none";
    case ScaleType::F32: return "f32";
    case ScaleType::F16: return "f16";
    case ScaleType::BF16: return "bf16";
    case ScaleType::E4M3: return "e4m3";
    case ScaleType::E8M0: return "e8m0";
  }
  return "?";
}

// "4 + (16+4)/128", "8 + 32/cols", "4 + 8/16 + 32/(rows*cols)", "16".
std::string bits_formula(const WeightFormatTraits& f) {
  if (is_ggml_format(f)) {  // bytes per block · 8 / values per block, scales included
    return std::to_string(f.ggml->block_bytes) + "*8/" + std::to_string(f.ggml->block_values);
  }
  std::string s = std::to_string(f.bits);
  if (f.scale_type == ScaleType::None) return s;
  const int scale_bits = scale_type_bits(f.scale_type);
  const std::string per_group = f.symmetric ? std::to_string(scale_bits)
                                            : "(" + std::to_string(scale_bits) + "+" +
                                                  std::to_string(f.bits) + ")";
  s += " + " + per_group + "/" + (f.group_size == 0 ? "cols" : std::to_string(f.group_size));
  if (f.has_tensor_scale) s += " + 32/(rows*cols)";
  return s;
}

// Row lengths the format can hold: "any", or "%256" for a multiple of 256.
std::string row_rule(const WeightFormatTraits& f) {
  return is_ggml_format(f) ? "%" + std::to_string(f.ggml->block_values) : "any";
}

int run_formats(bool json) {
  nlohmann::json rows = nlohmann::json::array();
  if (!json) {
    std::printf("%-17s %9s  %-28s %6s %4s %-7s %-5s %-5s\n", "name", "bits/w", "formula", "group",
                "sym", "value", "scale", "cols");
  }
  for (const WeightFormatTraits& f : weight_formats()) {
    const double bpw = bits_per_weight(f.id, kRows, kCols);
    const std::string group = f.scale_type == ScaleType::None ? "-"
                              : f.group_size == 0             ? "row"
                                                              : std::to_string(f.group_size);
    if (json) {
      rows.push_back({{"name", f.name},
                      {"bits_per_weight", bpw},
                      {"formula", bits_formula(f)},
                      {"group_size", f.group_size},
                      {"symmetric", f.symmetric},
                      {"value_type", value_kind_name(f.value_kind)},
                      {"value_bits", f.bits},
                      {"scale_type", scale_type_name(f.scale_type)},
                      {"tensor_scale", f.has_tensor_scale},
                      {"row_multiple", is_ggml_format(f) ? f.ggml->block_values : 1},
                      {"ggml_type", is_ggml_format(f) ? nlohmann::json(f.ggml->ggml_type) : nlohmann::json(nullptr)},
                      {"description", f.description}});
    } else {
      std::printf("%-17s %9.5f  %-28s %6s %4s %-7s %-5s %-5s\n", f.name, bpw, bits_formula(f).c_str(),
                  group.c_str(), f.symmetric ? "yes" : "no", value_kind_name(f.value_kind),
                  scale_type_name(f.scale_type), row_rule(f).c_str());
    }
  }
  if (json) {
    print_json({{"matrix", {kRows, kCols}}, {"formats", rows}});
  } else {
    std::printf("bits/w: for a %lld x %lld matrix; group 0/row = one scale per output channel; ggml rows\n"
                "(value ggml): group = values per block, formula = block bytes*8/block values, cols = the\n"
                "row length must be a multiple of the block\n",
                static_cast<long long>(kRows), static_cast<long long>(kCols));
  }
  return 0;
}

Registrar registrar{{
    "formats",
    "List the weight formats mpq quantizes to",
    [](CLI::App& sub) -> std::function<int()> {
      auto json = std::make_shared<bool>(false);
      sub.add_flag("--json", *json, "Print the table as JSON");
      return [json] { return run_formats(*json); };
    },
}};

}  // namespace
}  // namespace mpq::cli

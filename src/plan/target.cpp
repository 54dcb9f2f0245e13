#include "plan/target.h"

#include <algorithm>
#include <sstream>

#include "io/compressed_tensors.h"
#include "mpq/error.h"

namespace mpq {
namespace {

struct EngineRow {
  Engine engine;
  const char* name;
};
constexpr EngineRow kEngines[] = {{Engine::Mpq, "mpq"},
                                  {Engine::CompressedTensors, "compressed-tensors"},
                                  {Engine::Transformers, "transformers"},
                                  {Engine::VllmCpu, "vllm-cpu"},
                                  {Engine::LlamaCpp, "llama.cpp"}};

const char* engine_name(Engine e) {
  for (const auto& row : kEngines) {
    if (row.engine == e) return row.name;
  }
  return "?";
}

// One engine's rule.
bool engine_accepts(Engine e, WeightFormatId format, int64_t rows, int64_t cols, std::string* why) {
  const WeightFormatTraits& f = weight_format(format);
  auto no = [&](const std::string& reason) {
    if (why != nullptr) *why = std::string(engine_name(e)) + ": " + reason;
    return false;
  };
  switch (e) {
    case Engine::Mpq: {
      std::string reason;
      if (!format_accepts(format, rows, cols, &reason)) return no(reason);
      return true;
    }
    case Engine::CompressedTensors: {
      std::string reason;
      if (!ct_expressible(format, rows, cols, &reason)) return no(reason);
      return true;
    }
    case Engine::Transformers: {
      std::string reason;
      if (!ct_expressible(format, rows, cols, &reason)) return no(reason);
      if (f.value_kind == ValueKind::Int && !f.symmetric) {
        return no(std::string(f.name) + ": asymmetric zero points do not load in transformers' default path "
                                         "(transformers 5.24 / compressed-tensors 0.20.1)");
      }
      return true;
    }
    case Engine::VllmCpu: {
      if (f.value_kind == ValueKind::Half) return true;  // kept weights run dense
      std::string reason;
      if (!ct_expressible(format, rows, cols, &reason)) return no(reason);
      if (f.value_kind != ValueKind::Int || f.bits != 4) return no(std::string(f.name) + ": its CPU kernel runs 4-bit integer weights only");
      if (f.group_size % 2 != 0) return no(std::string(f.name) + ": odd group size");
      if (rows % 32 != 0 || cols % 32 != 0) return no("both dimensions must be multiples of 32");
      return true;
    }
    case Engine::LlamaCpp: {
      std::string reason;
      if (is_ggml_format(f)) {
        if (!format_accepts(format, rows, cols, &reason)) return no(reason);
        return true;
      }
      if (f.value_kind == ValueKind::Half) return true;
      if (format == WeightFormatId::MXFP4) return cols % 32 == 0 || no("mxfp4 needs rows of whole 32-value blocks");
      if (format == WeightFormatId::NVFP4) return cols % 64 == 0 || no("nvfp4 needs rows of whole 64-value blocks");
      return no(std::string(f.name) + " has no ggml type");
    }
  }
  return no("unknown engine");
}

}  // namespace

std::string Target::name() const {
  std::string s;
  for (Engine e : engines) s += (s.empty() ? "" : ",") + std::string(engine_name(e));
  return s;
}

bool Target::accepts(WeightFormatId format, int64_t rows, int64_t cols, std::string* why) const {
  for (Engine e : engines) {
    if (!engine_accepts(e, format, rows, cols, why)) return false;
  }
  return true;
}

bool Target::allows_channel_split() const {
  return std::all_of(engines.begin(), engines.end(), [](Engine e) { return e == Engine::Mpq; });
}

bool Target::needs_fused_same() const {
  return std::find(engines.begin(), engines.end(), Engine::VllmCpu) != engines.end();
}

Target parse_target(const std::string& text, const std::string& where) {
  Target t;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    bool found = false;
    for (const auto& row : kEngines) {
      if (item == row.name) {
        if (std::find(t.engines.begin(), t.engines.end(), row.engine) == t.engines.end()) t.engines.push_back(row.engine);
        found = true;
      }
    }
    if (!found) {
      std::string names;
      for (const auto& row : kEngines) names += (names.empty() ? "" : ", ") + std::string(row.name);
      fail(where, "unknown target '" + item + "' (valid: " + names + ", or a comma list of them)");
    }
  }
  check(!t.engines.empty(), where, "no target given");
  return t;
}

std::optional<WeightFormatId> fallback_format(WeightFormatId format, int64_t rows, int64_t cols, const Target& target) {
  if (target.accepts(format, rows, cols)) return format;
  const WeightFormatTraits& f = weight_format(format);
  if (is_ggml_format(f)) {
    // llama-quantize's fallback chain when a row is not whole blocks (src/llama-quant.cpp).
    static const std::pair<WeightFormatId, WeightFormatId> kChain[] = {
        {WeightFormatId::Q2_K, WeightFormatId::Q4_0}, {WeightFormatId::Q3_K, WeightFormatId::Q4_0},
        {WeightFormatId::Q4_K, WeightFormatId::Q5_0}, {WeightFormatId::Q5_K, WeightFormatId::Q5_1},
        {WeightFormatId::Q6_K, WeightFormatId::Q8_0}, {WeightFormatId::IQ4_XS, WeightFormatId::IQ4_NL}};
    for (const auto& [from, to] : kChain) {
      if (from == format && target.accepts(to, rows, cols)) return to;
    }
    if (target.accepts(WeightFormatId::F16, rows, cols)) return WeightFormatId::F16;
    return std::nullopt;
  }
  std::optional<WeightFormatId> best;
  int best_group = -1;
  for (const WeightFormatTraits& g : weight_formats()) {
    if (g.value_kind != f.value_kind || g.bits != f.bits || g.symmetric != f.symmetric || g.scale_type != f.scale_type ||
        g.has_tensor_scale != f.has_tensor_scale) {
      continue;
    }
    // Smaller groups only (more bits, never a coarser quantization than asked for).
    if (f.group_size > 0 && (g.group_size == 0 || g.group_size > f.group_size)) continue;
    if (!target.accepts(g.id, rows, cols)) continue;
    if (g.group_size > best_group) {
      best = g.id;
      best_group = g.group_size;
    }
  }
  return best;
}

}  // namespace mpq

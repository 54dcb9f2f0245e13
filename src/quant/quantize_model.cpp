#include "quant/quantize_model.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "io/compressed_tensors.h"
#include "io/safetensors.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"
#include "quant/gptq.h"
#include "quant/hqq.h"
#include "quant/rtn.h"

namespace mpq {
namespace fs = std::filesystem;

const char* quantizer_name(Quantizer q) {
  switch (q) {
    case Quantizer::Rtn: return "rtn";
    case Quantizer::RtnClip: return "rtn_clip";
    case Quantizer::Gptq: return "gptq";
    case Quantizer::Hqq: return "hqq";
  }
  return "?";
}

std::string Scheme::name() const { return std::string(weight_format(format).name) + ":" + quantizer_name(quantizer); }

Scheme parse_scheme(const std::string& text, const std::string& where) {
  const size_t colon = text.find(':');
  const std::string format = text.substr(0, colon);
  const std::string quantizer = colon == std::string::npos ? "rtn" : text.substr(colon + 1);
  Scheme s;
  auto id = weight_format_from_name(format);
  if (!id) {
    std::string names;
    for (const auto& f : weight_formats()) names += (names.empty() ? "" : ", ") + std::string(f.name);
    fail(where, "unknown weight format '" + format + "' (known: " + names + ")");
  }
  s.format = *id;
  bool found = false;
  for (Quantizer q : {Quantizer::Rtn, Quantizer::RtnClip, Quantizer::Gptq, Quantizer::Hqq}) {
    if (quantizer == quantizer_name(q)) {
      s.quantizer = q;
      found = true;
    }
  }
  if (!found) fail(where, "unknown quantizer '" + quantizer + "' (known: rtn, rtn_clip, gptq, hqq)");
  return s;
}

nlohmann::json QuantizeReport::to_json() const {
  nlohmann::json modules_json = nlohmann::json::object();
  for (const auto& [name, m] : modules) {
    modules_json[name] = {{"format", m.format}, {"quantizer", m.quantizer}, {"seconds", m.seconds}};
    if (m.output_error >= 0) modules_json[name]["output_error"] = m.output_error;
  }
  return {{"seconds", seconds}, {"bits_per_weight", bits_per_weight}, {"linear_weights", linear_weights},
          {"modules", modules_json}};
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Quantizes one Linear in place.
ModuleReport quantize_linear(Linear& linear, const ModuleChoice& choice, const InputStats* stats,
                             const QuantizeOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t rows = linear.weights->out_features(), cols = linear.weights->in_features();
  std::vector<float> w(rows * cols);
  linear.weights->to_f32(w.data());
  QuantizedMatrix q;
  switch (choice.quantizer) {
    case Quantizer::Rtn:
      q = quantize_rtn(choice.format, w.data(), rows, cols);
      break;
    case Quantizer::RtnClip: {
      RtnOptions o;
      o.clip_search = true;
      std::vector<float> importance;
      if (stats != nullptr) {
        importance = stats->mean_square();
        o.importance = importance.data();
      }
      q = quantize_rtn(choice.format, w.data(), rows, cols, o);
      break;
    }
    case Quantizer::Gptq:
      if (stats == nullptr) fail(linear.name, "gptq needs calibration data (--calib)");
      {
        GptqOptions o;
        o.act_order = options.gptq_act_order;
        o.damp_percent = options.gptq_damp;
        q = quantize_gptq(choice.format, w.data(), rows, cols, stats->xtx, o);
      }
      break;
    case Quantizer::Hqq:
      q = quantize_hqq(choice.format, w.data(), rows, cols);
      break;
  }
  ModuleReport report{weight_format(choice.format).name, quantizer_name(choice.quantizer), -1, 0};
  // tr(ΔW H ΔWᵀ) per output row: the layer-output error on the calibration inputs.
  if (stats != nullptr) report.output_error = layer_output_error(w.data(), q, stats->xtx) / rows;
  linear.weights = make_quantized_weights(std::move(q));
  report.seconds = seconds_since(t0);
  return report;
}

}  // namespace

QuantizeReport quantize_model(Model& model,
                              const std::function<ModuleChoice(const std::string&, int, LinearKind)>& choose,
                              const QuantizeOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  QuantizeReport report;
  const int n_layers = model.config.n_layers;
  bool needs_stats = false;
  std::vector<std::array<ModuleChoice, kLinearKinds>> choices(n_layers);
  for (int l = 0; l < n_layers; ++l) {
    for (int k = 0; k < kLinearKinds; ++k) {
      const Linear& linear = model.layers[l].linear[k];
      choices[l][k] = choose(linear.name, l, static_cast<LinearKind>(k));
      needs_stats |= choices[l][k].quantizer == Quantizer::Gptq;
      needs_stats |= choices[l][k].quantizer == Quantizer::RtnClip && !options.calibration.text_paths.empty();
    }
  }
  auto process_layer = [&](int l, const LayerStats* stats) {
    for (int k = 0; k < kLinearKinds; ++k) {
      Linear& linear = model.layers[l].linear[k];
      if (choices[l][k].keep) continue;
      const InputStats* s = stats ? &stats->of(static_cast<LinearKind>(k)) : nullptr;
      report.modules[linear.name] = quantize_linear(linear, choices[l][k], s, options);
    }
    if (options.progress) {
      std::fprintf(stderr, "[quantize] layer %d/%d  %.1f s\n", l + 1, n_layers, seconds_since(t0));
    }
  };
  if (needs_stats) {
    if (options.calibration.text_paths.empty()) fail("quantize", "gptq needs calibration text (--calib FILE)");
    const CalibrationSet set = sample_calibration(model, options.calibration);
    run_sequential_calibration(model, set, [&](int l, const LayerStats& stats) { process_layer(l, &stats); });
  } else {
    for (int l = 0; l < n_layers; ++l) process_layer(l, nullptr);
  }
  // Exact bits of every Linear weight (scales and zero points included); unquantized ones count
  // as fp32.
  uint64_t bits = 0;
  for (const DecoderLayer& layer : model.layers) {
    for (const Linear& linear : layer.linear) {
      const QuantizedMatrix* q = linear.weights->quantized();
      const uint64_t n = linear.weights->out_features() * linear.weights->in_features();
      bits += q ? storage_bits(q->format, q->rows, q->cols) : 32 * n;
      report.linear_weights += n;
    }
  }
  report.bits_per_weight = static_cast<double>(bits) / report.linear_weights;
  report.seconds = seconds_since(t0);
  return report;
}

}  // namespace mpq

#include "quant/quantize_model.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "format/channel_split.h"
#include "io/compressed_tensors.h"
#include "io/safetensors.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"
#include "quant/gptq.h"
#include "quant/hqq.h"
#include "quant/rtn.h"

namespace mpq {
namespace fs = std::filesystem;

void quantize_output_head(Model& model, WeightFormatId format, QuantizeReport& report) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& c = model.config;
  std::vector<float> w(static_cast<size_t>(c.vocab_size) * c.dim);
  model.lm_head.weights->to_f32(w.data());
  require_format_accepts(format, c.vocab_size, c.dim, "lm_head");
  model.lm_head.weights = make_quantized_weights(quantize_rtn(format, w.data(), c.vocab_size, c.dim));
  if (c.tied_embeddings) model.embedding = nullptr;  // rows now come from the quantized head
  ModuleReport m;
  m.format = weight_format(format).name;
  m.quantizer = quantizer_name(Quantizer::Rtn);
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.modules["lm_head"] = m;
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

// Quantizes w [rows, cols] with one format and quantizer.
QuantizedMatrix quantize_matrix(WeightFormatId format, Quantizer quantizer, const float* w, int64_t rows, int64_t cols,
                                const InputStats* stats, const QuantizeOptions& options, const std::string& name) {
  require_format_accepts(format, rows, cols, name);  // e.g. q4_K on a 576-wide tensor, named
  switch (quantizer) {
    case Quantizer::Rtn:
      return quantize_rtn(format, w, rows, cols);
    case Quantizer::RtnClip: {
      RtnOptions o;
      o.clip_search = true;
      std::vector<float> importance;
      if (stats != nullptr) {
        importance = stats->mean_square();
        o.importance = importance.data();
      }
      return quantize_rtn(format, w, rows, cols, o);
    }
    case Quantizer::Gptq: {
      if (stats == nullptr) fail(name, "gptq needs calibration data (--calib)");
      GptqOptions o;
      o.act_order = options.gptq_act_order;
      o.damp_percent = options.gptq_damp;
      // ggml block formats fit each block's scales with llama.cpp's importance-weighted search
      // (the imatrix = mean squared activation), as rtn_clip does; element formats keep
      // fit_group's plain min/max fit.
      std::vector<float> importance;
      if (is_ggml_format(weight_format(format))) {
        importance = stats->mean_square();
        o.fit.weights = importance.data();
      }
      return quantize_gptq(format, w, rows, cols, stats->xtx, o);
    }
    case Quantizer::Hqq:
      return quantize_hqq(format, w, rows, cols);
  }
  fail(name, "unknown quantizer");
}

// Rows `rows` of w [.., cols], in that order.
std::vector<float> gather_rows(const std::vector<float>& w, const std::vector<int32_t>& rows, int64_t cols) {
  std::vector<float> out(rows.size() * static_cast<size_t>(cols));
  for (size_t i = 0; i < rows.size(); ++i) std::copy_n(w.data() + rows[i] * cols, cols, out.data() + i * cols);
  return out;
}

// Quantizes one Linear in place. A channel split quantizes its two row sets as two matrices: the
// quantizers treat rows independently (GPTQ's updates run along a row, with the Hessian shared by
// all rows), so this is what quantizing the whole matrix per set would give.
ModuleReport quantize_linear(Linear& linear, const ModuleChoice& choice, const InputStats* stats,
                             const QuantizeOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t rows = linear.weights->out_features(), cols = linear.weights->in_features();
  std::vector<float> w(rows * cols);
  linear.weights->to_f32(w.data());
  ModuleReport report{weight_format(choice.format).name, quantizer_name(choice.quantizer), -1, 0};
  std::vector<float> decoded(w.size());
  if (choice.split) {
    ChannelSplit split;
    split.rows = rows;
    split.cols = cols;
    split.high_rows = choice.high_rows;
    split.low_rows = complement_rows(choice.high_rows, rows, linear.name);
    auto part = [&](WeightFormatId f, const std::vector<int32_t>& set) {
      if (set.empty()) return make_quantized_matrix(f, 0, 0);
      const std::vector<float> sub = gather_rows(w, set, cols);
      return quantize_matrix(f, choice.quantizer, sub.data(), static_cast<int64_t>(set.size()), cols, stats, options,
                             linear.name);
    };
    split.high = part(choice.high_format, split.high_rows);
    split.low = part(choice.format, split.low_rows);
    report.format = std::string(weight_format(choice.high_format).name) + "+" + report.format;
    dequantize(split, decoded.data());
    linear.weights = make_split_weights(std::move(split));
  } else {
    QuantizedMatrix q = quantize_matrix(choice.format, choice.quantizer, w.data(), rows, cols, stats, options, linear.name);
    dequantize(q, decoded.data());
    linear.weights = make_quantized_weights(std::move(q));
  }
  // tr(ΔW H ΔWᵀ) per output row: the layer-output error on the calibration inputs.
  if (stats != nullptr) report.output_error = layer_output_error(w.data(), decoded.data(), rows, cols, stats->xtx) / rows;
  report.seconds = seconds_since(t0);
  return report;
}

}  // namespace

QuantizeReport quantize_model(Model& model,
                              const std::function<ModuleChoice(const std::string&, int, LinearKind)>& choose,
                              const QuantizeOptions& options) {
  model.require_dense("quantize");
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
      try {
        report.modules[linear.name] = quantize_linear(linear, choices[l][k], s, options);
      } catch (const Error& e) {
        // Quantizer messages say what went wrong in the matrix; the user needs the file and tensor.
        throw Error(model.source_path + ": tensor '" + linear.name + "': " + e.what());
      }
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
      const uint64_t n = linear.weights->out_features() * linear.weights->in_features();
      if (const auto q = linear.weights->quantized()) {
        bits += storage_bits(q->format, q->rows, q->cols);
      } else if (const auto split = linear.weights->channel_split()) {
        bits += channel_split_storage_bits(*split);
      } else {
        bits += 32 * n;
      }
      report.linear_weights += n;
    }
  }
  report.bits_per_weight = static_cast<double>(bits) / report.linear_weights;
  report.seconds = seconds_since(t0);
  return report;
}

}  // namespace mpq

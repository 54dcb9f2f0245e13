// Sensitivity analysis: how much each decoder Linear tensor (and each of its output channels)
// suffers from each candidate weight format, measured on a calibration set of the *unquantized*
// model. See docs/SENSITIVITY.md for the definitions, costs and the file format.
//
// Methods:
//   fisher    ½ Σ_samples Σ_entries (g·δ)² = ½ Σ_entries G2·δ², with g the per-sample (per
//             sequence) weight gradient of the mean next-token loss, G2 = Σ_samples g² per entry
//             (empirical Fisher diagonal) and δ = RTN-dequantized − original weight of the format.
//   output    tr(ΔW H ΔWᵀ) with H = XᵀX of the layer input over the calibration set and ΔW the
//             RTN error of the format (layer_output_error of quant/gptq.h).
//   channels  per output channel o (MixLLM): s_o = Σ_samples |g_o·δ_o + ½(g_o·δ_o)²| with g_o the
//             per-sample gradient row o and δ_o the row's int4_g128 RTN rounding error.
//
// Everything is deterministic for a given thread count: per-entry and per-row accumulations run
// in parallel over disjoint entries/rows, and every reduction is a serial loop in a fixed order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "format/weight_format.h"
#include "mpq/model.h"

namespace mpq {

struct SensitivityMethods {
  bool fisher = false;
  bool output = false;
  bool channels = false;
  bool any() const { return fisher || output || channels; }
  std::vector<std::string> names() const;  // in the fixed order fisher, output, channels
};

// "fisher,output,channels" (any non-empty subset, any order). Throws mpq::Error naming `where` for
// an unknown or not-yet-implemented name (kld, shapley) or an empty list.
SensitivityMethods parse_sensitivity_methods(const std::string& text,
                                             const std::string& where = "--methods");
// Every format of the table except bf16/f16, in table order.
std::vector<WeightFormatId> default_sensitivity_formats();
// "int4_g128,nvfp4" -> ids (order kept, duplicates rejected). Throws mpq::Error naming `where`.
std::vector<WeightFormatId> parse_format_list(const std::string& text,
                                              const std::string& where = "--formats");

struct SensitivityOptions {
  SensitivityMethods methods;
  std::vector<WeightFormatId> formats;  // candidates for fisher/output (empty: the default list)
  bool progress = true;                 // progress lines with elapsed/ETA on stderr
};

struct TensorSensitivity {
  int layer = 0;
  LinearKind kind = LinearKind::Q;
  std::string name;          // HF module name ("model.layers.0.self_attn.q_proj")
  int64_t rows = 0, cols = 0;  // out_features, in_features
  std::vector<double> fisher;  // per format of SensitivityResult::formats; empty if not computed
  std::vector<double> output;  // per format; empty if not computed
  std::vector<float> channels;  // [rows] MixLLM salience; empty if not computed
};

struct SensitivityResult {
  SensitivityMethods methods;
  std::vector<WeightFormatId> formats;
  std::vector<TensorSensitivity> tensors;  // layer-major, LinearKind order
  int64_t grad_sequences = 0;              // sequences through the backward pass
  double grad_loss_mean = 0;               // mean of their mean losses
  int64_t calib_rows = 0;                  // token rows behind each H (output method)
  double seconds = 0;                      // wall time (not written to the file)
};

// Runs the requested methods over `set` (drawn with sample_calibration). The model's weights are
// not changed (`model` is non-const only because run_sequential_calibration takes it so).
SensitivityResult analyze_sensitivity(Model& model, const CalibrationSet& set,
                                      const SensitivityOptions& options);

// The channel summary of the file: global top-`top_fraction` threshold (the k = ceil(f·N)
// largest saliences over all channels, ties broken by position), and per projection kind and
// per layer the number of channels, how many are in the top set and their share.
nlohmann::json channel_summary(const SensitivityResult& result, double top_fraction = 0.1);

}  // namespace mpq

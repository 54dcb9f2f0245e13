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
//   kld       quantize one tensor alone (RTN, each format), run the model from that layer on, mean
//             KL divergence against the unquantized model on a held-out token set
//             (calib/kld_eval.h). The ground truth the others are judged by.
//   shapley   players (decoder layers, or tensors) go from a high format to a low one; Shapley
//             values and pairwise interactions of the held-out KL divergence, estimated by
//             progressive quantization along sampled permutations (calib/shapley.h).
//
// Everything is deterministic for a given thread count: per-entry and per-row accumulations run
// in parallel over disjoint entries/rows, and every reduction is a serial loop in a fixed order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
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
  bool kld = false;
  bool shapley = false;
  bool any() const { return fisher || output || channels || kld || shapley; }
  // In the fixed order fisher, output, channels, kld, shapley.
  std::vector<std::string> names() const;
};

// "fisher,output,channels,kld,shapley" (any non-empty subset, any order). Throws mpq::Error
// naming `where` for an unknown name or an empty list.
SensitivityMethods parse_sensitivity_methods(const std::string& text,
                                             const std::string& where = "--methods");
// Every element format of the table except bf16/f16, in table order (ggml block formats are
// opt-in by name).
std::vector<WeightFormatId> default_sensitivity_formats();
// "int4_g128,nvfp4" -> ids (order kept, duplicates rejected). Throws mpq::Error naming `where`.
std::vector<WeightFormatId> parse_format_list(const std::string& text,
                                              const std::string& where = "--formats");

// Settings of the Shapley analysis (docs/SENSITIVITY.md, "Shapley values").
struct ShapleySettings {
  bool tensor_players = false;  // players are single tensors (else whole decoder layers)
  WeightFormatId high = WeightFormatId::Int4_G128;  // every player starts here (RTN)
  WeightFormatId low = WeightFormatId::Int2_G64;    // ... and plays by moving here (RTN)
  int permutations = 48;        // chains of progressive quantization (48 antithetic: enough to
                                // identify every pairwise term for n = 30, see shapley.h)
  bool antithetic = true;       // permutation 2k+1 is the reverse of 2k
  uint64_t seed = 0;            // permutation seed
};

struct SensitivityOptions {
  SensitivityMethods methods;
  std::vector<WeightFormatId> formats;  // candidates for fisher/output/kld (empty: the default list)
  std::vector<std::vector<int32_t>> heldout;  // token set of kld and shapley (sample_calibration
                                              // with `avoid` = the calibration set)
  ShapleySettings shapley;
  bool progress = true;                 // progress lines with elapsed/ETA on stderr
  // Resumable methods (kld, shapley) report finished work here as it completes (a JSON object,
  // see checkpoint in docs/SENSITIVITY.md); `resume` is such an object from an interrupted run
  // with the same settings, whose finished work is reused instead of recomputed.
  std::function<void(const nlohmann::json&)> checkpoint;
  nlohmann::json resume;
};

struct TensorSensitivity {
  int layer = 0;
  LinearKind kind = LinearKind::Q;
  int expert = -1;           // MoE: the expert of a gate/up/down tensor; -1 otherwise
  int64_t expert_tokens = -1;  // MoE experts: calibration tokens routed to it; -1 otherwise
  std::string name;          // HF module name ("model.layers.0.self_attn.q_proj")
  int64_t rows = 0, cols = 0;  // out_features, in_features
  std::vector<double> fisher;  // per format of SensitivityResult::formats; empty if not computed
  std::vector<double> output;  // per format; empty if not computed
  std::vector<float> channels;  // [rows] MixLLM salience; empty if not computed
  std::vector<double> kld;     // per format: mean KL (nats/token), this tensor alone quantized
};

// Result of the shapley method (players in order: layers 0..n−1, or tensors in file order).
struct ShapleyResult {
  ShapleySettings settings;
  std::vector<std::string> players;  // "layer.3" or the tensor's module name
  std::vector<int64_t> player_bits_high, player_bits_low;  // exact storage bits per player
  nlohmann::json estimate;  // values, std errors, interactions, fit quality (see shapley.h)
  nlohmann::json chains;    // the measured chains [{order, cost}], the raw data
  double seconds = 0;       // wall time of the chains
};

struct SensitivityResult {
  SensitivityMethods methods;
  std::vector<WeightFormatId> formats;
  std::vector<TensorSensitivity> tensors;  // layer-major, LinearKind order (MoE: q/k/v/o, then
                                           // each expert's gate/up/down)
  // The output head ("lm_head", [vocab, dim]) under fisher: its G2 sums the head's gradient and,
  // when tied, the embedding's (the one tensor plays both parts). `fisher` has one cost per
  // format of `formats`, NaN where the format cannot hold the head's rows (format_accepts).
  // Absent (rows == 0) when fisher was not measured.
  TensorSensitivity head;
  bool head_tied = false;
  // Bytes of the model's GGUF outside the planned tensors (io/model_writer.h gguf_fixed_bytes),
  // when the model has a GGUF form; set by run_analysis, for whole-file budgets.
  std::optional<uint64_t> gguf_fixed_bytes;
  // MoE: calibration tokens per layer and expert (the routing report); empty for dense models.
  std::vector<std::vector<int64_t>> expert_tokens;
  int64_t grad_sequences = 0;              // sequences through the backward pass
  double grad_loss_mean = 0;               // mean of their mean losses
  int64_t calib_rows = 0;                  // token rows behind each H (output method)
  int64_t heldout_tokens = 0;              // positions behind each kld / shapley loss
  nlohmann::json heldout;                  // how the held-out set was drawn (set by the caller)
  double kld_base = 0;                     // sanity: KL of the unchanged model (0 up to rounding)
  ShapleyResult shapley;                   // when methods.shapley
  double seconds = 0;                      // wall time (not written to the file)
  std::map<std::string, double> method_seconds;  // wall time per method (not written)
};

// Runs the requested methods over `set` (drawn with sample_calibration). The model's weights are
// not changed (`model` is non-const only because run_sequential_calibration takes it so).
SensitivityResult analyze_sensitivity(Model& model, const CalibrationSet& set,
                                      const SensitivityOptions& options);

// The channel summary of the file: global top-`top_fraction` threshold (the k = ceil(f·N)
// largest saliences over all channels, ties broken by position), and per projection kind and
// per layer the number of channels, how many are in the top set and their share.
// MoE: "model.layers.L.mlp.experts.E" of every expert that received no calibration token, in
// layer and expert order (empty for dense models).
std::vector<std::string> experts_without_tokens(const SensitivityResult& result);

nlohmann::json channel_summary(const SensitivityResult& result, double top_fraction = 0.1);

}  // namespace mpq

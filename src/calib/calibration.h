// Calibration data and layer-by-layer statistics of Linear-layer inputs.
//
// A CalibrationSet is N sequences of L tokens sampled (seeded) from one or more text files.
// run_sequential_calibration() walks the decoder one layer at a time, GPTQ style: the inputs of
// layer k's Linear layers are recorded on hidden states produced by layers 0..k-1 *as they are
// after the callback has processed them* (e.g. quantized), so errors of earlier layers are seen by
// later ones. Only the hidden states of all samples ([N*L, dim]) and one layer's statistics live
// in memory at once; activations themselves are never stored, only XᵀX.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mpq/model.h"

namespace mpq {

struct CalibrationOptions {
  std::vector<std::string> text_paths;  // text files; tokens are drawn from all of them
  int n_samples = 64;                   // sequences
  int seq_len = 512;                    // tokens per sequence (BOS included when the model adds it)
  uint64_t seed = 0;                    // same seed, same sequences
  int micro_batch = 4;                  // sequences per forward call
};

// Provenance of a calibration for output files: files, samples, len, seed.
nlohmann::json calibration_json(const CalibrationOptions& options);

// Where one sequence was drawn: file index in text_paths and offset in its token stream.
struct CalibrationWindow {
  int file = 0;
  int64_t offset = 0;  // first text token
  int64_t length = 0;  // text tokens (BOS not counted)
};

struct CalibrationSet {
  CalibrationOptions options;                 // how it was drawn
  std::vector<std::vector<int32_t>> sequences;  // n_samples x seq_len token ids
  std::vector<CalibrationWindow> windows;       // per sequence, where it came from
};

// Bytes a calibration run over `options` needs beyond the model itself (about): the hidden states
// of every sample, their RoPE tables, one layer's keys and values for every sample, the token ids,
// one layer's XᵀX statistics, and one micro-batch's activations and attention scores. `parts`
// (optional) receives a readable breakdown of the largest terms.
uint64_t calibration_memory_bytes(const ModelConfig& config, const CalibrationOptions& options,
                                  std::string* parts = nullptr);

// Tokenizes the texts (without special tokens), then draws n_samples windows of seq_len tokens
// (seq_len - 1 after a BOS when the model adds BOS) at uniformly random offsets over all files.
// Throws mpq::Error naming a file that cannot be read or texts too short for one window, and,
// before reading anything, when the run would not fit in the available memory
// (calibration_memory_bytes).
// With `avoid` (a set drawn from the same files), windows overlapping any of its windows are
// redrawn, so the result is held out from it (evaluation tokens the statistics never saw);
// throws mpq::Error when the texts are too short for that.
CalibrationSet sample_calibration(const Model& model, const CalibrationOptions& options,
                                  const CalibrationSet* avoid = nullptr);

// Σ xᵀx over every token row x that entered a Linear layer: the (unnormalised) Hessian of the
// layer-output error that GPTQ uses, and, on its diagonal, the importance matrix (mean squared
// activation per input channel).
struct InputStats {
  int64_t in_features = 0;  // width of the input
  int64_t n_rows = 0;       // token rows accumulated
  std::vector<double> xtx;  // [in_features, in_features], symmetric, row-major

  void accumulate(const float* x, int64_t n, int64_t width);  // adds n rows of width `width`
  // Per-input-channel mean of x² (diag(XᵀX) / n_rows).
  std::vector<float> mean_square() const;
};

// Statistics of one expert of a MoE layer, over the tokens routed to it.
struct ExpertStats {
  int64_t tokens = 0;  // calibration tokens the router sent to this expert (0: none, stats empty)
  InputStats mlp;      // input of its gate_proj, up_proj
  InputStats down;     // input of its down_proj
};

// Statistics of one decoder layer. q/k/v share one input, gate/up share one input.
struct LayerStats {
  InputStats qkv;   // input of q_proj, k_proj, v_proj
  InputStats o;     // input of o_proj
  InputStats mlp;   // input of gate_proj, up_proj (dense MLP layers)
  InputStats down;  // input of down_proj (dense MLP layers)
  std::vector<ExpertStats> experts;  // MoE layers: per expert (n_experts entries); else empty
  const InputStats& of(LinearKind kind) const;
};

// For each layer l in order: records LayerStats of its Linear inputs over the whole calibration
// set, calls `process(l, stats)` (which may replace the layer's weights), then recomputes the
// layer's outputs with the weights the callback left. `progress` (optional) is called with
// (layer, n_layers) after each layer.
void run_sequential_calibration(Model& model, const CalibrationSet& set,
                                const std::function<void(int, const LayerStats&)>& process,
                                const std::function<void(int, int)>& progress = {});

}  // namespace mpq

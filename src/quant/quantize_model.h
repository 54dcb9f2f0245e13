// Quantizing the Linear layers of a whole model, each as a callback chooses (quant/quantize.h
// applies a plan through it; io/model_writer.h writes the result).
//
// Only the Linear layers of the decoder blocks are quantized (never norms); the embedding and
// the output head keep their precision. Quantizers that need calibration (gptq; rtn_clip uses the
// importance matrix when calibration text is given) run sequentially, GPTQ style: layer k is
// calibrated on the outputs of the already-quantized layers 0..k-1 (calib/calibration.h).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "format/dtype.h"
#include "format/weight_format.h"
#include "mpq/model.h"
#include "quant/scheme.h"

namespace mpq {

struct QuantizeOptions {
  CalibrationOptions calibration;  // used when a quantizer needs it and text_paths is non-empty
  bool gptq_act_order = false;     // GPTQ: process columns by descending Hessian diagonal
  double gptq_damp = 0.01;         // GPTQ: dampening, fraction of the mean Hessian diagonal
  bool progress = true;            // progress lines on stderr
};

struct ModuleReport {
  std::string format;        // weight format name
  std::string quantizer;     // quantizer name
  double output_error = -1;  // tr(ΔW H ΔWᵀ) / rows when calibration statistics exist, else -1
  double seconds = 0;        // time spent quantizing this module
};

struct QuantizeReport {
  std::map<std::string, ModuleReport> modules;  // by module name
  double seconds = 0;                           // whole run, calibration included
  double bits_per_weight = 0;                   // over the quantized Linear weights, exact
  uint64_t linear_weights = 0;                  // number of Linear weights quantized
  nlohmann::json to_json() const;
};

// Quantizes every decoder Linear layer of `model` in place: `choose(module name, layer, kind)`
// says what each gets. Throws mpq::Error when a quantizer needs calibration and none is given.
QuantizeReport quantize_model(
    Model& model, const std::function<ModuleChoice(const std::string&, int, LinearKind)>& choose,
    const QuantizeOptions& options);

// Quantizes the output head with RTN into `format` (mpq quantize --head-format), in place, and
// records it in report.modules["lm_head"] (bits_per_weight stays over the decoder's Linear
// weights). A tied head stays tied: the quantized matrix is the head and, decoded row by row, the
// embedding (model.embedding becomes null), as llama.cpp's quantized token_embd serves both.
// Why RTN: the head's input statistics would need the whole model run; per-row formats on a
// 49152 x 576 head are what llama.cpp ships (Q6_K/Q8_0 output tensors) without calibration.
void quantize_output_head(Model& model, WeightFormatId format, QuantizeReport& report);

}  // namespace mpq

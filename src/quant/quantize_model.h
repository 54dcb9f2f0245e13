// Quantizing a whole model and writing it as a Hugging Face directory with compressed-tensors
// weights.
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

namespace mpq {

enum class Quantizer { Rtn, RtnClip, Gptq, Hqq };
const char* quantizer_name(Quantizer q);

// "FORMAT[:QUANTIZER]" (e.g. "int4_g128:gptq"; the quantizer defaults to rtn).
struct Scheme {
  WeightFormatId format = WeightFormatId::Int4_G128;
  Quantizer quantizer = Quantizer::Rtn;
  std::string name() const;  // canonical "format:quantizer"
};
// Throws mpq::Error naming `where` and listing the valid names on an unknown format/quantizer.
Scheme parse_scheme(const std::string& text, const std::string& where = "--scheme");

// What each Linear module gets.
struct ModuleChoice {
  WeightFormatId format = WeightFormatId::Int4_G128;
  Quantizer quantizer = Quantizer::Rtn;
  bool keep = false;  // leave the module as it is (not quantized)
  // Channel split (MixLLM): these output channels (ascending) take `high_format`, the others
  // `format`; each set is quantized as its own matrix with the same quantizer. Empty: no split.
  std::vector<int32_t> high_rows;
  WeightFormatId high_format = WeightFormatId::Int8_Channel;
  bool split = false;

  // The whole module in one format; the module left as it is.
  static ModuleChoice whole(WeightFormatId format, Quantizer quantizer) {
    ModuleChoice c;
    c.format = format;
    c.quantizer = quantizer;
    return c;
  }
  static ModuleChoice kept() {
    ModuleChoice c;
    c.keep = true;
    return c;
  }
};

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

// Writes `model` (quantized or not) to `out_dir`: config.json with quantization_config,
// model.safetensors, the tokenizer (tokenizer.gguf; plus tokenizer.json copied from a Hugging
// Face source), and mpq_report.json. The directory is built under "<out_dir>.tmp" and renamed
// into place; refuses to overwrite the model's own source.
// `embedding_dtype` (F32, BF16 or F16) is the storage of the embedding and of an untied output
// head: F32 keeps them exactly; BF16 halves the largest tensors of a small model's file.
void write_quantized_model(const Model& model, const QuantizeReport& report, const std::string& out_dir,
                           const nlohmann::json& provenance, DType embedding_dtype = DType::F32);

}  // namespace mpq

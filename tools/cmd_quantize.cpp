// mpq quantize: a uniform scheme over every decoder Linear layer, written as a Hugging Face
// directory with compressed-tensors weights.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "command.h"
#include "common.h"
#include "mpq/error.h"
#include "calib/sensitivity_file.h"
#include "plan/plan.h"
#include "quant/quantize_model.h"

namespace mpq::cli {
namespace {

struct QuantizeArgs {
  ModelArgs model;
  std::string scheme;
  std::string plan_path;
  CalibArgs calib;
  bool act_order = false;
  double damp = 0.01;
  std::string embedding_dtype = "f32";
  std::string head_format;  // empty: the output head keeps its precision
  std::string out;
  bool json = false;
};

int run_quantize(const QuantizeArgs& args) {
  if (args.scheme.empty() == args.plan_path.empty()) fail("quantize", "give exactly one of --scheme and --plan");
  // A plan is read and checked against the model before any work starts.
  Plan plan;
  Scheme scheme;
  if (!args.plan_path.empty()) {
    plan = read_plan(args.plan_path);
  } else {
    scheme = parse_scheme(args.scheme);
  }
  std::optional<WeightFormatId> head_format;
  if (!args.head_format.empty()) {
    head_format = weight_format_from_name(args.head_format);
    if (!head_format) {
      fail("--head-format", "unknown weight format '" + args.head_format + "' (see `mpq formats`)");
    }
  }
  Model model = load_model_from_args(args.model);
  model.require_dense("quantize");
  std::function<ModuleChoice(const std::string&, int, LinearKind)> choose =
      [&](const std::string&, int, LinearKind) { return ModuleChoice::whole(scheme.format, scheme.quantizer); };
  bool needs_calibration = scheme.quantizer == Quantizer::Gptq || scheme.quantizer == Quantizer::RtnClip;
  if (!args.plan_path.empty()) {
    std::vector<PlanTensorShape> shapes;
    for (const DecoderLayer& layer : model.layers) {
      for (const Linear& linear : layer.linear) {
        shapes.push_back({linear.name, linear.weights->out_features(), linear.weights->in_features()});
      }
    }
    check_plan_model(plan, sensitivity_model_identity(model, args.model.path));
    validate_plan(plan, shapes);
    for (const auto& [name, entry] : plan.tensors) {
      needs_calibration |= entry.quantizer == Quantizer::Gptq || entry.quantizer == Quantizer::RtnClip;
    }
    choose = [&](const std::string& name, int, LinearKind) {
      if (std::find(plan.unquantized.begin(), plan.unquantized.end(), name) != plan.unquantized.end()) {
        return ModuleChoice::kept();
      }
      return plan_module_choice(plan, name);
    };
  }
  QuantizeOptions options;
  // Calibration is only drawn when a quantizer needs it (gptq; rtn_clip uses the importance).
  options.calibration = calibration_options(args.calib);
  if (!needs_calibration && args.calib.files.empty()) options.calibration.text_paths.clear();
  options.gptq_act_order = args.act_order;
  options.gptq_damp = args.damp;
  QuantizeReport report = quantize_model(model, choose, options);
  if (head_format) quantize_output_head(model, *head_format, report);
  const std::string what = args.plan_path.empty() ? scheme.name() : "plan " + args.plan_path;
  nlohmann::json provenance = {{"source", args.model.path},
                               {"scheme", what},
                               {"calibration", calibration_json(options.calibration)},
                               {"act_order", args.act_order},
                               {"damp", args.damp},
                             {"head_format", args.head_format.empty() ? "keep" : args.head_format}};
  DType embedding_dtype = DType::F32;
  if (args.embedding_dtype == "bf16") {
    embedding_dtype = DType::BF16;
  } else if (args.embedding_dtype == "f16") {
    embedding_dtype = DType::F16;
  } else if (args.embedding_dtype != "f32") {
    fail("--embedding-dtype", "expected f32, bf16 or f16, got '" + args.embedding_dtype + "'");
  }
  provenance["embedding_dtype"] = args.embedding_dtype;
  write_quantized_model(model, report, args.out, provenance, embedding_dtype);
  uint64_t file_bytes = std::filesystem::file_size(args.out + "/model.safetensors");
  if (args.json) {
    print_json({{"out", args.out}, {"scheme", what}, {"bits_per_weight", report.bits_per_weight},
                {"seconds", report.seconds}, {"file_bytes", file_bytes}});
  } else {
    std::printf("%s: %s, %.4f bits per Linear weight, model.safetensors %.1f MB, %.1f s\n", args.out.c_str(),
                what.c_str(), report.bits_per_weight, file_bytes / 1e6, report.seconds);
  }
  return 0;
}

Registrar quantize_cmd{{"quantize", "quantize every decoder Linear layer with one scheme", [](CLI::App& app) {
                          auto args = std::make_shared<QuantizeArgs>();
                          add_model_args(app, args->model);
                          app.add_option("--scheme", args->scheme, "FORMAT[:QUANTIZER], e.g. int4_g128:gptq");
                          app.add_option("--plan", args->plan_path, "a plan file from `mpq plan` (instead of --scheme)");
                          add_calibration_args(app, args->calib);
                          app.add_flag("--act-order", args->act_order,
                                       "GPTQ: quantize columns by descending Hessian diagonal");
                          app.add_option("--damp", args->damp, "GPTQ: dampening (fraction of mean diag H)")
                              ->check(CLI::Range(0.0, 10.0));
                          app.add_option("--embedding-dtype", args->embedding_dtype,
                                         "storage of the embedding and an untied head: f32 (default, exact), bf16, f16");
                          app.add_option("--head-format", args->head_format,
                                         "quantize the output head too (RTN), e.g. int8_channel or bf16; a tied "
                                         "head stays tied and also serves as the embedding (default: keep it)");
                          app.add_option("--out", args->out, "output directory")->required();
                          app.add_flag("--json", args->json, "print JSON");
                          return std::function<int()>([args] { return run_quantize(*args); });
                        }}};

}  // namespace
}  // namespace mpq::cli

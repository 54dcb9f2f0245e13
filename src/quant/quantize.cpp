#include "quant/quantize.h"

#include <algorithm>

#include "calib/sensitivity_file.h"
#include "mpq/error.h"

namespace mpq {

std::vector<PlanTensorShape> plan_tensor_shapes(const Model& model) {
  std::vector<PlanTensorShape> shapes;
  for (const Linear* linear : model.linears()) {
    shapes.push_back({linear->name, linear->weights->out_features(), linear->weights->in_features()});
  }
  return shapes;
}

Plan uniform_plan(const Model& model, const Scheme& scheme, std::optional<Scheme> head) {
  Plan plan;
  plan.method = "uniform";
  plan.cost = "none";
  PlanEntry entry;
  entry.format = scheme.format;
  entry.quantizer = scheme.quantizer;
  for (const PlanTensorShape& t : plan_tensor_shapes(model)) {
    plan.tensors[t.name] = entry;
    plan.total_bits += storage_bits(scheme.format, t.rows, t.cols);
    plan.weights += static_cast<uint64_t>(t.rows) * static_cast<uint64_t>(t.cols);
  }
  plan.bits_per_weight = plan.weights ? static_cast<double>(plan.total_bits) / static_cast<double>(plan.weights) : 0;
  plan.budget.bytes = std::max<uint64_t>(1, (plan.total_bits + 7) / 8);
  plan.solver = {{"scheme", scheme.name()}};
  plan.head = head;
  return plan;
}

bool plan_needs_calibration(const Plan& plan) {
  return std::any_of(plan.tensors.begin(), plan.tensors.end(), [](const auto& t) {
    return t.second.quantizer == Quantizer::Gptq || t.second.quantizer == Quantizer::RtnClip;
  });
}

QuantizeReport quantize(Model& model, const Plan& plan, const QuantizeOptions& options) {
  model.require_dense("quantize");
  const std::string where = plan.path.empty() ? "plan" : plan.path;
  // Everything that can be refused is refused before the first tensor is touched.
  if (plan.sensitivity.is_object() && plan.sensitivity.contains("model")) {
    check_plan_model(plan, sensitivity_model_identity(model, model.source_path));
  }
  validate_plan(plan, plan_tensor_shapes(model));
  if (plan.head && plan.head->quantizer != Quantizer::Rtn) {
    fail(where, std::string("the output head is quantized with rtn only (its inputs would need the whole model "
                            "run to calibrate), not ") + quantizer_name(plan.head->quantizer));
  }
  auto choose = [&](const std::string& name, int, LinearKind) {
    if (std::find(plan.unquantized.begin(), plan.unquantized.end(), name) != plan.unquantized.end()) {
      return ModuleChoice::kept();
    }
    return plan_module_choice(plan, name);
  };
  QuantizeReport report = quantize_model(model, choose, options);
  if (plan.head) quantize_output_head(model, plan.head->format, report);
  return report;
}

nlohmann::json quantize_report_json(const Model& model, const Plan& plan, const QuantizeOptions& options,
                                    const QuantizeReport& report) {
  nlohmann::json j = {{"source", model.source_path},
                      {"method", plan.method},
                      {"calibration", plan_needs_calibration(plan) ? calibration_json(options.calibration)
                                                                   : nlohmann::json(nullptr)},
                      {"act_order", options.gptq_act_order},
                      {"damp", options.gptq_damp},
                      {"head_format", plan.head ? weight_format(plan.head->format).name : "keep"}};
  if (plan.method == "uniform" && plan.solver.contains("scheme")) {
    j["scheme"] = plan.solver["scheme"];
  } else {
    j["scheme"] = "plan " + (plan.path.empty() ? std::string("(in memory)") : plan.path);
    j["plan"] = {{"path", plan.path}, {"bits_per_weight", plan.bits_per_weight}, {"sensitivity", plan.sensitivity}};
  }
  nlohmann::json out = report.to_json();
  out["provenance"] = j;
  return out;
}

}  // namespace mpq

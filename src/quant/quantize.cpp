#include "quant/quantize.h"

#include <algorithm>
#include <map>

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

Plan uniform_plan(const Model& model, const Scheme& scheme, std::optional<Scheme> head, const Target& target) {
  Plan plan;
  plan.method = "uniform";
  plan.cost = "none";
  plan.target = target.name();
  std::map<std::string, int> fallbacks;
  for (const PlanTensorShape& t : plan_tensor_shapes(model)) {
    PlanEntry entry;
    entry.quantizer = scheme.quantizer;
    std::string why;
    if (target.accepts(scheme.format, t.rows, t.cols, &why)) {
      entry.format = scheme.format;
    } else if (const auto f = fallback_format(scheme.format, t.rows, t.cols, target)) {
      entry.format = *f;
      ++fallbacks[std::string(weight_format(scheme.format).name) + " -> " + weight_format(*f).name];
    } else {
      fail(t.name, "the target " + target.name() + " cannot run " + scheme.name() + " here (" + why +
                       ") and has no fallback format of that kind");
    }
    plan.tensors[t.name] = entry;
    plan.total_bits += storage_bits(entry.format, t.rows, t.cols);
    plan.weights += static_cast<uint64_t>(t.rows) * static_cast<uint64_t>(t.cols);
  }
  plan.bits_per_weight = plan.weights ? static_cast<double>(plan.total_bits) / static_cast<double>(plan.weights) : 0;
  plan.budget.bytes = std::max<uint64_t>(1, (plan.total_bits + 7) / 8);
  plan.solver = {{"scheme", scheme.name()}, {"fallbacks", fallbacks}};
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
  const std::vector<PlanTensorShape> shapes = plan_tensor_shapes(model);
  validate_plan(plan, shapes);
  const Target target = parse_target(plan.target, where + ": target");
  for (const PlanTensorShape& t : shapes) {
    auto it = plan.tensors.find(t.name);
    if (it == plan.tensors.end()) continue;
    std::string why;
    if (it->second.split) {
      check(target.allows_channel_split(), where, "tensor '" + t.name + "' is channel-split, which target " +
                                                      target.name() + " cannot run");
    } else if (!target.accepts(it->second.format, t.rows, t.cols, &why)) {
      fail(where, "tensor '" + t.name + "': " + why);
    }
  }
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

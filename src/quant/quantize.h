// The one call that quantizes a model: apply a plan. The CLI (`mpq quantize --scheme|--plan`),
// the tests and `mpq auto` all go through it; a uniform scheme is just the simplest plan.
#pragma once

#include <nlohmann/json.hpp>

#include "plan/plan.h"
#include "plan/target.h"
#include "quant/quantize_model.h"

namespace mpq {

// Every decoder Linear tensor of `model` in `scheme` (budget: exactly the plan's bits), the output
// head in `head` when given. A tensor the target does not accept in that format takes the same
// kind of format with the largest group the target accepts (plan/target.h fallback_format; e.g.
// int4_g128 -> int4_g64 on rows of 576 for compressed-tensors), recorded in
// plan.solver["fallbacks"] ("int4_g128 -> int4_g64": count); a tensor with no such format is
// refused, naming it.
Plan uniform_plan(const Model& model, const Scheme& scheme, std::optional<Scheme> head = std::nullopt,
                  const Target& target = Target{{Engine::Mpq}});

// The plan's tensor shapes check: every Linear tensor of the model as the plan validator sees it.
std::vector<PlanTensorShape> plan_tensor_shapes(const Model& model);

// True when a planned tensor's quantizer uses calibration statistics (gptq, rtn_clip).
bool plan_needs_calibration(const Plan& plan);

// Checks `plan` against `model` before any work (names, channels, budget, model identity when the
// plan records one, head scheme), quantizes every planned Linear tensor in place (calibrating
// layer by layer when a quantizer needs it) and the output head when the plan says so. Throws
// mpq::Error naming the plan file or the tensor.
QuantizeReport quantize(Model& model, const Plan& plan, const QuantizeOptions& options);

// What mpq_report.json records of a run: the report (per-module formats, quantizers, errors,
// bits) and its provenance (source, plan or scheme, calibration, options).
nlohmann::json quantize_report_json(const Model& model, const Plan& plan, const QuantizeOptions& options,
                                    const QuantizeReport& report);

}  // namespace mpq

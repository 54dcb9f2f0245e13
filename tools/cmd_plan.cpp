// mpq plan: from a sensitivity file (mpq analyze) to a bit-allocation plan (docs/PLAN.md).
#include <cmath>
#include <cstdio>
#include <limits>

#include "calib/sensitivity.h"
#include "command.h"
#include "common.h"
#include "mpq/error.h"
#include "plan/planner.h"

namespace mpq::cli {
namespace {

struct PlanArgs {
  std::string sensitivity;
  std::string method;
  double bits = std::numeric_limits<double>::quiet_NaN();
  std::string size;
  std::string formats;
  std::vector<std::string> pins;
  bool fused_same = false;
  std::string cost = "fisher";
  std::string quantizer = "rtn";
  std::string out;
  bool json = false;
};

int run_plan(const PlanArgs& args) {
  PlanRequest req;
  req.method = args.method;
  if (!std::isnan(args.bits)) req.bits = args.bits;
  if (!args.size.empty()) req.bytes = parse_byte_size(args.size, "--size");
  if (!args.formats.empty()) req.formats = parse_format_list(args.formats, "--formats");
  for (const auto& p : args.pins) req.pins.push_back(parse_pin(p));
  req.fused_same = args.fused_same;
  req.cost = args.cost;
  req.quantizer = parse_scheme("int4_g128:" + args.quantizer, "--quantizer").quantizer;
  const SensitivityInput in = read_sensitivity_input(args.sensitivity, args.method == "channels");
  const Plan plan = make_plan(in, req);
  write_plan(plan, args.out);
  if (args.json) {
    print_json({{"out", args.out},
                {"method", plan.method},
                {"budget", plan.budget.describe()},
                {"bits_per_weight", plan.bits_per_weight},
                {"total_bits", plan.total_bits},
                {"predicted_objective", plan.predicted_objective},
                {"solver", plan.solver}});
  } else {
    std::printf("%s: %s, %zu tensors (%zu unquantized), %.4f bits/weight (%llu bytes) within %s, predicted %s %.6g\n",
                args.out.c_str(), plan.method.c_str(), plan.tensors.size(), plan.unquantized.size(),
                plan.bits_per_weight, static_cast<unsigned long long>((plan.total_bits + 7) / 8),
                plan.budget.describe().c_str(), plan.cost.empty() ? "cost" : plan.cost.c_str(),
                plan.predicted_objective);
  }
  return 0;
}

Registrar plan_cmd{{"plan", "bit-allocation plan from a sensitivity file (tiers, knapsack, bqp, channels, rule)",
                    [](CLI::App& app) {
                      auto args = std::make_shared<PlanArgs>();
                      app.add_option("SENSITIVITY", args->sensitivity, "S.json written by mpq analyze")->required();
                      app.add_option("--method", args->method, "tiers, knapsack, bqp, channels or rule")->required();
                      auto* bits = app.add_option("--bits", args->bits,
                                                  "budget: average bits per quantized Linear weight (exact)");
                      auto* size = app.add_option("--size", args->size, "budget: total bytes of the Linear weights (90MB, 64MiB)");
                      bits->excludes(size);
                      app.add_option("--formats", args->formats, "comma list of candidate formats (method-specific order)");
                      app.add_option("--pin", args->pins, "REGEX=FORMAT[:QUANTIZER] or REGEX=none (repeatable)");
                      app.add_flag("--fused-same", args->fused_same, "q/k/v and gate/up of a layer share a format");
                      app.add_option("--cost", args->cost, "fisher, output, kld, or shapley (bqp; default fisher)");
                      app.add_option("--quantizer", args->quantizer, "quantizer of every tensor (default rtn)");
                      app.add_option("--out", args->out, "plan JSON")->required();
                      app.add_flag("--json", args->json, "print JSON");
                      return std::function<int()>([args] { return run_plan(*args); });
                    }}};

}  // namespace
}  // namespace mpq::cli

// mpq plan: from a sensitivity file (mpq analyze) to a bit-allocation plan (docs/PLAN.md).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <limits>

#include "auto/measure.h"
#include "calib/sensitivity.h"
#include "calib/sensitivity_file.h"
#include "command.h"
#include "io/output.h"
#include "common.h"
#include "mpq/error.h"
#include "plan/llama_types.h"
#include "plan/planner.h"
#include "report/svg.h"

namespace mpq::cli {
namespace {

// First line of a --llama-tensor-types file: a PATTERN=TYPE item whose pattern matches no tensor
// (llama-quantize has no comments), marking the file as mpq's.
constexpr const char* kLlamaTypesHeader = "^mpq-plan-tensor-types$=f32";

struct PlanArgs {
  std::string sensitivity;
  std::string method;
  double bits = std::numeric_limits<double>::quiet_NaN();
  std::string size;
  std::string file_size;     // --file-size: the whole GGUF file
  double high_fraction = std::numeric_limits<double>::quiet_NaN();  // --high-fraction (channels)
  std::string head_format;   // --head-format
  std::string llama_types;   // --llama-tensor-types FILE
  std::string formats;
  std::vector<std::string> pins;
  bool fused_same = false;
  std::string cost = "fisher";
  std::string quantizer = "rtn";
  std::string target = "compressed-tensors";
  std::string out;
  bool force = false;
  bool json = false;
};

// The files a plan command reads: the sensitivity summary and its sidecar.
OutputRules plan_rules(const PlanArgs& args) {
  return {{args.sensitivity, sensitivity_sidecar_path(args.sensitivity)}, args.force};
}

// The request of the shared options (the budget is set by the caller for pareto).
PlanRequest request_from(const PlanArgs& args) {
  PlanRequest req;
  req.method = args.method;
  if (!std::isnan(args.bits)) req.bits = args.bits;
  if (!args.size.empty()) req.bytes = parse_byte_size(args.size, "--size");
  if (!args.file_size.empty()) req.file_bytes = parse_byte_size(args.file_size, "--file-size");
  if (!std::isnan(args.high_fraction)) req.high_fraction = args.high_fraction;
  if (!args.head_format.empty()) req.head = parse_scheme(args.head_format, "--head-format");
  if (!args.formats.empty()) req.formats = parse_format_list(args.formats, "--formats");
  for (const auto& p : args.pins) req.pins.push_back(parse_pin(p));
  req.fused_same = args.fused_same;
  req.cost = args.cost;
  req.quantizer = parse_scheme("int4_g128:" + args.quantizer, "--quantizer").quantizer;
  req.target = parse_target(args.target);
  return req;
}

int run_plan(const PlanArgs& args) {
  check_output_file(args.out, plan_rules(args), json_with_format("mpq-plan"));
  // The tensor-type file is plain text: only a file an earlier `mpq plan` wrote is replaced.
  const auto types_file = [](const std::string& path) {
    std::ifstream in(path);
    std::string first;
    return std::getline(in, first) && first.rfind(kLlamaTypesHeader, 0) == 0;
  };
  if (!args.llama_types.empty()) check_output_file(args.llama_types, plan_rules(args), types_file);
  const PlanRequest req = request_from(args);
  const SensitivityInput in = read_sensitivity_input(args.sensitivity, args.method == "channels");
  const Plan plan = make_plan(in, req);
  std::string types;
  if (!args.llama_types.empty()) types = llama_tensor_types(plan);  // refuses before anything is written
  write_plan(plan, args.out);
  if (!args.llama_types.empty()) {
    // llama-quantize reads whitespace-separated PATTERN=TYPE items: the header is one such item
    // that matches no tensor name.
    write_file_atomically(args.llama_types, std::string(kLlamaTypesHeader) + "\n" + types);
  }
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

// Adds the options plan and pareto share.
void add_plan_options(CLI::App& app, PlanArgs& args) {
  app.add_option("SENSITIVITY", args.sensitivity, "S.json written by mpq analyze")->required();
  app.add_option("--method", args.method, "tiers, knapsack, bqp, channels or rule")->required();
  app.add_option("--formats", args.formats, "comma list of candidate formats (method-specific order)");
  app.add_option("--pin", args.pins, "REGEX=FORMAT[:QUANTIZER] or REGEX=none (repeatable)");
  app.add_flag("--fused-same", args.fused_same, "q/k/v and gate/up of a layer share a format");
  app.add_option("--cost", args.cost, "fisher, output, kld, or shapley (bqp; default fisher)");
  app.add_option("--quantizer", args.quantizer, "quantizer of every tensor (default rtn)");
  app.add_option("--target", args.target,
                 "engines the plan must run in: compressed-tensors (default), transformers, vllm-cpu, mpq (channel "
                 "splits, partial groups), or a comma list");
  add_force_flag(app, args.force);
}

struct ParetoArgs {
  PlanArgs plan;
  std::string range;  // LO:HI:STEP bits per weight
  // --measure: quantize and evaluate every point (auto/measure.h)
  bool measure = false;
  ModelArgs model;  // default: the model the sensitivity file names
  CalibArgs calib = [] {
    CalibArgs c;
    c.samples = 32;
    return c;
  }();
  std::string eval_text = MPQ_DEFAULT_EVAL;
  int eval_chunks = 40;
  int eval_ctx = 512;
  bool no_speed = false;
};

// The predicted frontier as an SVG line chart (report/svg.h): bits/weight against predicted cost,
// on a log axis when every cost is positive.
std::string frontier_svg(const std::vector<std::pair<double, double>>& points, const std::string& title,
                         const std::string& cost) {
  svg::XYChart chart;
  chart.title = title;
  chart.width = 720;
  chart.height = 440;
  chart.x.label = "bits per weight (Linear)";
  chart.y.log = std::all_of(points.begin(), points.end(), [](const auto& p) { return p.second > 0; });
  chart.y.label = "predicted " + cost + " cost" + (chart.y.log ? " (log scale)" : "");
  svg::Series series;
  series.name = "plans";
  series.colour = svg::categorical(0, 1);
  series.line = true;
  for (auto [x, y] : points) {
    svg::Point p;
    p.x = x;
    p.y = y;
    p.hover = svg::format_number(x, 5) + " bits/weight: predicted " + cost + " " + svg::format_number(y, 4);
    series.points.push_back(p);
  }
  chart.series.push_back(series);
  return svg::render(chart);
}

// The measured frontier: bits/weight against measured mean KL divergence (log axis).
std::string measured_svg(const std::vector<std::pair<double, double>>& points, const std::string& title) {
  svg::XYChart chart;
  chart.title = title;
  chart.width = 720;
  chart.height = 440;
  chart.x.label = "bits per weight (Linear)";
  chart.y.log = std::all_of(points.begin(), points.end(), [](const auto& p) { return p.second > 0; });
  chart.y.label = std::string("measured KL divergence, mean (nats)") + (chart.y.log ? " (log scale)" : "");
  svg::Series series;
  series.name = "measured";
  series.colour = svg::categorical(1, 2);
  series.line = true;
  for (auto [x, y] : points) {
    svg::Point p;
    p.x = x;
    p.y = y;
    p.hover = svg::format_number(x, 5) + " bits/weight: KLD mean " + svg::format_number(y, 4);
    series.points.push_back(p);
  }
  chart.series.push_back(series);
  return svg::render(chart);
}

int run_pareto(const ParetoArgs& args) {
  double lo = 0, hi = 0, step = 0;
  if (std::sscanf(args.range.c_str(), "%lf:%lf:%lf", &lo, &hi, &step) != 3 || !(lo > 0) || !(hi >= lo) ||
      !(step > 0) || (hi - lo) / step > 1000) {
    fail("--bits-range", "expected LO:HI:STEP with 0 < LO <= HI, STEP > 0 and at most 1000 steps, got '" +
                             args.range + "'");
  }
  OutputRules rules = plan_rules(args.plan);
  const SensitivityInput in = read_sensitivity_input(args.plan.sensitivity, args.plan.method == "channels");
  const std::string model_path = args.model.path.empty() ? in.model.value("path", std::string()) : args.model.path;
  if (args.measure) {
    check(!model_path.empty(), "--model", "the sensitivity file names no model: give --model");
    rules.inputs.push_back(model_path);
    rules.inputs.push_back(args.eval_text);
    for (const auto& f : calibration_options(args.calib).text_paths) rules.inputs.push_back(f);
  }
  check_output_dir(args.plan.out, rules);
  PlanRequest req = request_from(args.plan);
  StagedDirectory staged(args.plan.out, "pareto");
  std::string csv = "budget_bits_per_weight,bits_per_weight,linear_bytes,predicted_objective,plan\n";
  std::vector<std::pair<double, double>> points;
  std::vector<Plan> plans;
  std::vector<std::string> csv_rows;
  std::string cost = args.plan.cost;  // as the plans name it (channels: salience)
  for (int i = 0; lo + i * step <= hi + 1e-9; ++i) {
    const double budget = lo + i * step;
    req.bits = budget;
    Plan plan;
    try {
      plan = make_plan(in, req);
    } catch (const Error& e) {
      std::fprintf(stderr, "[pareto] %.4g bits/weight: no plan (%s)\n", budget, e.what());
      continue;
    }
    char name[64];
    std::snprintf(name, sizeof name, "plan-%.4g.json", budget);
    write_plan(plan, staged.path(name));
    char line[256];
    std::snprintf(line, sizeof line, "%.6g,%.6f,%llu,%.9g,%s", budget, plan.bits_per_weight,
                  static_cast<unsigned long long>((plan.total_bits + 7) / 8), plan.predicted_objective, name);
    csv_rows.push_back(line);
    points.emplace_back(plan.bits_per_weight, plan.predicted_objective);
    if (!plan.cost.empty()) cost = plan.cost;
    plan.path = args.plan.out + "/" + name;
    plans.push_back(std::move(plan));
  }
  check(!points.empty(), "--bits-range", "no budget in the range admits a plan");
  std::vector<std::pair<double, double>> measured;
  if (args.measure) {
    // Every point quantized, written as its target loads it, read back packed and evaluated.
    const bool gguf = parse_target(args.plan.target).name() == "llama.cpp";
    std::vector<std::string> outs;
    for (const Plan& p : plans) {
      const std::string stem = std::filesystem::path(p.path).stem().string();  // plan-4.5
      outs.push_back(staged.path("model-" + stem.substr(5) + (gguf ? ".gguf" : "")));
    }
    LoadOptions load;
    load.tokenizer_path = args.model.tokenizer_path;
    load.runtime = runtime_options(args.model);
    load.keep_gguf_quantized = load.runtime.decode_on_use;
    QuantizeOptions q;
    q.calibration = calibration_options(args.calib);
    q.progress = false;
    EvalSettings eval;
    eval.text_path = args.eval_text;
    eval.text = read_text_file(args.eval_text);
    eval.ctx = args.eval_ctx;
    eval.chunks = args.eval_chunks;
    eval.measure_speed = !args.no_speed;
    eval.progress = true;
    const PlanSweep sweep = measure_plans(model_path, load, plans, outs, q, eval, staged.path("reference.logits"),
                                          rules, /*progress=*/true);
    csv = "budget_bits_per_weight,bits_per_weight,linear_bytes,predicted_objective,plan,model,file_bytes,ppl,kld_mean,"
          "kld_p99,top1_agree,decode_tok_s,status\n";
    for (size_t i = 0; i < plans.size(); ++i) {
      const PlanPointResult& r = sweep.points[i];
      const std::string model = std::filesystem::path(outs[i]).filename().string();
      char line[512];
      if (r.measurement) {
        const CandidateMeasurement& m = *r.measurement;
        std::snprintf(line, sizeof line, ",%s,%llu,%.9g,%.9g,%.9g,%.9g,%s,done", model.c_str(),
                      static_cast<unsigned long long>(m.file_bytes), m.ppl, m.kld_mean, m.kld_p99, m.top1_agree,
                      m.decode_tok_s ? std::to_string(*m.decode_tok_s).c_str() : "");
        measured.emplace_back(m.bits_per_weight, m.kld_mean);
        std::printf("%.4f bits/weight  %.1f MB  PPL %.4f  KLD %.5f  top-1 %.2f %%\n", m.bits_per_weight,
                    static_cast<double>(m.file_bytes) / 1e6, m.ppl, m.kld_mean, 100 * m.top1_agree);
      } else {
        // The reason is free text: quoted for CSV.
        std::string why = r.failure;
        for (size_t at = why.find('"'); at != std::string::npos; at = why.find('"', at + 2)) why.insert(at, "\"");
        std::snprintf(line, sizeof line, ",,,,,,,,\"failed: %s\"", why.c_str());
        std::printf("%.4f bits/weight  failed: %s\n", plans[i].bits_per_weight, r.failure.c_str());
      }
      csv += csv_rows[i] + line + "\n";
    }
    std::printf("reference (unquantized) PPL %.4f\n", sweep.reference.ppl);
    check(!measured.empty(), args.plan.out, "no point of the sweep could be quantized and measured");
    write_file_atomically(staged.path("measured.svg"),
                          measured_svg(measured, args.plan.method + ": measured KL divergence vs bits/weight"));
  } else {
    for (const auto& row : csv_rows) csv += row + "\n";
  }
  write_file_atomically(staged.path("frontier.csv"), csv);
  write_file_atomically(staged.path("frontier.svg"),
                        frontier_svg(points, args.plan.method + ": predicted " + cost + " cost vs bits/weight", cost));
  staged.commit(rules);
  std::printf("%s: %zu plans, frontier.csv, frontier.svg%s\n", args.plan.out.c_str(), points.size(),
              args.measure ? ", measured.svg and the models" : "");
  return 0;
}

Registrar pareto_cmd{{"pareto", "plans over a range of budgets: the predicted size-vs-cost frontier (CSV + SVG)",
                      [](CLI::App& app) {
                        auto args = std::make_shared<ParetoArgs>();
                        add_plan_options(app, args->plan);
                        app.add_option("--bits-range", args->range, "LO:HI:STEP bits per weight")->required();
                        app.add_option("--out", args->plan.out, "output directory (plans, frontier.csv, frontier.svg)")
                            ->required();
                        app.add_flag("--measure", args->measure,
                                     "quantize and evaluate every point (PPL, KLD, top-1, decode tok/s on held-out text)");
                        app.add_option("--model", args->model.path, "--measure: the model (default: the one the sensitivity file names)");
                        app.add_option("--tokenizer", args->model.tokenizer_path, "--measure: tokenizer for llama2.c checkpoints");
                        add_calibration_args(app, args->calib);
                        app.add_option("--eval-text", args->eval_text, "--measure: held-out text (default: WikiText-2 test)");
                        app.add_option("--eval-chunks", args->eval_chunks, "--measure: chunks of the evaluation text (default 40)")
                            ->check(int_at_least(1));
                        app.add_option("--eval-ctx", args->eval_ctx, "--measure: tokens per chunk (default 512)")
                            ->check(int_at_least(2));
                        app.add_flag("--no-speed", args->no_speed, "--measure: skip the decode-speed measurement");
                        return std::function<int()>([args] { return run_pareto(*args); });
                      }}};

Registrar plan_cmd{{"plan", "bit-allocation plan from a sensitivity file (tiers, knapsack, bqp, channels, rule)",
                    [](CLI::App& app) {
                      auto args = std::make_shared<PlanArgs>();
                      add_plan_options(app, *args);
                      auto* bits = app.add_option("--bits", args->bits,
                                                  "budget: average bits per quantized Linear weight (exact)")
                                      ->check(positive_number());
                      auto* size = app.add_option("--size", args->size, "budget: total bytes of the Linear weights (90MB, 64MiB)");
                      auto* file_size = app.add_option("--file-size", args->file_size,
                                                       "budget: bytes of the whole GGUF file (--target llama.cpp): "
                                                       "the head's format is chosen too unless --head-format");
                      auto* fraction = app.add_option("--high-fraction", args->high_fraction,
                                                      "channels method, instead of a budget: the fraction P of all output "
                                                      "channels (the most salient) in the high format (MixLLM's p)");
                      bits->excludes(size);
                      bits->excludes(file_size);
                      fraction->excludes(bits);
                      fraction->excludes(size);
                      fraction->excludes(file_size);
                      size->excludes(file_size);
                      app.add_option("--head-format", args->head_format,
                                     "the output head's format in the plan (a tied head is also the embedding)");
                      app.add_option("--llama-tensor-types", args->llama_types,
                                     "also write the plan as llama-quantize's --tensor-type-file");
                      app.add_option("--out", args->out, "plan JSON")->required();
                      app.add_flag("--json", args->json, "print JSON");
                      return std::function<int()>([args] { return run_plan(*args); });
                    }}};

}  // namespace
}  // namespace mpq::cli

// mpq auto: a model and a budget in, the best model found out (auto/auto.h), with its report.
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "auto/auto.h"
#include "command.h"
#include "common.h"
#include "mpq/error.h"
#include "plan/planner.h"

namespace mpq::cli {
namespace {

struct AutoArgs {
  ModelArgs model;
  double bits = std::numeric_limits<double>::quiet_NaN();
  std::string size;
  std::string target;  // "": llama.cpp for a .gguf --out, compressed-tensors otherwise
  std::string methods;
  std::string analyze = "fisher,output,channels";
  std::string formats;
  CalibArgs calib = [] {
    CalibArgs c;
    c.samples = 32;  // auto's default: one set for the analysis and GPTQ
    return c;
  }();
  std::string quantizer = "gptq";
  std::string head_format;
  std::string eval_text = MPQ_DEFAULT_EVAL;
  int eval_chunks = 40;
  int eval_ctx = 512;
  bool no_speed = false;
  std::string cache_dir = default_cache_dir();
  std::string work_dir;
  bool resume = false;
  bool force = false;
  std::string out;
  bool json = false;
};

int run_auto_cmd(const AutoArgs& args) {
  AutoOptions o;
  if (!std::isnan(args.bits)) o.budget.bits_per_weight = args.bits;
  if (!args.size.empty()) o.budget.bytes = parse_byte_size(args.size, "--size");
  if (o.budget.bits_per_weight <= 0 && o.budget.bytes == 0) fail("auto", "give a budget: --bits B or --size BYTES");
  o.target = args.target;
  if (!args.methods.empty()) {
    std::stringstream ss(args.methods);
    for (std::string m; std::getline(ss, m, ',');) o.methods.push_back(m);
  }
  o.analysis.options.methods = parse_sensitivity_methods(args.analyze, "--analyze");
  if (!args.formats.empty()) o.analysis.options.formats = parse_format_list(args.formats);
  o.analysis.calibration = calibration_options(args.calib);
  o.quantizer = parse_scheme("int4_g128:" + args.quantizer, "--quantizer").quantizer;
  if (!args.head_format.empty()) o.head = parse_scheme(args.head_format, "--head-format");
  o.eval_text = args.eval_text;
  o.eval_chunks = args.eval_chunks;
  o.eval_ctx = args.eval_ctx;
  o.measure_speed = !args.no_speed;
  o.cache_dir = args.cache_dir;
  o.work_dir = args.work_dir;
  o.resume = args.resume;
  o.rules = {{args.model.tokenizer_path}, args.force};
  std::string command = "mpq";
  // The command that reproduces the run from scratch (--resume only continues it).
  for (const auto& a : command_line()) {
    if (a != "--resume") command += " '" + a + "'";
  }
  o.commands = {command};
  LoadOptions load;
  load.tokenizer_path = args.model.tokenizer_path;
  load.runtime = runtime_options(args.model);
  load.keep_gguf_quantized = load.runtime.decode_on_use;
  const AutoResult r = run_auto(args.model.path, load, o, args.out);
  if (args.json) {
    print_json({{"out", args.out}, {"run_dir", r.run_dir}, {"report", r.report}, {"chosen", r.chosen},
                {"candidates", r.run["candidates"]}});
    return 0;
  }
  std::printf("%-28s %8s %10s %10s %10s %8s\n", "candidate", "bits/w", "MB", "PPL", "KLD", "top-1");
  for (const auto& c : r.run["candidates"]) {
    if (c.value("status", "") != "done") {
      std::printf("%-28s %s\n", c["name"].get<std::string>().c_str(), c["status"].get<std::string>().c_str());
      continue;
    }
    std::printf("%-28s %8.4f %10.1f %10.4f %10.5f %8.4f%s\n", c["name"].get<std::string>().c_str(),
                c["bits_per_weight"].get<double>(), c["file_bytes"].get<double>() / 1e6, c["ppl"].get<double>(),
                c["kld_mean"].get<double>(), c["top1_agree"].get<double>(), c["name"] == r.chosen ? "  <- chosen" : "");
  }
  std::printf("best: %s -> %s (run directory %s)\nreport: %s\n", r.chosen.c_str(), args.out.c_str(), r.run_dir.c_str(),
              r.report.c_str());
  return 0;
}

Registrar auto_cmd{{"auto", "analyze, plan, quantize and evaluate candidates at a budget; keep the best", [](CLI::App& app) {
                      auto args = std::make_shared<AutoArgs>();
                      add_model_args(app, args->model);
                      auto* bits = app.add_option("--bits", args->bits, "budget: average bits per quantized Linear weight")
                                       ->check(positive_number());
                      auto* size = app.add_option("--size", args->size, "budget: total bytes of the Linear weights");
                      bits->excludes(size);
                      app.add_option("--target", args->target, "engines the result must run in: compressed-tensors (default for a directory), transformers, vllm-cpu, mpq, "
                                     "llama.cpp (default for a .gguf --out), or a comma list");
                      app.add_option("--methods", args->methods,
                                     "candidates: comma list of knapsack, channels, tiers, rule, bqp, uniform (default: all)");
                      app.add_option("--analyze", args->analyze,
                                     "sensitivity methods (default fisher,output,channels; kld/shapley take longer)");
                      app.add_option("--formats", args->formats, "formats the analysis measures (default: all)");
                      add_calibration_args(app, args->calib);
                      app.add_option("--quantizer", args->quantizer, "every candidate's quantizer (default gptq)");
                      app.add_option("--head-format", args->head_format, "quantize the output head too (RTN)");
                      app.add_option("--eval-text", args->eval_text, "held-out evaluation text (default: WikiText-2 test)");
                      app.add_option("--eval-chunks", args->eval_chunks, "chunks of the evaluation text (default 40)")
                          ->check(int_at_least(1));
                      app.add_option("--eval-ctx", args->eval_ctx, "tokens per evaluation chunk (default 512)")
                          ->check(int_at_least(2));
                      app.add_flag("--no-speed", args->no_speed, "skip the decode-speed measurement of each candidate");
                      app.add_option("--cache", args->cache_dir, "analysis cache directory (default ~/.cache/mpq; '' : none)");
                      app.add_option("--work-dir", args->work_dir, "run directory (default OUT.run)");
                      app.add_flag("--resume", args->resume, "continue an interrupted run in the run directory");
                      add_force_flag(app, args->force);
                      app.add_option("--out", args->out, "the best model: a directory, or NAME.gguf (report beside it as NAME.report.html)")->required();
                      app.add_flag("--json", args->json, "print JSON");
                      return std::function<int()>([args] { return run_auto_cmd(*args); });
                    }}};

}  // namespace
}  // namespace mpq::cli

// mpq quantize: apply a plan (--plan) or a uniform scheme (--scheme, the simplest plan) to a model
// and write the result (io/model_writer.h picks the writer by the output name).
#include <cstdio>
#include <filesystem>
#include <optional>

#include "command.h"
#include "common.h"
#include "io/model_writer.h"
#include "mpq/error.h"
#include "quant/quantize.h"

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
  std::string target;       // --target (uniform schemes; a plan records its own)
  std::string out;
  bool force = false;
  bool json = false;
};

int run_quantize(const QuantizeArgs& args) {
  if (args.scheme.empty() == args.plan_path.empty()) fail("quantize", "give exactly one of --scheme and --plan");
  // Everything cheap is checked before the model is loaded.
  ModelWriteOptions write;
  write.rules.force = args.force;
  write.rules.inputs = {args.model.path, args.model.tokenizer_path, args.plan_path};
  write.rules.inputs.insert(write.rules.inputs.end(), args.calib.files.begin(), args.calib.files.end());
  if (is_gguf_output(args.out)) {
    check_output_file(args.out, write.rules, is_mpq_gguf);
  } else {
    check_output_dir(args.out, write.rules);
  }
  if (args.embedding_dtype == "bf16") {
    write.embedding_dtype = DType::BF16;
  } else if (args.embedding_dtype == "f16") {
    write.embedding_dtype = DType::F16;
  } else if (args.embedding_dtype != "f32") {
    fail("--embedding-dtype", "expected f32, bf16 or f16, got '" + args.embedding_dtype + "'");
  }
  std::optional<Scheme> head;
  if (!args.head_format.empty()) head = parse_scheme(args.head_format, "--head-format");
  std::optional<Plan> plan;
  std::optional<Scheme> scheme;
  if (!args.plan_path.empty()) {
    if (!args.target.empty()) fail("--target", "a plan records the target it was made for (mpq plan --target)");
    plan = read_plan(args.plan_path);
    if (head) plan->head = head;
  } else {
    scheme = parse_scheme(args.scheme);
  }
  QuantizeOptions options;
  options.calibration = calibration_options(args.calib);
  options.gptq_act_order = args.act_order;
  options.gptq_damp = args.damp;

  Model model = load_model_from_args(args.model);
  if (scheme) {
    plan = uniform_plan(model, *scheme, head, parse_target(!args.target.empty() ? args.target : is_gguf_output(args.out) ? "llama.cpp" : "compressed-tensors"));
    for (const auto& [change, count] : plan->solver["fallbacks"].items()) {
      std::fprintf(stderr, "mpq: note: %s for %d tensors (the target %s needs it)\n", change.c_str(), count.get<int>(),
                   plan->target.c_str());
    }
  }
  if (plan->budget.file_bytes > 0) {
    if (!is_gguf_output(args.out)) {
      fail("--out", "the plan budgets a whole GGUF file (" + plan->budget.describe() + "): write a .gguf");
    }
    write.max_file_bytes = plan->budget.file_bytes;
  }
  check_model_output(model, args.out, write);
  const QuantizeReport report = quantize(model, *plan, options);
  write.report = quantize_report_json(model, *plan, options, report);
  write.report["provenance"]["embedding_dtype"] = args.embedding_dtype;
  write_model(model, args.out, write);

  const std::string what = write.report["provenance"]["scheme"].get<std::string>();
  const std::string file = is_gguf_output(args.out) ? args.out : args.out + "/model.safetensors";
  const uint64_t file_bytes = std::filesystem::file_size(file);
  if (args.json) {
    print_json({{"out", args.out}, {"scheme", what}, {"bits_per_weight", report.bits_per_weight},
                {"seconds", report.seconds}, {"file_bytes", file_bytes}});
  } else {
    std::printf("%s: %s, %.4f bits per Linear weight, %s %.1f MB, %.1f s\n", args.out.c_str(), what.c_str(),
                report.bits_per_weight, std::filesystem::path(file).filename().c_str(), file_bytes / 1e6, report.seconds);
  }
  return 0;
}

Registrar quantize_cmd{{"quantize", "quantize every decoder Linear layer with one scheme or a plan", [](CLI::App& app) {
                          auto args = std::make_shared<QuantizeArgs>();
                          add_model_args(app, args->model);
                          app.add_option("--scheme", args->scheme, "FORMAT[:QUANTIZER], e.g. int4_g128:gptq");
                          app.add_option("--plan", args->plan_path, "a plan file from `mpq plan` (instead of --scheme)");
                          add_calibration_args(app, args->calib);
                          app.add_flag("--act-order", args->act_order,
                                       "GPTQ: quantize columns by descending Hessian diagonal");
                          app.add_option("--damp", args->damp, "GPTQ: dampening (fraction of mean diag H)")
                              ->check(number_in(0, 10));
                          app.add_option("--embedding-dtype", args->embedding_dtype,
                                         "storage of the embedding and an untied head: f32 (default, exact), bf16, f16");
                          app.add_option("--head-format", args->head_format,
                                         "quantize the output head too (RTN), e.g. int8_channel or bf16; a tied "
                                         "head stays tied and also serves as the embedding (default: keep it)");
                          app.add_option("--target", args->target,
                                         "engines the result must run in (--scheme): compressed-tensors (default for a directory), llama.cpp (default for .gguf), "
                                         "transformers, vllm-cpu, mpq, or a comma list; a format a tensor cannot take "
                                         "falls back to the same kind with smaller groups, said on stderr");
                          app.add_option("--out", args->out, "output directory")->required();
                          app.add_flag("--force", args->force,
                                       "write into an existing directory mpq did not write (only mpq's own files "
                                       "are replaced there; inputs are never overwritten)");
                          app.add_flag("--json", args->json, "print JSON");
                          return std::function<int()>([args] { return run_quantize(*args); });
                        }}};

}  // namespace
}  // namespace mpq::cli

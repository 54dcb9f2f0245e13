// mpq analyze: sensitivity of every decoder Linear tensor to each candidate weight format
// (fisher, output) and per-output-channel salience (channels), written as S.json + S.bin
// (docs/SENSITIVITY.md).
#include <cstdio>
#include <filesystem>

#include "calib/analysis.h"
#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "calib/sensitivity_file.h"
#include "io/output.h"
#include "command.h"
#include "common.h"
#include "mpq/error.h"

namespace mpq::cli {
namespace {

struct AnalyzeArgs {
  ModelArgs model;
  CalibArgs calib = [] {
    CalibArgs c;
    c.samples = 16;  // analyze's default: 16 sequences (quantize uses 64)
    return c;
  }();
  std::string methods = "fisher,output,channels";
  std::string formats;
  int heldout_samples = 4;      // --heldout-samples
  int heldout_len = 256;        // --heldout-len
  std::string shapley_players = "layers";
  std::string shapley_formats = "int4_g128,int2_g64";
  int shapley_permutations = 48;
  bool shapley_independent = false;  // --shapley-independent: no antithetic pairs
  std::string out;
  bool resume = false;
  bool force = false;
  bool quiet = false;
  bool json = false;
};

int run_analyze(const AnalyzeArgs& args) {
  // Validate the cheap arguments before loading anything.
  OutputRules rules{{args.model.path, args.model.tokenizer_path}, args.force};
  rules.inputs.insert(rules.inputs.end(), args.calib.files.begin(), args.calib.files.end());
  check_sensitivity_output(args.out, rules);  // before any work
  SensitivityOptions options;
  options.methods = parse_sensitivity_methods(args.methods);
  if (!args.formats.empty()) options.formats = parse_format_list(args.formats);
  options.progress = !args.quiet;
  if (options.methods.shapley) {
    const std::vector<WeightFormatId> pair = parse_format_list(args.shapley_formats, "--shapley-formats");
    if (pair.size() != 2) fail("--shapley-formats", "give exactly two formats: HIGH,LOW");
    options.shapley.high = pair[0];
    options.shapley.low = pair[1];
    if (args.shapley_players != "layers" && args.shapley_players != "tensors") {
      fail("--shapley-players", "expected 'layers' or 'tensors', got '" + args.shapley_players + "'");
    }
    options.shapley.tensor_players = args.shapley_players == "tensors";
    if (args.shapley_permutations < 2) fail("--shapley-permutations", "need at least 2");
    options.shapley.permutations = args.shapley_permutations;
    options.shapley.antithetic = !args.shapley_independent;
    options.shapley.seed = args.calib.seed;
  }
  AnalysisRequest request;
  request.options = options;
  request.calibration = calibration_options(args.calib);
  request.heldout_samples = args.heldout_samples;
  request.heldout_len = args.heldout_len;
  request.resume = args.resume;
  request.rules = rules;
  Model model = load_model_from_args(args.model);
  const AnalysisSummary summary = run_analysis(model, args.model.path, request, args.out);
  const SensitivityResult& result = summary.result;
  if (!args.quiet) {
    for (const auto& [method, seconds] : result.method_seconds) {
      std::fprintf(stderr, "[analyze] %s: %.1f s\n", method.c_str(), seconds);
    }
  }
  // MoE: the calibration report of experts the router never chose (also in the file).
  const std::vector<std::string> unused = experts_without_tokens(result);
  if (!unused.empty()) {
    std::fprintf(stderr, "[analyze] warning: %zu experts received no calibration tokens (no statistics, no costs):",
                 unused.size());
    for (const std::string& name : unused) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n[analyze] more or longer calibration samples (--calib-samples, --calib-len) reach more experts\n");
  }
  const std::string bin = sensitivity_sidecar_path(args.out);
  if (args.json) {
    print_json({{"out", args.out},
                {"sidecar", bin},
                {"tensors", result.tensors.size()},
                {"experts_without_tokens", unused},
                {"seconds", result.seconds}});
  } else {
    std::printf("%s (+ %s): %zu tensors, %zu formats, methods %s, %.1f s\n", args.out.c_str(), bin.c_str(),
                result.tensors.size(), result.formats.size(), args.methods.c_str(), result.seconds);
  }
  return 0;
}

Registrar analyze_cmd{{"analyze", "sensitivity of each Linear tensor / output channel to quantization",
                       [](CLI::App& app) {
                         auto args = std::make_shared<AnalyzeArgs>();
                         add_model_args(app, args->model);
                         add_calibration_args(app, args->calib);
                         app.add_option("--methods", args->methods,
                                        "comma list of fisher, output, channels, kld, shapley "
                                        "(default: fisher,output,channels)");
                         app.add_option("--heldout-samples", args->heldout_samples,
                                        "kld/shapley: held-out sequences (default 4)")
                             ->check(int_at_least(1));
                         app.add_option("--heldout-len", args->heldout_len,
                                        "kld/shapley: tokens per held-out sequence (default 256)")
                             ->check(int_at_least(2));
                         app.add_option("--shapley-players", args->shapley_players,
                                        "shapley: 'layers' (default) or 'tensors'");
                         app.add_option("--shapley-formats", args->shapley_formats,
                                        "shapley: HIGH,LOW formats (default int4_g128,int2_g64)");
                         app.add_option("--shapley-permutations", args->shapley_permutations,
                                        "shapley: permutations (chains) to sample (default 48)")
                             ->check(int_at_least(2));
                         app.add_flag("--shapley-independent", args->shapley_independent,
                                      "shapley: independent permutations instead of antithetic pairs "
                                      "(identifies the pairwise terms with fewer chains)");
                         app.add_flag("--resume", args->resume,
                                      "continue an interrupted kld/shapley run from <out>.progress.json");
                         app.add_option("--formats", args->formats,
                                        "comma list of candidate formats (default: all but bf16/f16)");
                         app.add_option("--out", args->out, "summary JSON (the sidecar is <out>.bin)")
                             ->required();
                         add_force_flag(app, args->force);
                         app.add_flag("--quiet", args->quiet, "no progress lines on stderr");
                         app.add_flag("--json", args->json, "print JSON");
                         return std::function<int()>([args] { return run_analyze(*args); });
                       }}};

}  // namespace
}  // namespace mpq::cli

// mpq analyze: sensitivity of every decoder Linear tensor to each candidate weight format
// (fisher, output) and per-output-channel salience (channels), written as S.json + S.bin
// (docs/SENSITIVITY.md).
#include <cstdio>
#include <filesystem>

#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "calib/sensitivity_file.h"
#include "command.h"
#include "common.h"
#include "mpq/error.h"

namespace mpq::cli {
namespace {

struct AnalyzeArgs {
  ModelArgs model;
  CalibArgs calib{.samples = 16};
  std::string methods = "fisher,output,channels";
  std::string formats;
  std::string out;
  bool quiet = false;
  bool json = false;
};

int run_analyze(const AnalyzeArgs& args) {
  // Validate the cheap arguments before loading anything.
  SensitivityOptions options;
  options.methods = parse_sensitivity_methods(args.methods);
  if (!args.formats.empty()) options.formats = parse_format_list(args.formats);
  options.progress = !args.quiet;
  Model model = load_model_from_args(args.model);
  const CalibrationOptions calib = calibration_options(args.calib);
  if (calib.text_paths.empty()) fail("--calib", "no calibration text given and the default is missing");
  const CalibrationSet set = sample_calibration(model, calib);
  const SensitivityResult result = analyze_sensitivity(model, set, options);
  write_sensitivity_file(result, sensitivity_model_identity(model, args.model.path), calib, args.out);
  const std::string bin = sensitivity_sidecar_path(args.out);
  if (args.json) {
    print_json({{"out", args.out}, {"sidecar", bin}, {"tensors", result.tensors.size()}, {"seconds", result.seconds}});
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
                                        "comma list of fisher, output, channels (default: all three)");
                         app.add_option("--formats", args->formats,
                                        "comma list of candidate formats (default: all but bf16/f16)");
                         app.add_option("--out", args->out, "summary JSON (the sidecar is <out>.bin)")
                             ->required();
                         app.add_flag("--quiet", args->quiet, "no progress lines on stderr");
                         app.add_flag("--json", args->json, "print JSON");
                         return std::function<int()>([args] { return run_analyze(*args); });
                       }}};

}  // namespace
}  // namespace mpq::cli

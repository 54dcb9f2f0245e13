#include "common.h"

#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mpq/error.h"

namespace mpq::cli {

void add_model_args(CLI::App& app, ModelArgs& args) {
  app.add_option("model", args.path, "GGUF file, Hugging Face directory or llama2.c checkpoint")
      ->required();
  app.add_option("--tokenizer", args.tokenizer_path, "tokenizer file (llama2.c checkpoints)");
  app.add_option("--threads", args.threads, "worker threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
}

Model load_model_from_args(const ModelArgs& args, bool need_tokenizer) {
  if (args.threads > 0) {
    omp_set_num_threads(args.threads);
  }
  LoadOptions options;
  options.tokenizer_path = args.tokenizer_path;
  options.need_tokenizer = need_tokenizer;
  return load_model(args.path, options);
}

void add_calibration_args(CLI::App& app, CalibArgs& args) {
  app.add_option("--calib", args.files, "calibration text file(s) (default: WikiText-2 validation split)");
  app.add_option("--calib-samples", args.samples, "calibration sequences")->check(CLI::PositiveNumber);
  app.add_option("--calib-len", args.len, "tokens per calibration sequence")->check(CLI::Range(2, 1 << 20));
  app.add_option("--seed", args.seed, "calibration sampling seed");
}

CalibrationOptions calibration_options(const CalibArgs& args) {
  CalibrationOptions options;
  options.text_paths = args.files;
  if (options.text_paths.empty() && std::filesystem::exists(MPQ_DEFAULT_CALIB)) {
    options.text_paths = {MPQ_DEFAULT_CALIB};
  }
  options.n_samples = args.samples;
  options.seq_len = args.len;
  options.seed = args.seed;
  return options;
}

nlohmann::json calibration_json(const CalibrationOptions& options) {
  return {{"files", options.text_paths}, {"samples", options.n_samples}, {"len", options.seq_len},
          {"seed", options.seed}};
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open text file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, "read error");
  return ss.str();
}

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

}  // namespace mpq::cli

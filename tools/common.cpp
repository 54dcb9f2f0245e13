#include "common.h"
#include "io/read_file.h"

#include <omp.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mpq/error.h"

namespace mpq::cli {

CLI::Validator int_at_least(long long lo, const std::string& meaning) {
  const std::string wanted = "an integer >= " + std::to_string(lo) + (meaning.empty() ? "" : " (" + meaning + ")");
  return CLI::Validator(
      [lo, wanted](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || errno == ERANGE || v < lo) return "expected " + wanted + ", got '" + text + "'";
        return "";
      },
      wanted);
}

CLI::Validator number_in(double lo, double hi) {
  char wanted[96];
  std::snprintf(wanted, sizeof wanted, "a number from %g to %g", lo, hi);
  return CLI::Validator(
      [lo, hi, w = std::string(wanted)](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) return "expected " + w + ", got '" + text + "'";
        return "";
      },
      wanted);
}

CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !std::isfinite(v) || !(v > 0)) {
          return "expected a positive finite number, got '" + text + "'";
        }
        return "";
      },
      "a positive number");
}

void add_model_args(CLI::App& app, ModelArgs& args) {
  app.add_option("model", args.path, "GGUF file, Hugging Face directory or llama2.c checkpoint")
      ->required();
  app.add_option("--tokenizer", args.tokenizer_path, "tokenizer file (llama2.c checkpoints)");
  app.add_option("--threads", args.threads, "worker threads (default: all cores)")
      ->check(int_at_least(0, "0: all cores"));
  app.add_option("--runtime", args.runtime,
                 "how quantized weights run: packed (default; straight from packed weights) or "
                 "decoded (fp32 copy, the fake-quant reference) or on-use (decoded's results, bit for bit, "
                 "decoding each matrix when used: a GGUF's quantized tensors and quantized weights stay "
                 "as stored, for models whose fp32 copy does not fit)")
      ->check(CLI::IsMember({"packed", "decoded", "on-use"}));
  app.add_option("--act", args.activations,
                 "activations of packed integer weights: fp32 (default) or int8 (per token and "
                 "128 values)")
      ->check(CLI::IsMember({"fp32", "int8"}));
  app.add_option("--kv-cache", args.kv_cache,
                 "KV cache element type: auto (default: f16 for quantized models run from packed "
                 "weights, f32 otherwise), f32, or f16 (half the bytes per decoded token)")
      ->check(CLI::IsMember({"auto", "f32", "f16"}));
  app.add_option("--decode-threading", args.decode_threading,
                 "packed decode steps: one-region (default; all layers in one parallel region, "
                 "threads meeting at spin barriers) or per-op (a fork per product and attention)")
      ->check(CLI::IsMember({"one-region", "per-op"}));
}

RuntimeOptions runtime_options(const ModelArgs& args) {
  // CLI11 validated the strings; a caller filling ModelArgs by hand gets an error, not a guess.
  check(args.runtime == "packed" || args.runtime == "decoded" || args.runtime == "on-use", "--runtime",
        "expected packed, decoded or on-use, got '" + args.runtime + "'");
  check(args.activations == "fp32" || args.activations == "int8", "--act",
        "expected fp32 or int8, got '" + args.activations + "'");
  check(args.kv_cache == "auto" || args.kv_cache == "f32" || args.kv_cache == "f16", "--kv-cache",
        "expected auto, f32 or f16, got '" + args.kv_cache + "'");
  check(args.decode_threading == "one-region" || args.decode_threading == "per-op", "--decode-threading",
        "expected one-region or per-op, got '" + args.decode_threading + "'");
  RuntimeOptions runtime;
  runtime.packed = args.runtime == "packed";
  runtime.decode_on_use = args.runtime == "on-use";
  runtime.int8_activations = args.activations == "int8";
  if (args.kv_cache != "auto") runtime.kv_cache = args.kv_cache == "f16" ? KvCacheType::F16 : KvCacheType::F32;
  runtime.decode_in_one_region = args.decode_threading == "one-region";
  return runtime;
}

Model load_model_from_args(const ModelArgs& args, bool need_tokenizer) {
  if (args.threads > 0) {
    omp_set_num_threads(args.threads);
  }
  LoadOptions options;
  options.tokenizer_path = args.tokenizer_path;
  options.need_tokenizer = need_tokenizer;
  options.runtime = runtime_options(args);
  options.keep_gguf_quantized = options.runtime.decode_on_use;
  return load_model(args.path, options);
}

void add_calibration_args(CLI::App& app, CalibArgs& args) {
  app.add_option("--calib", args.files, "calibration text file(s) (default: WikiText-2 validation split)");
  app.add_option("--calib-samples", args.samples, "calibration sequences")->check(int_at_least(1));
  app.add_option("--calib-len", args.len, "tokens per calibration sequence")->check(int_at_least(2));
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

void add_force_flag(CLI::App& app, bool& force) {
  app.add_flag("--force", force,
               "replace an existing output that mpq did not write (in a directory, only the files mpq "
               "writes are replaced; inputs are never overwritten)");
}

std::string read_text_file(const std::string& path) { return read_file(path, "text file"); }

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

}  // namespace mpq::cli

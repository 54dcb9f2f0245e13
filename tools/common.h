// Options and helpers shared by the CLI commands.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "mpq/model.h"

namespace mpq::cli {

struct ModelArgs {
  std::string path;            // MODEL: GGUF file, HF directory or llama2.c checkpoint
  std::string tokenizer_path;  // --tokenizer (llama2.c)
  int threads = 0;             // --threads (0: all cores)
  std::string runtime = "packed";  // --runtime: "packed" (from packed weights), "decoded" or "on-use"
                                   // (through a decoded fp32 copy, the fake-quant reference)
  std::string activations = "fp32";  // --act: "fp32" or "int8" (packed integer formats)
  std::string kv_cache = "auto";     // --kv-cache: "auto" (RuntimeOptions::kv_cache unset), "f32"
                                     // or "f16"; Model::kv_cache_type is what it became
  std::string decode_threading = "one-region";  // --decode-threading: "one-region" or "per-op"
};

// Option validators whose messages say what is wanted (CLI11's own checks print ranges such as
// "0.000000 to 1797..." and exit with code 105). A failed check ends the command with one line
// "mpq: error: --opt: ..." and exit status 1 (main.cpp).
CLI::Validator int_at_least(long long lo, const std::string& meaning = "");  // an integer >= lo
CLI::Validator number_in(double lo, double hi);                             // finite, lo <= x <= hi
CLI::Validator positive_number();                                           // finite, > 0

// Adds MODEL, --tokenizer, --threads, --runtime, --act, --kv-cache and --decode-threading to `app`.
void add_model_args(CLI::App& app, ModelArgs& args);

// LoadOptions::runtime as --runtime, --act (both for quantized Linear weights only),
// --kv-cache and --decode-threading ask.
RuntimeOptions runtime_options(const ModelArgs& args);

// Applies --threads and loads the model.
Model load_model_from_args(const ModelArgs& args, bool need_tokenizer = true);

// Calibration text options shared by the commands that calibrate.
struct CalibArgs {
  std::vector<std::string> files;  // --calib (default: WikiText-2 validation split)
  int samples = 64;                // --calib-samples
  int len = 512;                   // --calib-len
  uint64_t seed = 0;               // --seed
};
// Adds --calib, --calib-samples, --calib-len and --seed to `app`.
void add_calibration_args(CLI::App& app, CalibArgs& args);
// The options, with WikiText-2's validation split when no file is given and it exists (never
// the test split).
CalibrationOptions calibration_options(const CalibArgs& args);

// Adds --force (replace an existing output mpq did not write; inputs are never overwritten).
void add_force_flag(CLI::App& app, bool& force);

// Reads a whole text file; throws mpq::Error naming it when unreadable.
std::string read_text_file(const std::string& path);

// Prints JSON to stdout (indented).
void print_json(const nlohmann::json& j);

}  // namespace mpq::cli

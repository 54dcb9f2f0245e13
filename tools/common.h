// Options and helpers shared by the CLI commands.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "mpq/model.h"

namespace mpq::cli {

struct ModelArgs {
  std::string path;            // MODEL: GGUF file, HF directory or llama2.c checkpoint
  std::string tokenizer_path;  // --tokenizer (llama2.c)
  int threads = 0;             // --threads (0: all cores)
};

// Adds MODEL, --tokenizer and --threads to `app`.
void add_model_args(CLI::App& app, ModelArgs& args);

// Applies --threads and loads the model.
Model load_model_from_args(const ModelArgs& args, bool need_tokenizer = true);

// Reads a whole text file; throws mpq::Error naming it when unreadable.
std::string read_text_file(const std::string& path);

// Prints JSON to stdout (indented).
void print_json(const nlohmann::json& j);

}  // namespace mpq::cli

// mpq info / generate / logits: look at a model and run it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <iostream>
#include <sstream>

#include "command.h"
#include "common.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "io/output.h"
#include "mpq/tokenizer.h"

namespace mpq::cli {
namespace {

// ---- info

struct InfoArgs {
  ModelArgs model;
  bool json = false;
};

int run_info(const InfoArgs& args) {
  Model model = load_model_from_args(args.model, /*need_tokenizer=*/false);
  const ModelConfig& c = model.config;
  nlohmann::json j;
  j["path"] = model.source_path;
  j["layout"] = model.source_layout;
  j["arch"] = c.arch;
  j["n_layers"] = c.n_layers;
  j["dim"] = c.dim;
  j["ffn_dim"] = c.ffn_dim;
  j["n_heads"] = c.n_heads;
  j["n_kv_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_context"] = c.max_context;
  j["rms_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  j["tied_embeddings"] = c.tied_embeddings;
  j["parameters"] = model.parameter_count();
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : model.source_tensors) {
    tensors.push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}});
  }
  j["tensors"] = tensors;
  // Weight format of the decoder's Linear layers (f32 for dense weights), with counts and bytes.
  std::map<std::string, std::pair<int, uint64_t>> formats;
  for (const Linear* linear : model.linears()) {
    auto& entry = formats[linear->weights->format_name()];
    entry.first++;
    entry.second += linear->weights->storage_bytes();
  }
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  if (!c.local_layers.empty()) {  // gemma3: which layers are local (sliding-window)
    std::vector<int> local;
    for (int l = 0; l < c.n_layers; ++l) {
      if (c.local_layers[l]) local.push_back(l);
    }
    j["local_layers"] = local;
    j["rope_local_theta"] = c.rope_local_theta;
  }
  if (c.is_moe()) {
    j["n_experts"] = c.n_experts;
    j["n_experts_per_token"] = c.n_experts_per_token;
  }
  nlohmann::json formats_json = nlohmann::json::object();
  std::string formats_text;
  for (const auto& [name, entry] : formats) {
    formats_json[name] = {{"modules", entry.first}, {"bytes", entry.second}};
    formats_text += (formats_text.empty() ? "" : ", ") + name + " x" + std::to_string(entry.first);
  }
  j["linear_formats"] = formats_json;
  if (args.json) {
    print_json(j);
    return 0;
  }
  std::printf("%s (%s)\n  arch %s: %d layers, dim %d, ffn %d, heads %d/%d (head_dim %d), vocab %d, "
              "ctx %d, rope_theta %g, %s embeddings\n  parameters: %lld\n  linear layers: %s\n  tensors (%zu):\n",
              model.source_path.c_str(), model.source_layout.c_str(), c.arch.c_str(), c.n_layers,
              c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, c.max_context,
              c.rope_theta, c.tied_embeddings ? "tied" : "separate",
              static_cast<long long>(model.parameter_count()), formats_text.c_str(), model.source_tensors.size());
  for (const auto& t : model.source_tensors) {
    std::string shape;
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.shape[i]);
    std::printf("    %-48s %-6s %s\n", t.name.c_str(), t.dtype.c_str(), shape.c_str());
  }
  return 0;
}

Registrar info_cmd{{"info", "architecture, tensors and parameter count of a model", [](CLI::App& app) {
                      auto args = std::make_shared<InfoArgs>();
                      add_model_args(app, args->model);
                      app.add_flag("--json", args->json, "print JSON");
                      return std::function<int()>([args] { return run_info(*args); });
                    }}};

// ---- generate

struct GenerateArgs {
  ModelArgs model;
  std::string prompt;
  int n_predict = 64;
  SamplerOptions sampler;
  bool json = false;
  bool chat = false;
};

int run_generate(const GenerateArgs& args) {
  Model model = load_model_from_args(args.model);
  std::vector<int32_t> prompt = model.tokenizer->encode(args.prompt, /*add_special=*/true,
                                                        /*parse_special=*/true);
  if (prompt.empty()) fail("--prompt", "the prompt has no tokens (model adds no BOS)");
  std::string text;
  auto on_token = [&](int32_t id) {
    std::string piece = model.tokenizer->decode_token(id);
    text += piece;
    if (!args.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  if (!args.json) std::fwrite(args.prompt.data(), 1, args.prompt.size(), stdout);
  const std::vector<int32_t> out = generate(model, prompt, args.n_predict, args.sampler, on_token);
  if (args.json) {
    print_json({{"prompt", args.prompt}, {"prompt_tokens", prompt}, {"tokens", out}, {"text", text}});
  } else {
    std::printf("\n");
  }
  return 0;
}

Registrar generate_cmd{{"generate", "generate text (greedy or temperature/top-p sampling)", [](CLI::App& app) {
                          auto args = std::make_shared<GenerateArgs>();
                          add_model_args(app, args->model);
                          app.add_option("--prompt,-p", args->prompt, "prompt text")->required();
                          app.add_option("-n,--n-predict", args->n_predict, "tokens to generate")
                              ->check(int_at_least(0));
                          app.add_option("--temp", args->sampler.temperature, "temperature (0: greedy)")
                              ->check(number_in(0, 1e6));
                          app.add_option("--top-p", args->sampler.top_p, "nucleus sampling threshold")
                              ->check(number_in(0, 1));
                          app.add_option("--seed", args->sampler.seed, "random seed");
                          app.add_flag("--json", args->json, "print JSON");
                          return std::function<int()>([args] { return run_generate(*args); });
                        }}};

// ---- logits (for cross-checks against other implementations)

struct LogitsArgs {
  ModelArgs model;
  std::string ids;
  std::string text;
  std::string out;
  bool force = false;
  bool json = false;
};

int run_logits(const LogitsArgs& args) {
  // Raw float32 logits carry no marker: an existing file is only replaced with --force.
  if (!args.out.empty()) check_output_file(args.out, {{args.model.path, args.model.tokenizer_path}, args.force});
  Model model = load_model_from_args(args.model, /*need_tokenizer=*/args.ids.empty());
  std::vector<int32_t> ids;
  if (!args.ids.empty()) {
    std::istringstream in(args.ids);
    long long v;
    while (in >> v) ids.push_back(static_cast<int32_t>(v));
    if (!in.eof()) fail("--ids", "expected space-separated integers");
  } else {
    ids = model.tokenizer->encode(args.text, /*add_special=*/true);
  }
  if (ids.empty()) fail("--ids", "no tokens");
  KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  std::vector<float> logits = model.forward_all(ids, cache);
  const int vocab = model.config.vocab_size;
  if (const auto bad = std::find_if(logits.begin(), logits.end(), [](float v) { return !std::isfinite(v); });
      bad != logits.end()) {
    fail(model.source_path, "the model's logits are not finite at position " + std::to_string((bad - logits.begin()) / vocab));
  }
  nlohmann::json nll = nlohmann::json::array(), top = nlohmann::json::array();
  double sum = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* row = logits.data() + i * vocab;
    float max_logit = row[0];
    int arg = 0;
    for (int k = 1; k < vocab; ++k) {
      if (row[k] > max_logit) { max_logit = row[k]; arg = k; }
    }
    top.push_back(arg);
    if (i + 1 < ids.size()) {
      double s = 0;
      for (int k = 0; k < vocab; ++k) s += std::exp(static_cast<double>(row[k]) - max_logit);
      const double value = max_logit + std::log(s) - row[ids[i + 1]];
      nll.push_back(value);
      sum += value;
    }
  }
  if (!args.out.empty()) {
    write_file_atomically(args.out, std::string(reinterpret_cast<const char*>(logits.data()), logits.size() * 4));
  }
  nlohmann::json j = {{"ids", ids}, {"n_ids", ids.size()}, {"vocab", vocab}, {"nll_per_token", nll},
                      {"mean_nll", ids.size() > 1 ? sum / (ids.size() - 1) : 0.0}, {"argmax", top}};
  if (args.json) {
    print_json(j);
  } else {
    std::printf("%zu tokens, mean NLL %.6f\n", ids.size(), j["mean_nll"].get<double>());
  }
  return 0;
}

Registrar logits_cmd{{"logits", "run one sequence and dump its logits (for cross-checks)", [](CLI::App& app) {
                        auto args = std::make_shared<LogitsArgs>();
                        add_model_args(app, args->model);
                        auto* ids = app.add_option("--ids", args->ids, "space-separated token ids");
                        auto* text = app.add_option("--text", args->text, "text (tokenized with BOS)");
                        ids->excludes(text);
                        app.add_option("--out", args->out, "write raw float32 logits [n, vocab] here");
                        add_force_flag(app, args->force);
                        app.add_flag("--json", args->json, "print JSON");
                        return std::function<int()>([args] { return run_logits(*args); });
                      }}};

}  // namespace
}  // namespace mpq::cli

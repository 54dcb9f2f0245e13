// Speed measurement: prompt processing (one batch of pp_tokens) and decoding (tg_tokens
// consecutive tokens after a tg_prompt-token prompt, as a generation loop runs them), each
// repeated; medians are reported. Beside the speeds, the memory
// side of decoding: the machine's read bandwidth measured in the same run, the weight bytes one
// decode step reads, and how close decoding gets to bandwidth / bytes (the roofline).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "kernel/bandwidth.h"
#include "mpq/eval.h"

namespace mpq {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Storage bytes of the Linear weights one decode step reads in full: every decoder linear and the
// output head. The embedding is not counted: a step reads one of its rows (a tied head still
// counts, as the head reads the whole matrix). In a MoE layer a token reads the router and
// n_experts_per_token of the n_experts experts: that fraction of the experts' bytes.
uint64_t weight_bytes_per_token(const Model& model) {
  const ModelConfig& c = model.config;
  uint64_t bytes = model.lm_head.weights->storage_bytes(), expert_bytes = 0;
  for (const DecoderLayer& layer : model.layers) {
    for (const Linear& linear : layer.linear) {
      if (linear.weights) bytes += linear.weights->storage_bytes();
    }
    bytes += layer.router.size() * sizeof(float);
    for (const Expert& e : layer.experts) {
      for (const Linear* lin : {&e.gate, &e.up, &e.down}) expert_bytes += lin->weights->storage_bytes();
    }
  }
  if (c.is_moe()) bytes += expert_bytes * c.n_experts_per_token / c.n_experts;
  return bytes;
}

// VmRSS of this process from /proc/self/status (0 where there is no procfs).
uint64_t resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "   123 kB"
  }
  return 0;
}

// Size of the model file, or of the regular files of a model directory (0 when unreadable).
uint64_t file_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return ec ? 0 : total;
}

}  // namespace

BenchResult benchmark_model(Model& model, const BenchOptions& options) {
  BenchResult result;
  result.threads = omp_get_max_threads();
  // Bandwidth first, with the threads decoding will use: its buffer is unmapped again before the
  // model runs, so the resident set read at the end is the model's own.
  if (options.bandwidth_bytes > 0) {
    result.bandwidth_gb_s = measure_read_bandwidth(result.threads, options.bandwidth_bytes) / 1e9;
  }
  const int vocab = model.config.vocab_size;
  // Synthetic but valid token ids; speed does not depend on which tokens they are.
  auto tokens_of = [&](int n) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
    return t;
  };
  const std::vector<int32_t> pp = tokens_of(options.pp_tokens);
  const std::vector<int32_t> prompt = tokens_of(options.tg_prompt);
  KVCache cache = model.make_cache(std::max(options.pp_tokens, options.tg_prompt + options.tg_tokens));
  // One untimed warm-up of each path (page faults, thread pools).
  model.forward_last(pp, cache);
  for (int r = 0; r < options.repetitions; ++r) {
    cache.n_past = 0;
    const auto t0 = std::chrono::steady_clock::now();
    model.forward_last(pp, cache);
    result.pp_runs_s.push_back(seconds_since(t0));
  }
  // A decode run feeds back each step's greedy token, as `mpq generate` does: the first step
  // right after the prompt costs more than later ones (caches and TLBs still hold the prompt
  // pass's activations; ~10% here), and a run of steps weighs it as a user's generation does.
  for (int r = 0; r <= options.tg_repetitions; ++r) {
    cache.n_past = 0;
    model.forward_last(prompt, cache);
    int32_t next = 1 % vocab;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < options.tg_tokens; ++i) {
      const std::vector<float> logits = model.forward_last(std::span(&next, 1), cache);
      next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    if (r > 0) result.tg_runs_s.push_back(seconds_since(t0));  // r == 0 is the warm-up
  }
  result.pp_tok_s = options.pp_tokens / median(result.pp_runs_s);
  result.tg_tok_s = options.tg_tokens / median(result.tg_runs_s);
  result.weight_bytes_per_token = weight_bytes_per_token(model);
  if (result.bandwidth_gb_s > 0) {
    result.roofline_fraction = result.weight_bytes_per_token * result.tg_tok_s / (result.bandwidth_gb_s * 1e9);
  }
  result.rss_bytes = resident_bytes();
  result.file_bytes = file_bytes(model.source_path);
  return result;
}

}  // namespace mpq

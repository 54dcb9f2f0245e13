// Quality measures: perplexity under two protocols, and KL divergence against reference logits
// saved by an earlier run (top-k log-probabilities per scored token).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mpq/model.h"

namespace mpq {

enum class PplProtocol {
  // llama.cpp's perplexity tool: chunks of n_ctx tokens (default 512) cut from the text tokenized
  // once with BOS; each chunk's first token is replaced by BOS when the model adds BOS; the
  // second half of each chunk is scored.
  LlamaCpp,
  // GPTQ / AWQ / MixLLM papers: non-overlapping windows of n_ctx tokens (default 2048) of the
  // text tokenized once; every next-token prediction in a window is scored (n_ctx - 1 per window).
  Gptq,
};

struct PplOptions {
  PplProtocol protocol = PplProtocol::LlamaCpp;
  int ctx = 0;                   // 0: the protocol's default (512 or 2048)
  int max_chunks = -1;           // -1: all chunks
  std::string save_logits_path;  // write reference logits (top-k log-probs) here
  std::string kl_base_path;      // compare against logits saved earlier
  int top_k = 32;                // log-probs kept per token by save_logits
  bool progress = true;          // progress lines on stderr
};

struct PplResult {
  std::string protocol;     // "llamacpp" or "gptq"
  int ctx = 0;              // tokens per chunk
  double ppl = 0;           // exp(mean NLL)
  double nll_mean = 0;      // mean negative log-likelihood (nats)
  double nll_stderr = 0;    // standard error of nll_mean
  int64_t n_tokens = 0;     // scored tokens
  int n_chunks = 0;         // chunks evaluated
  int64_t n_text_tokens = 0;  // tokens of the whole text
  double seconds = 0;       // wall time of the evaluation
  double tokens_per_second = 0;  // processed (not only scored) tokens per second
  // Against --kl-base (has_kl):
  bool has_kl = false;
  double kld_mean = 0, kld_median = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0;
  double ppl_base = 0, ppl_ratio = 0;  // ppl_ratio = ppl / ppl_base
  double top1_agree = 0;                // share of tokens whose argmax equals the base's argmax
};

// Evaluates the model on `text` (its file named `text_path` for messages). Throws mpq::Error on
// bad options, a text too short for one chunk, or a kl-base file that does not match this run.
PplResult evaluate_perplexity(Model& model, const std::string& text, const std::string& text_path,
                              const PplOptions& options);

// ---- generation

struct SamplerOptions {
  float temperature = 0.f;  // 0: greedy (argmax)
  float top_p = 1.f;        // nucleus sampling threshold, (0, 1]
  uint64_t seed = 0;        // RNG seed; same seed, same output
};

// Samples one token id from logits[vocab]; greedy when temperature == 0.
int32_t sample_token(const float* logits, int vocab, const SamplerOptions& options,
                     std::mt19937_64& rng);

// Generates up to n_new tokens after `prompt`; stops early at EOS. `on_token` sees each new id.
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, int n_new,
                              const SamplerOptions& options,
                              const std::function<void(int32_t)>& on_token = {});

// ---- speed

struct BenchOptions {
  int pp_tokens = 512;       // prompt-processing batch
  int tg_prompt = 128;       // prompt before the timed decode steps
  int tg_tokens = 16;        // consecutive tokens a decode run generates (timed together)
  int repetitions = 5;       // prompt-processing runs; the median is reported
  int tg_repetitions = 20;   // decode runs; the median is reported
  int64_t bandwidth_bytes = int64_t{512} << 20;  // buffer of the read-bandwidth measurement
                                                 // (kernel/bandwidth.h); 0 skips it
};

struct BenchResult {
  double pp_tok_s = 0;       // median prompt tokens per second
  double tg_tok_s = 0;       // tg_tokens / median decode run seconds
  std::vector<double> pp_runs_s, tg_runs_s;  // every run's seconds (a decode run: tg_tokens)
  int threads = 0;           // worker threads
  // Memory side of decoding (docs/RUNTIME.md):
  double bandwidth_gb_s = 0;         // measured read bandwidth, 1e9 bytes/s (0 when skipped)
  uint64_t weight_bytes_per_token = 0;  // storage bytes of every Linear weight a decode step
                                        // reads: all decoder linears + the output head (not the
                                        // embedding, of which a step reads one row)
  double roofline_fraction = 0;      // (weight_bytes_per_token / decode s per token) / bandwidth
  uint64_t rss_bytes = 0;            // VmRSS after loading and benchmarking
  uint64_t file_bytes = 0;           // size of the model file, or of its directory's files
};

BenchResult benchmark_model(Model& model, const BenchOptions& options);

}  // namespace mpq

// Perplexity (llama.cpp and GPTQ protocols) and KL divergence against saved reference logits.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <unistd.h>

#include "eval/logit_store.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "mpq/tokenizer.h"

namespace mpq {
namespace {

// In place: logits -> log-softmax. Returns nothing; row has `vocab` entries.
void log_softmax(float* row, int vocab) {
  float max_logit = row[0];
  for (int i = 1; i < vocab; ++i) max_logit = std::max(max_logit, row[i]);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i] - max_logit));
  const float lse = max_logit + static_cast<float>(std::log(sum));
  for (int i = 0; i < vocab; ++i) row[i] -= lse;
}

int argmax(const float* row, int vocab) {
  return static_cast<int>(std::max_element(row, row + vocab) - row);
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  const size_t idx = std::min(values.size() - 1, static_cast<size_t>(std::ceil(q * values.size())) - 1);
  std::nth_element(values.begin(), values.begin() + idx, values.end());
  return values[idx];
}

}  // namespace

PplResult evaluate_perplexity(Model& model, const std::string& text, const std::string& text_path,
                              const PplOptions& options) {
  if (model.tokenizer == nullptr) fail(model.source_path, "no tokenizer: perplexity needs one");
  const bool llamacpp = options.protocol == PplProtocol::LlamaCpp;
  PplResult result;
  result.protocol = llamacpp ? "llamacpp" : "gptq";
  result.ctx = options.ctx > 0 ? options.ctx : (llamacpp ? 512 : 2048);
  const int ctx = result.ctx;
  if (ctx < 4) fail(text_path, "context must be at least 4 tokens");
  if (ctx > model.config.max_context) {
    std::fprintf(stderr, "mpq: warning: context %d exceeds the model's max_position_embeddings %d\n",
                 ctx, model.config.max_context);
  }
  const int vocab = model.config.vocab_size;

  const auto t0 = std::chrono::steady_clock::now();
  // Both protocols tokenize the whole text once, with BOS when the model adds one.
  std::vector<int32_t> tokens = model.tokenizer->encode(text, /*add_special=*/true);
  result.n_text_tokens = static_cast<int64_t>(tokens.size());
  int n_chunks = static_cast<int>(tokens.size() / ctx);
  if (options.max_chunks >= 0) n_chunks = std::min(n_chunks, options.max_chunks);
  if (n_chunks < 1) {
    fail(text_path, "text has " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
                        std::to_string(ctx));
  }
  // llama.cpp scores the second half of each chunk: logits at positions [first, ctx-1) predict
  // tokens [first+1, ctx). GPTQ scores every position.
  const int first = llamacpp ? ctx / 2 : 0;
  const int32_t bos = model.tokenizer->spec().bos_id;
  const bool add_bos = model.tokenizer->spec().add_bos && bos >= 0;
  const uint32_t protocol_id = llamacpp ? 0 : 1;

  std::unique_ptr<LogitStoreWriter> writer;
  if (!options.save_logits_path.empty()) {
    writer = std::make_unique<LogitStoreWriter>(options.save_logits_path, options.top_k, vocab, ctx,
                                                protocol_id);
  }
  std::unique_ptr<LogitStoreReader> base;
  if (!options.kl_base_path.empty()) {
    base = std::make_unique<LogitStoreReader>(options.kl_base_path);
    const LogitStoreHeader& h = base->header();
    if (h.vocab != static_cast<uint32_t>(vocab) || h.ctx != static_cast<uint32_t>(ctx) ||
        h.protocol != protocol_id) {
      fail(options.kl_base_path, "was saved with vocab " + std::to_string(h.vocab) + ", ctx " +
                                     std::to_string(h.ctx) + ", protocol " +
                                     (h.protocol == 0 ? "llamacpp" : "gptq") +
                                     "; this run has vocab " + std::to_string(vocab) + ", ctx " +
                                     std::to_string(ctx) + ", protocol " + result.protocol);
    }
  }

  std::vector<int> rows;
  for (int j = first; j < ctx - 1; ++j) rows.push_back(j);
  const int n_scored = static_cast<int>(rows.size());
  KVCache cache = model.make_cache(ctx);
  double nll_sum = 0, nll_sq_sum = 0, base_nll_sum = 0;
  int64_t top1_same = 0;
  std::vector<double> klds;
  std::vector<double> row_nll(n_scored), row_kld(n_scored);
  std::vector<int> row_same(n_scored);
  const bool tty = isatty(STDERR_FILENO);
  auto last_report = std::chrono::steady_clock::now();

  for (int chunk = 0; chunk < n_chunks; ++chunk) {
    std::vector<int32_t> window(tokens.begin() + static_cast<int64_t>(chunk) * ctx,
                                tokens.begin() + static_cast<int64_t>(chunk + 1) * ctx);
    if (llamacpp && add_bos) window[0] = bos;
    cache.n_past = 0;
    SequenceInput seq{window.data(), ctx, &cache};
    std::vector<float> logits = model.forward(std::span(&seq, 1), rows);
    const uint64_t record0 = static_cast<uint64_t>(result.n_tokens);
    if (base && record0 + n_scored > base->header().n_records) {
      fail(options.kl_base_path, "has " + std::to_string(base->header().n_records) +
                                     " scored tokens, fewer than this run (different text or --chunks?)");
    }
#pragma omp parallel for
    for (int r = 0; r < n_scored; ++r) {
      float* row = logits.data() + static_cast<int64_t>(r) * vocab;
      const int32_t target = window[rows[r] + 1];
      const int top = argmax(row, vocab);
      log_softmax(row, vocab);
      row_nll[r] = -row[target];
      if (base) {
        const uint64_t rec = record0 + r;
        row_kld[r] = kl_from_topk(base->ids(rec), base->logprobs(rec), base->header().top_k, row);
        row_same[r] = (top == base->ids(rec)[0]) ? 1 : 0;
      }
    }
    for (int r = 0; r < n_scored; ++r) {
      // A number that is not finite is never reported, saved or averaged in.
      if (!std::isfinite(row_nll[r]) || (base && !std::isfinite(row_kld[r]))) {
        fail(model.source_path, "the model's logits are not finite at chunk " + std::to_string(chunk + 1) +
                                    ", position " + std::to_string(rows[r]) +
                                    " (weights too large for fp32, or a broken checkpoint): no perplexity reported");
      }
      const int32_t target = window[rows[r] + 1];
      if (base && base->target(record0 + r) != target) {
        fail(options.kl_base_path, "token " + std::to_string(record0 + r) +
                                       " differs from this run's (different text or tokenizer)");
      }
      nll_sum += row_nll[r];
      nll_sq_sum += row_nll[r] * row_nll[r];
      if (writer) writer->add(logits.data() + static_cast<int64_t>(r) * vocab, target);
      if (base) {
        klds.push_back(row_kld[r]);
        top1_same += row_same[r];
        base_nll_sum += base->nll(record0 + r);
      }
    }
    result.n_tokens += n_scored;
    result.n_chunks = chunk + 1;
    const auto now = std::chrono::steady_clock::now();
    if (options.progress && (tty || now - last_report > std::chrono::seconds(10) || chunk + 1 == n_chunks)) {
      last_report = now;
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      const double tok_s = static_cast<double>(result.n_chunks) * ctx / elapsed;
      std::fprintf(stderr, "%s[ppl] chunk %d/%d  %.0f tok/s  ppl %.4f  eta %.0fs%s", tty ? "\r" : "",
                   chunk + 1, n_chunks, tok_s, std::exp(nll_sum / result.n_tokens),
                   (n_chunks - chunk - 1) * static_cast<double>(ctx) / tok_s, tty ? "   " : "\n");
    }
  }
  if (options.progress && tty) std::fprintf(stderr, "\n");
  if (writer) writer->finish();

  result.nll_mean = nll_sum / result.n_tokens;
  result.ppl = std::exp(result.nll_mean);
  const double variance = std::max(0.0, nll_sq_sum / result.n_tokens - result.nll_mean * result.nll_mean);
  result.nll_stderr = std::sqrt(variance / std::max<int64_t>(1, result.n_tokens - 1));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.tokens_per_second = static_cast<double>(result.n_chunks) * ctx / result.seconds;
  if (base) {
    if (static_cast<uint64_t>(result.n_tokens) != base->header().n_records) {
      fail(options.kl_base_path, "has " + std::to_string(base->header().n_records) +
                                     " scored tokens, this run scored " + std::to_string(result.n_tokens) +
                                     " (different --chunks?)");
    }
    result.has_kl = true;
    double sum = 0;
    for (double k : klds) sum += k;
    result.kld_mean = sum / klds.size();
    result.kld_median = percentile(klds, 0.5);
    result.kld_p99 = percentile(klds, 0.99);
    result.kld_p999 = percentile(klds, 0.999);
    result.kld_max = *std::max_element(klds.begin(), klds.end());
    result.ppl_base = std::exp(base_nll_sum / result.n_tokens);
    result.ppl_ratio = result.ppl / result.ppl_base;
    result.top1_agree = static_cast<double>(top1_same) / result.n_tokens;
  }
  return result;
}

}  // namespace mpq

// mpq ppl / bench: quality and speed of a model.
#include <cstdio>

#include "command.h"
#include "common.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "eval/logit_store.h"
#include "io/output.h"

namespace mpq::cli {
namespace {

struct PplArgs {
  ModelArgs model;
  std::string text_path;
  std::string protocol = "llamacpp";
  PplOptions options;
  bool force = false;
  bool json = false;
};

int run_ppl(PplArgs& args) {
  if (args.protocol == "llamacpp") {
    args.options.protocol = PplProtocol::LlamaCpp;
  } else if (args.protocol == "gptq") {
    args.options.protocol = PplProtocol::Gptq;
  } else {
    fail("--protocol", "unknown protocol '" + args.protocol + "' (expected llamacpp or gptq)");
  }
  if (!args.options.save_logits_path.empty()) {
    check_output_file(args.options.save_logits_path,
                      {{args.model.path, args.model.tokenizer_path, args.text_path, args.options.kl_base_path}, args.force},
                      file_with_magic(kLogitStoreMagic));
  }
  const std::string text = read_text_file(args.text_path);
  Model model = load_model_from_args(args.model);
  const PplResult r = evaluate_perplexity(model, text, args.text_path, args.options);
  nlohmann::json j = {{"model", args.model.path}, {"text", args.text_path}, {"protocol", r.protocol},
                      {"ctx", r.ctx}, {"ppl", r.ppl}, {"nll_mean", r.nll_mean},
                      {"nll_stderr", r.nll_stderr}, {"n_tokens", r.n_tokens},
                      {"n_chunks", r.n_chunks}, {"n_text_tokens", r.n_text_tokens},
                      {"seconds", r.seconds}, {"tok_s", r.tokens_per_second},
                      {"runtime", args.model.runtime}, {"activations", args.model.activations},
                      {"kv_cache", kv_cache_type_name(model.kv_cache_type)}};
  if (r.has_kl) {
    j["kl_base"] = args.options.kl_base_path;
    j["kld_mean"] = r.kld_mean;
    j["kld_median"] = r.kld_median;
    j["kld_p99"] = r.kld_p99;
    j["kld_p999"] = r.kld_p999;
    j["kld_max"] = r.kld_max;
    j["ppl_base"] = r.ppl_base;
    j["ppl_ratio"] = r.ppl_ratio;
    j["top1_agree"] = r.top1_agree;
  }
  if (args.json) {
    print_json(j);
    return 0;
  }
  std::printf("perplexity (%s, ctx %d): %.4f +/- %.4f (nll %.5f) over %lld tokens in %d chunks, %.1f s\n",
              r.protocol.c_str(), r.ctx, r.ppl, r.ppl * r.nll_stderr, r.nll_mean,
              static_cast<long long>(r.n_tokens), r.n_chunks, r.seconds);
  if (r.has_kl) {
    std::printf("KL divergence vs %s: mean %.6f, median %.6f, p99 %.6f, p99.9 %.6f, max %.6f\n",
                args.options.kl_base_path.c_str(), r.kld_mean, r.kld_median, r.kld_p99, r.kld_p999,
                r.kld_max);
    std::printf("base ppl %.4f, ppl ratio %.5f, top-1 agreement %.4f\n", r.ppl_base, r.ppl_ratio,
                r.top1_agree);
  }
  return 0;
}

Registrar ppl_cmd{{"ppl", "perplexity on a text file, and KL divergence against saved logits", [](CLI::App& app) {
                     auto args = std::make_shared<PplArgs>();
                     add_model_args(app, args->model);
                     app.add_option("--text", args->text_path, "text file (e.g. wiki.test.raw)")->required();
                     app.add_option("--protocol", args->protocol, "llamacpp (default) or gptq");
                     app.add_option("--ctx", args->options.ctx, "tokens per chunk (default 512 / 2048)")
                         ->check(int_at_least(2));
                     app.add_option("--chunks", args->options.max_chunks, "evaluate at most N chunks")->check(int_at_least(1));
                     app.add_option("--save-logits", args->options.save_logits_path,
                                    "save top-k log-probs of every scored token (reference for --kl-base)");
                     app.add_option("--kl-base", args->options.kl_base_path,
                                    "report KL divergence against logits saved with --save-logits");
                     add_force_flag(app, args->force);
                     app.add_option("--top-k", args->options.top_k, "log-probs kept per token when saving")
                         ->check(int_at_least(1)); // (at most the vocabulary: checked against the model)
                     app.add_flag("--json", args->json, "print JSON");
                     return std::function<int()>([args] { return run_ppl(*args); });
                   }}};

struct BenchArgs {
  ModelArgs model;
  BenchOptions options;
  bool json = false;
};

int run_bench(const BenchArgs& args) {
  Model model = load_model_from_args(args.model, /*need_tokenizer=*/false);
  const BenchResult r = benchmark_model(model, args.options);
  if (args.json) {
    print_json({{"model", args.model.path}, {"threads", r.threads}, {"pp_tokens", args.options.pp_tokens},
                {"tg_prompt", args.options.tg_prompt}, {"tg_tokens", args.options.tg_tokens},
                {"pp_tok_s", r.pp_tok_s}, {"tg_tok_s", r.tg_tok_s},
                {"pp_runs_s", r.pp_runs_s}, {"tg_runs_s", r.tg_runs_s},
                {"runtime", args.model.runtime}, {"activations", args.model.activations},
                {"kv_cache", kv_cache_type_name(model.kv_cache_type)}, {"decode_threading", args.model.decode_threading},
                {"bandwidth_gb_s", r.bandwidth_gb_s}, {"weight_bytes_per_token", r.weight_bytes_per_token},
                {"roofline_fraction", r.roofline_fraction}, {"rss_bytes", r.rss_bytes},
                {"file_bytes", r.file_bytes}});
    return 0;
  }
  std::printf("%s: prompt processing %.1f tok/s (batch %d), decode %.1f tok/s (%d tokens after %d); "
              "medians of %zu / %zu runs, %d threads, runtime %s, activations %s, KV cache %s, decode threading %s\n",
              args.model.path.c_str(), r.pp_tok_s, args.options.pp_tokens, r.tg_tok_s,
              args.options.tg_tokens, args.options.tg_prompt, r.pp_runs_s.size(), r.tg_runs_s.size(), r.threads,
              args.model.runtime.c_str(), args.model.activations.c_str(), kv_cache_type_name(model.kv_cache_type),
              args.model.decode_threading.c_str());
  const double mib = 1024.0 * 1024.0;
  std::printf("weights read per token %.1f MiB; read bandwidth %.2f GB/s; decode at %.1f%% of the "
              "bandwidth roofline\n",
              r.weight_bytes_per_token / mib, r.bandwidth_gb_s, 100.0 * r.roofline_fraction);
  std::printf("resident memory %.1f MiB; model file(s) %.1f MiB\n", r.rss_bytes / mib, r.file_bytes / mib);
  return 0;
}

Registrar bench_cmd{{"bench", "prompt-processing and decode speed", [](CLI::App& app) {
                       auto args = std::make_shared<BenchArgs>();
                       add_model_args(app, args->model);
                       app.add_option("--pp", args->options.pp_tokens, "prompt tokens per batch")
                           ->check(int_at_least(1));
                       app.add_option("--tg-prompt", args->options.tg_prompt, "prompt before decoding")
                           ->check(int_at_least(1));
                       app.add_option("--reps", args->options.repetitions, "prompt-processing repetitions")
                           ->check(int_at_least(1));
                       app.add_option("--tg", args->options.tg_tokens,
                                      "consecutive tokens per decode run (default 16)")
                           ->check(int_at_least(1));
                       app.add_option("--tg-reps", args->options.tg_repetitions, "decode repetitions (default 20)")
                           ->check(int_at_least(1));
                       app.add_option_function<int>(
                              "--bw-mib",
                              [args](int mib) { args->options.bandwidth_bytes = int64_t{mib} << 20; },
                              "buffer of the read-bandwidth measurement in MiB (default 512; 0 skips it)")
                           ->check(int_at_least(0, "0 skips it"));
                       app.add_flag("--json", args->json, "print JSON");
                       return std::function<int()>([args] { return run_bench(*args); });
                     }}};

}  // namespace
}  // namespace mpq::cli

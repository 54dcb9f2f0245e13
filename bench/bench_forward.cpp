// Google Benchmark suite for the fp32 path: Linear layers at the default model's real shapes
// (SmolLM2-135M: dim 576, kv 192, ffn 1536, vocab 49152) and, when the model file is present, the
// whole model's prompt processing and decoding.
//
//   build/mpq_bench                       # everything
//   MPQ_BENCH_MODEL=path build/mpq_bench --benchmark_filter=Model
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>

#include "mpq/model.h"

namespace {

std::shared_ptr<const std::vector<float>> random_matrix(int64_t rows, int64_t cols) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.f, 0.02f);
  auto w = std::make_shared<std::vector<float>>(rows * cols);
  for (float& x : *w) x = dist(rng);
  return w;
}

// args: out_features, in_features, n_tokens
void BM_DenseF32Linear(benchmark::State& state) {
  const int64_t out = state.range(0), in = state.range(1), n = state.range(2);
  auto weights = mpq::make_dense_f32_weights(random_matrix(out, in), out, in);
  std::vector<float> x(n * in, 0.5f), y(n * out);
  for (auto _ : state) {
    weights->forward(x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * out * in * n * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
  state.counters["GB/s(weights)"] = benchmark::Counter(4.0 * out * in * state.iterations(), benchmark::Counter::kIsRate,
                                                       benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DenseF32Linear)
    ->ArgNames({"out", "in", "tokens"})
    ->Args({576, 576, 1})->Args({192, 576, 1})->Args({1536, 576, 1})->Args({576, 1536, 1})
    ->Args({49152, 576, 1})
    ->Args({576, 576, 512})->Args({1536, 576, 512})->Args({576, 1536, 512})
    ->Unit(benchmark::kMicrosecond);

std::string bench_model_path() {
  if (const char* p = std::getenv("MPQ_BENCH_MODEL")) return p;
  return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

mpq::Model* shared_model() {
  static std::unique_ptr<mpq::Model> model = [] {
    const std::string path = bench_model_path();
    if (!std::filesystem::exists(path)) return std::unique_ptr<mpq::Model>();
    mpq::LoadOptions options;
    options.need_tokenizer = false;
    return std::make_unique<mpq::Model>(mpq::load_model(path, options));
  }();
  return model.get();
}

void BM_ModelPrompt512(benchmark::State& state) {
  mpq::Model* model = shared_model();
  if (model == nullptr) {
    state.SkipWithError("model not found (set MPQ_BENCH_MODEL)");
    return;
  }
  std::vector<int32_t> tokens(512);
  for (int i = 0; i < 512; ++i) tokens[i] = (i * 7919 + 13) % model->config.vocab_size;
  mpq::KVCache cache = model->make_cache(512);
  for (auto _ : state) {
    cache.n_past = 0;
    benchmark::DoNotOptimize(model->forward_last(tokens, cache));
  }
  state.counters["tok/s"] = benchmark::Counter(512.0 * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ModelPrompt512)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ModelDecode(benchmark::State& state) {
  mpq::Model* model = shared_model();
  if (model == nullptr) {
    state.SkipWithError("model not found (set MPQ_BENCH_MODEL)");
    return;
  }
  std::vector<int32_t> prompt(128);
  for (int i = 0; i < 128; ++i) prompt[i] = (i * 7919 + 13) % model->config.vocab_size;
  mpq::KVCache cache = model->make_cache(129);
  const int32_t next = 1;
  for (auto _ : state) {
    state.PauseTiming();
    cache.n_past = 0;
    model->forward_last(prompt, cache);
    state.ResumeTiming();
    benchmark::DoNotOptimize(model->forward_last(std::span(&next, 1), cache));
  }
  state.counters["tok/s"] = benchmark::Counter(1.0 * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ModelDecode)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

// Google Benchmark of the ggml block formats in the packed runtime (kernel/packed_ggml.cpp) at
// SmolLM2-135M's Linear shapes that the formats can hold (576 x 576 and 1536 x 576 for the
// 32-value types; 576 x 1536, down_proj, for every type), decode (1 token) and prefill (512),
// on one thread with the best ISA.
//
//   build/mpq_bench --benchmark_filter='PackedGgml' --benchmark_min_time=0.1
//
// Counters: GB/s(weights) = block bytes per second; GOP/s = 2 * rows * cols * tokens per second.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "format/weight_format.h"
#include "kernel/packed.h"
#include "quant/rtn.h"

namespace {

using mpq::WeightFormatId;

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 0.02f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

const mpq::PackedMatrix& packed_matrix(WeightFormatId format, int64_t rows, int64_t cols) {
  static std::map<std::tuple<WeightFormatId, int64_t, int64_t>, std::unique_ptr<mpq::PackedMatrix>> cache;
  auto& slot = cache[{format, rows, cols}];
  if (!slot) {
    const std::vector<float> w = random_values(rows * cols, 42);
    slot = mpq::pack_matrix(mpq::quantize_rtn(format, w.data(), rows, cols));
  }
  return *slot;
}

// args: format, out_features, in_features, tokens
void BM_PackedGgmlSingleThread(benchmark::State& state) {
  const auto format = static_cast<WeightFormatId>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  const mpq::PackedMatrix& w = packed_matrix(format, rows, cols);
  const std::vector<float> x = random_values(n * cols, 7);
  std::vector<float> y(static_cast<size_t>(n * rows));
  const mpq::Isa isa = mpq::best_isa();
  for (auto _ : state) {
    w.matmul_f32(isa, x.data(), n, y.data(), rows, 0, rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(mpq::weight_format(format).name) + " " + mpq::isa_name(isa));
  const double it = static_cast<double>(state.iterations());
  state.counters["GB/s(weights)"] = benchmark::Counter(static_cast<double>(w.bytes()) * it,
                                                       benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["GOP/s"] = benchmark::Counter(2.0 * rows * cols * n * it, benchmark::Counter::kIsRate,
                                               benchmark::Counter::kIs1000);
}

void ggml_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"format", "out", "in", "tokens"});
  for (int64_t n : {1, 512}) {
    for (const mpq::WeightFormatTraits& f : mpq::weight_formats()) {
      if (!mpq::is_ggml_format(f)) continue;
      const auto id = static_cast<int64_t>(f.id);
      b->Args({id, 576, 1536, n});
      if (mpq::format_accepts(f.id, 576, 576)) {
        b->Args({id, 576, 576, n});
        b->Args({id, 1536, 576, n});
      }
    }
  }
}

BENCHMARK(BM_PackedGgmlSingleThread)->Apply(ggml_args)->Unit(benchmark::kMicrosecond);

}  // namespace

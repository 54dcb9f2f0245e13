// Google Benchmark of the floating-point packed kernels (kernel/packed_fp*.cpp) at SmolLM2-135M's
// Linear shapes (dim 576, kv 192, ffn 1536; output head 49152 x 576 in bf16), decode (1 token)
// and prefill (512 tokens), on one thread (PackedMatrix::matmul_f32 with the best ISA) and
// through the threaded driver (packed_matmul), beside the fp32 product of kernel/matmul_f32.h.
//
//   build/mpq_bench --benchmark_filter='PackedFp|F32Reference' --benchmark_min_time=0.1
//
// Counters: GB/s(weights) = resident packed bytes (PackedMatrix::bytes(), fp32: 4 per weight)
// per second; GOP/s = 2 * rows * cols * tokens per second.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "format/weight_format.h"
#include "kernel/gemv_f32.h"
#include "kernel/matmul_f32.h"
#include "kernel/packed.h"
#include "quant/rtn.h"

namespace {

using mpq::WeightFormatId;

std::vector<float> random_weights(int64_t rows, int64_t cols) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.f, 0.02f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = dist(rng);
  return w;
}

// Each (format, shape) is quantized and packed once, then shared by every benchmark using it.
const mpq::PackedMatrix& packed_matrix(WeightFormatId format, int64_t rows, int64_t cols) {
  static std::map<std::tuple<WeightFormatId, int64_t, int64_t>, std::unique_ptr<mpq::PackedMatrix>> cache;
  auto& slot = cache[{format, rows, cols}];
  if (!slot) {
    const std::vector<float> w = random_weights(rows, cols);
    slot = mpq::pack_matrix(mpq::quantize_rtn(format, w.data(), rows, cols));
  }
  return *slot;
}

void set_counters(benchmark::State& state, double weight_bytes, int64_t rows, int64_t cols, int64_t n) {
  const double iterations = static_cast<double>(state.iterations());
  state.counters["GB/s(weights)"] =
      benchmark::Counter(weight_bytes * iterations, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["GOP/s"] = benchmark::Counter(2.0 * rows * cols * n * iterations, benchmark::Counter::kIsRate,
                                               benchmark::Counter::kIs1000);
}

// args: format (WeightFormatId), out_features, in_features, tokens[, isa (mpq::Isa; default the
// best one)]
void run_packed(benchmark::State& state, bool threaded) {
  const auto format = static_cast<WeightFormatId>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  const mpq::PackedMatrix& w = packed_matrix(format, rows, cols);
  const std::vector<float> x = random_weights(n, cols);
  std::vector<float> y(static_cast<size_t>(n * rows));
  const mpq::Isa isa = state.range(4) < 0 ? mpq::best_isa() : static_cast<mpq::Isa>(state.range(4));
  if (!mpq::cpu_supports(isa)) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  for (auto _ : state) {
    if (threaded) {
      mpq::packed_matmul(w, x.data(), n, y.data(), rows, mpq::ActivationMode::F32, nullptr, isa);
    } else {
      w.matmul_f32(isa, x.data(), n, y.data(), rows, 0, rows);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(mpq::weight_format(format).name) + " " + mpq::isa_name(isa));
  set_counters(state, static_cast<double>(w.bytes()), rows, cols, n);
}

void BM_PackedFpSingleThread(benchmark::State& state) { run_packed(state, false); }
void BM_PackedFpThreaded(benchmark::State& state) { run_packed(state, true); }

// The fp32 reference (OpenBLAS sgemm slices; GEMV below 8 tokens). args: out, in, tokens
void BM_F32ReferenceMatmul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n = state.range(2);
  const std::vector<float> w = random_weights(rows, cols);
  const std::vector<float> x = random_weights(n, cols);
  std::vector<float> y(static_cast<size_t>(n * rows));
  for (auto _ : state) {
    mpq::matmul_f32(x.data(), n, w.data(), rows, cols, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 4.0 * rows * cols, rows, cols, n);
}

constexpr int64_t kShapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};
constexpr WeightFormatId kFormats[] = {WeightFormatId::BF16, WeightFormatId::FP8_E4M3_Channel,
                                       WeightFormatId::NVFP4, WeightFormatId::MXFP4};
constexpr int64_t kHead[2] = {49152, 576};

// Every format and shape with the best ISA; decode also with AVX2 (isa 1) for comparison.
void packed_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"format", "out", "in", "tokens", "isa"});
  const int64_t best = -1, avx2 = static_cast<int64_t>(mpq::Isa::Avx2);
  for (int64_t n : {1, 512}) {
    for (int64_t isa : {best, avx2}) {
      if (n > 1 && isa != best) continue;
      for (WeightFormatId f : kFormats) {
        for (const auto& s : kShapes) b->Args({static_cast<int64_t>(f), s[0], s[1], n, isa});
      }
      b->Args({static_cast<int64_t>(WeightFormatId::BF16), kHead[0], kHead[1], n, isa});
    }
  }
}

void reference_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"out", "in", "tokens"});
  for (int64_t n : {1, 512}) {
    for (const auto& s : kShapes) b->Args({s[0], s[1], n});
    b->Args({kHead[0], kHead[1], n});
  }
}

BENCHMARK(BM_PackedFpSingleThread)->Apply(packed_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PackedFpThreaded)->Apply(packed_args)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_F32ReferenceMatmul)->Apply(reference_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

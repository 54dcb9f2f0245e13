// Google Benchmark suite for the packed integer kernels (kernel/packed_int.h) at the default
// model's Linear shapes (SmolLM2-135M: q/o 576x576, k/v 192x576, gate/up 1536x576, down
// 576x1536), decode (1 token) and prefill (512 tokens), against fp32 sgemm at the same shapes.
//
//   BM_PackedInt/<format>/<act>/<threads>   act: fp32 | int8; threads: 1 = the PackedMatrix
//       method on the calling thread with best_isa() (int8: activations quantized beforehand,
//       the kernel alone), all = packed_matmul over the OpenMP threads (int8: quantization of
//       the activations included)
//   BM_Sgemm/<threads>                       kernel/matmul_f32.h on fp32 weights; threads 1 runs
//       OpenBLAS on one thread (GEMV path for 1 token in both cases)
//   counters: GB/s = resident weight bytes / time, GOP/s = 2·rows·cols·tokens / time
//
//   build/mpq_bench --benchmark_filter='PackedInt|Sgemm' --benchmark_min_time=0.2
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "format/weight_format.h"
#include "kernel/matmul_f32.h"
#include "kernel/packed.h"
#include "kernel/packed_int.h"
#include "quant/rtn.h"

namespace {

struct Shape {
  int64_t rows, cols;
  const char* name;
};
constexpr Shape kShapes[] = {{576, 576, "q/o"}, {192, 576, "k/v"}, {1536, 576, "gate/up"}, {576, 1536, "down"}};
constexpr int64_t kTokens[] = {1, 512};

std::vector<float> random_values(int64_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

const std::vector<float>& weights(Shape s) {
  static std::map<std::pair<int64_t, int64_t>, std::vector<float>> cache;
  auto& w = cache[{s.rows, s.cols}];
  if (w.empty()) w = random_values(s.rows * s.cols, 0.02f, 42);
  return w;
}

// Packed once per (format, shape); quantize_rtn of the larger shapes takes a moment.
const mpq::PackedMatrix& packed(mpq::WeightFormatId format, Shape s) {
  static std::map<std::tuple<int, int64_t, int64_t>, std::unique_ptr<mpq::PackedMatrix>> cache;
  auto& p = cache[{static_cast<int>(format), s.rows, s.cols}];
  if (!p) p = mpq::pack_matrix(mpq::quantize_rtn(format, weights(s).data(), s.rows, s.cols));
  return *p;
}

void set_counters(benchmark::State& state, Shape s, int64_t n, double weight_bytes) {
  const double iterations = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(weight_bytes * iterations, benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
  state.counters["GOP/s"] = benchmark::Counter(2.0 * s.rows * s.cols * n * iterations,
                                               benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void bench_packed(benchmark::State& state, mpq::WeightFormatId format, Shape s, int64_t n,
                  mpq::ActivationMode mode, bool threaded) {
  const mpq::PackedMatrix& w = packed(format, s);
  const std::vector<float> x = random_values(n * s.cols, 1.f, 7);
  std::vector<float> y(n * s.rows);
  mpq::Int8Activations xq;
  mpq::quantize_activations_int8(mpq::best_isa(), x.data(), n, s.cols, xq);
  for (auto _ : state) {
    if (threaded) {
      mpq::packed_matmul(w, x.data(), n, y.data(), s.rows, mode);
    } else if (mode == mpq::ActivationMode::Int8) {
      w.matmul_int8(mpq::best_isa(), xq, y.data(), s.rows, 0, s.rows);
    } else {
      w.matmul_f32(mpq::best_isa(), x.data(), n, y.data(), s.rows, 0, s.rows);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, s, n, static_cast<double>(w.bytes()));
}

void bench_sgemm(benchmark::State& state, Shape s, int64_t n, bool threaded) {
  const std::vector<float>& w = weights(s);
  const std::vector<float> x = random_values(n * s.cols, 1.f, 7);
  std::vector<float> y(n * s.rows);
  // OpenBLAS's own thread count matters only outside our parallel regions (matmul_f32 calls it
  // from inside one); pin it to 1 for the single-thread figure.
  if (!threaded) openblas_set_num_threads(1);
  for (auto _ : state) {
    if (threaded) {
      mpq::matmul_f32(x.data(), n, w.data(), s.rows, s.cols, y.data());
    } else if (n < 8) {
      mpq::matmul_f32(x.data(), n, w.data(), s.rows, s.cols, y.data());  // GEMV, one thread
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, s.rows, s.cols, 1.f, x.data(), s.cols,
                  w.data(), s.cols, 0.f, y.data(), s.rows);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  if (!threaded) openblas_set_num_threads(omp_get_max_threads());
  set_counters(state, s, n, 4.0 * s.rows * s.cols);
}

std::string shape_name(Shape s, int64_t n) {
  return std::to_string(s.rows) + "x" + std::to_string(s.cols) + "/tokens:" + std::to_string(n);
}

// Registration of every combination (formats x activations x threads x shapes x tokens).
const bool kRegistered = [] {
  using F = mpq::WeightFormatId;
  for (int64_t n : kTokens) {
    for (Shape s : kShapes) {
      for (bool threaded : {false, true}) {
        const std::string threads = threaded ? "all" : "1";
        benchmark::RegisterBenchmark(("BM_Sgemm/" + threads + "/" + shape_name(s, n)).c_str(),
                                     [=](benchmark::State& st) { bench_sgemm(st, s, n, threaded); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
        for (F format : {F::Int4_G128, F::Int8_Channel, F::Int2_G64, F::Int3_G128}) {
          for (auto mode : {mpq::ActivationMode::F32, mpq::ActivationMode::Int8}) {
            const std::string name = std::string("BM_PackedInt/") + mpq::weight_format(format).name + "/" +
                                     mpq::activation_mode_name(mode) + "/" + threads + "/" + shape_name(s, n);
            benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
              bench_packed(st, format, s, n, mode, threaded);
            })->Unit(benchmark::kMicrosecond)->UseRealTime();
          }
        }
      }
    }
  }
  return true;
}();

}  // namespace

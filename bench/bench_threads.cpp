// What it costs the threads of a decode step to meet: a new OpenMP parallel region per operation
// (the per-op path), `#pragma omp barrier` inside one region, or kernel/threads.h's SpinBarrier
// inside one region (the one-region path, model/forward_team.cpp). Each iteration is one meeting
// of all threads after a short, fixed spell of parallel work (`work_ns` of spinning on the clock,
// the length of a small decode product's share), preceded by `gap_ns` of work every thread needs
// done first (a norm, the activations' quantization): the per-op path does it on the calling
// thread between regions, the one-region path on every thread. Time per iteration − work_ns −
// gap_ns (BM_MeetingNone) is the meeting's cost.
//
//   build/mpq_bench --benchmark_filter=Meeting
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>

#include "kernel/threads.h"

namespace {

// About `ns` nanoseconds of work: a chain of dependent multiply-adds (~0.9 ns each here; 5000
// of them measured 4.7 us), not clock reads, which cost ~0.2 us each in this VM.
void work_for(int64_t ns) {
  uint64_t x = static_cast<uint64_t>(ns);
  for (int64_t i = 0; i < ns; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    asm volatile("" : "+r"(x));  // keeps the chain
  }
}

// The work alone, on one thread: what the meetings' times are compared with.
void BM_MeetingNone(benchmark::State& state) {
  const int64_t work_ns = state.range(0), gap_ns = state.range(1);
  for (auto _ : state) {
    work_for(gap_ns);
    work_for(work_ns);
  }
}
BENCHMARK(BM_MeetingNone)->ArgNames({"work_ns", "gap_ns"})->Args({0, 0})->Args({5000, 0})->Args({5000, 1000})
    ->Unit(benchmark::kMicrosecond);

// args: work_ns per thread per meeting, gap_ns before it
void BM_MeetingForkPerOperation(benchmark::State& state) {
  const int64_t work_ns = state.range(0), gap_ns = state.range(1);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
    work_for(gap_ns);
#pragma omp parallel num_threads(threads)
    work_for(work_ns);
  }
  state.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(BM_MeetingForkPerOperation)->ArgNames({"work_ns", "gap_ns"})->Args({0, 0})->Args({5000, 0})->Args({5000, 1000})
    ->Unit(benchmark::kMicrosecond);

// The same meetings inside one region, `iterations` at a time (Google Benchmark's loop must run
// on one thread, so each timed iteration is a batch of 1000 meetings).
template <class Meet>
void meetings_in_one_region(benchmark::State& state, Meet meet) {
  constexpr int kBatch = 1000;
  const int64_t work_ns = state.range(0), gap_ns = state.range(1);
  const int threads = omp_get_max_threads();
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    for (int i = 0; i < kBatch; ++i) {
      work_for(gap_ns);
      work_for(work_ns);
      meet();
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);  // items/s = meetings per second
  state.counters["threads"] = omp_get_max_threads();
}

void BM_MeetingOmpBarrier(benchmark::State& state) {
  meetings_in_one_region(state, [] {
#pragma omp barrier
  });
}
BENCHMARK(BM_MeetingOmpBarrier)->ArgNames({"work_ns", "gap_ns"})->Args({0, 0})->Args({5000, 0})->Args({5000, 1000})
    ->Unit(benchmark::kMillisecond);

void BM_MeetingSpinBarrier(benchmark::State& state) {
  mpq::SpinBarrier barrier(omp_get_max_threads());
  meetings_in_one_region(state, [&] { barrier.wait(); });
}
BENCHMARK(BM_MeetingSpinBarrier)->ArgNames({"work_ns", "gap_ns"})->Args({0, 0})->Args({5000, 0})->Args({5000, 1000})
    ->Unit(benchmark::kMillisecond);

}  // namespace

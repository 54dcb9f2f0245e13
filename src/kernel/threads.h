// What a fork of the OpenMP threads costs, for the decisions of when to split small work, and a
// cheaper way to meet inside one parallel region.
#pragma once

#include <atomic>
#include <cstdint>

namespace mpq {

// True unless the OpenMP workers sleep as soon as they are idle (OMP_WAIT_POLICY=passive, or
// libgomp's GOMP_SPINCOUNT=0). Measured here (docs/RUNTIME.md): a fork/join costs ~8 us when the
// workers sleep and ~1.5 us when they spin (libgomp's default: spin a while, then sleep), so the
// small products and the attention heads of a decode step are split only when they spin.
bool omp_workers_spin();

// Logical CPUs this process may run on (its affinity mask), at least 1.
int usable_cpus();

// A barrier for the `n_threads` threads of one parallel region that waits by spinning (with
// pause, yielding the CPU after a while), for phases a few microseconds long: ~0.3 us per
// meeting of two threads here against ~0.5 us for `#pragma omp barrier` and ~1.5 us for a new
// parallel region (docs/RUNTIME.md, "One parallel region per decode step"). Every thread of
// the region must call wait() the same number of times; a thread that never arrives leaves the
// others waiting, so nothing between two waits may throw.
class SpinBarrier {
 public:
  explicit SpinBarrier(int n_threads) : n_threads_(n_threads) {}
  SpinBarrier(const SpinBarrier&) = delete;
  SpinBarrier& operator=(const SpinBarrier&) = delete;
  void wait();

 private:
  const int n_threads_;
  // Own cache lines: the arrivals' writes should not bounce the line the waiters poll.
  alignas(64) std::atomic<int> arrived_{0};     // threads at the barrier in this generation
  alignas(64) std::atomic<int64_t> generation_{0};  // meetings completed; waiters poll it
};

}  // namespace mpq

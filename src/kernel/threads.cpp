#include "kernel/threads.h"

#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <thread>

namespace mpq {

bool omp_workers_spin() {
  // Read once: the OpenMP runtime reads these variables at start-up too.
  static const bool spin = [] {
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    if (policy != nullptr && (policy[0] == 'p' || policy[0] == 'P')) return false;
    const char* spin_count = std::getenv("GOMP_SPINCOUNT");
    return !(spin_count != nullptr && std::string_view(spin_count) == "0");
  }();
  return spin;
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

void SpinBarrier::wait() {
  const int64_t generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
    // The last to arrive resets the count for the next meeting, then releases the others
    // (release: everything written before any thread's wait() is visible after it).
    arrived_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    return;
  }
  // A few thousand pauses cover the phases this is made for; past that, the thread we wait for
  // is probably not running (more threads than CPUs, or the machine is busy): give up the CPU.
  for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
    if (spins < 4096) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace mpq

#include "kernel/threads.h"

#include <cstdlib>
#include <string_view>

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

}  // namespace mpq

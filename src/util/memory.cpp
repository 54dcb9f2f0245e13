#include "util/memory.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "mpq/error.h"

namespace mpq {

uint64_t available_memory_bytes() {
  uint64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit) {
    if (key == "MemAvailable:") {
      available = kb * 1024;
      break;
    }
  }
  // cgroup v2: a container's own limit may be far below the machine's free memory.
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  uint64_t current = 0;
  if (max_file >> max_text && max_text != "max" && current_file >> current) {
    const uint64_t limit = std::stoull(max_text);
    const uint64_t left = limit > current ? limit - current : 0;
    if (available == 0 || left < available) available = left;
  }
  return available;
}

std::string human_bytes(uint64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.1f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.0f kB", b / 1e3);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  return buf;
}

void check_memory_fits(uint64_t need, const std::string& what, const std::string& breakdown,
                       const std::string& advice) {
  const uint64_t available = available_memory_bytes();
  if (available == 0 || need <= available) return;
  fail(what, "needs about " + human_bytes(need) + " (" + breakdown + "), " + human_bytes(available) +
                 " available: " + advice);
}

}  // namespace mpq

// Memory a run may use: refuse a run that cannot fit before it starts, instead of growing until
// the kernel kills it (or the machine swaps) hours later.
#pragma once

#include <cstdint>
#include <string>

namespace mpq {

// Bytes the process can still allocate: MemAvailable of /proc/meminfo, lowered to the cgroup's
// remaining limit when one is set. 0 when it cannot be read (then nothing is refused).
uint64_t available_memory_bytes();

// Throws mpq::Error naming `what` when `need` bytes (about) exceed what is available:
// "<what>: needs about 147.5 GB (<breakdown>), 21.4 GB available: <advice>".
void check_memory_fits(uint64_t need, const std::string& what, const std::string& breakdown,
                       const std::string& advice);

// "147.5 GB" (10^9), "12.3 MB", "512 kB", "100 B".
std::string human_bytes(uint64_t bytes);

}  // namespace mpq

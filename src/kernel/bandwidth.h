// Sustained memory read bandwidth, the ceiling of decoding speed.
//
// Decoding one token reads every weight once and does ~2 flops per weight, far too little work to
// hide the memory traffic: its speed limit is (bytes of weights) / (read bandwidth). `mpq bench`
// measures the bandwidth in the same run (same threads, same machine load) and reports how close
// decoding gets to that limit (the roofline fraction; docs/RUNTIME.md).
#pragma once

#include <cstdint>

namespace mpq {

// Default buffer: 16x a 32 MiB last-level cache, so that almost every byte comes from DRAM.
constexpr int64_t kBandwidthBufferBytes = int64_t{512} << 20;

// Reads a buffer of `buffer_bytes` (rounded down to whole 64-byte lines, at least 1 MiB) with
// `threads` OpenMP threads (0: omp_get_max_threads()), each streaming one contiguous slice with
// the widest vector loads the CPU has; returns the median over `repetitions` timed passes (after
// one untimed pass that faults the pages in), in bytes per second. The buffer is mapped for the
// call only and unmapped before returning, so it does not stay in the resident set.
// Throws mpq::Error when the buffer cannot be mapped or an argument is out of range.
double measure_read_bandwidth(int threads = 0, int64_t buffer_bytes = kBandwidthBufferBytes,
                              int repetitions = 5);

}  // namespace mpq

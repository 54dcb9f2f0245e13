#include "kernel/bandwidth.h"

#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "kernel/gemv_f32.h"
#include "mpq/error.h"

namespace mpq {
namespace {

constexpr int64_t kLine = 64;  // bytes per cache line, and per AVX-512 load

// Sums `n_lines` cache lines starting at `p` (64-byte aligned). The sum itself is meaningless; it
// keeps the compiler from dropping the loads. Four independent accumulators per line-pair keep
// enough loads in flight that the adds never limit the stream (the core is waiting on DRAM).
__attribute__((target("avx512f"))) float read_avx512(const float* p, int64_t n_lines) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 <= n_lines; i += 4) {
    const float* q = p + i * 16;
    a0 = _mm512_add_ps(a0, _mm512_load_ps(q));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(q + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(q + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(q + 48));
  }
  for (; i < n_lines; ++i) a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i * 16));
  // A store and a scalar sum rather than _mm512_reduce_add_ps, which trips a false
  // -Wuninitialized in GCC 12's headers.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  float sum = 0.f;
  for (float v : lanes) sum += v;
  return sum;
}

// The same with 32-byte loads, two per line.
__attribute__((target("avx2"))) float read_avx2(const float* p, int64_t n_lines) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 2 <= n_lines; i += 2) {
    const float* q = p + i * 16;
    a0 = _mm256_add_ps(a0, _mm256_load_ps(q));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(q + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(q + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(q + 24));
  }
  for (; i < n_lines; ++i) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i * 16));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i * 16 + 8));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float sum = 0.f;
  for (float v : lanes) sum += v;
  return sum;
}

float read_scalar(const float* p, int64_t n_lines) {
  float sum = 0.f;
  for (int64_t i = 0; i < n_lines * 16; i += 16) sum += p[i];  // one load per line is enough
  return sum;
}

float read_lines(Isa isa, const float* p, int64_t n_lines) {
  switch (isa) {
    case Isa::Avx512: return read_avx512(p, n_lines);
    case Isa::Avx2: return read_avx2(p, n_lines);
    case Isa::Scalar: break;
  }
  return read_scalar(p, n_lines);
}

// An anonymous mapping for the duration of the measurement. mmap (not new[]) so the pages are
// certainly given back on return, whatever the allocator's trim policy: `mpq bench` reads VmRSS
// afterwards and must see the model, not this buffer.
class Mapping {
 public:
  explicit Mapping(int64_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) fail("bandwidth", "cannot map a " + std::to_string(bytes >> 20) + " MiB buffer");
    data_ = static_cast<float*>(p);
  }
  ~Mapping() { munmap(data_, static_cast<size_t>(bytes_)); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  float* data() const { return data_; }

 private:
  int64_t bytes_;
  float* data_ = nullptr;  // page-aligned, so 64-byte aligned
};

}  // namespace

double measure_read_bandwidth(int threads, int64_t buffer_bytes, int repetitions) {
  check(threads >= 0, "bandwidth", "negative thread count");
  check(repetitions > 0, "bandwidth", "repetitions must be positive");
  check(buffer_bytes >= (int64_t{1} << 20), "bandwidth", "buffer must be at least 1 MiB");
  if (threads == 0) threads = omp_get_max_threads();
  const int64_t n_lines = buffer_bytes / kLine;
  const int64_t bytes = n_lines * kLine;
  Mapping buf(bytes);
  const Isa isa = best_isa();
  // Slice t of the buffer: lines [t * n_lines / threads, (t + 1) * n_lines / threads). Each thread
  // writes its own slice first, so on a multi-socket machine the pages sit on its node
  // (first touch), and every later pass reads the same slice.
  auto slice = [&](int t, int64_t& begin, int64_t& end) {
    begin = n_lines * t / threads;
    end = n_lines * (t + 1) / threads;
  };
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    int64_t begin, end;
    slice(t, begin, end);
    // Distinct contents on every page (the float of the element's index: normal numbers, and no
    // two pages alike), so that a hypervisor merging identical pages (KSM, zero-page dedupe)
    // cannot serve the buffer from a few cached pages.
    for (int64_t i = begin * 16; i < end * 16; ++i) buf.data()[i] = static_cast<float>(i);
  }

  std::vector<double> rates;
  volatile float sink = 0.f;  // the sums must look used
  for (int r = 0; r <= repetitions; ++r) {
    float total = 0.f;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (int t = 0; t < threads; ++t) {
      int64_t begin, end;
      slice(t, begin, end);
      total += read_lines(isa, buf.data() + begin * 16, end - begin);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    if (r > 0) rates.push_back(static_cast<double>(bytes) / s);  // r == 0 warms up
  }
  std::sort(rates.begin(), rates.end());
  const size_t n = rates.size();
  return n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
}

}  // namespace mpq

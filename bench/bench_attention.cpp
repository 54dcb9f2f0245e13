// Decode attention (kernel/attention.h, attend_decode) at the default model's shape (SmolLM2-135M:
// 9 query heads, 3 KV heads of 64) for several context lengths, from memory and from cache, over
// an F32 and an F16 cache.
//
//   build/mpq_bench --benchmark_filter=DecodeAttention
//
// "FromMemory" cycles through enough layers' caches (>= 96 MB in all, three times this machine's
// L3) that every call reads its keys and values from DRAM, as a decode step does after streaming a
// layer's weights; "InCache" repeats one layer. Time: one layer's call (a SmolLM2 token runs 30);
// bytes_per_second: the keys and values read.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernel/attention.h"
#include "kernel/half.h"

namespace {

constexpr mpq::DecodeAttentionShape kShape{9, 3, 64, 0};

// T: float (an F32 cache) or uint16_t (IEEE half bits, an F16 cache).
template <class T>
void run_decode_attention(benchmark::State& state, bool from_memory) {
  const int64_t n_keys = state.range(0);
  const int64_t head_stride = n_keys * kShape.head_dim;
  const int64_t cache_floats = kShape.n_kv_heads * head_stride;
  const int64_t layer_bytes = 2 * cache_floats * static_cast<int64_t>(sizeof(T));  // keys and values
  const int64_t layers = from_memory ? std::max<int64_t>(2, (int64_t{96} << 20) / layer_bytes + 1) : 1;
  std::vector<std::vector<T>> keys(layers), values(layers);
  std::vector<float> k32(cache_floats), v32(cache_floats);
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t i = 0; i < cache_floats; ++i) {
      k32[i] = std::sin(0.37f * static_cast<float>(i + l));
      v32[i] = std::cos(0.11f * static_cast<float>(i + l));
    }
    keys[l].resize(cache_floats);
    values[l].resize(cache_floats);
    if constexpr (std::is_same_v<T, float>) {
      keys[l] = k32;
      values[l] = v32;
    } else {
      mpq::f32_to_f16_row(mpq::best_isa(), k32.data(), cache_floats, keys[l].data());
      mpq::f32_to_f16_row(mpq::best_isa(), v32.data(), cache_floats, values[l].data());
    }
  }
  std::vector<float> q(kShape.n_heads * kShape.head_dim, 0.05f), out(q.size());
  const mpq::Isa isa = mpq::best_isa();
  int64_t l = 0;
  for (auto _ : state) {
    // The last position's query: n_past = n_keys - 1 earlier positions and this one.
    mpq::attend_decode(isa, kShape, q.data(), 1, n_keys - 1, keys[l].data(), values[l].data(), head_stride,
                       out.data());
    benchmark::DoNotOptimize(out.data());
    l = (l + 1) % layers;
  }
  state.SetBytesProcessed(state.iterations() * layer_bytes);
}

void BM_DecodeAttentionFromMemory(benchmark::State& state) { run_decode_attention<float>(state, true); }
void BM_DecodeAttentionInCache(benchmark::State& state) { run_decode_attention<float>(state, false); }
void BM_DecodeAttentionF16FromMemory(benchmark::State& state) { run_decode_attention<uint16_t>(state, true); }
void BM_DecodeAttentionF16InCache(benchmark::State& state) { run_decode_attention<uint16_t>(state, false); }

void context_lengths(benchmark::internal::Benchmark* b) {
  b->Arg(129)->Arg(512)->Arg(2048)->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_DecodeAttentionFromMemory)->Apply(context_lengths);
BENCHMARK(BM_DecodeAttentionInCache)->Apply(context_lengths);
BENCHMARK(BM_DecodeAttentionF16FromMemory)->Apply(context_lengths);
BENCHMARK(BM_DecodeAttentionF16InCache)->Apply(context_lengths);

}  // namespace

// Decode attention (kernel/attention.h, attend_decode) at the default model's shape (SmolLM2-135M:
// 9 query heads, 3 KV heads of 64) for several context lengths, from memory and from cache.
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
#include <vector>

#include "kernel/attention.h"

namespace {

constexpr mpq::DecodeAttentionShape kShape{9, 3, 64, 0};

void run_decode_attention(benchmark::State& state, bool from_memory) {
  const int64_t n_keys = state.range(0);
  const int64_t head_stride = n_keys * kShape.head_dim;
  const int64_t cache_floats = kShape.n_kv_heads * head_stride;
  const int64_t layer_bytes = 2 * cache_floats * static_cast<int64_t>(sizeof(float));  // keys and values
  const int64_t layers = from_memory ? std::max<int64_t>(2, (int64_t{96} << 20) / layer_bytes + 1) : 1;
  std::vector<std::vector<float>> keys(layers), values(layers);
  for (int64_t l = 0; l < layers; ++l) {
    keys[l].resize(cache_floats);
    values[l].resize(cache_floats);
    for (int64_t i = 0; i < cache_floats; ++i) {
      keys[l][i] = std::sin(0.37f * static_cast<float>(i + l));
      values[l][i] = std::cos(0.11f * static_cast<float>(i + l));
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

void BM_DecodeAttentionFromMemory(benchmark::State& state) { run_decode_attention(state, true); }
void BM_DecodeAttentionInCache(benchmark::State& state) { run_decode_attention(state, false); }

BENCHMARK(BM_DecodeAttentionFromMemory)->Arg(129)->Arg(512)->Arg(2048)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_DecodeAttentionInCache)->Arg(129)->Arg(512)->Arg(2048)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

// Pieces of the forward pass shared by model/forward.cpp (one parallel region per operation)
// and model/forward_team.cpp (a decode step's layers in one parallel region).
#pragma once

#include <cstdint>

#include "mpq/model.h"

namespace mpq {

// True when layer l's key and value blocks of `cache` are allocated (capacity * kv_dim entries
// of its type); caches made for one layer's use (calibration) get them on first use.
bool cache_layer_allocated(const ModelConfig& c, const KVCache& cache, int l);

// Stores n new tokens' keys and values (rows of kv_dim floats) at positions cache.n_past.. of
// layer l's (allocated) blocks, for KV heads [kv_begin, kv_end), in the cache's element type.
void store_keys_values(const ModelConfig& c, KVCache& cache, int l, const float* keys, const float* values,
                       int64_t n, int kv_begin, int kv_end);

// Runs every decoder layer of a decode step (plan.n_tokens <= kMaxDecodeTokens) over x
// ([n_tokens, dim], in place) in one parallel region, the threads meeting at spin barriers between
// phases instead of forking per product, and returns true; returns false, touching nothing, when
// the step does not qualify (prompt batches, hooks, MoE layers, weights not all packed, one
// thread, more threads than CPUs, Model::decode_in_one_region off). Results equal run_layer's
// bit for bit (test ModelForwardTeam).
bool run_layers_in_one_region(const Model& model, const BatchPlan& plan, float* x, const ForwardHooks* hooks);

// New tokens per step up to which attention goes through kernel/attention.h's decode kernels.
constexpr int64_t kMaxDecodeTokens = 4;

}  // namespace mpq

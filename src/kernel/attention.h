// Decode attention: query rows against the cached keys and values of a KV head, with one code
// path per instruction set chosen at run time (like kernel/gemv_f32.h: one loop body, compiled
// once per target), and a decode step's attention over the whole cache (attend_decode). Prompt
// batches go through sgemm in model/forward.cpp; this serves the few-token steps, where a BLAS
// call per head costs more than its 64-wide dot products.
#pragma once

#include <cstdint>

#include "kernel/gemv_f32.h"

namespace mpq {

// One query's attention over a range of keys, before normalization: with s_j = scale · (q · k_j)
// for j < n_keys (k_j = k + j * stride, v_j = v + j * stride, head_dim floats each), the largest
// score m, sum = Σ_j exp(s_j − m) and acc[0, head_dim) = Σ_j exp(s_j − m) · v_j. Ranges of the
// same query's keys computed apart (threads splitting a long context) merge exactly into the
// softmax-weighted sum (merge_partials). An empty range gives m = −inf, sum = 0, acc = 0.
struct AttentionPartial {
  float max_score;  // m: the largest scaled score of the range
  double sum;       // Σ_j exp(s_j − m), in double as the softmaxes sum
};

// For n_heads query heads that share these keys and values (the GQA heads of one KV head): head
// a's query is q + a * head_dim, its accumulator acc + a * head_dim, its result parts[a];
// `scores` is scratch of n_heads * n_keys floats. The scalar path sums in order with libm's exp;
// the vector paths sum in lanes and use exp_approx (kernel/fast_exp.h, within 2^-23 relative), so
// results differ by rounding only. AVX-512 has kernels for head sizes 64 and 128 (16 keys' dot
// products reduced together; the heads' weighted sums advance together, one load of a value row
// serving all of them).
void attend_partial(Isa isa, const float* q, int n_heads, const float* k, const float* v, int64_t stride,
                    int64_t n_keys, int head_dim, float scale, float* scores, float* acc, AttentionPartial* parts);
// The same over a half-precision cache (IEEE binary16 bits; KvCacheType::F16): the AVX-512
// kernels convert 16 values per instruction as they load them, the other paths widen the rows to
// fp32 first (exactly), so a half cache gives the fp32 results of its rounded keys and values.
void attend_partial(Isa isa, const float* q, int n_heads, const uint16_t* k, const uint16_t* v, int64_t stride,
                    int64_t n_keys, int head_dim, float scale, float* scores, float* acc, AttentionPartial* parts);

// out = the softmax-weighted sum over the union of the ranges of parts[c * part_stride] for
// c < n_parts, whose accumulators are accs + c * acc_stride:
// Σ_c e^(m_c − M) acc_c / Σ_c e^(m_c − M) sum_c with M = max_c m_c.
void merge_partials(const AttentionPartial* parts, int n_parts, int64_t part_stride, const float* accs,
                    int64_t acc_stride, int head_dim, float* out);

// The shape of a decode step's attention (model/config.h's fields of the same names).
struct DecodeAttentionShape {
  int n_heads;         // query heads
  int n_kv_heads;      // key/value heads; n_heads is a multiple of it (GQA)
  int head_dim;        // floats per head
  int sliding_window;  // > 0: a query sees only the latest this many positions; 0: all
  float scale = 0.f;   // scores are scale · q·k; 0: 1/sqrt(head_dim)
};

// Causal attention of n_new (a few) new tokens whose keys and values are already in the cache, at
// positions n_past .. n_past + n_new − 1: q and out are [n_new, n_heads · head_dim]; KV head g's
// keys are the rows of k_cache + g · head_stride (head_dim floats each, position-major: the
// KVCache layout of mpq/model.h), its values those of v_cache + g · head_stride.
//
// For each new token and KV head, one attend_partial serves the query heads that share the KV
// head. Threads split the keys, not the heads: each takes a contiguous stretch of every KV head's
// keys (flash-decoding), so that they share the work evenly whatever the head count (3 KV heads
// on 2 threads would leave one thread twice the other's work), and the stretches' partial sums
// are merged after. Threads run when the workers spin (a cheap fork, kernel/threads.h) or the
// context is long.
void attend_decode(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                   const float* k_cache, const float* v_cache, int64_t head_stride, float* out);
// The same over a half-precision cache (half the bytes to read).
void attend_decode(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                   const uint16_t* k_cache, const uint16_t* v_cache, int64_t head_stride, float* out);

// The pieces of attend_decode, for callers that keep their own team of threads (a decode step run
// in one parallel region, model/forward_team.cpp), giving the same results bit for bit:
//
// How many stretches attend_decode splits the keys into with `threads` threads: `threads` when
// the work pays for waking them, else 1.
int decode_attention_parts(const DecodeAttentionShape& shape, int64_t n_new, int64_t n_past, int threads);
// Entries of the `parts` array for n_parts stretches (the accumulators: head_dim floats each).
// Stretch p of new token i, query head h sits at slot (i * n_parts + p) * n_heads + h.
int64_t decode_attention_slots(const DecodeAttentionShape& shape, int64_t n_new, int n_parts);
// Stretch `part` of n_parts of every new token's visible keys, for KV heads [kv_begin, kv_end)
// (and their query heads): fills their slots of parts/accs. `scores` is scratch of
// (n_heads / n_kv_heads) * (n_past + n_new) floats, one per thread.
void attend_decode_part(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                        const float* k_cache, const float* v_cache, int64_t head_stride, int part, int n_parts,
                        int kv_begin, int kv_end, AttentionPartial* parts, float* accs, float* scores);
void attend_decode_part(Isa isa, const DecodeAttentionShape& shape, const float* q, int64_t n_new, int64_t n_past,
                        const uint16_t* k_cache, const uint16_t* v_cache, int64_t head_stride, int part,
                        int n_parts, int kv_begin, int kv_end, AttentionPartial* parts, float* accs, float* scores);
// Merges the stretches of query heads [head_begin, head_end) into out ([n_new, n_heads · head_dim]).
void merge_decode_parts(const DecodeAttentionShape& shape, int64_t n_new, int n_parts, const AttentionPartial* parts,
                        const float* accs, int head_begin, int head_end, float* out);

}  // namespace mpq

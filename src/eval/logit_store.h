// Reference logits for KL divergence, stored compactly: per scored token its NLL and the top-k
// log-probabilities with their token ids (the rest of the distribution is one "other" bucket).
//
// File layout (little endian):
//   header (64 bytes): char magic[8] = "MPQLOGIT" | u32 version = 1 | u32 top_k | u32 vocab |
//     u32 ctx | u32 protocol (0 llamacpp, 1 gptq) | u32 reserved | u64 n_records |
//     u64 tokens_hash (FNV-1a of every scored token id, in order) | 16 bytes zero
//   n_records x { f32 nll | i32 target | i32 ids[top_k] | f32 logprobs[top_k] }
//     (target: the token that followed; ids sorted by logprob, descending)
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace mpq {

// The first 8 bytes of every logits file.
inline constexpr char kLogitStoreMagic[] = "MPQLOGIT";

struct LogitStoreHeader {
  uint32_t top_k = 0;
  uint32_t vocab = 0;
  uint32_t ctx = 0;
  uint32_t protocol = 0;
  uint64_t n_records = 0;
  uint64_t tokens_hash = 0;
};

// Appends records to a temporary file beside `path` (io/output.h); finish() writes the header and renames into place.
class LogitStoreWriter {
 public:
  LogitStoreWriter(std::string path, uint32_t top_k, uint32_t vocab, uint32_t ctx, uint32_t protocol);
  ~LogitStoreWriter();
  // log_probs is the full log-softmax of one position; target the token that followed.
  void add(const float* log_probs, int32_t target);
  void finish();

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  LogitStoreHeader header_;
  std::vector<int32_t> order_;  // scratch for top-k selection
};

class LogitStoreReader {
 public:
  explicit LogitStoreReader(const std::string& path);  // validates header and size
  const LogitStoreHeader& header() const { return header_; }
  float nll(uint64_t record) const;
  int32_t target(uint64_t record) const;
  const int32_t* ids(uint64_t record) const;
  const float* logprobs(uint64_t record) const;

 private:
  const uint8_t* record_ptr(uint64_t record) const;
  MappedFile file_;
  LogitStoreHeader header_;
  uint64_t record_bytes_ = 0;
};

// KL(base || current) from the base's top-k log-probs and the current full log-softmax: the
// top-k terms exactly plus the remaining mass as one bucket. This is the KL divergence of the
// two distributions coarsened to (top-k tokens, everything else): never above the true value,
// and equal to it up to the mass outside the top-k.
double kl_from_topk(const int32_t* base_ids, const float* base_logprobs, int top_k,
                    const float* current_log_probs);

// FNV-1a 64-bit, chained over token ids.
uint64_t fnv1a_tokens(uint64_t hash, int32_t token);
constexpr uint64_t kFnvOffset = 1469598103934665603ULL;

}  // namespace mpq

#include "eval/logit_store.h"

#include "io/output.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "mpq/error.h"

namespace mpq {
namespace {

constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 64;

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_u64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

}  // namespace

uint64_t fnv1a_tokens(uint64_t hash, int32_t token) {
  uint32_t u = static_cast<uint32_t>(token);
  for (int i = 0; i < 4; ++i) {
    hash ^= (u >> (8 * i)) & 0xFF;
    hash *= 1099511628211ULL;
  }
  return hash;
}

LogitStoreWriter::LogitStoreWriter(std::string path, uint32_t top_k, uint32_t vocab, uint32_t ctx,
                                   uint32_t protocol)
    : path_(std::move(path)), tmp_path_(temp_path_beside(path_)) {
  if (top_k == 0 || top_k > vocab) fail(path_, "top-k must be in [1, vocab]");
  header_.top_k = top_k;
  header_.vocab = vocab;
  header_.ctx = ctx;
  header_.protocol = protocol;
  header_.tokens_hash = kFnvOffset;
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) fail(tmp_path_, "cannot create file");
  uint8_t zeros[kHeaderBytes] = {};
  std::fwrite(zeros, 1, kHeaderBytes, file_);  // placeholder, rewritten by finish()
  order_.resize(vocab);
}

LogitStoreWriter::~LogitStoreWriter() {
  if (file_ != nullptr) {  // not finished: leave no partial output behind
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

void LogitStoreWriter::add(const float* log_probs, int32_t target) {
  const int k = static_cast<int>(header_.top_k);
  for (uint32_t i = 0; i < header_.vocab; ++i) order_[i] = static_cast<int32_t>(i);
  std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), [&](int32_t a, int32_t b) {
    return log_probs[a] > log_probs[b] || (log_probs[a] == log_probs[b] && a < b);
  });
  std::vector<float> record(2 + 2 * k);
  record[0] = -log_probs[target];
  std::memcpy(&record[1], &target, sizeof(int32_t));
  std::memcpy(&record[2], order_.data(), sizeof(int32_t) * k);
  for (int i = 0; i < k; ++i) record[2 + k + i] = log_probs[order_[i]];
  if (std::fwrite(record.data(), sizeof(float), record.size(), file_) != record.size()) {
    fail(tmp_path_, "write failed");
  }
  header_.n_records++;
  header_.tokens_hash = fnv1a_tokens(header_.tokens_hash, target);
}

void LogitStoreWriter::finish() {
  uint8_t h[kHeaderBytes] = {};
  std::memcpy(h, kLogitStoreMagic, 8);
  put_u32(h + 8, kVersion);
  put_u32(h + 12, header_.top_k);
  put_u32(h + 16, header_.vocab);
  put_u32(h + 20, header_.ctx);
  put_u32(h + 24, header_.protocol);
  put_u64(h + 32, header_.n_records);
  put_u64(h + 40, header_.tokens_hash);
  std::fseek(file_, 0, SEEK_SET);
  const bool ok = std::fwrite(h, 1, kHeaderBytes, file_) == kHeaderBytes;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok || !closed) {
    std::remove(tmp_path_.c_str());
    fail(tmp_path_, "write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) fail(path_, "cannot rename from " + tmp_path_ + ": " + ec.message());
}

LogitStoreReader::LogitStoreReader(const std::string& path) : file_(path) {
  const uint8_t* p = file_.data();
  if (file_.size() < kHeaderBytes || std::memcmp(p, kLogitStoreMagic, 8) != 0) {
    fail(path, "not an mpq logits file (bad magic or too short)");
  }
  if (get_u32(p + 8) != kVersion) fail(path, "unsupported logits file version " + std::to_string(get_u32(p + 8)));
  header_.top_k = get_u32(p + 12);
  header_.vocab = get_u32(p + 16);
  header_.ctx = get_u32(p + 20);
  header_.protocol = get_u32(p + 24);
  header_.n_records = get_u64(p + 32);
  header_.tokens_hash = get_u64(p + 40);
  if (header_.top_k == 0 || header_.top_k > header_.vocab) fail(path, "invalid top_k in header");
  record_bytes_ = 8 + 8ull * header_.top_k;
  if (header_.n_records > (file_.size() - kHeaderBytes) / record_bytes_ ||
      kHeaderBytes + header_.n_records * record_bytes_ != file_.size()) {
    fail(path, "file size does not match its header (truncated?)");
  }
}

const uint8_t* LogitStoreReader::record_ptr(uint64_t record) const {
  return file_.data() + kHeaderBytes + record * record_bytes_;
}
float LogitStoreReader::nll(uint64_t record) const {
  float v;
  std::memcpy(&v, record_ptr(record), 4);
  return v;
}
int32_t LogitStoreReader::target(uint64_t record) const {
  int32_t v;
  std::memcpy(&v, record_ptr(record) + 4, 4);
  return v;
}
const int32_t* LogitStoreReader::ids(uint64_t record) const {
  return reinterpret_cast<const int32_t*>(record_ptr(record) + 8);
}
const float* LogitStoreReader::logprobs(uint64_t record) const {
  return reinterpret_cast<const float*>(record_ptr(record) + 8 + 4ull * header_.top_k);
}

double kl_from_topk(const int32_t* base_ids, const float* base_logprobs, int top_k,
                    const float* current_log_probs) {
  double kl = 0, base_mass = 0, current_mass = 0;
  for (int i = 0; i < top_k; ++i) {
    const double lp = base_logprobs[i];
    const double lq = current_log_probs[base_ids[i]];
    const double p = std::exp(lp);
    kl += p * (lp - lq);
    base_mass += p;
    current_mass += std::exp(lq);
  }
  const double base_rest = 1.0 - base_mass;
  const double current_rest = 1.0 - current_mass;
  if (base_rest > 1e-12 && current_rest > 1e-12) kl += base_rest * std::log(base_rest / current_rest);
  return std::max(kl, 0.0);
}

}  // namespace mpq

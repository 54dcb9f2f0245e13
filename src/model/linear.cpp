#include <algorithm>
#include <vector>

#include "format/channel_split.h"
#include "format/weight_format.h"
#include "kernel/matmul_f32.h"
#include "kernel/packed.h"
#include "model/packed_linear.h"
#include "mpq/error.h"
#include "mpq/model.h"

namespace mpq {

const char* linear_kind_name(LinearKind kind) {
  static constexpr const char* kNames[kLinearKinds] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};
  return kNames[static_cast<int>(kind)];
}

namespace {

// fp32 weights, row-major [out, in]; products through matmul_f32 (OpenBLAS, our threads).
class DenseF32Weights final : public LinearWeights {
 public:
  DenseF32Weights(std::shared_ptr<const std::vector<float>> w, int64_t out, int64_t in)
      : w_(std::move(w)), out_(out), in_(in) {}
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  void forward(const float* x, int64_t n_tokens, float* y) const override {
    matmul_f32(x, n_tokens, w_->data(), out_, in_, y);
  }
  void to_f32(float* dst) const override { std::copy(w_->begin(), w_->end(), dst); }
  void decode_row(int64_t r, float* dst) const override { std::copy_n(w_->data() + r * in_, in_, dst); }
  std::string format_name() const override { return "f32"; }
  uint64_t storage_bytes() const override { return w_->size() * sizeof(float); }

 private:
  std::shared_ptr<const std::vector<float>> w_;  // [out_ * in_]
  int64_t out_;
  int64_t in_;
};

// A quantized matrix, run through its decoded fp32 copy.
class QuantizedWeights final : public LinearWeights {
 public:
  explicit QuantizedWeights(QuantizedMatrix q) : q_(std::move(q)), decoded_(q_.rows * q_.cols) {
    dequantize(q_, decoded_.data());
  }
  int64_t out_features() const override { return q_.rows; }
  int64_t in_features() const override { return q_.cols; }
  void forward(const float* x, int64_t n_tokens, float* y) const override {
    matmul_f32(x, n_tokens, decoded_.data(), q_.rows, q_.cols, y);
  }
  void to_f32(float* dst) const override { std::copy(decoded_.begin(), decoded_.end(), dst); }
  void decode_row(int64_t r, float* dst) const override {
    std::copy_n(decoded_.data() + r * q_.cols, q_.cols, dst);
  }
  std::string format_name() const override { return q_.traits().name; }
  uint64_t storage_bytes() const override { return (storage_bits(q_.format, q_.rows, q_.cols) + 7) / 8; }
  std::unique_ptr<QuantizedMatrix> quantized() const override {
    return std::make_unique<QuantizedMatrix>(q_);
  }

 private:
  QuantizedMatrix q_;           // the stored form
  std::vector<float> decoded_;  // [rows, cols] fp32, what the forward pass multiplies by
};

// A quantized matrix kept as stored and decoded when used (RuntimeOptions::decode_on_use): the
// forward pass decodes into a scratch buffer of this thread and multiplies by it exactly as
// QuantizedWeights multiplies by its resident copy, so the two give the same floats.
class DecodeOnUseWeights final : public LinearWeights {
 public:
  explicit DecodeOnUseWeights(QuantizedMatrix q) : q_(std::move(q)) {}
  int64_t out_features() const override { return q_.rows; }
  int64_t in_features() const override { return q_.cols; }
  void forward(const float* x, int64_t n_tokens, float* y) const override {
    thread_local std::vector<float> scratch;  // the largest matrix this thread has decoded
    scratch.resize(static_cast<size_t>(q_.rows * q_.cols));
    to_f32(scratch.data());
    matmul_f32(x, n_tokens, scratch.data(), q_.rows, q_.cols, y);
  }
  void to_f32(float* dst) const override { dequantize(q_, dst); }
  std::string format_name() const override { return q_.traits().name; }
  uint64_t storage_bytes() const override { return (storage_bits(q_.format, q_.rows, q_.cols) + 7) / 8; }
  std::unique_ptr<QuantizedMatrix> quantized() const override {
    return std::make_unique<QuantizedMatrix>(q_);
  }

 private:
  QuantizedMatrix q_;  // the stored form, the only copy
};

// A channel-split layer run through its decoded fp32 copy (rows back in their original order).
class DecodedSplitWeights final : public LinearWeights {
 public:
  explicit DecodedSplitWeights(ChannelSplit s) : s_(std::move(s)), decoded_(s_.rows * s_.cols) {
    check_channel_split(s_, "channel split");
    dequantize(s_, decoded_.data());
  }
  int64_t out_features() const override { return s_.rows; }
  int64_t in_features() const override { return s_.cols; }
  void forward(const float* x, int64_t n_tokens, float* y) const override {
    matmul_f32(x, n_tokens, decoded_.data(), s_.rows, s_.cols, y);
  }
  void to_f32(float* dst) const override { std::copy(decoded_.begin(), decoded_.end(), dst); }
  void decode_row(int64_t r, float* dst) const override {
    std::copy_n(decoded_.data() + r * s_.cols, s_.cols, dst);
  }
  std::string format_name() const override {
    return std::string(s_.high.traits().name) + "+" + s_.low.traits().name;
  }
  uint64_t storage_bytes() const override { return (channel_split_storage_bits(s_) + 7) / 8; }
  std::unique_ptr<ChannelSplit> channel_split() const override { return std::make_unique<ChannelSplit>(s_); }

 private:
  ChannelSplit s_;              // the stored form
  std::vector<float> decoded_;  // [rows, cols] fp32
};

}  // namespace

std::unique_ptr<QuantizedMatrix> LinearWeights::quantized() const { return nullptr; }
std::unique_ptr<ChannelSplit> LinearWeights::channel_split() const { return nullptr; }
void LinearWeights::decode_row(int64_t r, float* dst) const {
  std::vector<float> all(static_cast<size_t>(out_features() * in_features()));
  to_f32(all.data());
  std::copy_n(all.data() + r * in_features(), in_features(), dst);
}

bool LinearWeights::packed_products(float*, std::vector<PackedProduct>&) const { return false; }

namespace {

void add_bias(const std::vector<float>& bias, int64_t n_tokens, float* y) {
  const int64_t width = static_cast<int64_t>(bias.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < width; ++i) y[t * width + i] += bias[i];
  }
}

}  // namespace

void Linear::apply(const float* x, int64_t n_tokens, float* y) const {
  weights->forward(x, n_tokens, y);
  add_bias(bias, n_tokens, y);
}

void Linear::apply_group(std::span<const Linear* const> linears, const float* x, int64_t n_tokens,
                         std::span<float* const> ys) {
  check(linears.size() == ys.size(), "linear", "one output per layer of a group");
  std::vector<PackedProduct> products;
  bool packed = true;
  for (size_t i = 0; i < linears.size() && packed; ++i) {
    packed = linears[i]->weights->packed_products(ys[i], products);
  }
  if (!packed) {
    for (size_t i = 0; i < linears.size(); ++i) linears[i]->apply(x, n_tokens, ys[i]);
    return;
  }
  packed_matmul_group(products, x, n_tokens);
  for (size_t i = 0; i < linears.size(); ++i) add_bias(linears[i]->bias, n_tokens, ys[i]);
}

std::unique_ptr<LinearWeights> make_quantized_weights(QuantizedMatrix q, const RuntimeOptions& runtime) {
  if (runtime.packed) return make_packed_weights(std::move(q), runtime);
  if (runtime.decode_on_use) return std::make_unique<DecodeOnUseWeights>(std::move(q));
  return std::make_unique<QuantizedWeights>(std::move(q));
}

std::unique_ptr<LinearWeights> make_split_weights(ChannelSplit split, const RuntimeOptions& runtime) {
  if (runtime.packed) return make_packed_split_weights(std::move(split), runtime);
  return std::make_unique<DecodedSplitWeights>(std::move(split));
}

std::unique_ptr<LinearWeights> make_dense_f32_weights(std::shared_ptr<const std::vector<float>> w,
                                                      int64_t out_features, int64_t in_features) {
  return std::make_unique<DenseF32Weights>(std::move(w), out_features, in_features);
}

}  // namespace mpq

// Linear weights that run straight from packed weights (kernel/packed.h): the packed runtime.
//
// Memory. Each object holds only its PackedMatrix (codes at their bit width, scales in the type
// the kernel multiplies by, per-group sums); the interchange QuantizedMatrix it was built from is
// dropped once packed, and there is no decoded fp32 copy. quantized(), channel_split() and
// to_f32() rebuild what they return from the packed form (PackedMatrix::unpack is exact), so
// they cost time, not resident memory: they serve writing, inspection and tests, not the forward
// pass.
//
// Arithmetic. With fp32 activations the kernels dequantize weights in registers and accumulate
// in fp32, so a product equals the decoded reference (QuantizedWeights of linear.cpp: dequantize,
// then sgemm) up to fp32 summation order. With int8 activations (integer formats only) the input
// rows are also quantized, per token and per 128 values, which is a real (small) loss of accuracy;
// docs/RUNTIME.md reports what it costs.
#include <algorithm>
#include <string>
#include <utility>

#include "format/channel_split.h"
#include "format/weight_format.h"
#include "kernel/packed.h"
#include "model/packed_linear.h"
#include "mpq/error.h"

namespace mpq {
namespace {

ActivationMode activation_mode(const RuntimeOptions& runtime) {
  return runtime.int8_activations ? ActivationMode::Int8 : ActivationMode::F32;
}

// One quantized matrix, packed.
class PackedWeights final : public LinearWeights {
 public:
  PackedWeights(const QuantizedMatrix& q, const RuntimeOptions& runtime)
      : w_(pack_matrix(q)), mode_(activation_mode(runtime)) {}

  int64_t out_features() const override { return w_->rows(); }
  int64_t in_features() const override { return w_->cols(); }
  void forward(const float* x, int64_t n_tokens, float* y) const override {
    // packed_matmul falls back to fp32 activations for formats without an int8 kernel (the fp
    // formats).
    packed_matmul(*w_, x, n_tokens, y, w_->rows(), mode_);
  }
  bool packed_products(float* y, std::vector<PackedProduct>& out) const override {
    // Contiguous output rows: ldy = out_features, no row map.
    out.push_back({w_.get(), y, w_->rows(), nullptr, mode_});
    return true;
  }
  void to_f32(float* dst) const override { dequantize(w_->unpack(), dst); }
  void decode_row(int64_t r, float* dst) const override { w_->decode_row(r, dst); }
  std::string format_name() const override { return weight_format(w_->format()).name; }
  // The format's exact storage (what a file holds), not the resident packed bytes, so that a
  // model reports the same size whichever runtime runs it; PackedMatrix::bytes() adds padding
  // and the kernel-side sums.
  uint64_t storage_bytes() const override {
    return (storage_bits(w_->format(), w_->rows(), w_->cols()) + 7) / 8;
  }
  std::unique_ptr<QuantizedMatrix> quantized() const override {
    return std::make_unique<QuantizedMatrix>(w_->unpack());
  }

 private:
  std::unique_ptr<PackedMatrix> w_;  // never null
  ActivationMode mode_;              // as RuntimeOptions::int8_activations asks
};

// A channel-split layer (MixLLM): the `high` rows and the `low` rows of W as two packed
// matrices. Each product writes its rows straight into their output columns (row_to_output =
// high_rows / low_rows, ldy = rows), so no temporary and no separate scatter pass; the two row
// sets are disjoint and cover [0, rows), so together they write every output exactly once.
class PackedSplitWeights final : public LinearWeights {
 public:
  PackedSplitWeights(ChannelSplit s, const RuntimeOptions& runtime)
      : rows_(s.rows), cols_(s.cols), mode_(activation_mode(runtime)) {
    check_channel_split(s, "channel split");
    high_ = make_part(std::move(s.high), std::move(s.high_rows));
    low_ = make_part(std::move(s.low), std::move(s.low_rows));
  }

  int64_t out_features() const override { return rows_; }
  int64_t in_features() const override { return cols_; }

  void forward(const float* x, int64_t n_tokens, float* y) const override {
    // The two sets as one group: one fork, the activations quantized once for both.
    std::vector<PackedProduct> products;
    packed_products(y, products);
    packed_matmul_group(products, x, n_tokens);
  }
  bool packed_products(float* y, std::vector<PackedProduct>& out) const override {
    for (const Part* p : {&high_, &low_}) {
      if (p->w) out.push_back({p->w.get(), y, rows_, p->rows.data(), mode_});  // skip an empty set
    }
    return true;
  }

  void to_f32(float* dst) const override { dequantize(unpack(), dst); }
  void decode_row(int64_t r, float* dst) const override {
    // The row's set, and its index there (both sets' rows are ascending).
    for (const Part* p : {&high_, &low_}) {
      const auto it = std::lower_bound(p->rows.begin(), p->rows.end(), static_cast<int32_t>(r));
      if (it != p->rows.end() && *it == r) return p->w->decode_row(it - p->rows.begin(), dst);
    }
    fail("channel split", "row " + std::to_string(r) + " out of range");
  }
  std::string format_name() const override {
    return std::string(weight_format(high_.format).name) + "+" + weight_format(low_.format).name;
  }
  uint64_t storage_bytes() const override {
    return (split_storage_bits(high_.format, low_.format, static_cast<int64_t>(high_.rows.size()),
                               rows_, cols_) +
            7) / 8;
  }
  std::unique_ptr<ChannelSplit> channel_split() const override {
    return std::make_unique<ChannelSplit>(unpack());
  }

 private:
  // One channel set. `w` is null when the set has no rows (pack_matrix refuses empty matrices,
  // and there is nothing to run); `empty` then keeps its interchange form (no codes) so that
  // channel_split() gives back exactly what it was built from.
  struct Part {
    WeightFormatId format = WeightFormatId::BF16;
    std::vector<int32_t> rows;           // output column of each packed row (ascending)
    std::unique_ptr<PackedMatrix> w;     // [rows.size(), cols] or null
    QuantizedMatrix empty;               // the 0-row matrix when w is null
  };

  static Part make_part(QuantizedMatrix q, std::vector<int32_t> rows) {
    Part p;
    p.format = q.format;
    p.rows = std::move(rows);
    if (q.rows > 0) {
      p.w = pack_matrix(q);
    } else {
      p.empty = std::move(q);
    }
    return p;
  }
  ChannelSplit unpack() const {
    ChannelSplit s;
    s.rows = rows_;
    s.cols = cols_;
    s.high_rows = high_.rows;
    s.low_rows = low_.rows;
    s.high = high_.w ? high_.w->unpack() : high_.empty;
    s.low = low_.w ? low_.w->unpack() : low_.empty;
    return s;
  }

  int64_t rows_;  // output channels of the whole layer
  int64_t cols_;  // input features
  ActivationMode mode_;
  Part high_, low_;
};

}  // namespace

std::unique_ptr<LinearWeights> make_packed_weights(QuantizedMatrix q, const RuntimeOptions& runtime) {
  // pack_matrix validates shapes and array sizes (mpq::Error naming the format).
  return std::make_unique<PackedWeights>(q, runtime);
}

std::unique_ptr<LinearWeights> make_packed_split_weights(ChannelSplit split, const RuntimeOptions& runtime) {
  return std::make_unique<PackedSplitWeights>(std::move(split), runtime);
}

}  // namespace mpq

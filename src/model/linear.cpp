#include "kernel/matmul_f32.h"
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
  std::string format_name() const override { return "f32"; }
  uint64_t storage_bytes() const override { return w_->size() * sizeof(float); }

 private:
  std::shared_ptr<const std::vector<float>> w_;  // [out_ * in_]
  int64_t out_;
  int64_t in_;
};

}  // namespace

std::unique_ptr<LinearWeights> make_dense_f32_weights(std::shared_ptr<const std::vector<float>> w,
                                                      int64_t out_features, int64_t in_features) {
  return std::make_unique<DenseF32Weights>(std::move(w), out_features, in_features);
}

}  // namespace mpq

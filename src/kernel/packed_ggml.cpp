// ggml block formats (q8_0, q4_K, iq4_nl, ...) in the packed runtime.
//
// Layout: the blocks themselves, exactly as the QuantizedMatrix (and a GGUF file) holds them —
// row r's cols / block_values blocks at r · row_bytes — so resident bytes = file bytes and
// unpack() is a copy.
//
// Products (fp32 activations; these formats have no int8-activation kernel):
//   scalar reference  decode one row with the codec's decoder (format/gguf_blocks.cpp), then
//                     Σ_i w_i x_i in index order, per token;
//   AVX2 / AVX-512    decode a tile of 16 rows into a small fp32 buffer (the same scalar decoder,
//                     so the weights are bit for bit the reference's), then every token's dot
//                     products over the tile with the vectorized fp32 GEMV of kernel/gemv_f32.h.
//                     A tile is decoded once for all tokens of the call, so prompts pay the decode
//                     once per 16 rows; only the summation order differs from the reference.
// Why not multiply in the quantized domain, as llama.cpp does: that needs the activations in a
// matching integer format (q8_K / q8_0), a second rounding this runtime does not make for fp32
// products; decoding to fp32 keeps the product equal to the decoded reference up to summation
// order.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "format/ggml_codec.h"
#include "kernel/packed_impl.h"
#include "mpq/error.h"

namespace mpq {
namespace {

constexpr int64_t kTileRows = 16;

class PackedGgmlMatrix final : public PackedMatrix {
 public:
  explicit PackedGgmlMatrix(const QuantizedMatrix& q)
      : format_(q.format), codec_(*q.traits().ggml), rows_(q.rows), cols_(q.cols) {
    const WeightFormatTraits& f = q.traits();
    require_format_accepts(q.format, q.rows, q.cols, "pack_matrix");
    check(q.groups * codec_.block_values == q.cols, f.name, "block count does not match the format");
    row_bytes_ = q.groups * codec_.block_bytes;
    check(q.codes.size() == static_cast<size_t>(q.rows * row_bytes_), f.name, "block array has the wrong size");
    check(q.scales.empty() && q.zeros.empty(), f.name, "ggml block formats keep no separate scales");
    blocks_ = q.codes;
  }

  WeightFormatId format() const override { return format_; }
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }
  uint64_t bytes() const override { return blocks_.size(); }

  QuantizedMatrix unpack() const override {
    QuantizedMatrix q = make_quantized_matrix(format_, rows_, cols_);
    q.codes = blocks_;
    return q;
  }

  void decode_row(int64_t r, float* out) const override {
    codec_.decode(blocks_.data() + r * row_bytes_, out, cols_);
  }

  void matmul_f32(Isa isa, const float* x, int64_t n_tokens, float* y, int64_t ldy, int64_t row_begin,
                  int64_t row_end, const int32_t* row_to_output) const override {
    const char* name = weight_format(format_).name;
    check(0 <= row_begin && row_begin <= row_end && row_end <= rows_, name, "matmul_f32: row range outside the matrix");
    check(n_tokens >= 0, name, "matmul_f32: negative token count");
    if (row_begin == row_end || n_tokens == 0) return;
    check(row_to_output != nullptr || ldy >= row_end, name, "matmul_f32: ldy smaller than rows");
    if (!cpu_supports(isa)) fail(name, std::string("matmul_f32: this CPU does not support ") + isa_name(isa));
    auto out = [&](int64_t r) { return row_to_output ? row_to_output[r] : r; };
    if (isa == Isa::Scalar) {
      std::vector<float> w(static_cast<size_t>(cols_));
      for (int64_t r = row_begin; r < row_end; ++r) {
        decode_row(r, w.data());
        for (int64_t t = 0; t < n_tokens; ++t) {
          const float* xt = x + t * cols_;
          float sum = 0.f;
          for (int64_t k = 0; k < cols_; ++k) sum += w[static_cast<size_t>(k)] * xt[k];
          y[t * ldy + out(r)] = sum;
        }
      }
      return;
    }
    // One buffer per thread, reused across calls (the driver calls this from its OpenMP team).
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(kTileRows * cols_));
    float sums[kTileRows];
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kTileRows) {
      const int64_t n = std::min(kTileRows, row_end - r0);
      for (int64_t j = 0; j < n; ++j) decode_row(r0 + j, tile.data() + j * cols_);
      for (int64_t t = 0; t < n_tokens; ++t) {
        gemv_f32(isa, tile.data(), x + t * cols_, n, cols_, sums);
        for (int64_t j = 0; j < n; ++j) y[t * ldy + out(r0 + j)] = sums[j];
      }
    }
  }

 private:
  WeightFormatId format_;
  const GgmlBlockCodec& codec_;
  int64_t rows_, cols_;
  int64_t row_bytes_ = 0;       // bytes of one row's blocks
  std::vector<uint8_t> blocks_;  // [rows][row_bytes_], the GGUF tensor's bytes
};

}  // namespace

std::unique_ptr<PackedMatrix> pack_ggml_matrix(const QuantizedMatrix& q) {
  return std::make_unique<PackedGgmlMatrix>(q);
}

}  // namespace mpq

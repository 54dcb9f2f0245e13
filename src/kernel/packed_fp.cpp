// Floating-point packed formats (bf16, f16, fp8_e4m3_channel, fp8_e4m3_b128, nvfp4, mxfp4): the
// packer, the exact unpacker, the scalar reference product and the dispatch to the SIMD paths
// (kernel/packed_fp_avx512.cpp, kernel/packed_fp_avx2.cpp).
//
// Packed layout, the same for every ISA
// -------------------------------------
// Rows are cut into blocks of 16 consecutive rows (kFpBlockRows); the last block is padded with
// zero codes and zero scales. Inside a block the codes are stored column by column, the 16 rows
// of one column side by side:
//
//   bf16, f16   block b = [cols][16] uint16, little-endian: row 16b+j, column k at element k*16+j
//   E4M3        block b = [cols][16] uint8:                 row 16b+j, column k at byte k*16+j
//   E2M1        block b = [ceil(cols/2)][16] uint8: byte p*16+j holds row 16b+j's column 2p in its
//               low nibble and column 2p+1 in its high nibble (0 past the last column)
//   scales      [blocks][groups][16] fp32: group g of row 16b+j at (b*groups + g)*16 + j
//               fp8:   the stored f32 scale
//               mxfp4: the E8M0 byte decoded, 2^(e-127) (0xFF: NaN)
//               nvfp4: e4m3(group scale) / tensor_scale, folded once here in the order
//                      QuantizedMatrix::params() uses, so the product is e2m1 * scale exactly
//
// Why column-major blocks of 16 rows: one load of a column gives the weights of 16 rows for the
// same input column, one row per lane. The kernels multiply it by the broadcast activation
// x[t][k] and accumulate 16 outputs per vector, so there is no horizontal sum, a decoded column
// serves up to 8 tokens from registers, and the per-row scales of a group are one vector load.
// Why two E2M1 columns per byte instead of two rows: a 16-byte load widened to 16 dword lanes
// (vpmovzxbd) gives one byte per row; the table permute (vpermps) reads only the low 4 bits of
// each lane, so the byte itself indexes column 2p and the byte shifted right by 4 column 2p+1.
// The cost of the blocks: up to 15 padding rows per matrix.
//
// Exact unpacking: fp8 scales are kept bit for bit; E8M0 bytes come back through
// f32_to_e8m0_floor (exact on powers of two, NaN -> 0xFF). The nvfp4 fold e4m3 / tensor_scale is
// inverted with the table of all 256 E4M3 bytes folded by the same tensor scale; when a byte of
// this matrix shares its folded value with another byte (the two NaN bytes, or an absurd tensor
// scale that underflows), the stored bytes are kept beside the packed form (and counted in
// bytes()).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "format/dtype.h"
#include "format/fp4.h"
#include "format/fp8.h"
#include "kernel/packed_fp_kernels.h"
#include "kernel/packed_impl.h"
#include "mpq/error.h"

namespace mpq {
namespace {

FpCodeKind code_kind_of(WeightFormatId id) {
  switch (id) {
    case WeightFormatId::BF16: return FpCodeKind::BF16;
    case WeightFormatId::F16: return FpCodeKind::F16;
    case WeightFormatId::FP8_E4M3_Channel:
    case WeightFormatId::FP8_E4M3_B128: return FpCodeKind::E4M3;
    case WeightFormatId::NVFP4:
    case WeightFormatId::MXFP4: return FpCodeKind::E2M1;
    default: fail(weight_format(id).name, "not a floating-point weight format");
  }
}

// Bytes of one 16-row block's codes.
int64_t block_code_bytes(FpCodeKind kind, int64_t cols) {
  switch (kind) {
    case FpCodeKind::BF16:
    case FpCodeKind::F16: return cols * kFpBlockRows * 2;
    case FpCodeKind::E4M3: return cols * kFpBlockRows;
    case FpCodeKind::E2M1: return (cols + 1) / 2 * kFpBlockRows;
  }
  return 0;
}

bool e4m3_is_nan(uint8_t code) { return (code & 0x7F) == 0x7F; }

// nvfp4's fold of a stored E4M3 group scale, exactly as group_params_from_stored computes it.
float fold_nvfp4_scale(uint8_t stored, float tensor_scale) {
  return e4m3_to_f32(stored) / tensor_scale;
}

// The 256 E4M3 bytes folded by one tensor scale, and which of them can be recovered from their
// folded value (no other byte folds to the same fp32 bits).
struct Nvfp4FoldTable {
  uint32_t folded_bits[256];
  bool invertible[256];

  explicit Nvfp4FoldTable(float tensor_scale) {
    for (int c = 0; c < 256; ++c) {
      folded_bits[c] = std::bit_cast<uint32_t>(fold_nvfp4_scale(static_cast<uint8_t>(c), tensor_scale));
    }
    for (int c = 0; c < 256; ++c) {
      invertible[c] = true;
      for (int d = 0; d < 256; ++d) {
        if (d != c && folded_bits[d] == folded_bits[c]) invertible[c] = false;
      }
    }
  }

  uint8_t invert(float folded) const {
    const uint32_t bits = std::bit_cast<uint32_t>(folded);
    for (int c = 0; c < 256; ++c) {
      if (invertible[c] && folded_bits[c] == bits) return static_cast<uint8_t>(c);
    }
    fail("nvfp4", "packed group scale has no E4M3 inverse");  // unreachable for packed data
  }
};

class PackedFpMatrix final : public PackedMatrix {
 public:
  explicit PackedFpMatrix(const QuantizedMatrix& q);

  WeightFormatId format() const override { return format_; }
  int64_t rows() const override { return view_.rows; }
  int64_t cols() const override { return view_.cols; }
  uint64_t bytes() const override {
    return codes_.size() + scales_.size() * sizeof(float) + stored_nvfp4_scales_.size();
  }
  QuantizedMatrix unpack() const override;
  // Decoded weights of row r (the scalar reference decode), into `out` [cols].
  void decode_row(int64_t r, float* out) const override;
  void matmul_f32(Isa isa, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                  int64_t row_begin, int64_t row_end,
                  const int32_t* row_to_output) const override;

 private:
  // Code of row r, column k, read from the packed layout.
  uint16_t packed_code(int64_t r, int64_t k) const;
  void matmul_scalar(const FpMatmulCall& call) const;

  WeightFormatId format_;
  float tensor_scale_ = 1.f;      // nvfp4's divisor, kept for unpack()
  std::vector<uint8_t> codes_;    // see the layout at the top of the file
  std::vector<float> scales_;     // see the layout at the top of the file
  std::vector<uint8_t> stored_nvfp4_scales_;  // [rows][groups] E4M3 bytes, only when the fold
                                              // cannot be inverted (usually empty)
  PackedFpView view_;             // points into codes_ / scales_
};

PackedFpMatrix::PackedFpMatrix(const QuantizedMatrix& q) : format_(q.format) {
  const WeightFormatTraits& f = q.traits();
  const FpCodeKind kind = code_kind_of(q.format);
  check(q.rows > 0 && q.cols > 0, f.name, "cannot pack an empty matrix");
  check(q.groups == groups_per_row(f, q.cols), f.name, "group count does not match the format");
  check(q.codes.size() == static_cast<size_t>(q.rows * q.cols * q.code_bytes()), f.name,
        "code array has the wrong size");
  check(q.scales.size() == static_cast<size_t>(q.rows * q.groups * q.scale_bytes()), f.name,
        "scale array has the wrong size");
  check(q.zeros.empty(), f.name, "floating-point formats have no zero points");
  if (kind == FpCodeKind::E2M1) {
    for (uint8_t c : q.codes) check(c < 16, f.name, "E2M1 code above 15 (one code per byte)");
  }
  tensor_scale_ = q.tensor_scale;

  const int64_t blocks = (q.rows + kFpBlockRows - 1) / kFpBlockRows;
  view_.kind = kind;
  view_.rows = q.rows;
  view_.cols = q.cols;
  view_.groups = q.groups;
  view_.group_cols = q.groups == 0 ? 0 : (f.group_size == 0 ? q.cols : f.group_size);
  view_.block_code_bytes = block_code_bytes(kind, q.cols);

  // Codes, interleaved by blocks of 16 rows (padding rows stay 0).
  codes_.assign(static_cast<size_t>(blocks * view_.block_code_bytes), 0);
  for (int64_t r = 0; r < q.rows; ++r) {
    uint8_t* block = codes_.data() + (r / kFpBlockRows) * view_.block_code_bytes;
    const int64_t j = r % kFpBlockRows;
    for (int64_t k = 0; k < q.cols; ++k) {
      const uint16_t c = q.code(r, k);
      switch (kind) {
        case FpCodeKind::BF16:
        case FpCodeKind::F16:
          block[2 * (k * kFpBlockRows + j)] = static_cast<uint8_t>(c & 0xFF);
          block[2 * (k * kFpBlockRows + j) + 1] = static_cast<uint8_t>(c >> 8);
          break;
        case FpCodeKind::E4M3:
          block[k * kFpBlockRows + j] = static_cast<uint8_t>(c);
          if (e4m3_is_nan(static_cast<uint8_t>(c))) view_.e4m3_has_nan = true;
          break;
        case FpCodeKind::E2M1:
          block[(k / 2) * kFpBlockRows + j] |= static_cast<uint8_t>(c << (4 * (k % 2)));
          break;
      }
    }
  }

  // Scales, decoded to fp32 and interleaved like the codes (padding rows get 0).
  if (q.groups > 0) {
    scales_.assign(static_cast<size_t>(blocks * q.groups * kFpBlockRows), 0.f);
    bool keep_stored = false;
    if (f.has_tensor_scale) {
      const Nvfp4FoldTable table(q.tensor_scale);
      for (uint8_t s : q.scales) keep_stored = keep_stored || !table.invertible[s];
      if (keep_stored) stored_nvfp4_scales_ = q.scales;
    }
    for (int64_t r = 0; r < q.rows; ++r) {
      for (int64_t g = 0; g < q.groups; ++g) {
        const int64_t b = r / kFpBlockRows, j = r % kFpBlockRows;
        scales_[(b * q.groups + g) * kFpBlockRows + j] = q.params(r, g).scale;
      }
    }
  }
  view_.codes = codes_.data();
  view_.scales = scales_.empty() ? nullptr : scales_.data();
}

uint16_t PackedFpMatrix::packed_code(int64_t r, int64_t k) const {
  const uint8_t* block = codes_.data() + (r / kFpBlockRows) * view_.block_code_bytes;
  const int64_t j = r % kFpBlockRows;
  switch (view_.kind) {
    case FpCodeKind::BF16:
    case FpCodeKind::F16:
      return static_cast<uint16_t>(block[2 * (k * kFpBlockRows + j)] |
                                   (block[2 * (k * kFpBlockRows + j) + 1] << 8));
    case FpCodeKind::E4M3: return block[k * kFpBlockRows + j];
    case FpCodeKind::E2M1: return (block[(k / 2) * kFpBlockRows + j] >> (4 * (k % 2))) & 0x0F;
  }
  return 0;
}

QuantizedMatrix PackedFpMatrix::unpack() const {
  QuantizedMatrix q = make_quantized_matrix(format_, view_.rows, view_.cols);
  q.tensor_scale = tensor_scale_;
  for (int64_t r = 0; r < view_.rows; ++r) {
    for (int64_t k = 0; k < view_.cols; ++k) q.set_code(r, k, packed_code(r, k));
  }
  if (view_.groups == 0) return q;
  const WeightFormatTraits& f = q.traits();
  if (!stored_nvfp4_scales_.empty()) {
    q.scales = stored_nvfp4_scales_;
    return q;
  }
  std::unique_ptr<Nvfp4FoldTable> fold;
  if (f.has_tensor_scale) fold = std::make_unique<Nvfp4FoldTable>(tensor_scale_);
  for (int64_t r = 0; r < view_.rows; ++r) {
    for (int64_t g = 0; g < view_.groups; ++g) {
      const int64_t b = r / kFpBlockRows, j = r % kFpBlockRows;
      const float scale = scales_[(b * view_.groups + g) * kFpBlockRows + j];
      GroupParams p;
      switch (f.scale_type) {
        case ScaleType::F32: p.scale_bits = std::bit_cast<uint32_t>(scale); break;
        case ScaleType::E8M0: p.scale_bits = f32_to_e8m0_floor(scale); break;
        case ScaleType::E4M3: p.scale_bits = fold->invert(scale); break;
        default: fail(f.name, "unexpected scale type");
      }
      q.set_params(r, g, p);
    }
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// Scalar reference

void PackedFpMatrix::decode_row(int64_t r, float* out) const {
  const int64_t b = r / kFpBlockRows, j = r % kFpBlockRows;
  for (int64_t k = 0; k < view_.cols; ++k) {
    const uint16_t c = packed_code(r, k);
    const float scale =
        view_.groups == 0 ? 1.f : scales_[(b * view_.groups + k / view_.group_cols) * kFpBlockRows + j];
    switch (view_.kind) {
      case FpCodeKind::BF16: out[k] = bf16_to_f32(c); break;
      case FpCodeKind::F16: out[k] = f16_to_f32(c); break;
      case FpCodeKind::E4M3: out[k] = e4m3_to_f32(static_cast<uint8_t>(c)) * scale; break;
      case FpCodeKind::E2M1: out[k] = e2m1_to_f32(static_cast<uint8_t>(c)) * scale; break;
    }
  }
}

void PackedFpMatrix::matmul_scalar(const FpMatmulCall& call) const {
  std::vector<float> w(static_cast<size_t>(view_.cols));
  for (int64_t r = call.row_begin; r < call.row_end; ++r) {
    decode_row(r, w.data());
    const int64_t out = call.row_to_output ? call.row_to_output[r] : r;
    for (int64_t t = 0; t < call.n_tokens; ++t) {
      const float* x = call.x + t * view_.cols;
      float sum = 0.f;
      for (int64_t k = 0; k < view_.cols; ++k) sum += w[k] * x[k];
      call.y[t * call.ldy + out] = sum;
    }
  }
}

void PackedFpMatrix::matmul_f32(Isa isa, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                                int64_t row_begin, int64_t row_end,
                                const int32_t* row_to_output) const {
  const char* name = weight_format(format_).name;
  check(0 <= row_begin && row_begin <= row_end && row_end <= view_.rows, name,
        "matmul_f32: row range outside the matrix");
  check(n_tokens >= 0, name, "matmul_f32: negative token count");
  if (row_begin == row_end || n_tokens == 0) return;
  check(row_to_output != nullptr || ldy >= row_end, name, "matmul_f32: ldy smaller than rows");
  const FpMatmulCall call{x, n_tokens, y, ldy, row_begin, row_end, row_to_output};
  switch (isa) {
    case Isa::Avx512:
      if (cpu_supports(Isa::Avx512)) return packed_fp_matmul_avx512(view_, call);
      break;
    case Isa::Avx2:
      // Every AVX2 CPU has F16C in practice; check it anyway rather than fault.
      if (cpu_supports(Isa::Avx2) && cpu_has_f16c()) {
        return packed_fp_matmul_avx2(view_, call);
      }
      if (cpu_supports(Isa::Avx2)) return matmul_scalar(call);
      break;
    case Isa::Scalar: return matmul_scalar(call);
  }
  fail(name, std::string("matmul_f32: this CPU does not support ") + isa_name(isa));
}

}  // namespace

std::unique_ptr<PackedMatrix> pack_fp_matrix(const QuantizedMatrix& q) {
  return std::make_unique<PackedFpMatrix>(q);
}

}  // namespace mpq

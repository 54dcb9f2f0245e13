// Internal to src/kernel/packed_fp*.cpp: the view of a packed floating-point matrix that the SIMD
// kernels read, and the per-ISA entry points. The memory layout itself is documented where it
// is built, at the top of kernel/packed_fp.cpp.
#pragma once

#include <cstdint>

namespace mpq {

// Rows per interleaved block: one AVX-512 vector (two AVX2 vectors) holds one column of a block.
constexpr int64_t kFpBlockRows = 16;

// What one code of the packed matrix is.
enum class FpCodeKind : uint8_t {
  BF16,  // 16-bit bfloat16 pattern, no scale
  F16,   // 16-bit IEEE half pattern, no scale
  E4M3,  // one byte per value, fp32 scale per group
  E2M1,  // one nibble per value (two columns per byte), fp32 scale per group
};

// Read-only view of a packed matrix (see kernel/packed_fp.cpp for the layout).
struct PackedFpView {
  FpCodeKind kind = FpCodeKind::BF16;
  bool e4m3_has_nan = false;     // some E4M3 code is 0x7F/0xFF: kernels must patch NaN lanes
  int64_t rows = 0;              // logical rows (the last block may be padded past them)
  int64_t cols = 0;              // values per row
  int64_t groups = 0;            // scale groups per row (0: no scales)
  int64_t group_cols = 0;        // columns per scale group (the last one may be shorter)
  int64_t block_code_bytes = 0;  // bytes of one 16-row block's codes
  const uint8_t* codes = nullptr;  // [blocks][block_code_bytes]
  const float* scales = nullptr;   // [blocks][groups][16] (nullptr without scales)
};

// One call of matmul_f32 (see PackedMatrix::matmul_f32 for the meaning).
struct FpMatmulCall {
  const float* x = nullptr;  // [n_tokens, cols]
  int64_t n_tokens = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t row_begin = 0;
  int64_t row_end = 0;
  const int32_t* row_to_output = nullptr;
};

// The SIMD paths (kernel/packed_fp_avx512.cpp, kernel/packed_fp_avx2.cpp). The caller checked
// the CPU: AVX-512 F+BW, or AVX2+FMA+F16C.
void packed_fp_matmul_avx512(const PackedFpView& m, const FpMatmulCall& call);
void packed_fp_matmul_avx2(const PackedFpView& m, const FpMatmulCall& call);

// Stores one token's results of a 16-row block: y[token * ldy + out(r)] = values[r - 16 * block]
// for the rows of the block inside [row_begin, row_end). Used for partial blocks and scatters.
inline void store_block_rows(const FpMatmulCall& call, int64_t block, int64_t token,
                             const float* values) {
  const int64_t first = block * kFpBlockRows;
  const int64_t begin = first > call.row_begin ? first : call.row_begin;
  const int64_t end = first + kFpBlockRows < call.row_end ? first + kFpBlockRows : call.row_end;
  float* y_token = call.y + token * call.ldy;
  for (int64_t r = begin; r < end; ++r) {
    y_token[call.row_to_output ? call.row_to_output[r] : r] = values[r - first];
  }
}

}  // namespace mpq

// mpq's mxfp4 and nvfp4 weight formats in ggml's MXFP4 / NVFP4 block layouts.
//
// They are the same formats, not new ones, so they have no rows of their own in the format
// table; a GGUF writer or reader converts with these functions (exact, tested).
//
//   mxfp4  ours: E2M1 codes, one E8M0 scale per 32 values of a row (OCP MX), value =
//          e2m1 · 2^(e − 127). ggml's MXFP4 block (gguf_blocks.h BlockMXFP4) holds the same byte
//          e and the same codes, values identical bit for bit for every e < 0xFF (ggml computes
//          the product as doubled level times half scale, both exact). Differences: the codes are
//          nibble-packed (value i of a block in the low nibble of qs[i] for i < 16, the high
//          nibble of qs[i − 16] above); ggml has no NaN scale (0xFF: ours NaN, ggml 2^127 times
//          doubled levels), so 0xFF is refused both ways; a negative-zero code (8) decodes to −0
//          here and +0 in ggml. Rows must be whole blocks (cols % 32 == 0); ours allow a short
//          last group.
//   nvfp4  ours: E2M1 codes, one E4M3 scale per 16 values, and an fp32 tensor scale T stored as
//          a divisor (compressed-tensors' weight_global_scale): value = e2m1 · (e4m3(s) / T).
//          ggml's NVFP4 block (BlockNVFP4, 64 values = 4 groups of 16) holds the scale bytes
//          (read without their sign bit, 0x7F as 0) and the codes; the tensor factor is a separate
//          one-element GGUF tensor "<weight name>.scale" that llama.cpp multiplies the product by
//          (a multiplier: ModelOpt's weight_scale_2 = 1 / T). So ggml's value is
//          (e2m1 · e4m3(s)) · (1/T), computed after the dot product: equal to ours exactly when
//          T = 1 (llama-quantize's own NVFP4 has no tensor factor), otherwise to within the
//          rounding of 1/T and of the division (about 2^-23 relative). Rows: cols % 64 == 0.
//          ggml's scale bytes 0x7F and 0xFF (NaN in E4M3) decode as 0 and 480 in ggml: 0x7F comes
//          in as scale 0 (0x00), 0xFF is refused; bytes with the sign bit set come in as their
//          magnitude. Our bytes with the sign bit or NaN are refused going out.
#pragma once

#include <cstdint>
#include <vector>

#include "format/weight_format.h"

namespace mpq {

// mxfp4 (q.format == MXFP4, cols % 32 == 0) -> ggml MXFP4 blocks, rows · cols/32 · 17 bytes.
std::vector<uint8_t> mxfp4_to_ggml(const QuantizedMatrix& q);
// ggml MXFP4 blocks of a [rows, cols] tensor -> mxfp4. Throws on a 0xFF scale.
QuantizedMatrix mxfp4_from_ggml(const uint8_t* blocks, int64_t rows, int64_t cols);

// ggml's type id of NVFP4 blocks (64 values in 36 bytes), which mpq writes but reads only with
// its "<name>.scale" tensor.
inline constexpr uint32_t kGgmlNvfp4Type = 40;

// An nvfp4 matrix as llama.cpp holds it: the blocks and the tensor factor (the "<name>.scale"
// tensor; 1 when the matrix's tensor scale is 1, and then a writer may omit the tensor).
struct GgmlNvfp4 {
  std::vector<uint8_t> blocks;  // rows · cols/64 · 36 bytes
  float scale = 1.f;            // 1 / tensor_scale
};
// nvfp4 (q.format == NVFP4, cols % 64 == 0) -> ggml NVFP4.
GgmlNvfp4 nvfp4_to_ggml(const QuantizedMatrix& q);
// ggml NVFP4 blocks of a [rows, cols] tensor and its factor (1 when the file has none) -> nvfp4
// with tensor_scale = 1 / scale. Throws on a 0xFF scale byte or a factor that is not positive
// and finite.
QuantizedMatrix nvfp4_from_ggml(const uint8_t* blocks, int64_t rows, int64_t cols, float scale = 1.f);

}  // namespace mpq

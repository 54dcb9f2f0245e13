// mxfp4 / nvfp4 <-> ggml's MXFP4 / NVFP4 blocks (what is exact and what is refused: ggml_fp4.h).
#include "format/ggml_fp4.h"

#include <cmath>
#include <string>

#include "format/ggml_codec.h"
#include "format/gguf_blocks.h"
#include "mpq/error.h"

namespace mpq {
namespace {

constexpr int kMxValues = gguf::kMxfp4BlockValues;  // 32
constexpr int kMxBytes = sizeof(gguf::BlockMXFP4);   // 17
constexpr int kNvValues = gguf::kNvfp4BlockValues;  // 64
constexpr int kNvBytes = sizeof(gguf::BlockNVFP4);   // 36

void check_shape(const char* what, int64_t rows, int64_t cols, int block) {
  check(rows > 0 && cols > 0 && cols % block == 0, what,
        "a [" + std::to_string(rows) + ", " + std::to_string(cols) + "] matrix is not whole ggml blocks of " +
            std::to_string(block) + " values per row");
}

}  // namespace

std::vector<uint8_t> mxfp4_to_ggml(const QuantizedMatrix& q) {
  check(q.format == WeightFormatId::MXFP4, "mxfp4_to_ggml", "the matrix is not mxfp4");
  check_shape("mxfp4_to_ggml", q.rows, q.cols, kMxValues);
  const int64_t blocks = q.cols / kMxValues;
  std::vector<uint8_t> out(static_cast<size_t>(q.rows * blocks * kMxBytes), 0);
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t g = 0; g < blocks; ++g) {
      uint8_t* block = out.data() + (r * blocks + g) * kMxBytes;
      const uint8_t e = q.scales[static_cast<size_t>(r * q.groups + g)];
      check(e != 0xFF, "mxfp4_to_ggml", "row " + std::to_string(r) + " has a NaN scale (E8M0 0xFF), which ggml cannot hold");
      block[0] = e;
      for (int i = 0; i < kMxValues; ++i) ggml::set_nibble32(block + 1, i, q.code(r, g * kMxValues + i));
    }
  }
  return out;
}

QuantizedMatrix mxfp4_from_ggml(const uint8_t* blocks, int64_t rows, int64_t cols) {
  check_shape("mxfp4_from_ggml", rows, cols, kMxValues);
  QuantizedMatrix q = make_quantized_matrix(WeightFormatId::MXFP4, rows, cols);
  const int64_t per_row = cols / kMxValues;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < per_row; ++g) {
      const uint8_t* block = blocks + (r * per_row + g) * kMxBytes;
      check(block[0] != 0xFF, "mxfp4_from_ggml",
            "block " + std::to_string(g) + " of row " + std::to_string(r) + " has scale 0xFF (NaN in OCP MX)");
      q.scales[static_cast<size_t>(r * q.groups + g)] = block[0];
      for (int i = 0; i < kMxValues; ++i) q.set_code(r, g * kMxValues + i, static_cast<uint16_t>(ggml::get_nibble32(block + 1, i)));
    }
  }
  return q;
}

GgmlNvfp4 nvfp4_to_ggml(const QuantizedMatrix& q) {
  check(q.format == WeightFormatId::NVFP4, "nvfp4_to_ggml", "the matrix is not nvfp4");
  check_shape("nvfp4_to_ggml", q.rows, q.cols, kNvValues);
  check(std::isfinite(q.tensor_scale) && q.tensor_scale > 0.f, "nvfp4_to_ggml", "tensor scale must be positive and finite");
  const int64_t blocks = q.cols / kNvValues;
  GgmlNvfp4 out;
  out.scale = 1.f / q.tensor_scale;
  out.blocks.assign(static_cast<size_t>(q.rows * blocks * kNvBytes), 0);
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* block = out.blocks.data() + (r * blocks + b) * kNvBytes;
      for (int s = 0; s < 4; ++s) {
        const int64_t group = b * 4 + s;  // our groups of 16
        const uint8_t stored = q.scales[static_cast<size_t>(r * q.groups + group)];
        check(stored < 0x7F, "nvfp4_to_ggml",
              "row " + std::to_string(r) + " has a negative or NaN E4M3 group scale, which ggml reads differently");
        block[s] = stored;
        uint8_t* qs = block + 4 + 8 * s;
        for (int i = 0; i < 16; ++i) {
          const auto code = static_cast<uint8_t>(q.code(r, group * 16 + i) & 0x0F);
          uint8_t& byte = qs[i % 8];
          byte = static_cast<uint8_t>(i < 8 ? ((byte & 0xF0) | code) : ((byte & 0x0F) | (code << 4)));
        }
      }
    }
  }
  return out;
}

QuantizedMatrix nvfp4_from_ggml(const uint8_t* blocks, int64_t rows, int64_t cols, float scale) {
  check_shape("nvfp4_from_ggml", rows, cols, kNvValues);
  check(std::isfinite(scale) && scale > 0.f, "nvfp4_from_ggml", "the tensor factor must be positive and finite");
  QuantizedMatrix q = make_quantized_matrix(WeightFormatId::NVFP4, rows, cols);
  q.tensor_scale = 1.f / scale;
  const int64_t per_row = cols / kNvValues;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < per_row; ++b) {
      const uint8_t* block = blocks + (r * per_row + b) * kNvBytes;
      for (int s = 0; s < 4; ++s) {
        const int64_t group = b * 4 + s;
        uint8_t stored = block[s];
        check(stored != 0xFF, "nvfp4_from_ggml",
              "block " + std::to_string(b) + " of row " + std::to_string(r) + " has scale byte 0xFF (480 in ggml, not an E4M3 value)");
        stored = stored == 0x7F ? 0x00 : static_cast<uint8_t>(stored & 0x7F);  // ggml's reading
        q.scales[static_cast<size_t>(r * q.groups + group)] = stored;
        const uint8_t* qs = block + 4 + 8 * s;
        for (int i = 0; i < 16; ++i) {
          const int code = i < 8 ? (qs[i] & 0x0F) : (qs[i - 8] >> 4);
          q.set_code(r, group * 16 + i, static_cast<uint16_t>(code));
        }
      }
    }
  }
  return q;
}

}  // namespace mpq

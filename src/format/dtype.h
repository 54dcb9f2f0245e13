// Storage types of tensors as they are found in model files (safetensors, GGUF, llama2.c), with
// one traits row per type: block size, bytes per block and the scalar reference decoder to fp32.
// These are *input* encodings. The weight formats mpq quantizes to live in format/weight_format.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mpq {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  F64,
  I8,
  I16,
  I32,
  I64,
  // GGUF block-quantized types (ggml). Layouts are documented in format/gguf_blocks.h.
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q8_0,
  Q2_K,
  Q3_K,
  Q4_K,
  Q5_K,
  Q6_K,
  IQ4_NL,
  IQ4_XS,
  MXFP4,
  kCount
};

// Decodes `n_values` values (a whole number of blocks) starting at `src` into `dst`.
using ToF32Fn = void (*)(const uint8_t* src, float* dst, int64_t n_values);

struct DTypeTraits {
  DType type;            // the row's own type
  const char* name;      // stable name: "F32", "BF16", "Q4_K", ...
  int64_t block_size;    // values per block (1 for plain scalar types)
  int64_t block_bytes;   // bytes per block
  bool is_float_input;   // true when the type can hold model weights (not the integer types)
  ToF32Fn to_f32;        // scalar reference decoder; nullptr for integer types
};

const DTypeTraits& dtype_traits(DType type);
const char* dtype_name(DType type);
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes taken by `n_values` values of `type`; nullopt when `n_values` is not a whole number of
// blocks or the size overflows.
std::optional<uint64_t> dtype_nbytes(DType type, int64_t n_values);

// Decodes a whole tensor of `type` to fp32. Throws mpq::Error (naming `where`) when the type
// cannot be converted or `n_values` is not a whole number of blocks.
void dequantize_to_f32(DType type, const uint8_t* src, float* dst, int64_t n_values,
                       const std::string& where);

// IEEE half and bfloat16 <-> fp32 (scalar reference, exact; fp32 -> half rounds to nearest even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

}  // namespace mpq

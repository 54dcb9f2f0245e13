// Quantized weights on disk, in the compressed-tensors conventions that vLLM reads.
//
// Per Linear module "<m>" (e.g. model.layers.0.self_attn.q_proj), by format family:
//   int (asymmetric) int4/int3/int2_gN   "pack-quantized"
//     <m>.weight_packed      I32 [rows, ceil(cols / (32/bits))]  codes q + 2^(bits-1), value j of
//                            a word in bits [bits*j, bits*(j+1)), first column in the low bits;
//                            32/bits values per word (10 for int3: the top 2 bits are unused)
//     <m>.weight_scale       F16 [rows, groups]
//     <m>.weight_zero_point  I32 [ceil(rows / (32/bits)), groups]  zero + 2^(bits-1), packed the
//                            same way but along the *rows*
//     <m>.weight_shape       I32 [2] = {rows, cols}
//   int4sym_g128                         "pack-quantized", as above without weight_zero_point
//   int8_channel                         "int-quantized": <m>.weight I8 [rows, cols] (q),
//                                        <m>.weight_scale F16 [rows, 1]
//   fp8_e4m3_channel / fp8_e4m3_b128     "float-quantized": <m>.weight F8_E4M3 [rows, cols],
//                                        <m>.weight_scale F32 [rows, groups] (1 per channel)
//   nvfp4                                "nvfp4-pack-quantized": <m>.weight_packed U8
//                                        [rows, ceil(cols/2)] (two E2M1 codes per byte, first
//                                        in the low nibble; an odd last column pads with 0),
//                                        <m>.weight_scale F8_E4M3 [rows, groups],
//                                        <m>.weight_global_scale F32 [1] (a divisor)
//   mxfp4                                "mxfp4-pack-quantized": weight_packed as nvfp4,
//                                        <m>.weight_scale U8 [rows, groups] (E8M0 exponents)
//   bf16 / f16                           <m>.weight BF16/F16 [rows, cols], unquantized
// docs/FORMAT.md has the full description, including config.json's quantization_config.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/weight_format.h"

namespace mpq {

// One tensor to write (or as read): safetensors dtype name, shape, bytes.
struct StoredTensor {
  std::string name;            // "<module>.weight_packed", ...
  std::string dtype;           // safetensors dtype name: "I32", "F16", "U8", "F8_E4M3", ...
  std::vector<int64_t> shape;  // outermost first
  std::vector<uint8_t> bytes;  // little endian
};

// The stored tensors of one quantized Linear module.
std::vector<StoredTensor> encode_module(const std::string& module, const QuantizedMatrix& q);

// Reads a module back. `find(name)` returns the stored tensor or nullptr. Checks every tensor's
// presence, dtype and shape against `format`, rows and cols; throws mpq::Error naming `where`
// (the file) and the tensor otherwise.
QuantizedMatrix decode_module(
    const std::string& module, WeightFormatId format, int64_t rows, int64_t cols,
    const std::function<const StoredTensor*(const std::string&)>& find, const std::string& where);

// compressed-tensors "format" of a weight format ("pack-quantized", ...; "dense" for bf16/f16).
const char* compressed_tensors_format(WeightFormatId format);
// The "weights" quantization args of a config group for `format` (null JSON for bf16/f16).
nlohmann::json compressed_tensors_weight_args(WeightFormatId format);

}  // namespace mpq

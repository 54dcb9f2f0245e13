// Quantized weights on disk in the compressed-tensors conventions (compressed-tensors 0.20,
// read from the library's own code; docs/INTEROP.md has the details and the source references),
// which Hugging Face transformers and vLLM load.
//
// Per Linear module "<m>" (e.g. model.layers.0.self_attn.q_proj), by format family (written by
// mpq in layout 2; layout 1 is what mpq wrote before, still read):
//   int, any bits (int8_channel, int4/3/2_gN, int4sym_gN)   "pack-quantized"
//     <m>.weight_packed      I32 [rows, ceil(cols * bits / 32)]: codes q + 2^(bits-1) packed
//                            DENSELY along the row: value i takes bits [i*bits, (i+1)*bits) of
//                            the row's little-endian bit stream, so a 3-bit value may straddle
//                            two words (layout 1 put 32/bits values per word: the same for 2, 4
//                            and 8 bits, 10 per word for 3 bits; and int8 as "int-quantized" I8)
//     <m>.weight_scale       F16 [rows, groups]  ([rows, 1] per channel)
//     <m>.weight_zero_point  I32 [ceil(rows * bits / 32), groups]  asymmetric only: zero +
//                            2^(bits-1), each group's column of zero points packed densely along
//                            the ROWS
//     <m>.weight_shape       I64 [2] = {rows, cols}   (layout 1: I32)
//   fp8_e4m3_channel / fp8_e4m3_b128     "float-quantized": <m>.weight F8_E4M3 [rows, cols],
//                                        <m>.weight_scale F32 [rows, groups]
//   nvfp4                                "nvfp4-pack-quantized": <m>.weight_packed U8
//                                        [rows, cols/2] (two E2M1 codes per byte, even column in
//                                        the low nibble), <m>.weight_scale F8_E4M3 [rows, groups],
//                                        <m>.weight_global_scale F32 [1] (a divisor)
//   mxfp4                                "mxfp4-pack-quantized": weight_packed as nvfp4,
//                                        <m>.weight_scale U8 [rows, groups] (E8M0 exponents)
//   bf16 / f16                           <m>.weight BF16/F16 [rows, cols], unquantized
// A format compressed-tensors cannot express for a tensor (a group that does not divide the row,
// a ggml block format) has no form here (ct_expressible says why).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
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

using FindTensor = std::function<const StoredTensor*(const std::string&)>;

// The layout mpq writes now (see above), recorded as quantization_config.mpq.layout.
inline constexpr int kCtLayout = 2;

// True when compressed-tensors (and so transformers and vLLM) can hold `format` for a
// [rows, cols] tensor: the format has a compressed-tensors scheme and its groups divide the row
// (fp4: also an even row). `why` (optional) says what is missing otherwise.
bool ct_expressible(WeightFormatId format, int64_t rows, int64_t cols, std::string* why = nullptr);

// The stored tensors of one quantized Linear module (layout kCtLayout). Throws mpq::Error naming
// `module` when the format has no compressed-tensors form.
std::vector<StoredTensor> encode_module(const std::string& module, const QuantizedMatrix& q);

// Reads a module written by mpq (layout 1 or 2). Checks every tensor's presence, dtype and shape
// against `format`, rows and cols; throws mpq::Error naming `where` (the file) and the tensor.
QuantizedMatrix decode_module(const std::string& module, WeightFormatId format, int64_t rows, int64_t cols,
                              const FindTensor& find, const std::string& where, int layout = kCtLayout);

// compressed-tensors "format" of a weight format ("pack-quantized", ...; "dense" for bf16/f16).
const char* compressed_tensors_format(WeightFormatId format);
// The "weights" quantization args of a config group for `format` (null JSON for bf16/f16), as
// the library writes them.
nlohmann::json compressed_tensors_weight_args(WeightFormatId format);

// ---- checkpoints written by other tools (compressed-tensors / llm-compressor)

// A weight scheme as a config group states it.
struct CtScheme {
  std::string format;          // pack-quantized, float-quantized, naive-quantized,
                               // nvfp4-pack-quantized, mxfp4-pack-quantized
  std::string type;            // "int" or "float"
  int num_bits = 0;
  bool symmetric = true;
  std::string strategy;        // channel, group, tensor, tensor_group, block
  int64_t group_size = 0;      // group / tensor_group strategies
  std::vector<int64_t> block;  // block strategy: [rows, cols] of a block
};

// The scheme of config group `group` (its "weights" and "format"; `top_format` when the group has
// none). Throws mpq::Error naming `where` for a scheme mpq cannot read (activation quantization,
// dynamic weights, unknown strategies or formats, a key the library does not define).
CtScheme ct_scheme_from_group(const nlohmann::json& group, const std::string& top_format, const std::string& where);

// The quantization_config of a checkpoint another tool wrote: which scheme each module has.
// Validated strictly: sparsity, transforms (rotations), KV-cache or activation quantization, a
// status other than "compressed", or a key compressed-tensors does not define are refused by
// name, never skipped.
class CtConfig {
 public:
  CtConfig(const nlohmann::json& quantization_config, const std::string& where);
  // The scheme of `module` (e.g. "model.layers.0.mlp.down_proj"); nullopt when the module is
  // ignored or no group targets it. Refuses a module that two groups of different schemes target.
  std::optional<CtScheme> scheme_of(const std::string& module) const;

 private:
  struct Group {
    std::string name;
    CtScheme scheme;
    std::vector<std::string> targets;
  };
  std::vector<Group> groups_;        // in the order of their names (group_0, group_1, ..., group_10)
  std::vector<std::string> ignore_;
  std::string where_;
};

// The table format that stores exactly what `scheme` stores (same bits, grouping, symmetry and
// scale type), when there is one: such modules load as packed quantized weights.
std::optional<WeightFormatId> ct_table_format(const CtScheme& scheme, const FindTensor& find, const std::string& module);

// Decodes a module stored under `scheme` to fp32 [rows, cols]: (q - zero) * scale, e4m3(q) * scale,
// e2m1(q) * (scale / global_scale) computed in fp32, as compressed-tensors' decompress does before
// it casts the weight to the model's dtype (mpq keeps the fp32 values: the f16/bf16 rounding of
// the library is the only difference, a cast of these values). Throws
// mpq::Error naming `where` and the tensor for missing tensors, wrong dtypes or shapes, a group
// size that does not divide the row, a non-finite or negative scale.
std::vector<float> decode_ct_module_f32(const std::string& module, const CtScheme& scheme, int64_t rows, int64_t cols,
                                        const FindTensor& find, const std::string& where);

}  // namespace mpq

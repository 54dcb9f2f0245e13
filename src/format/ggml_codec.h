// ggml's block types as weight formats: the codec every ggml row of the format table points to
// (WeightFormatTraits::ggml, weight_format.h), and small helpers the families share:
// format/ggml_legacy.h (q4_0, q4_1, q5_0, q5_1, q8_0), format/ggml_kquants.h (q2_K .. q6_K),
// format/ggml_iq4.h (iq4_nl, iq4_xs).
//
// Storage. A matrix in a ggml format stores each row as cols / block_values consecutive blocks
// of block_bytes bytes, exactly what a GGUF tensor of that type holds (block layouts:
// format/gguf_blocks.h), so a row must be a whole number of blocks: 32 values for the legacy
// types and iq4_nl, 256 for the k-quants and iq4_xs.
//
// What a codec provides (all scalar references, each working on whole blocks):
//   decode           the gguf_blocks decoder (bit-exact with ggml and gguf-py; the one copy of
//                    each decoder in the project)
//   encode           llama.cpp's quantization without an importance matrix, i.e. what
//                    llama-quantize writes without --imatrix, operation for operation
//   encode_weighted  llama.cpp's importance-weighted search, what llama-quantize writes with
//                    --imatrix; `importance` holds one weight per input column (the imatrix: mean
//                    squared activation). nullptr for a type without one (q8_0).
//   search_weights   the per-value weights w_i the weighted search fits under (ggml builds them
//                    from the importance and the values: imatrix_i · sqrt(σ² + x_i²) with σ² a
//                    mean square of the row, block or super-block, depending on the type), so that
//                    a caller can compare the search's result with encode's on Σ w (x − x̂)²
//   fit_block        GPTQ's step at the first column of a block: the block's scales, computed the
//                    way encode (importance nullptr) or encode_weighted (importance given) computes
//                    them, quantized to their stored form and written into the block's header;
//                    codes set to what the search chose
//   round_value      GPTQ's step per column: value j of the block onto the block's stored grid,
//                    as llama.cpp re-quantizes (round((x + min) / scale), clamped to the codes;
//                    the nearest level up to the rounding of that division); writes the code and
//                    returns the value it decodes to (exactly what `decode` gives). A sub-block
//                    whose stored scale is 0 keeps its code (all its codes decode alike).
// For the k-quants, encode and encode_weighted are fit_block followed by round_value on every
// value (that is how llama.cpp writes them too); the legacy types and the iq4 types keep the
// codes their search chose with the unrounded scale, so their encoders are separate.
#pragma once

#include <cstdint>

namespace mpq {

struct GgmlBlockCodec {
  uint32_t ggml_type;      // ggml_type id (the GGUF tensor type): 8 = Q8_0, 12 = Q4_K, ...
  const char* ggml_name;   // ggml's type name in capitals, as GGUF tools print it: "Q4_K"
  int block_values;        // values per block
  int block_bytes;         // bytes per block
  void (*decode)(const uint8_t* src, float* dst, int64_t n);
  void (*encode)(const float* x, uint8_t* dst, int64_t n);
  void (*encode_weighted)(const float* x, const float* importance, uint8_t* dst, int64_t n);
  void (*search_weights)(const float* x, const float* importance, float* w, int64_t n);
  void (*fit_block)(const float* x, const float* importance, uint8_t* block);
  float (*round_value)(uint8_t* block, int j, float x);
};

namespace ggml {

// fp16 fields of a block (little-endian, possibly unaligned).
uint16_t load_u16(const uint8_t* p);
void store_u16(uint8_t* p, uint16_t v);
float load_f16(const uint8_t* p);
// Stores f32_to_f16(v) (round to nearest even, as ggml's GGML_FP32_TO_FP16).
void store_f16(uint8_t* p, float v);
// v rounded to fp16 and back.
float round_to_f16(float v);

// Legacy 32-value code packing (Q4_0 layout): value i in the low nibble of qs[i] for i < 16,
// in the high nibble of qs[i − 16] for i >= 16. Also the 16-byte groups of iq4_xs.
int get_nibble32(const uint8_t* qs, int i);
void set_nibble32(uint8_t* qs, int i, int code);
// The fifth bit of value i of a Q5_0/Q5_1 block: bit i of the little-endian word at qh.
int get_bit32(const uint8_t* qh, int i);
void set_bit32(uint8_t* qh, int i, int bit);

}  // namespace ggml
}  // namespace mpq

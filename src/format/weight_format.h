// The weight formats mpq quantizes *to*: one traits row per format (name, value type, bits, group
// size, symmetry, scale type, scalar reference codec), the in-memory quantized matrix and the
// per-group primitives every quantizer (RTN, GPTQ, HQQ) is built from.
//
// Two kinds of rows (WeightFormatTraits::storage):
//
// Element formats (Storage::Elements). A weight matrix W is [rows = out_features, cols =
// in_features], row-major. Each row is cut into groups of `group_size` consecutive values along
// the row (the last group of a row is shorter when cols is not a multiple of group_size);
// group_size 0 means one group per row (one scale per output channel). Every group has a
// GroupParams (scale, optional zero point); nvfp4 adds one fp32 scale for the whole tensor. Each
// value is stored as a `bits`-wide code.
//
//   decoded value = scale * (value_of(code) - zero)      value_of: the E4M3/E2M1 grid, or the
//                                                        signed integer the code stands for
//
// ggml block formats (Storage::GgmlBlocks): llama.cpp's own quantization types (q8_0, q4_K,
// iq4_nl, ...), named as ggml names them. Each row of W is stored as cols / block_values blocks
// of block_bytes bytes, byte for byte what a GGUF tensor of that type holds; codes and scales
// live inside the blocks (layouts: format/gguf_blocks.h) and the row's `ggml` codec
// (format/ggml_codec.h) decodes, encodes and fits them. A tensor can take such a format only
// when its rows are whole blocks (format_accepts). mxfp4 and nvfp4 are element formats whose
// values ggml's MXFP4/NVFP4 blocks hold exactly: format/ggml_fp4.h converts.
//
// The family headers (half.h, fp8.h, fp4.h, intq.h; ggml_legacy.h, ggml_kquants.h, ggml_iq4.h)
// hold the scalar reference codecs; the table lives in weight_format.cpp. Adding a format = a
// codec in a family header + one table row + one line in the test table of
// tests/test_weight_format.cpp. Format names are a file-format promise: never rename one.
// docs/FORMAT.md ("Weight formats") describes each format.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mpq {

// ---------------------------------------------------------------------------------------------
// The table

enum class WeightFormatId : uint8_t {
  BF16,              // kept weights, bfloat16
  F16,               // kept weights, IEEE half
  FP8_E4M3_Channel,  // OCP E4M3, one f32 scale per output channel
  FP8_E4M3_B128,     // OCP E4M3, one f32 scale per 128 consecutive values of a row (1x128)
  NVFP4,             // E2M1, groups of 16, E4M3 group scale, fp32 tensor scale
  MXFP4,             // E2M1, groups of 32, E8M0 group scale (OCP MX v1.0)
  Int8_Channel,      // int8 symmetric, one f16 scale per output channel
  Int4_G32,          // int4 asymmetric, f16 scale + int4 zero point per 32 values
  Int4_G64,
  Int4_G128,
  Int3_G32,          // int3 asymmetric (scale + int3 zero point)
  Int3_G64,
  Int3_G128,
  Int2_G32,          // int2 asymmetric (scale + int2 zero point)
  Int2_G64,
  Int2_G128,
  Int4Sym_G128,      // int4 symmetric, f16 scale per 128 values
  // ggml block types (Storage::GgmlBlocks), in ggml's names; layouts in format/gguf_blocks.h
  Q8_0,              // 32 values: fp16 d, int8 codes                          8.5 bits/weight
  Q6_K,              // 256: 16 x int8 sub-block scales, fp16 d, 6-bit codes    6.5625
  Q5_K,              // 256: 8 x 6-bit scales and mins, fp16 d/dmin, 5-bit      5.5
  Q4_K,              // 256: as Q5_K with 4-bit codes                          4.5
  Q3_K,              // 256: 16 x 6-bit scales, fp16 d, 3-bit codes            3.4375
  Q2_K,              // 256: 16 x 4-bit scales and mins, fp16 d/dmin, 2-bit    2.625
  Q5_0,              // 32: fp16 d, 5-bit codes (offset 16)                    5.5
  Q5_1,              // 32: fp16 d and m, 5-bit codes                          6.0
  Q4_0,              // 32: fp16 d, 4-bit codes (offset 8)                     4.5
  Q4_1,              // 32: fp16 d and m, 4-bit codes                          5.0
  IQ4_NL,            // 32: fp16 d, 4-bit indices into 16 non-uniform levels   4.5
  IQ4_XS,            // 256: 8 x 6-bit scales, fp16 d, 4-bit level indices     4.25
  // Appended later (ids are frozen): symmetric int4 in smaller groups, the formats that load in
  // transformers' default path and in vLLM's CPU build alike (docs/INTEROP.md).
  Int4Sym_G32,       // int4 symmetric, f16 scale per 32 values                  4.5
  Int4Sym_G64,       // int4 symmetric, f16 scale per 64 values                  4.25
  kCount
};

// How a row stores a matrix (see the top of this file).
enum class Storage : uint8_t {
  Elements,    // one code per value + GroupParams per group (QuantizedMatrix codes/scales/zeros)
  GgmlBlocks,  // ggml blocks: QuantizedMatrix::codes holds each row's blocks, nothing else
};

// What a code stands for.
enum class ValueKind : uint8_t {
  Half,      // the code is the bf16/f16 bit pattern itself (kept weights; no scale)
  FP8_E4M3,  // OCP FP8 E4M3 (bias 7, max 448, no Inf, S.1111.111 = NaN)
  FP4_E2M1,  // OCP E2M1: magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}, bit 3 = sign
  Int,       // two's-complement integer q in [-2^(bits-1), 2^(bits-1)-1], stored offset-binary
             // as code = q + 2^(bits-1) (the compressed-tensors packing offset)
  GgmlBlock, // codes and scales inside ggml blocks (Storage::GgmlBlocks): see the row's codec
};

// How a group (or tensor) scale is stored.
enum class ScaleType : uint8_t {
  None,  // no scale (kept weights)
  F32,   // IEEE single, 32 bits
  F16,   // IEEE half, 16 bits
  BF16,  // bfloat16, 16 bits
  E4M3,  // OCP FP8 E4M3, 8 bits (positive values only are produced)
  E8M0,  // OCP MX E8M0: 2^(byte - 127), 0xFF = NaN, 8 bits
};

struct WeightFormatTraits;
struct GgmlBlockCodec;  // format/ggml_codec.h

// Quantization parameters of one group, in the form the codec works with.
struct GroupParams {
  float scale = 1.f;        // effective multiplier: decoded = scale * (value_of(code) - zero).
                            // Always exactly what the stored scale decodes to (divided by the
                            // tensor scale for nvfp4), so re-encoding reproduces stored codes.
  uint32_t scale_bits = 0;  // the stored scale, in the format's ScaleType: f32 bit pattern,
                            // f16/bf16 bits, or the E4M3/E8M0 byte; 0 for ScaleType::None
  int32_t zero = 0;         // asymmetric int formats: integer zero point in
                            // [-2^(bits-1), 2^(bits-1)-1] (compressed-tensors' signed form);
                            // 0 for every other format
};

// Desired parameters of one group of `n` values, the group's scale range shrunk by `shrink`
// (1 = plain absmax/min-max; < 1 clips). `tensor_scale` is the matrix's tensor scale (nvfp4) or 1.
using FitGroupFn = GroupParams (*)(const WeightFormatTraits& f, const float* x, int64_t n,
                                   float shrink, float tensor_scale);
// Code of one value under fixed group params (round to nearest, ties to even; saturating).
using EncodeFn = uint16_t (*)(const WeightFormatTraits& f, float x, const GroupParams& p);
// Value of one code under group params.
using DecodeFn = float (*)(const WeightFormatTraits& f, uint16_t code, const GroupParams& p);

struct WeightFormatTraits {
  WeightFormatId id;       // the row's own id (rows are in enum order)
  const char* name;        // frozen name: "int4_g128", "nvfp4", "q4_K", ...
  ValueKind value_kind;    // what a code stands for (GgmlBlock exactly for the ggml rows)
  int bits;                // bits per stored value (code width): 16, 8, 4, 3 or 2; ggml rows:
                           // the width of their codes (q6_K: 6), scales not included
  int group_size;          // values per group along a row; 0 = one group per row (per channel);
                           // ignored when scale_type is None (no groups at all). ggml rows: the
                           // values per block (32 or 256), which a row length must be a multiple of
  bool symmetric;          // true: no zero point; false: one integer zero point per group,
                           // stored with `bits` bits (as compressed-tensors packs it). ggml rows:
                           // false for the types with an offset (q4_1, q5_1, q2_K, q4_K, q5_K)
  ScaleType scale_type;    // how each group's scale is stored (ggml rows: F16, their `d`)
  bool has_tensor_scale;   // one extra fp32 per matrix (nvfp4's global scale)
  FitGroupFn fit;          // scalar reference: group params from values (at a shrink factor)
  EncodeFn encode;         // scalar reference encoder of one value
  DecodeFn decode;         // scalar reference decoder of one code (all three nullptr for ggml rows)
  const char* description; // one line for `mpq formats`
  Storage storage = Storage::Elements;  // how a QuantizedMatrix holds the format
  const GgmlBlockCodec* ggml = nullptr; // ggml rows: the block codec (format/ggml_codec.h)
};

// The row of `id`; throws mpq::Error for an invalid id.
const WeightFormatTraits& weight_format(WeightFormatId id);
// All rows, in enum order.
std::span<const WeightFormatTraits> weight_formats();
// Exact, case-sensitive lookup of a frozen name ("int4_g128", "q4_K").
std::optional<WeightFormatId> weight_format_from_name(std::string_view name);

// The ggml block format whose codec has ggml type id `ggml_type` (GGUF tensor type), if any.
std::optional<WeightFormatId> weight_format_of_ggml_type(uint32_t ggml_type);

// True for the ggml block rows (storage == GgmlBlocks).
inline bool is_ggml_format(const WeightFormatTraits& f) { return f.storage == Storage::GgmlBlocks; }

// Whether a [rows, cols] matrix can be stored in `format`: any shape with rows, cols > 0 for the
// element formats; ggml block formats also need cols to be a multiple of their block (256 for the
// k-quants and iq4_xs, 32 for the others). When it cannot and `reason` is given, *reason says why
// in one line naming the shape and the format. The planner asks this before offering a format to
// a tensor; the quantizers refuse what it refuses.
bool format_accepts(WeightFormatId format, int64_t rows, int64_t cols, std::string* reason = nullptr);
// Throws mpq::Error (naming `where`, the shape and the format) when format_accepts is false.
void require_format_accepts(WeightFormatId format, int64_t rows, int64_t cols, const std::string& where);

// ---------------------------------------------------------------------------------------------
// Bit accounting

// Bits of one stored scale of `type` (0 for None).
int scale_type_bits(ScaleType type);
// Groups in one row of `cols` values: 0 without scales, 1 per channel, ceil(cols/g) otherwise.
// ggml rows: blocks per row, cols / block_values (when format_accepts).
int64_t groups_per_row(const WeightFormatTraits& f, int64_t cols);
// Exact bits of a [rows, cols] matrix: rows*cols*bits + rows*groups*(scale bits + zero-point
// bits) + 32 for a tensor scale. A shorter last group still costs a full scale (and zero point).
// ggml rows: rows * (cols / block_values) * block_bytes * 8, what the GGUF tensor takes; throws
// (as require_format_accepts) for a shape the format cannot hold.
uint64_t storage_bits(WeightFormatId format, int64_t rows, int64_t cols);
// storage_bits / (rows * cols).
double bits_per_weight(WeightFormatId format, int64_t rows, int64_t cols);

// ---------------------------------------------------------------------------------------------
// Scales: conversions between a float and its stored form

// Value of a stored scale (f32/f16/bf16 bits, E4M3/E8M0 byte).
float decode_scale(ScaleType type, uint32_t bits);
// Stored form of a non-negative scale: round to nearest even for F32/F16/BF16/E4M3, saturating at
// the type's largest finite value; E8M0 rounds *down* to a power of two (the OCP MX rule). A
// positive scale that would round to 0 becomes the smallest positive value of the type, so a group
// never gets a zero scale. 0 maps to that smallest value too.
uint32_t encode_scale(ScaleType type, float scale);

// GroupParams whose effective scale is (as close as the scale type allows to) `scale`:
// stores encode_scale(scale * tensor_scale) for formats with a tensor scale (see nvfp4 in fp4.h:
// the tensor scale is a divisor), encode_scale(scale) otherwise, and sets `scale` to what that
// stored value decodes to. HQQ-style optimisers that pick their own scale go through this.
GroupParams group_params_from_scale(const WeightFormatTraits& f, float scale, int32_t zero,
                                    float tensor_scale);
// GroupParams from their stored form (what dequantize uses).
GroupParams group_params_from_stored(const WeightFormatTraits& f, uint32_t scale_bits,
                                     int32_t zero, float tensor_scale);

// ---------------------------------------------------------------------------------------------
// Per-group primitives for quantizers (RTN, GPTQ, HQQ)

// The matrix-wide scale of formats with has_tensor_scale (nvfp4: 448*6 / absmax(w), a divisor,
// as compressed-tensors stores it); 1 for the others. `w` holds all n values of the matrix.
float compute_tensor_scale(const WeightFormatTraits& f, const float* w, int64_t n);

// How fit_group chooses a group's scale.
struct GroupFitOptions {
  bool clip_search = false;  // try `clip_steps` shrink factors and keep the best; else shrink 1
  int clip_steps = 20;       // candidates: clip_max, ..., clip_min evenly spaced (>= 2); shrink
                             // 1 is always among them, so the search is never worse than RTN
  float clip_min = 0.5f;     // smallest shrink factor tried (AWQ's auto-clip range is 1 .. 0.5)
  float clip_max = 1.f;      // largest; > 1 lets mxfp4 try the next power of two up
  const float* weights = nullptr;  // per value of the group (n of them), e.g. the importance
                                   // (mean squared activation) of each input column; nullptr = 1
};

// Parameters for one group of n values: fit at shrink 1, or, with clip_search, the candidate
// shrink that minimises sum_j weights_j * (x_j - decode(encode(x_j)))^2 (ties keep the larger
// shrink). Element formats only (ggml rows fit whole blocks through their codec).
GroupParams fit_group(const WeightFormatTraits& f, const float* x, int64_t n, float tensor_scale,
                      const GroupFitOptions& options = {});
// sum_j weights_j * (x_j - decode(encode(x_j)))^2 under `p` (weights nullptr = 1).
double group_weighted_error(const WeightFormatTraits& f, const float* x, const float* weights,
                            int64_t n, const GroupParams& p);
// Round trip of one value: decode(encode(x)).
inline float quantize_value(const WeightFormatTraits& f, float x, const GroupParams& p) {
  return f.decode(f, f.encode(f, x, p), p);
}

// ---------------------------------------------------------------------------------------------
// The quantized matrix in memory
//
// Layout (all arrays row-major, little-endian):
//   codes   rows * cols entries, code_bytes() each: 1 byte for formats of <= 8 bits (one code per
//           byte, low bits used, NOT packed), 2 bytes for bf16/f16. Int codes are offset-binary
//           (q + 2^(bits-1)); E4M3/E2M1 codes are the bit patterns (E2M1: bit 3 = sign).
//           Packing (two E2M1 per byte, eight int4 per int32, ...) is the writer's/kernel's job:
//           unpacked codes keep per-element access simple for GPTQ's column-by-column updates.
//   scales  rows * groups entries ([row][group], like compressed-tensors' weight_scale
//           [out, in/group]), scale_bytes() each: the raw stored scale (f32/f16/bf16 bits,
//           E4M3/E8M0 byte). Empty for kept weights.
//   zeros   rows * groups signed zero points ([row][group]) for asymmetric formats, else empty.
//   tensor_scale  nvfp4's fp32 global scale, stored as compressed-tensors' weight_global_scale:
//           a *divisor* (448*6/absmax), decoded = e2m1 * (e4m3(scale) / tensor_scale). 1 otherwise.
//
// ggml block formats (Storage::GgmlBlocks):
//   codes   rows * (cols / block_values) * block_bytes bytes: row r's blocks at
//           r * block_row_bytes(), each block as ggml lays it out (format/gguf_blocks.h) — the
//           bytes of the GGUF tensor, unchanged
//   groups  blocks per row; scales and zeros empty; tensor_scale 1
//   code(), set_code(), params(), set_params() do not apply (they throw): use block_row().
struct QuantizedMatrix {
  WeightFormatId format = WeightFormatId::BF16;  // which table row
  int64_t rows = 0;                // out_features
  int64_t cols = 0;                // in_features
  int64_t groups = 0;              // groups per row (groups_per_row(format, cols))
  std::vector<uint8_t> codes;      // see layout above
  std::vector<uint8_t> scales;     // see layout above
  std::vector<int8_t> zeros;       // see layout above
  float tensor_scale = 1.f;        // see layout above

  const WeightFormatTraits& traits() const { return weight_format(format); }
  int code_bytes() const;           // 1 or 2
  int scale_bytes() const;          // 0, 1, 2 or 4
  // First column of group g and its length (the last group of a row may be shorter).
  int64_t group_begin(int64_t g) const;
  int64_t group_length(int64_t g) const;

  uint16_t code(int64_t row, int64_t col) const;
  void set_code(int64_t row, int64_t col, uint16_t code);
  GroupParams params(int64_t row, int64_t group) const;  // decoded from scales/zeros
  void set_params(int64_t row, int64_t group, const GroupParams& p);  // stores scale_bits, zero

  // ggml block formats: bytes of one row's blocks, and where row r's blocks start.
  int64_t block_row_bytes() const;
  const uint8_t* block_row(int64_t row) const;
  uint8_t* block_row(int64_t row);
};

// A zero-filled matrix of the right sizes (all scales 0 until set_params). Throws for a shape the
// format cannot hold (a ggml format and a row that is not whole blocks; 0 x 0 is allowed).
QuantizedMatrix make_quantized_matrix(WeightFormatId format, int64_t rows, int64_t cols);

// Decodes the whole matrix to fp32 [rows, cols] (scalar reference).
void dequantize(const QuantizedMatrix& q, float* out);

// Where a quantized matrix would decode to a value that is not finite: a stored scale (or the
// tensor scale) that is NaN, infinite or negative, or a code that stands for NaN/Inf (bf16/f16
// with an all-ones exponent, the E4M3 NaN codes). "" when every value is finite. Checks the
// stored parameters and codes, not every decoded product (finite codes times finite scales can
// only overflow for f32 scales near FLT_MAX, which fit_* never produce).
std::string first_non_finite(const QuantizedMatrix& q);

}  // namespace mpq

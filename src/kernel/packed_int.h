// Internal to src/kernel: the packed layout of the integer weight formats (int8_channel,
// int4/int3/int2 asymmetric with groups of 32/64/128, int4sym_g128) and the entry points of its
// per-ISA kernels (kernel/packed_int.cpp: packer, unpacker, scalar reference, dispatch;
// kernel/packed_int_avx512.cpp and kernel/packed_int_avx2.cpp: the SIMD paths).
//
// Packed layout, the same for every ISA
// -------------------------------------
// Rows are cut into tiles of 16 consecutive rows (kIntTileRows); the last tile is padded with
// zero codes, zero scales and zero zero-points. The kernels keep one row per 32-bit lane, so a
// 512-bit register holds 16 rows x 4 consecutive columns as bytes: exactly the operand shape of
// vpdpbusd (per lane: Σ of 4 u8 x s8 products) with the activations' 4 bytes broadcast to every
// lane, and, for fp32 activations, the shape from which one column of 16 rows comes out with one
// shift pair. AVX2 uses the same bytes as two 256-bit halves (rows 0-7 = bytes 0-31, rows 8-15 =
// bytes 32-63 of every 64-byte block).
//
// Along a row, columns are cut into units of `unit_cols` columns; a unit of one tile is a few
// 64-byte blocks. In every block, lane l (row 16*tile + l) owns bytes 4l..4l+3, and byte j of
// lane l holds, with c0 = first column of the unit:
//
//   int8  unit  4 cols,  64 B: the code of column c0 + j
//   int4  unit  8 cols,  64 B: low nibble = column c0 + j, high nibble = column c0 + 4 + j
//   int2  unit 16 cols,  64 B: bits 2k..2k+1 = column c0 + 4k + j                   (k = 0..3)
//   int3  unit 32 cols, 192 B: block 0, bits 2k..2k+1 = low 2 bits of column c0 + 4k + j;
//                              block 1, bits 2k..2k+1 = low 2 bits of column c0 + 16 + 4k + j;
//                              block 2, bit k         = bit 2 of column c0 + 4k + j  (k = 0..7)
//
// so "register k" of a unit (k = 0 .. unit_cols/4 - 1) is the 16 rows x columns c0+4k..c0+4k+3,
// one byte each, got with at most a shift and a mask (int3: two of each and an or). Codes are
// the format's offset-binary codes c = q + 2^(bits-1) (0 .. 2^bits - 1), kept unsigned: they are
// vpdpbusd's u8 operand as they are, and u8 codes <= 15 times s8 activations cannot saturate
// vpmaddubsw's int16 pair sums on the paths without VNNI. Columns past `cols` in the last unit
// hold code 0.
//
//   codes   [tiles][units_per_row][unit_bytes]
//   scales  [tiles][param_groups][16] fp32: the f16 group scale of row 16*tile + l, decoded
//           (exact) -- the multiplier of every product
//   zeros   [tiles][param_groups][16] uint8: the unsigned zero point z' = 2^(bits-1) + zero
//           (2^(bits-1) for symmetric formats), so that  w = scale * (c - z')  for every format
//
// param_groups is the format's groups per row (1 for int8_channel, whose scale is per row).
// Groups are a whole number of units (32/64/128 columns are multiples of 4, 8, 16 and 32), so a
// group's units are [g * group_size / unit_cols, ...) and only the last group of a row is short.
//
// The kernels walk a row in "kernel groups": the format's groups, or for int8_channel (one
// scale per row) chunks of 128 columns (fp32 activations) or of the activation group (int8
// activations), so partial sums stay short and every chunk lies inside one activation group.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "kernel/packed.h"

namespace mpq {

constexpr int kIntTileRows = 16;  // rows per tile: one per 32-bit lane of a 512-bit register
constexpr int64_t kIntChannelChunkCols = 128;  // int8_channel's kernel group, fp32 activations

// Memory for the packed arrays, aligned to a cache line so 64-byte blocks never straddle two.
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using AlignedArray = std::unique_ptr<T[], AlignedFree>;

// The packed matrix the kernels read (layout above). Immutable after packing.
struct PackedIntLayout {
  WeightFormatId format = WeightFormatId::Int4_G128;
  int bits = 4;                // 8, 4, 3 or 2
  int group_size = 0;          // format group size; 0 = one scale per row (int8_channel)
  bool symmetric = false;      // no zero points in the interchange form
  int64_t rows = 0, cols = 0;  // the matrix
  int64_t tiles = 0;           // ceil(rows / 16)
  int64_t param_groups = 0;    // scale groups per row (1 for int8_channel)
  int unit_cols = 0;           // columns per unit: 4 (int8), 8 (int4), 16 (int2), 32 (int3)
  int unit_bytes = 0;          // bytes per unit of one tile: 64, or 192 for int3
  int64_t units_per_row = 0;   // ceil(cols / unit_cols)
  int64_t tile_bytes = 0;      // units_per_row * unit_bytes
  AlignedArray<uint8_t> codes;  // [tiles][units_per_row][unit_bytes]
  AlignedArray<float> scales;   // [tiles][param_groups][16]
  AlignedArray<uint8_t> zeros;  // [tiles][param_groups][16]

  const uint8_t* tile_codes(int64_t tile) const { return codes.get() + tile * tile_bytes; }
  const float* tile_scales(int64_t tile, int64_t group) const {
    return scales.get() + (tile * param_groups + group) * kIntTileRows;
  }
  const uint8_t* tile_zeros(int64_t tile, int64_t group) const {
    return zeros.get() + (tile * param_groups + group) * kIntTileRows;
  }
};

// Software prefetch for the int8-activation decode products (one token). They do little work
// per byte (int4: two vpdpbusd per 64-byte block), so the out-of-order window alone keeps too
// few cache-line misses in flight, and the hardware prefetchers restart the per-tile streams (a
// few KiB each, read four at a time) at every 4 KiB page. The kernels ask for the codes
// kPrefetchBytes ahead in each tile's stream, and for the scales and zero points of the next
// group one group ahead. Measured on SmolLM2's gate/up shape streamed from DRAM (int4_g128,
// both cores, medians of 5 alternating runs): AVX-512 31.8 -> 36.7 GB/s, AVX2 19.9 -> 27.5
// GB/s; 1 KiB ahead did as well, 4 KiB into L2 no better than none. The fp32-activation kernels, which decode every
// weight to fp32 and so do several times the work per byte, ran slower with the same prefetches
// (29 -> 24 GB/s) and have none. A prefetch never faults: running past the arrays is harmless.
constexpr int64_t kPrefetchBytes = 2048;

// The unit's size is a template argument: GCC deletes a loop of prefetches whose trip count is
// only known at run time (a loop without side effects), so the lines are unrolled at compile time.
template <int Bits>
inline void prefetch_unit_ahead(const PackedIntLayout& m, int64_t tile, int64_t unit) {
  constexpr int kUnitBytes = Bits == 3 ? 192 : 64;
  const uint8_t* p = m.tile_codes(tile) + unit * kUnitBytes + kPrefetchBytes;
  __builtin_prefetch(p, 0, 3);
  if constexpr (kUnitBytes > 64) {
    __builtin_prefetch(p + 64, 0, 3);
    __builtin_prefetch(p + 128, 0, 3);
  }
}

inline void prefetch_group_params(const PackedIntLayout& m, int64_t tile, int64_t group) {
  if (group >= m.param_groups) return;
  __builtin_prefetch(m.tile_scales(tile, group), 0, 3);
  __builtin_prefetch(m.tile_zeros(tile, group), 0, 3);
}

// Where a product writes: rows [row_begin, row_end) to y[t * ldy + out(r)].
struct IntOutput {
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t row_begin = 0, row_end = 0;
  const int32_t* row_to_output = nullptr;  // nullptr: out(r) = r
};

// int8 activations prepared for one product: per token and kernel group, the activation scale
// and the activation scale times the sum of the group's codes (the zero-point term).
struct Int8Prepared {
  const int8_t* q = nullptr;  // Int8Activations::q, zero-padded to a whole number of units
  int64_t stride = 0;         // bytes per token in q
  int64_t n_tokens = 0;
  int64_t group_cols = 0;     // columns per kernel group (a multiple of unit_cols)
  int64_t groups = 0;         // kernel groups per row: ceil(cols / group_cols)
  const float* scale = nullptr;      // [n_tokens][groups]: activation scale of the group
  const float* scale_sum = nullptr;  // [n_tokens][groups]: scale * Σ q over the group
};

// Which integer dot product the int8-activation path uses on AVX-512 (tests run both).
enum class Int8DotPath : uint8_t {
  Auto,    // vpdpbusd when the CPU has AVX-512 VNNI, else NoVnni
  Vnni,    // vpdpbusd (u8 weight code x s8 activation -> s32)
  NoVnni,  // vpmaddubsw + vpmaddwd (int8 weights: |q| x sign-adjusted activation)
};

// True when the CPU has AVX-512 VNNI (vpdpbusd on 512-bit registers).
bool cpu_has_avx512_vnni();

// The concrete packed matrix of the integer formats. Beyond PackedMatrix it offers the int8
// product with a chosen dot-product path, for tests and benchmarks.
class PackedIntMatrix final : public PackedMatrix {
 public:
  explicit PackedIntMatrix(PackedIntLayout layout) : m_(std::move(layout)) {}
  WeightFormatId format() const override { return m_.format; }
  int64_t rows() const override { return m_.rows; }
  int64_t cols() const override { return m_.cols; }
  uint64_t bytes() const override;
  QuantizedMatrix unpack() const override;
  void decode_row(int64_t r, float* out) const override;
  void matmul_f32(Isa isa, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                  int64_t row_begin, int64_t row_end,
                  const int32_t* row_to_output = nullptr) const override;
  bool supports_int8_activations() const override { return true; }
  void matmul_int8(Isa isa, const Int8Activations& x, float* y, int64_t ldy, int64_t row_begin,
                   int64_t row_end, const int32_t* row_to_output = nullptr) const override {
    matmul_int8_path(isa, Int8DotPath::Auto, x, y, ldy, row_begin, row_end, row_to_output);
  }
  // matmul_int8 with the dot-product path forced (ignored for Isa::Scalar and Isa::Avx2;
  // Vnni must be supported by the CPU).
  void matmul_int8_path(Isa isa, Int8DotPath path, const Int8Activations& x, float* y,
                        int64_t ldy, int64_t row_begin, int64_t row_end,
                        const int32_t* row_to_output = nullptr) const;
  const PackedIntLayout& layout() const { return m_; }

 private:
  PackedIntLayout m_;
};

// ---- per-ISA kernels (the CPU must support the ISA; arguments are checked by the caller)

void int_matmul_f32_avx512(const PackedIntLayout& m, const float* x, int64_t n_tokens,
                           const IntOutput& out);
void int_matmul_int8_avx512(const PackedIntLayout& m, const Int8Prepared& x, bool vnni,
                            const IntOutput& out);
void int_matmul_f32_avx2(const PackedIntLayout& m, const float* x, int64_t n_tokens,
                         const IntOutput& out);
void int_matmul_int8_avx2(const PackedIntLayout& m, const Int8Prepared& x, const IntOutput& out);

// Scale of one activation group from its absmax, and the multiplier that quantizes it: every
// path (scalar, AVX2, AVX-512) uses these two numbers, so all give identical codes. Groups whose
// absmax is 0, or so small that 127 / absmax overflows (< ~3.7e-37), get scale 0 and codes 0.
inline void int8_group_scale(float absmax, float& scale, float& inverse) {
  inverse = absmax > 0.f ? 127.f / absmax : 0.f;
  if (!(inverse <= 3.4e38f)) inverse = 0.f;  // inf (tiny absmax) or NaN
  scale = inverse > 0.f ? absmax / 127.f : 0.f;
}

// One token's activations: q[0, groups * group_size) (padding zeroed), scales[groups],
// sums[groups]; results identical to the scalar path (see packed_int.cpp).
void quantize_token_int8_avx512(const float* x, int64_t cols, int64_t group_size, int8_t* q,
                                float* scales, int32_t* sums);
void quantize_token_int8_avx2(const float* x, int64_t cols, int64_t group_size, int8_t* q,
                              float* scales, int32_t* sums);

}  // namespace mpq

// Weights packed for the CPU kernels, and the products that run straight from them.
//
// The interchange form of a quantized matrix is format/weight_format.h's QuantizedMatrix (one
// code per byte, scales in their stored type); it is what files hold. At load time each matrix
// is packed once into a layout chosen for its kernel (codes packed to their bit width and
// interleaved, scales converted to the type the kernel multiplies by, per-group sums
// pre-computed for zero-point corrections) and the interchange form is dropped, so a model's
// resident memory is about its packed size.
//
// Every packed format has
//   - a scalar reference product (plain loops, in order), the definition the others are tested
//     against;
//   - AVX2 and AVX-512 paths chosen at run time (Isa of kernel/gemv_f32.h); int8 dot products use
//     vpdpbusd (AVX-512 VNNI) where the CPU has it.
// Products come in two flavours:
//   - fp32 activations (weight-only quantization): weights are dequantized in registers and
//     accumulated in fp32;
//   - int8 activations (W8A8 / W4A8, MixLLM): activations are quantized per token and per group
//     of 128 along the hidden dimension (Int8Activations); integer dot products per group, then
//     the two-step dequantization: (Σ q_w·q_a − zero·Σ q_a) · weight scale · activation scale.
//     Only integer weight formats support it.
//
// Channel-split layers (MixLLM) run as two packed matrices over disjoint output channels; the
// products take a row → output-column map so each writes its rows straight into place (the
// scatter is fused into the store).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "format/weight_format.h"
#include "kernel/gemv_f32.h"

namespace mpq {

// Activations quantized to int8, symmetric, per token and per group of `group_size` consecutive
// values along the row: x[t][i] ≈ scales[t * groups + i / group_size] * q[t * stride + i].
struct Int8Activations {
  int64_t n_tokens = 0;      // rows of x
  int64_t cols = 0;          // values per row (in_features)
  int64_t group_size = 128;  // values per activation scale
  int64_t groups = 0;        // ceil(cols / group_size)
  int64_t stride = 0;        // int8 values per row in `q` (>= cols; padding is zero)
  std::vector<int8_t> q;     // [n_tokens, stride]
  std::vector<float> scales;       // [n_tokens, groups]: absmax / 127 (0 for an all-zero group)
  std::vector<int32_t> group_sums;  // [n_tokens, groups]: Σ q over the group, for zero points
};

// Quantizes x [n_tokens, cols] (row-major) into `out` (resized as needed; round to nearest even).
void quantize_activations_int8(Isa isa, const float* x, int64_t n_tokens, int64_t cols,
                               Int8Activations& out, int64_t group_size = 128);

// How a product treats its activations.
enum class ActivationMode : uint8_t { F32, Int8 };
const char* activation_mode_name(ActivationMode mode);  // "fp32", "int8"

// A packed weight matrix W [rows = out_features, cols = in_features].
class PackedMatrix {
 public:
  virtual ~PackedMatrix() = default;
  virtual WeightFormatId format() const = 0;
  virtual int64_t rows() const = 0;
  virtual int64_t cols() const = 0;
  // Resident bytes of the packed form (codes, scales, sums, padding).
  virtual uint64_t bytes() const = 0;
  // Back to the interchange form, exactly (codes, stored scales, zeros, tensor scale).
  virtual QuantizedMatrix unpack() const = 0;
  // The decoded weights of row r (r < rows()) into out[cols()], as dequantize(unpack()) gives
  // them; a scalar read of one row, for embedding lookups from a tied quantized head.
  virtual void decode_row(int64_t r, float* out) const = 0;

  // fp32 activations: for t < n_tokens and packed rows r in [row_begin, row_end):
  //   y[t * ldy + out(r)] = Σ_i W[r, i] · x[t * cols + i]
  // with out(r) = row_to_output ? row_to_output[r] : r. `isa` must be supported by the CPU.
  virtual void matmul_f32(Isa isa, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                          int64_t row_begin, int64_t row_end,
                          const int32_t* row_to_output = nullptr) const = 0;

  // True when matmul_int8 is available (integer weight formats).
  virtual bool supports_int8_activations() const { return false; }
  // int8 activations (x.cols == cols()), same output convention as matmul_f32.
  virtual void matmul_int8(Isa isa, const Int8Activations& x, float* y, int64_t ldy,
                           int64_t row_begin, int64_t row_end,
                           const int32_t* row_to_output = nullptr) const;
};

// Packs any format of the table. Throws mpq::Error for an inconsistent QuantizedMatrix.
std::unique_ptr<PackedMatrix> pack_matrix(const QuantizedMatrix& q);

// One product of a group that shares its input: rows [0, w.rows()) of `w` into
// y[t * ldy + out(r)] (out as in PackedMatrix::matmul_f32), with activations as `mode` asks
// (ActivationMode::Int8 on a format without an int8 kernel runs the fp32 product).
struct PackedProduct {
  const PackedMatrix* w = nullptr;          // never null
  float* y = nullptr;                       // output [n_tokens, ldy]
  int64_t ldy = 0;                          // floats per output row
  const int32_t* row_to_output = nullptr;   // nullptr: out(r) = r
  ActivationMode mode = ActivationMode::F32;
};

// The threaded driver: every product of `group` over the same input x [n_tokens, cols] (all
// products have cols() == cols). The products run in one parallel region, their 16-row tiles
// dealt out to the OpenMP threads as one sequence cut by weight bytes, and int8 activations are
// quantized once for all of them: a layer's q/k/v (or gate/up, or the two channel sets of a
// split layer) cost one fork and one quantization instead of one per matrix. Small work stays
// on the calling thread (kernel/threads.h).
void packed_matmul_group(std::span<const PackedProduct> group, const float* x, int64_t n_tokens,
                         Isa isa = best_isa());

// True when a product of `group` runs with int8 activations (its mode asks for them and its
// format has an int8 kernel): the group's input must then be quantized (quantize_activations_int8).
bool group_uses_int8(std::span<const PackedProduct> group);

// Thread `thread` of `n_threads`'s share of packed_matmul_group: the stretch of the group's tiles
// that the driver gives that thread (every tile runs in exactly one share, and each output row
// is computed the same way whichever share runs it). x_int8 is x quantized, needed when
// group_uses_int8. For callers that keep their own team of threads (a decode step run in one
// parallel region, model/forward_team.cpp); the products must share their width (not checked
// here: no exception may leave a share).
void packed_matmul_group_share(std::span<const PackedProduct> group, const float* x, const Int8Activations* x_int8,
                               int64_t n_tokens, int thread, int n_threads, Isa isa = best_isa());

// One product: y[n_tokens, ldy] = x · Wᵀ over all rows of `w` (packed_matmul_group of one).
void packed_matmul(const PackedMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                   ActivationMode mode, const int32_t* row_to_output = nullptr, Isa isa = best_isa());

}  // namespace mpq

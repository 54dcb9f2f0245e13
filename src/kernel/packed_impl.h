// Internal to src/kernel: the per-family packers behind pack_matrix (kernel/packed.h).
#pragma once

#include <memory>

#include "kernel/packed.h"

namespace mpq {

// Integer formats: int8_channel, int4/int3/int2 groups (asymmetric), int4sym_g128.
// (kernel/packed_int.cpp)
std::unique_ptr<PackedMatrix> pack_int_matrix(const QuantizedMatrix& q);
// Floating formats: bf16, f16, fp8_e4m3 (per channel and 1x128 blocks), nvfp4, mxfp4.
// (kernel/packed_fp.cpp)
std::unique_ptr<PackedMatrix> pack_fp_matrix(const QuantizedMatrix& q);
// ggml block formats: q8_0, q4_K, iq4_nl, ... (kernel/packed_ggml.cpp)
std::unique_ptr<PackedMatrix> pack_ggml_matrix(const QuantizedMatrix& q);

}  // namespace mpq

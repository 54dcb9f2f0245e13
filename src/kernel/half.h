// Rows of fp32 <-> IEEE half (binary16) conversions, one code path per instruction set chosen at
// run time: the F16 KV cache (mpq/model.h, KvCacheType) stores keys and values as halves. The
// scalar path is format/dtype.h's exact reference; the vector paths use the hardware conversions
// (AVX-512 and F16C `vcvtps2ph` / `vcvtph2ps`), which round the same way (to nearest, ties to even,
// subnormals kept), so all paths give identical bits for every non-NaN input.
#pragma once

#include <cstdint>

#include "kernel/gemv_f32.h"

namespace mpq {

// out[i] = the half nearest to x[i] (ties to even; beyond ±65504 rounds to ±inf), i < n.
void f32_to_f16_row(Isa isa, const float* x, int64_t n, uint16_t* out);

// out[i] = h[i] as fp32 (exact), i < n.
void f16_to_f32_row(Isa isa, const uint16_t* h, int64_t n, float* out);

}  // namespace mpq

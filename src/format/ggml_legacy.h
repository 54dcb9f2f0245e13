// The legacy ggml block types as weight formats: blocks of 32 values with one fp16 scale d (and
// for the "_1" types an fp16 offset m). Layouts: format/gguf_blocks.h (BlockQ4_0 ...).
//
//   q4_0   value = d·(q − 8),  q in 0..15         18 bytes / 32 values = 4.5 bits per weight
//   q4_1   value = d·q + m,    q in 0..15         20 bytes / 32        = 5.0
//   q5_0   value = d·(q − 16), q in 0..31         22 bytes / 32        = 5.5
//   q5_1   value = d·q + m,    q in 0..31         24 bytes / 32        = 6.0
//   q8_0   value = d·q,        q in −127..127     34 bytes / 32        = 8.5
//
// Encoders (GgmlBlockCodec, format/ggml_codec.h):
//   encode (llama.cpp's reference): symmetric types d = v/−2^(b−1) with v the value of largest
//     magnitude (so v gets the code 0, the grid's long end), codes trunc(x/d + 2^(b−1) + 0.5)
//     with the fp32 d; "_1" types d = (max − min)/(2^b − 1), m = min, codes trunc((x − m)/d + 0.5);
//     q8_0 d = absmax/127, codes roundf(x/d). Scales are then stored as fp16, codes kept.
//   encode_weighted (llama.cpp with an imatrix): weights w_i = imp_i·sqrt(σ² + x_i²), σ² = the
//     row's mean square; symmetric types through symmetric_search (19 grids), "_1" types through
//     asymmetric_search (37 grids, scale and min by weighted least squares). q8_0 has none.
#pragma once

#include "format/ggml_codec.h"

namespace mpq {

extern const GgmlBlockCodec kGgmlQ4_0;
extern const GgmlBlockCodec kGgmlQ4_1;
extern const GgmlBlockCodec kGgmlQ5_0;
extern const GgmlBlockCodec kGgmlQ5_1;
extern const GgmlBlockCodec kGgmlQ8_0;

}  // namespace mpq

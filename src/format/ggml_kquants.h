// The k-quant ggml block types as weight formats: super-blocks of 256 values cut into
// sub-blocks of 16 or 32 values, each sub-block with a small integer scale (and min) that
// multiplies an fp16 super-block scale d (and dmin). Layouts: format/gguf_blocks.h.
//
//   q2_K  16 x 16: value = d·sc_s·q − dmin·m_s, q 0..3,  4-bit sc, m         84 B = 2.625 bpw
//   q3_K  16 x 16: value = d·(sc_s − 32)·q,    q −4..3, 6-bit sc            110 B = 3.4375
//   q4_K   8 x 32: value = d·sc_s·q − dmin·m_s, q 0..15, 6-bit sc, m        144 B = 4.5
//   q5_K   8 x 32: value = d·sc_s·q − dmin·m_s, q 0..31, 6-bit sc, m        176 B = 5.5
//   q6_K  16 x 16: value = d·sc_s·(q − 32),    q 0..63, int8 sc            210 B = 6.5625
//
// Encoders (GgmlBlockCodec, format/ggml_codec.h), all three steps in ggml's fp32 order:
//   1. each sub-block's scale (and min) by a search (format/ggml_search.h):
//      reference (no importance): q2_K asymmetric_search with w = |x|, scored by Σ w |error|;
//      q4_K/q5_K asymmetric_search with w = rms(sub-block) + |x|; q3_K coordinate_search and
//      q6_K symmetric_search with w = x².
//      weighted: w = imp·sqrt(σ² + x²) (σ² = mean square of the super-block, doubled except for
//      q2_K; q6_K uses w = imp), asymmetric_search with 37 grids or symmetric_search.
//   2. the sub-block scales (mins) onto their stored integers: reference: the largest maps to
//      the top code (63, 15, or −32/−128 for the signed ones), d = largest/top in fp16;
//      weighted: positive_search (q2/q4/q5) or symmetric_search (q3) over the sub-block
//      scales weighted by each sub-block's Σ w.
//   3. every value re-quantized with the stored scales: round((x + dmin·m_s)/(d·sc_s)), clamped
//      (a sub-block whose stored scale is 0 keeps the search's codes).
// fit_block is steps 1-2, round_value step 3; encode and encode_weighted are both together.
#pragma once

#include "format/ggml_codec.h"

namespace mpq {

extern const GgmlBlockCodec kGgmlQ2_K;
extern const GgmlBlockCodec kGgmlQ3_K;
extern const GgmlBlockCodec kGgmlQ4_K;
extern const GgmlBlockCodec kGgmlQ5_K;
extern const GgmlBlockCodec kGgmlQ6_K;

}  // namespace mpq

// The non-linear 4-bit ggml block types as weight formats: a 4-bit code picks one of 16 fixed
// levels (gguf::kIq4Levels, −127 .. 113, denser near 0) times a scale. Layouts:
// format/gguf_blocks.h.
//
//   iq4_nl  blocks of 32: value = d·level[q], fp16 d                 18 B / 32 = 4.5 bpw
//   iq4_xs  super-blocks of 256: value = d·(sc_s − 32)·level[q],
//           8 sub-blocks of 32 with 6-bit sc, fp16 d                 136 B / 256 = 4.25 bpw
//
// Encoders (ggml's quantize_row_iq4_nl_impl; GgmlBlockCodec, format/ggml_codec.h): per block of
// 32, 16 candidate scales (the value of largest magnitude on level −127 or on levels −127 + k,
// k = −7..7, so both signs of the scale are tried), each followed by the nearest level of every
// value and the weighted least-squares scale Σ w q x / Σ w q²; keep the best. Weights are x²
// without an importance matrix (what llama-quantize does), imp·sqrt(σ² + x²) with one (σ² = twice
// the mean square of the block or super-block). iq4_nl stores the best scale in fp16 and keeps
// the levels chosen with the fp32 scale; iq4_xs maps the 8 sub-block scales onto 6-bit integers
// of d = −(largest)/32 and re-picks every level with its sub-block's d·(sc − 32) (fp32 d).
#pragma once

#include "format/ggml_codec.h"

namespace mpq {

extern const GgmlBlockCodec kGgmlIQ4_NL;
extern const GgmlBlockCodec kGgmlIQ4_XS;

}  // namespace mpq

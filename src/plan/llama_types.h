// A plan as llama-quantize's --tensor-type-file: for users who want llama.cpp's own quantizer
// (with its imatrix) to produce the allocation mpq chose.
#pragma once

#include <string>

#include "plan/plan.h"

namespace mpq {

// One "PATTERN=TYPE" line per planned tensor (the head too when the plan sets it), in llama.cpp's
// tensor names. llama-quantize lower-cases the pattern and applies the first pattern that
// std::regex_search finds in a tensor's name, so each pattern is anchored (^...$: blk.1 must not
// match blk.10). Types are ggml's names (q4_K, q8_0, iq4_nl, f16, bf16, mxfp4). Throws mpq::Error
// naming the tensor for a format llama.cpp has no type for, or a channel-split entry.
std::string llama_tensor_types(const Plan& plan);

}  // namespace mpq

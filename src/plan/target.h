// The engines a quantized model must run in, and what each can run: the planner only offers a
// tensor the formats its target accepts for that tensor's shape, `--scheme` falls back to one it
// accepts, and the writer is chosen by it. Rules are data here, one function per engine, each
// saying why a format is refused (docs/PLAN.md, "Targets").
//
//   mpq                every format of the table on every shape it can hold; channel splits
//   compressed-tensors a valid compressed-tensors checkpoint (the default for Hugging Face
//                      directories): formats with a compressed-tensors scheme whose groups
//                      divide the row; no channel splits
//   transformers       loads in Hugging Face transformers' default path (5.24 with
//                      compressed-tensors 0.20.1): as compressed-tensors, integer formats
//                      symmetric only (asymmetric zero points fail to load there; docs/INTEROP.md)
//   vllm-cpu           runs in vLLM's CPU build (0.32): 4-bit integer weights only, groups even and
//                      dividing the row, both dimensions multiples of 32; q/k/v and gate/up of a
//                      layer in one format (vLLM fuses them)
//   llama.cpp          a GGUF file llama.cpp runs: ggml block types on rows of whole blocks,
//                      bf16/f16, mxfp4 (rows of 32s) and nvfp4 (rows of 64s) in ggml's layouts
// A comma list ("transformers,vllm-cpu") is the intersection: every engine must run the result.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "format/weight_format.h"

namespace mpq {

enum class Engine { Mpq, CompressedTensors, Transformers, VllmCpu, LlamaCpp };

struct Target {
  std::vector<Engine> engines;  // never empty
  std::string name() const;     // "transformers,vllm-cpu"
  // True when every engine runs `format` on a [rows, cols] tensor; `why` says which refuses and why.
  bool accepts(WeightFormatId format, int64_t rows, int64_t cols, std::string* why = nullptr) const;
  bool allows_channel_split() const;  // MixLLM channel splits: mpq only
  bool needs_fused_same() const;      // q/k/v and gate/up of a layer share one format (vLLM)
};

// "mpq", "compressed-tensors", "transformers", "vllm-cpu", or a comma list of them. Throws
// mpq::Error naming `where` for an unknown engine.
Target parse_target(const std::string& text, const std::string& where = "--target");

// The format a tensor takes when `format` is asked for and `target` refuses it: for ggml types,
// llama-quantize's own fallback (q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0,
// iq4_xs -> iq4_nl, then f16); for the others the same kind of format (value type, bits,
// symmetry, scale type) with the largest group the target accepts for the shape; nullopt when
// there is none.
std::optional<WeightFormatId> fallback_format(WeightFormatId format, int64_t rows, int64_t cols, const Target& target);

}  // namespace mpq

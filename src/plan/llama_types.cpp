#include "plan/llama_types.h"

#include "format/weight_format.h"
#include "io/checkpoint.h"
#include "mpq/error.h"

namespace mpq {
namespace {

// ggml's type name of `format` as llama-quantize parses it.
std::string ggml_type_name_of(WeightFormatId format, const std::string& tensor) {
  const WeightFormatTraits& f = weight_format(format);
  if (is_ggml_format(f)) return f.name;  // the table names ggml formats as ggml does
  if (format == WeightFormatId::BF16) return "bf16";
  if (format == WeightFormatId::F16) return "f16";
  if (format == WeightFormatId::MXFP4) return "mxfp4";
  fail(tensor, std::string("format ") + f.name + " has no llama.cpp type (plan with --target llama.cpp)");
}

// "blk.0.attn_q.weight" -> "^blk\.0\.attn_q\.weight$"
std::string anchored(const std::string& name) {
  std::string out = "^";
  for (char c : name) {
    if (c == '.') out += "\\.";
    else out += c;
  }
  return out + "$";
}

}  // namespace

std::string llama_tensor_types(const Plan& plan) {
  std::string out;
  if (plan.head) {
    // A tied head is llama.cpp's token_embd (there is no output.weight); an untied one is output.
    // Both lines are written: llama-quantize applies the one whose tensor exists.
    const std::string type = ggml_type_name_of(plan.head->format, "lm_head");
    out += anchored("output.weight") + "=" + type + "\n";
    out += anchored("token_embd.weight") + "=" + type + "\n";
  }
  for (const auto& [module, e] : plan.tensors) {
    check(!e.split, module, "a channel-split tensor has no llama.cpp type");
    const std::string name = gguf_tensor_name(module + ".weight");
    check(!name.empty(), module, "has no llama.cpp tensor name");
    out += anchored(name) + "=" + ggml_type_name_of(e.format, module) + "\n";
  }
  return out;
}

}  // namespace mpq

// What a Linear module gets: a weight format and the quantizer that fills it ("scheme"), or a
// channel split (MixLLM), or nothing (kept as it is). Plans (plan/plan.h) are made of these; a
// uniform scheme is the simplest plan.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/weight_format.h"

namespace mpq {

enum class Quantizer { Rtn, RtnClip, Gptq, Hqq };
const char* quantizer_name(Quantizer q);

// "FORMAT[:QUANTIZER]" (e.g. "int4_g128:gptq"; the quantizer defaults to rtn).
struct Scheme {
  WeightFormatId format = WeightFormatId::Int4_G128;
  Quantizer quantizer = Quantizer::Rtn;
  std::string name() const;  // canonical "format:quantizer"
};
// Throws mpq::Error naming `where` and listing the valid names on an unknown format/quantizer.
Scheme parse_scheme(const std::string& text, const std::string& where = "--scheme");

// What each Linear module gets.
struct ModuleChoice {
  WeightFormatId format = WeightFormatId::Int4_G128;
  Quantizer quantizer = Quantizer::Rtn;
  bool keep = false;  // leave the module as it is (not quantized)
  // Channel split (MixLLM): these output channels (ascending) take `high_format`, the others
  // `format`; each set is quantized as its own matrix with the same quantizer. Empty: no split.
  std::vector<int32_t> high_rows;
  WeightFormatId high_format = WeightFormatId::Int8_Channel;
  bool split = false;

  // The whole module in one format; the module left as it is.
  static ModuleChoice whole(WeightFormatId format, Quantizer quantizer) {
    ModuleChoice c;
    c.format = format;
    c.quantizer = quantizer;
    return c;
  }
  static ModuleChoice kept() {
    ModuleChoice c;
    c.keep = true;
    return c;
  }
};

}  // namespace mpq

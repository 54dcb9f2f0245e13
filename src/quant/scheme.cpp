#include "quant/scheme.h"

#include "mpq/error.h"

namespace mpq {

const char* quantizer_name(Quantizer q) {
  switch (q) {
    case Quantizer::Rtn: return "rtn";
    case Quantizer::RtnClip: return "rtn_clip";
    case Quantizer::Gptq: return "gptq";
    case Quantizer::Hqq: return "hqq";
  }
  return "?";
}

std::string Scheme::name() const { return std::string(weight_format(format).name) + ":" + quantizer_name(quantizer); }

Scheme parse_scheme(const std::string& text, const std::string& where) {
  const size_t colon = text.find(':');
  const std::string format = text.substr(0, colon);
  const std::string quantizer = colon == std::string::npos ? "rtn" : text.substr(colon + 1);
  Scheme s;
  auto id = weight_format_from_name(format);
  if (!id) {
    std::string names;
    for (const auto& f : weight_formats()) names += (names.empty() ? "" : ", ") + std::string(f.name);
    fail(where, "unknown weight format '" + format + "' (known: " + names + ")");
  }
  s.format = *id;
  bool found = false;
  for (Quantizer q : {Quantizer::Rtn, Quantizer::RtnClip, Quantizer::Gptq, Quantizer::Hqq}) {
    if (quantizer == quantizer_name(q)) {
      s.quantizer = q;
      found = true;
    }
  }
  if (!found) fail(where, "unknown quantizer '" + quantizer + "' (known: rtn, rtn_clip, gptq, hqq)");
  return s;
}

}  // namespace mpq

// Kept weights (bf16, f16): thin wrappers over the exact conversions of format/dtype.h.
#include "format/half.h"

#include "format/dtype.h"

namespace mpq {

GroupParams fit_half_group(const WeightFormatTraits&, const float*, int64_t, float, float) {
  return GroupParams{};
}

uint16_t encode_bf16(const WeightFormatTraits&, float x, const GroupParams&) {
  return f32_to_bf16(x);
}
float decode_bf16(const WeightFormatTraits&, uint16_t code, const GroupParams&) {
  return bf16_to_f32(code);
}
uint16_t encode_f16(const WeightFormatTraits&, float x, const GroupParams&) {
  return f32_to_f16(x);
}
float decode_f16(const WeightFormatTraits&, uint16_t code, const GroupParams&) {
  return f16_to_f32(code);
}

}  // namespace mpq

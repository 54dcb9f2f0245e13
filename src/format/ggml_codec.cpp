// Helpers shared by the ggml block codecs (declarations in format/ggml_codec.h).
#include "format/ggml_codec.h"

#include <cstring>

#include "format/dtype.h"

namespace mpq::ggml {

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

void store_f16(uint8_t* p, float v) { store_u16(p, f32_to_f16(v)); }

float round_to_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

int get_nibble32(const uint8_t* qs, int i) { return i < 16 ? (qs[i] & 0x0F) : (qs[i - 16] >> 4); }

void set_nibble32(uint8_t* qs, int i, int code) {
  const auto c = static_cast<uint8_t>(code & 0x0F);
  if (i < 16) {
    qs[i] = static_cast<uint8_t>((qs[i] & 0xF0) | c);
  } else {
    qs[i - 16] = static_cast<uint8_t>((qs[i - 16] & 0x0F) | (c << 4));
  }
}

int get_bit32(const uint8_t* qh, int i) { return (qh[i / 8] >> (i % 8)) & 1; }

void set_bit32(uint8_t* qh, int i, int bit) {
  const auto mask = static_cast<uint8_t>(1u << (i % 8));
  qh[i / 8] = static_cast<uint8_t>(bit ? (qh[i / 8] | mask) : (qh[i / 8] & ~mask));
}

}  // namespace mpq::ggml

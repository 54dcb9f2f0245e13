// Codecs of q4_0, q4_1, q5_0, q5_1, q8_0 (what each encoder does: format/ggml_legacy.h).
//
// One description per type (Legacy below) drives every function: where d, m, the fifth bits and
// the codes sit in the block, and the code range. The reference encoders follow ggml's
// quantize_row_*_ref, the weighted ones quantize_row_*_impl, in fp32 and in its order.
#include "format/ggml_legacy.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "format/ggml_search.h"
#include "format/gguf_blocks.h"

namespace mpq {
namespace {

using ggml::get_bit32;
using ggml::get_nibble32;
using ggml::load_f16;
using ggml::nearest_int;
using ggml::set_bit32;
using ggml::set_nibble32;
using ggml::store_f16;

constexpr int kQK = gguf::kLegacyBlockValues;  // 32

// Where the fields of one legacy type sit in its block, and its codes.
struct Legacy {
  int bits;         // 4, 5 or 8
  bool has_min;     // "_1" types: value = d·q + m; others: value = d·(q − offset)
  int block_bytes;  // 18, 20, 22, 24, 34
  int min_at;       // byte offset of m (has_min)
  int high_at;      // byte offset of the 32 fifth bits (bits 5)
  int codes_at;     // byte offset of the codes
  int offset;       // symmetric 4/5-bit types: the code that means 0 (8, 16); 0 otherwise
  int code_min, code_max;  // the codes round_value may choose (q8_0: −127..127 as ggml writes)
};

constexpr Legacy kQ4_0{4, false, 18, 0, 0, 2, 8, 0, 15};
constexpr Legacy kQ4_1{4, true, 20, 2, 0, 4, 0, 0, 15};
constexpr Legacy kQ5_0{5, false, 22, 0, 2, 6, 16, 0, 31};
constexpr Legacy kQ5_1{5, true, 24, 2, 4, 8, 0, 0, 31};
constexpr Legacy kQ8_0{8, false, 34, 0, 0, 2, 0, -127, 127};

// Code of value i (q8_0: the signed byte).
int get_code(const Legacy& t, const uint8_t* block, int i) {
  if (t.bits == 8) return static_cast<int8_t>(block[t.codes_at + i]);
  int code = get_nibble32(block + t.codes_at, i);
  if (t.bits == 5) code |= get_bit32(block + t.high_at, i) << 4;
  return code;
}

void set_code(const Legacy& t, uint8_t* block, int i, int code) {
  if (t.bits == 8) {
    block[t.codes_at + i] = static_cast<uint8_t>(static_cast<int8_t>(code));
    return;
  }
  set_nibble32(block + t.codes_at, i, code);
  if (t.bits == 5) set_bit32(block + t.high_at, i, (code >> 4) & 1);
}

// The value a code decodes to, with the decoders' arithmetic (format/gguf_blocks.cpp).
float value_of(const Legacy& t, const uint8_t* block, int code) {
  const float d = load_f16(block);
  if (t.has_min) return static_cast<float>(code) * d + load_f16(block + t.min_at);
  return static_cast<float>(code - t.offset) * d;
}

// llama.cpp's reference encoder of one block (quantize_row_q*_ref).
void encode_block(const Legacy& t, const float* x, uint8_t* block) {
  std::memset(block, 0, static_cast<size_t>(t.block_bytes));
  if (t.bits == 8) {
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    store_f16(block, d);
    for (int j = 0; j < kQK; ++j) set_code(t, block, j, static_cast<int>(std::round(x[j] * id)));
    return;
  }
  const int levels = (1 << t.bits) - 1;  // 15 or 31
  if (t.has_min) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / static_cast<float>(levels);
    const float id = d != 0.f ? 1.f / d : 0.f;
    store_f16(block, d);
    store_f16(block + t.min_at, min);
    for (int j = 0; j < kQK; ++j) {
      // Truncation of a non-negative number: rounds half up. q4_1 caps at 15; q5_1 cannot pass
      // 31 (ggml does not cap it).
      const int q = static_cast<int>((x[j] - min) * id + 0.5f);
      set_code(t, block, j, t.bits == 4 ? std::min(levels, q) : q);
    }
    return;
  }
  // Symmetric: the value of largest magnitude lands on code 0 (level −2^(b−1)).
  float amax = 0.f, max = 0.f;
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / static_cast<float>(-t.offset);
  const float id = d != 0.f ? 1.f / d : 0.f;
  store_f16(block, d);
  const float half_up = static_cast<float>(t.offset) + 0.5f;  // 8.5 or 16.5
  for (int j = 0; j < kQK; ++j) {
    set_code(t, block, j, std::min(levels, static_cast<int>(x[j] * id + half_up)));
  }
}

// The search weights of a run of values: imp_i · sqrt(σ² + x_i²), σ² their mean square.
void legacy_search_weights(const float* x, const float* importance, float* w, int64_t n) {
  float sum_x2 = 0.f;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / static_cast<float>(n);
  for (int64_t j = 0; j < n; ++j) w[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// llama.cpp's weighted encoder of one block given its weights (quantize_row_q*_impl).
void encode_block_weighted(const Legacy& t, const float* x, const float* w, uint8_t* block) {
  std::memset(block, 0, static_cast<size_t>(t.block_bytes));
  uint8_t L[kQK];
  if (t.has_min) {
    float min = 0.f;
    const float d = ggml::asymmetric_search(kQK, (1 << t.bits) - 1, x, w, L, &min, -0.9f, 0.05f, 36, false);
    store_f16(block, d);
    store_f16(block + t.min_at, -min);
  } else {
    const float d = ggml::symmetric_search(kQK, t.offset, x, w, L);
    store_f16(block, d);
  }
  for (int j = 0; j < kQK; ++j) set_code(t, block, j, L[j]);
}

// ---- the codec functions, one instantiation per type

template <const Legacy& T>
void encode(const float* x, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) encode_block(T, x + b * kQK, dst + b * T.block_bytes);
}

template <const Legacy& T>
void encode_weighted(const float* x, const float* importance, uint8_t* dst, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  legacy_search_weights(x, importance, w.data(), n);  // σ² of the whole row, as ggml
  for (int64_t b = 0; b < n / kQK; ++b) {
    encode_block_weighted(T, x + b * kQK, w.data() + b * kQK, dst + b * T.block_bytes);
  }
}

template <const Legacy& T>
void fit_block(const float* x, const float* importance, uint8_t* block) {
  if (importance == nullptr || T.bits == 8) return encode_block(T, x, block);
  float w[kQK];
  legacy_search_weights(x, importance, w, kQK);  // σ² of the block: GPTQ fits block by block
  encode_block_weighted(T, x, w, block);
}

template <const Legacy& T>
float round_value(uint8_t* block, int j, float x) {
  const float d = load_f16(block);
  if (d != 0.f) {
    const float target = T.has_min ? (x - load_f16(block + T.min_at)) / d : x / d;
    const int code = std::clamp(nearest_int(target) + T.offset, T.code_min, T.code_max);
    set_code(T, block, j, code);
  }
  return value_of(T, block, get_code(T, block, j));
}

}  // namespace

// ggml type id, name, values and bytes per block, then the functions.
const GgmlBlockCodec kGgmlQ4_0{2, "Q4_0", kQK, 18, gguf::dequantize_q4_0, encode<kQ4_0>, encode_weighted<kQ4_0>,
                               legacy_search_weights, fit_block<kQ4_0>, round_value<kQ4_0>};
const GgmlBlockCodec kGgmlQ4_1{3, "Q4_1", kQK, 20, gguf::dequantize_q4_1, encode<kQ4_1>, encode_weighted<kQ4_1>,
                               legacy_search_weights, fit_block<kQ4_1>, round_value<kQ4_1>};
const GgmlBlockCodec kGgmlQ5_0{6, "Q5_0", kQK, 22, gguf::dequantize_q5_0, encode<kQ5_0>, encode_weighted<kQ5_0>,
                               legacy_search_weights, fit_block<kQ5_0>, round_value<kQ5_0>};
const GgmlBlockCodec kGgmlQ5_1{7, "Q5_1", kQK, 24, gguf::dequantize_q5_1, encode<kQ5_1>, encode_weighted<kQ5_1>,
                               legacy_search_weights, fit_block<kQ5_1>, round_value<kQ5_1>};
// q8_0 has no weighted encoder in llama.cpp (its imatrix is ignored), and none here.
const GgmlBlockCodec kGgmlQ8_0{8, "Q8_0", kQK, 34, gguf::dequantize_q8_0, encode<kQ8_0>, nullptr,
                               nullptr, fit_block<kQ8_0>, round_value<kQ8_0>};

}  // namespace mpq

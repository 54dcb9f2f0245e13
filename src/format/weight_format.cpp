// The table of weight formats and the format-independent parts of the layer: bit accounting,
// scale storage, the clip search of fit_group, and the QuantizedMatrix accessors.
#include "format/weight_format.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "format/dtype.h"
#include "format/fp4.h"
#include "format/fp8.h"
#include "format/ggml_codec.h"
#include "format/ggml_iq4.h"
#include "format/ggml_kquants.h"
#include "format/ggml_legacy.h"
#include "format/half.h"
#include "format/intq.h"
#include "mpq/error.h"

namespace mpq {
namespace {

using W = WeightFormatId;
using V = ValueKind;
using S = ScaleType;
using G = Storage;

// One row per WeightFormatId, in enum order (checked by the tests). Bits per weight of each row
// are derived from these columns by storage_bits().
constexpr std::array<WeightFormatTraits, static_cast<size_t>(W::kCount)> kFormats = {{
    // id                  name                value         bits group sym    scale    tensor
    {W::BF16, "bf16", V::Half, 16, 0, true, S::None, false, fit_half_group, encode_bf16,
     decode_bf16, "bfloat16 (kept weights)"},
    {W::F16, "f16", V::Half, 16, 0, true, S::None, false, fit_half_group, encode_f16, decode_f16,
     "IEEE half (kept weights)"},
    {W::FP8_E4M3_Channel, "fp8_e4m3_channel", V::FP8_E4M3, 8, 0, true, S::F32, false,
     fit_fp8_group, encode_fp8, decode_fp8, "OCP FP8 E4M3, f32 scale per output channel"},
    {W::FP8_E4M3_B128, "fp8_e4m3_b128", V::FP8_E4M3, 8, 128, true, S::F32, false, fit_fp8_group,
     encode_fp8, decode_fp8, "OCP FP8 E4M3, f32 scale per 1x128 block of a row"},
    {W::NVFP4, "nvfp4", V::FP4_E2M1, 4, 16, true, S::E4M3, true, fit_nvfp4_group, encode_fp4,
     decode_fp4, "NVIDIA FP4: E2M1, E4M3 scale per 16, fp32 tensor scale"},
    {W::MXFP4, "mxfp4", V::FP4_E2M1, 4, 32, true, S::E8M0, false, fit_mxfp4_group, encode_fp4,
     decode_fp4, "OCP MXFP4: E2M1, E8M0 (power of two) scale per 32"},
    {W::Int8_Channel, "int8_channel", V::Int, 8, 0, true, S::F16, false, fit_int_sym_group,
     encode_int, decode_int, "int8 symmetric, f16 scale per output channel"},
    {W::Int4_G32, "int4_g32", V::Int, 4, 32, false, S::F16, false, fit_int_asym_group, encode_int,
     decode_int, "int4 asymmetric, f16 scale + int4 zero per 32"},
    {W::Int4_G64, "int4_g64", V::Int, 4, 64, false, S::F16, false, fit_int_asym_group, encode_int,
     decode_int, "int4 asymmetric, f16 scale + int4 zero per 64"},
    {W::Int4_G128, "int4_g128", V::Int, 4, 128, false, S::F16, false, fit_int_asym_group,
     encode_int, decode_int, "int4 asymmetric, f16 scale + int4 zero per 128"},
    {W::Int3_G32, "int3_g32", V::Int, 3, 32, false, S::F16, false, fit_int_asym_group, encode_int,
     decode_int, "int3 asymmetric, f16 scale + int3 zero per 32"},
    {W::Int3_G64, "int3_g64", V::Int, 3, 64, false, S::F16, false, fit_int_asym_group, encode_int,
     decode_int, "int3 asymmetric, f16 scale + int3 zero per 64"},
    {W::Int3_G128, "int3_g128", V::Int, 3, 128, false, S::F16, false, fit_int_asym_group,
     encode_int, decode_int, "int3 asymmetric, f16 scale + int3 zero per 128"},
    {W::Int2_G32, "int2_g32", V::Int, 2, 32, false, S::F16, false, fit_int_asym_group, encode_int,
     decode_int, "int2 asymmetric, f16 scale + int2 zero per 32"},
    {W::Int2_G64, "int2_g64", V::Int, 2, 64, false, S::F16, false, fit_int_asym_group, encode_int,
     decode_int, "int2 asymmetric, f16 scale + int2 zero per 64"},
    {W::Int2_G128, "int2_g128", V::Int, 2, 128, false, S::F16, false, fit_int_asym_group,
     encode_int, decode_int, "int2 asymmetric, f16 scale + int2 zero per 128"},
    {W::Int4Sym_G128, "int4sym_g128", V::Int, 4, 128, true, S::F16, false, fit_int_sym_group,
     encode_int, decode_int, "int4 symmetric, f16 scale per 128"},
    // ggml block types: bits = code width, group = values per block, then the codec.
    // id          name      value          bits block sym   scale  tensor
    {W::Q8_0, "q8_0", V::GgmlBlock, 8, 32, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q8_0: 32 x int8, fp16 scale", G::GgmlBlocks, &kGgmlQ8_0},
    {W::Q6_K, "q6_K", V::GgmlBlock, 6, 256, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q6_K: 6-bit, int8 scale per 16, fp16 per 256", G::GgmlBlocks, &kGgmlQ6_K},
    {W::Q5_K, "q5_K", V::GgmlBlock, 5, 256, false, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q5_K: 5-bit, 6-bit scale+min per 32, fp16 per 256", G::GgmlBlocks, &kGgmlQ5_K},
    {W::Q4_K, "q4_K", V::GgmlBlock, 4, 256, false, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q4_K: 4-bit, 6-bit scale+min per 32, fp16 per 256", G::GgmlBlocks, &kGgmlQ4_K},
    {W::Q3_K, "q3_K", V::GgmlBlock, 3, 256, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q3_K: 3-bit, 6-bit scale per 16, fp16 per 256", G::GgmlBlocks, &kGgmlQ3_K},
    {W::Q2_K, "q2_K", V::GgmlBlock, 2, 256, false, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q2_K: 2-bit, 4-bit scale+min per 16, fp16 per 256", G::GgmlBlocks, &kGgmlQ2_K},
    {W::Q5_0, "q5_0", V::GgmlBlock, 5, 32, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q5_0: 5-bit, fp16 scale per 32", G::GgmlBlocks, &kGgmlQ5_0},
    {W::Q5_1, "q5_1", V::GgmlBlock, 5, 32, false, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q5_1: 5-bit, fp16 scale and min per 32", G::GgmlBlocks, &kGgmlQ5_1},
    {W::Q4_0, "q4_0", V::GgmlBlock, 4, 32, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q4_0: 4-bit, fp16 scale per 32", G::GgmlBlocks, &kGgmlQ4_0},
    {W::Q4_1, "q4_1", V::GgmlBlock, 4, 32, false, S::F16, false, nullptr, nullptr, nullptr,
     "ggml Q4_1: 4-bit, fp16 scale and min per 32", G::GgmlBlocks, &kGgmlQ4_1},
    {W::IQ4_NL, "iq4_nl", V::GgmlBlock, 4, 32, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml IQ4_NL: 16 non-uniform levels, fp16 scale per 32", G::GgmlBlocks, &kGgmlIQ4_NL},
    {W::IQ4_XS, "iq4_xs", V::GgmlBlock, 4, 256, true, S::F16, false, nullptr, nullptr, nullptr,
     "ggml IQ4_XS: IQ4_NL levels, 6-bit scale per 32, fp16 per 256", G::GgmlBlocks, &kGgmlIQ4_XS},
    {W::Int4Sym_G32, "int4sym_g32", V::Int, 4, 32, true, S::F16, false, fit_int_sym_group, encode_int, decode_int,
     "int4 symmetric, f16 scale per 32"},
    {W::Int4Sym_G64, "int4sym_g64", V::Int, 4, 64, true, S::F16, false, fit_int_sym_group, encode_int, decode_int,
     "int4 symmetric, f16 scale per 64"},
}};

constexpr bool table_follows_enum() {
  for (size_t i = 0; i < kFormats.size(); ++i) {
    if (static_cast<size_t>(kFormats[i].id) != i) return false;
  }
  return true;
}
static_assert(table_follows_enum(), "kFormats rows must be in WeightFormatId order");

// ggml rows are exactly the rows with a codec and the GgmlBlock value kind; element rows have
// their three per-value functions.
constexpr bool storage_is_consistent() {
  for (const WeightFormatTraits& f : kFormats) {
    const bool ggml = f.storage == G::GgmlBlocks;
    if (ggml != (f.ggml != nullptr) || ggml != (f.value_kind == V::GgmlBlock)) return false;
    if (!ggml && (f.fit == nullptr || f.encode == nullptr || f.decode == nullptr)) return false;
  }
  return true;
}
static_assert(storage_is_consistent(), "ggml rows need a codec and value kind GgmlBlock");

}  // namespace

// ---- the table

const WeightFormatTraits& weight_format(WeightFormatId id) {
  const auto i = static_cast<size_t>(id);
  if (i >= kFormats.size()) fail("weight format", "invalid id " + std::to_string(i));
  return kFormats[i];
}

std::span<const WeightFormatTraits> weight_formats() { return kFormats; }

std::optional<WeightFormatId> weight_format_from_name(std::string_view name) {
  for (const WeightFormatTraits& f : kFormats) {
    if (name == f.name) return f.id;
  }
  return std::nullopt;
}

std::optional<WeightFormatId> weight_format_of_ggml_type(uint32_t ggml_type) {
  for (const WeightFormatTraits& f : kFormats) {
    if (is_ggml_format(f) && f.ggml->ggml_type == ggml_type) return f.id;
  }
  return std::nullopt;
}

bool format_accepts(WeightFormatId format, int64_t rows, int64_t cols, std::string* reason) {
  const WeightFormatTraits& f = weight_format(format);
  const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  if (rows <= 0 || cols <= 0) {
    if (reason) *reason = std::string(f.name) + " cannot hold an empty matrix " + shape;
    return false;
  }
  if (is_ggml_format(f) && cols % f.ggml->block_values != 0) {
    if (reason) {
      *reason = std::string(f.name) + " stores rows in blocks of " + std::to_string(f.ggml->block_values) +
                " values: a tensor " + shape + " has rows of " + std::to_string(cols) +
                " values, not a whole number of blocks";
    }
    return false;
  }
  return true;
}

void require_format_accepts(WeightFormatId format, int64_t rows, int64_t cols, const std::string& where) {
  std::string reason;
  if (!format_accepts(format, rows, cols, &reason)) fail(where, reason);
}

// ---- bit accounting

int scale_type_bits(ScaleType type) {
  switch (type) {
    case S::None: return 0;
    case S::F32: return 32;
    case S::F16:
    case S::BF16: return 16;
    case S::E4M3:
    case S::E8M0: return 8;
  }
  return 0;
}

int64_t groups_per_row(const WeightFormatTraits& f, int64_t cols) {
  if (is_ggml_format(f)) return cols / f.ggml->block_values;
  if (f.scale_type == S::None) return 0;
  if (f.group_size == 0) return 1;
  return (cols + f.group_size - 1) / f.group_size;
}

uint64_t storage_bits(WeightFormatId format, int64_t rows, int64_t cols) {
  const WeightFormatTraits& f = weight_format(format);
  check(rows >= 0 && cols >= 0, f.name, "negative matrix shape");
  const auto r = static_cast<uint64_t>(rows), c = static_cast<uint64_t>(cols);
  if (is_ggml_format(f)) {
    if (rows > 0 && cols > 0) require_format_accepts(format, rows, cols, "storage_bits");
    return r * static_cast<uint64_t>(groups_per_row(f, cols)) * static_cast<uint64_t>(f.ggml->block_bytes) * 8u;
  }
  const uint64_t per_group = static_cast<uint64_t>(scale_type_bits(f.scale_type)) +
                             (f.symmetric ? 0u : static_cast<uint64_t>(f.bits));
  return r * c * static_cast<uint64_t>(f.bits) +
         r * static_cast<uint64_t>(groups_per_row(f, cols)) * per_group +
         (f.has_tensor_scale ? 32u : 0u);
}

double bits_per_weight(WeightFormatId format, int64_t rows, int64_t cols) {
  check(rows > 0 && cols > 0, weight_format(format).name, "empty matrix");
  return static_cast<double>(storage_bits(format, rows, cols)) /
         (static_cast<double>(rows) * static_cast<double>(cols));
}

// ---- scales

float decode_scale(ScaleType type, uint32_t bits) {
  switch (type) {
    case S::None: return 1.f;
    case S::F32: return std::bit_cast<float>(bits);
    case S::F16: return f16_to_f32(static_cast<uint16_t>(bits));
    case S::BF16: return bf16_to_f32(static_cast<uint16_t>(bits));
    case S::E4M3: return e4m3_to_f32(static_cast<uint8_t>(bits));
    case S::E8M0: return e8m0_to_f32(static_cast<uint8_t>(bits));
  }
  return 1.f;
}

uint32_t encode_scale(ScaleType type, float scale) {
  // Largest finite positive and smallest positive value of each type, as bit patterns.
  switch (type) {
    case S::None: return 0;
    case S::F32: {
      if (!(scale > 0.f)) return 1u;  // smallest subnormal
      if (scale > std::numeric_limits<float>::max()) return 0x7F7FFFFFu;
      return std::bit_cast<uint32_t>(scale);
    }
    case S::F16: {
      const uint16_t h = f32_to_f16(scale);
      if ((h & 0x7FFF) == 0) return 0x0001u;       // 0 or underflow: smallest subnormal 2^-24
      if ((h & 0x7FFF) >= 0x7C00) return 0x7BFFu;  // Inf: saturate at 65504
      return h;
    }
    case S::BF16: {
      const uint16_t h = f32_to_bf16(scale);
      if ((h & 0x7FFF) == 0) return 0x0001u;
      if ((h & 0x7FFF) >= 0x7F80) return 0x7F7Fu;
      return h;
    }
    case S::E4M3: {
      const uint8_t b = f32_to_e4m3(scale);  // saturates at 448
      return (b & 0x7F) == 0 ? 0x01u : b;    // smallest subnormal 2^-9
    }
    case S::E8M0: return f32_to_e8m0_floor(scale);  // 0 -> byte 0 = 2^-127
  }
  return 0;
}

GroupParams group_params_from_stored(const WeightFormatTraits& f, uint32_t scale_bits,
                                     int32_t zero, float tensor_scale) {
  GroupParams p;
  p.scale_bits = scale_bits;
  p.zero = zero;
  p.scale = decode_scale(f.scale_type, scale_bits);
  if (f.has_tensor_scale) p.scale = p.scale / tensor_scale;  // compressed-tensors' order
  return p;
}

GroupParams group_params_from_scale(const WeightFormatTraits& f, float scale, int32_t zero,
                                    float tensor_scale) {
  const float stored = f.has_tensor_scale ? scale * tensor_scale : scale;
  return group_params_from_stored(f, encode_scale(f.scale_type, stored), zero, tensor_scale);
}

// ---- per-group primitives

float compute_tensor_scale(const WeightFormatTraits& f, const float* w, int64_t n) {
  return f.has_tensor_scale ? nvfp4_tensor_scale(w, n) : 1.f;
}

double group_weighted_error(const WeightFormatTraits& f, const float* x, const float* weights,
                            int64_t n, const GroupParams& p) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - quantize_value(f, x[i], p);
    sum += (weights ? weights[i] : 1.0) * d * d;
  }
  return sum;
}

GroupParams fit_group(const WeightFormatTraits& f, const float* x, int64_t n, float tensor_scale,
                      const GroupFitOptions& options) {
  check(!is_ggml_format(f), f.name, "fit_group: a ggml block format fits whole blocks through its codec");
  GroupParams best = f.fit(f, x, n, 1.f, tensor_scale);
  if (!options.clip_search || f.scale_type == S::None) return best;
  check(options.clip_steps >= 2 && options.clip_min > 0.f && options.clip_max >= options.clip_min,
        f.name, "clip search needs clip_steps >= 2 and 0 < clip_min <= clip_max");
  double best_error = group_weighted_error(f, x, options.weights, n, best);
  const double step = (static_cast<double>(options.clip_max) - options.clip_min) /
                      (options.clip_steps - 1);
  for (int k = 0; k < options.clip_steps; ++k) {
    const auto shrink = static_cast<float>(options.clip_max - k * step);
    if (shrink == 1.f) continue;  // already evaluated
    const GroupParams p = f.fit(f, x, n, shrink, tensor_scale);
    const double error = group_weighted_error(f, x, options.weights, n, p);
    if (error < best_error) {
      best_error = error;
      best = p;
    }
  }
  return best;
}

// ---- QuantizedMatrix

int QuantizedMatrix::code_bytes() const { return traits().bits > 8 ? 2 : 1; }
int QuantizedMatrix::scale_bytes() const {
  return is_ggml_format(traits()) ? 0 : scale_type_bits(traits().scale_type) / 8;
}

namespace {

void require_elements(const QuantizedMatrix& q, const char* accessor) {
  if (is_ggml_format(q.traits())) {
    fail(q.traits().name, std::string(accessor) + " does not apply to a ggml block format (use block_row)");
  }
}

void require_blocks(const QuantizedMatrix& q) {
  if (!is_ggml_format(q.traits())) fail(q.traits().name, "block_row applies to ggml block formats only");
}

}  // namespace

int64_t QuantizedMatrix::block_row_bytes() const {
  require_blocks(*this);
  return groups * traits().ggml->block_bytes;
}

const uint8_t* QuantizedMatrix::block_row(int64_t row) const { return codes.data() + row * block_row_bytes(); }
uint8_t* QuantizedMatrix::block_row(int64_t row) { return codes.data() + row * block_row_bytes(); }

int64_t QuantizedMatrix::group_begin(int64_t g) const {
  const int gs = traits().group_size;
  return gs == 0 ? 0 : g * gs;
}

int64_t QuantizedMatrix::group_length(int64_t g) const {
  const int gs = traits().group_size;
  if (gs == 0) return cols;
  const int64_t begin = g * gs;
  return begin + gs <= cols ? gs : cols - begin;
}

uint16_t QuantizedMatrix::code(int64_t row, int64_t col) const {
  require_elements(*this, "code()");
  const size_t i = static_cast<size_t>(row * cols + col);
  if (code_bytes() == 1) return codes[i];
  return static_cast<uint16_t>(codes[2 * i] | (codes[2 * i + 1] << 8));
}

void QuantizedMatrix::set_code(int64_t row, int64_t col, uint16_t c) {
  require_elements(*this, "set_code()");
  const size_t i = static_cast<size_t>(row * cols + col);
  if (code_bytes() == 1) {
    codes[i] = static_cast<uint8_t>(c);
  } else {
    codes[2 * i] = static_cast<uint8_t>(c & 0xFF);
    codes[2 * i + 1] = static_cast<uint8_t>(c >> 8);
  }
}

GroupParams QuantizedMatrix::params(int64_t row, int64_t group) const {
  require_elements(*this, "params()");
  const WeightFormatTraits& f = traits();
  if (f.scale_type == S::None) return GroupParams{};
  const size_t i = static_cast<size_t>(row * groups + group);
  const int nb = scale_bytes();
  uint32_t bits = 0;
  for (int b = 0; b < nb; ++b) bits |= static_cast<uint32_t>(scales[i * nb + b]) << (8 * b);
  const int32_t zero = zeros.empty() ? 0 : zeros[i];
  return group_params_from_stored(f, bits, zero, tensor_scale);
}

void QuantizedMatrix::set_params(int64_t row, int64_t group, const GroupParams& p) {
  require_elements(*this, "set_params()");
  const WeightFormatTraits& f = traits();
  if (f.scale_type == S::None) return;
  const size_t i = static_cast<size_t>(row * groups + group);
  const int nb = scale_bytes();
  for (int b = 0; b < nb; ++b) scales[i * nb + b] = static_cast<uint8_t>(p.scale_bits >> (8 * b));
  if (!zeros.empty()) zeros[i] = static_cast<int8_t>(p.zero);
}

QuantizedMatrix make_quantized_matrix(WeightFormatId format, int64_t rows, int64_t cols) {
  const WeightFormatTraits& f = weight_format(format);
  check(rows >= 0 && cols >= 0, f.name, "negative matrix shape");
  QuantizedMatrix q;
  q.format = format;
  q.rows = rows;
  q.cols = cols;
  q.groups = groups_per_row(f, cols);
  if (is_ggml_format(f)) {
    if (rows > 0 || cols > 0) require_format_accepts(format, rows, cols, "make_quantized_matrix");
    q.codes.assign(static_cast<size_t>(rows * q.groups * f.ggml->block_bytes), 0);
    return q;
  }
  q.codes.assign(static_cast<size_t>(rows * cols * q.code_bytes()), 0);
  q.scales.assign(static_cast<size_t>(rows * q.groups * q.scale_bytes()), 0);
  if (!f.symmetric) q.zeros.assign(static_cast<size_t>(rows * q.groups), 0);
  return q;
}

void dequantize(const QuantizedMatrix& q, float* out) {
  const WeightFormatTraits& f = q.traits();
  if (is_ggml_format(f)) {
    check(q.codes.size() == static_cast<size_t>(q.rows * q.groups * f.ggml->block_bytes) &&
              q.groups * f.ggml->block_values == q.cols,
          f.name, "dequantize: block bytes do not match the shape");
    for (int64_t r = 0; r < q.rows; ++r) f.ggml->decode(q.block_row(r), out + r * q.cols, q.cols);
    return;
  }
  const int64_t groups = std::max<int64_t>(q.groups, 1);  // kept weights: one pseudo-group
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const GroupParams p = q.params(r, g);
      const int64_t begin = q.groups == 0 ? 0 : q.group_begin(g);
      const int64_t len = q.groups == 0 ? q.cols : q.group_length(g);
      for (int64_t c = begin; c < begin + len; ++c) {
        out[r * q.cols + c] = f.decode(f, q.code(r, c), p);
      }
    }
  }
}

}  // namespace mpq

namespace mpq {

std::string first_non_finite(const QuantizedMatrix& q) {
  const WeightFormatTraits& f = q.traits();
  auto at = [](const char* what, int64_t row, int64_t col) {
    return std::string(what) + " at row " + std::to_string(row) + ", column " + std::to_string(col);
  };
  if (f.has_tensor_scale && !(std::isfinite(q.tensor_scale) && q.tensor_scale > 0)) return "a tensor scale that is not positive and finite";
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t g = 0; g < q.groups; ++g) {
      const float s = q.params(r, g).scale;
      if (!std::isfinite(s) || s < 0) return at("a non-finite or negative scale", r, q.group_begin(g));
    }
  }
  if (f.value_kind == ValueKind::Half || f.value_kind == ValueKind::FP8_E4M3) {
    for (int64_t r = 0; r < q.rows; ++r) {
      for (int64_t c = 0; c < q.cols; ++c) {
        const uint16_t code = q.code(r, c);
        bool bad = false;
        if (f.value_kind == ValueKind::FP8_E4M3) bad = (code & 0x7F) == 0x7F;
        else if (f.id == WeightFormatId::BF16) bad = (code & 0x7F80) == 0x7F80;
        else bad = (code & 0x7C00) == 0x7C00;
        if (bad) return at("a NaN or infinite code", r, c);
      }
    }
  }
  return "";
}

}  // namespace mpq

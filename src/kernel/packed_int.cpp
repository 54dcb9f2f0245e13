// Integer packed formats (int8_channel, int4/int3/int2 asymmetric groups, int4sym_g128): the
// packer, the exact unpacker, the scalar reference products, the int8 activation quantizer and
// the dispatch to the SIMD paths (kernel/packed_int_avx512.cpp, kernel/packed_int_avx2.cpp).
// The packed layout is described in kernel/packed_int.h.
#include "kernel/packed_int.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "format/dtype.h"
#include "format/intq.h"
#include "format/rounding.h"
#include "kernel/packed_impl.h"
#include "mpq/error.h"

namespace mpq {
namespace {

int unit_cols_of(int bits) { return bits == 8 ? 4 : bits == 4 ? 8 : bits == 2 ? 16 : 32; }
int unit_bytes_of(int bits) { return bits == 3 ? 192 : 64; }

template <class T>
AlignedArray<T> aligned_zeros(int64_t count) {
  // Rounded up to whole cache lines (aligned_alloc needs a multiple of the alignment); at least
  // one line so that an empty array still has a valid pointer.
  const size_t bytes = (static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) fail("packed int matrix", "out of memory (" + std::to_string(bytes) + " bytes)");
  std::fill_n(static_cast<uint8_t*>(p), bytes, uint8_t{0});
  return AlignedArray<T>(static_cast<T*>(p));
}

// Byte offset of (row, col)'s byte in `codes` for the bit layout of packed_int.h, and the bit
// position of the code (or of its low 2 bits for int3) in that byte.
struct CodePlace {
  int64_t byte;      // byte of the code (int3: of the low 2 bits)
  int shift;         // bit position inside that byte
  int64_t hi_byte;   // int3: byte of bit 2 of the code
  int hi_shift;      // int3: its bit position
};

CodePlace code_place(const PackedIntLayout& m, int64_t row, int64_t col) {
  const int64_t tile = row / kIntTileRows, lane = row % kIntTileRows;
  const int64_t unit = col / m.unit_cols;
  const int cc = static_cast<int>(col % m.unit_cols);  // column inside the unit
  const int64_t base = tile * m.tile_bytes + unit * m.unit_bytes + 4 * lane;
  const int j = cc % 4;  // byte inside the lane
  CodePlace p{base + j, 0, 0, 0};
  switch (m.bits) {
    case 8: break;
    case 4: p.shift = 4 * (cc / 4); break;
    case 2: p.shift = 2 * (cc / 4); break;
    case 3:
      p.byte = base + 64 * (cc / 16) + j;
      p.shift = 2 * ((cc % 16) / 4);
      p.hi_byte = base + 128 + j;
      p.hi_shift = cc / 4;
      break;
  }
  return p;
}

uint8_t get_code(const PackedIntLayout& m, int64_t row, int64_t col) {
  const CodePlace p = code_place(m, row, col);
  const uint8_t* c = m.codes.get();
  if (m.bits == 8) return c[p.byte];
  if (m.bits == 3) {
    return static_cast<uint8_t>(((c[p.byte] >> p.shift) & 3) | (((c[p.hi_byte] >> p.hi_shift) & 1) << 2));
  }
  return static_cast<uint8_t>((c[p.byte] >> p.shift) & ((1 << m.bits) - 1));
}

void put_code(PackedIntLayout& m, int64_t row, int64_t col, uint8_t code) {
  const CodePlace p = code_place(m, row, col);
  uint8_t* c = m.codes.get();
  if (m.bits == 8) {
    c[p.byte] = code;
  } else if (m.bits == 3) {
    c[p.byte] = static_cast<uint8_t>(c[p.byte] | ((code & 3) << p.shift));
    c[p.hi_byte] = static_cast<uint8_t>(c[p.hi_byte] | (((code >> 2) & 1) << p.hi_shift));
  } else {
    c[p.byte] = static_cast<uint8_t>(c[p.byte] | (code << p.shift));
  }
}

int64_t param_group_of(const PackedIntLayout& m, int64_t kernel_group) {
  return m.group_size == 0 ? 0 : kernel_group;
}

void check_rows(const PackedIntLayout& m, int64_t n_tokens, int64_t row_begin, int64_t row_end) {
  const char* name = weight_format(m.format).name;
  check(n_tokens >= 0, name, "negative token count");
  check(0 <= row_begin && row_begin <= row_end && row_end <= m.rows, name,
        "row range [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
            ") outside the matrix's " + std::to_string(m.rows) + " rows");
}

// ---- scalar references

// y = Σ_i decode(code) · x_i in column order, decode being the format's own codec.
void matmul_f32_scalar(const PackedIntLayout& m, const float* x, int64_t n_tokens,
                       const IntOutput& out) {
  const WeightFormatTraits& f = weight_format(m.format);
  const int64_t group_cols = m.group_size == 0 ? m.cols : m.group_size;
  for (int64_t r = out.row_begin; r < out.row_end; ++r) {
    const int64_t o = out.row_to_output ? out.row_to_output[r] : r;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * m.cols;
      float sum = 0.f;
      for (int64_t c = 0; c < m.cols; ++c) {
        const int64_t g = c / group_cols;
        GroupParams p;
        p.scale = m.tile_scales(r / kIntTileRows, g)[r % kIntTileRows];
        p.zero = m.tile_zeros(r / kIntTileRows, g)[r % kIntTileRows] - (1 << (m.bits - 1));
        sum += f.decode(f, get_code(m, r, c), p) * xt[c];
      }
      out.y[t * out.ldy + o] = sum;
    }
  }
}

// Per kernel group: d = Σ (c - z') · q_a in int32 (exact), then y += (w_scale · a_scale) · d in
// group order.
void matmul_int8_scalar(const PackedIntLayout& m, const Int8Prepared& x, const IntOutput& out) {
  for (int64_t r = out.row_begin; r < out.row_end; ++r) {
    const int64_t o = out.row_to_output ? out.row_to_output[r] : r;
    const int64_t tile = r / kIntTileRows, lane = r % kIntTileRows;
    for (int64_t t = 0; t < x.n_tokens; ++t) {
      const int8_t* q = x.q + t * x.stride;
      float sum = 0.f;
      for (int64_t g = 0; g < x.groups; ++g) {
        const int64_t pg = param_group_of(m, g);
        const int32_t zero = m.tile_zeros(tile, pg)[lane];
        const float w_scale = m.tile_scales(tile, pg)[lane];
        int32_t d = 0;
        const int64_t end = std::min(m.cols, (g + 1) * x.group_cols);
        for (int64_t c = g * x.group_cols; c < end; ++c) d += (get_code(m, r, c) - zero) * q[c];
        sum += (w_scale * x.scale[t * x.groups + g]) * static_cast<float>(d);
      }
      out.y[t * out.ldy + o] = sum;
    }
  }
}

// ---- int8 activations: scale sums per kernel group

// Scratch of one product, reused across calls of a thread.
struct Int8Scratch {
  std::vector<float> scale, scale_sum;
};

Int8Prepared prepare_int8(const PackedIntLayout& m, const Int8Activations& x) {
  const char* name = weight_format(m.format).name;
  check(x.cols == m.cols, name,
        "int8 activations have " + std::to_string(x.cols) + " columns, the matrix " +
            std::to_string(m.cols));
  // Kernel groups must be whole units and lie inside one activation group; the int32 dot of a
  // group must not overflow (255 * 127 * 4096 < 2^31).
  check(x.group_size >= 32 && x.group_size % 32 == 0 && x.group_size <= 4096, name,
        "int8 activations need a group size that is a multiple of 32, at most 4096");
  check(m.group_size == 0 || x.group_size % m.group_size == 0, name,
        "activation group size " + std::to_string(x.group_size) +
            " is not a multiple of the weight group size");
  check(x.n_tokens >= 0 && x.groups == (x.cols + x.group_size - 1) / x.group_size, name,
        "int8 activations: inconsistent group count");
  check(x.stride >= m.units_per_row * m.unit_cols, name,
        "int8 activations: row stride must cover whole units (use quantize_activations_int8)");
  check(x.q.size() >= static_cast<size_t>(x.n_tokens * x.stride) &&
            x.scales.size() >= static_cast<size_t>(x.n_tokens * x.groups) &&
            x.group_sums.size() >= static_cast<size_t>(x.n_tokens * x.groups),
        name, "int8 activations: arrays too short");

  thread_local Int8Scratch scratch;
  Int8Prepared p;
  p.q = x.q.data();
  p.stride = x.stride;
  p.n_tokens = x.n_tokens;
  p.group_cols = m.group_size == 0 ? x.group_size : m.group_size;
  p.groups = (m.cols + p.group_cols - 1) / p.group_cols;
  scratch.scale.resize(static_cast<size_t>(std::max<int64_t>(x.n_tokens * p.groups, 1)));
  scratch.scale_sum.resize(scratch.scale.size());
  const int64_t per_act_group = x.group_size / p.group_cols;  // kernel groups per act group
  for (int64_t t = 0; t < x.n_tokens; ++t) {
    const int8_t* q = x.q.data() + t * x.stride;
    for (int64_t g = 0; g < p.groups; ++g) {
      const int64_t ag = g / per_act_group;
      int32_t sum = 0;
      if (per_act_group == 1) {
        sum = x.group_sums[t * x.groups + ag];
      } else {
        const int64_t end = std::min(m.cols, (g + 1) * p.group_cols);
        for (int64_t c = g * p.group_cols; c < end; ++c) sum += q[c];
      }
      const float s = x.scales[t * x.groups + ag];
      scratch.scale[t * p.groups + g] = s;
      scratch.scale_sum[t * p.groups + g] = s * static_cast<float>(sum);
    }
  }
  p.scale = scratch.scale.data();
  p.scale_sum = scratch.scale_sum.data();
  return p;
}

// ---- activation quantizer, scalar

void quantize_token_int8_scalar(const float* x, int64_t cols, int64_t group_size, int8_t* q,
                                float* scales, int32_t* sums) {
  const int64_t groups = (cols + group_size - 1) / group_size;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * group_size, end = std::min(cols, begin + group_size);
    float absmax = 0.f;
    for (int64_t i = begin; i < end; ++i) absmax = std::fmax(absmax, std::fabs(x[i]));
    float scale = 0.f, inverse = 0.f;
    int8_group_scale(absmax, scale, inverse);
    int32_t sum = 0;
    for (int64_t i = begin; i < begin + group_size; ++i) {
      int32_t v = 0;
      if (i < end) {
        double r = round_half_even(static_cast<double>(x[i] * inverse));  // product in fp32
        if (!(r > -127.0)) r = -127.0;  // also NaN, as cvtps2dq's "indefinite" then clamps
        if (r > 127.0) r = 127.0;
        v = static_cast<int32_t>(r);
      }
      q[i] = static_cast<int8_t>(v);
      sum += v;
    }
    scales[g] = scale;
    sums[g] = sum;
  }
}

void check_isa(Isa isa, const char* name) {
  check(cpu_supports(isa), name, std::string("instruction set ") + isa_name(isa) +
                                     " is not supported by this CPU");
}

}  // namespace

bool cpu_has_avx512_vnni() {
  static const bool has = cpu_supports(Isa::Avx512) && __builtin_cpu_supports("avx512vnni");
  return has;
}

// ---- activations

void quantize_activations_int8(Isa isa, const float* x, int64_t n_tokens, int64_t cols,
                               Int8Activations& out, int64_t group_size) {
  check(n_tokens >= 0 && cols >= 0, "quantize_activations_int8", "negative shape");
  check(group_size > 0, "quantize_activations_int8", "group size must be positive");
  check_isa(isa, "quantize_activations_int8");
  out.n_tokens = n_tokens;
  out.cols = cols;
  out.group_size = group_size;
  out.groups = (cols + group_size - 1) / group_size;
  out.stride = out.groups * group_size;  // whole groups: every kernel unit reads zeros past cols
  out.q.resize(static_cast<size_t>(n_tokens * out.stride));
  out.scales.resize(static_cast<size_t>(n_tokens * out.groups));
  out.group_sums.resize(out.scales.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    int8_t* q = out.q.data() + t * out.stride;
    float* s = out.scales.data() + t * out.groups;
    int32_t* sums = out.group_sums.data() + t * out.groups;
    switch (isa) {
      case Isa::Avx512: quantize_token_int8_avx512(x + t * cols, cols, group_size, q, s, sums); break;
      case Isa::Avx2: quantize_token_int8_avx2(x + t * cols, cols, group_size, q, s, sums); break;
      case Isa::Scalar: quantize_token_int8_scalar(x + t * cols, cols, group_size, q, s, sums); break;
    }
  }
}

// ---- the packed matrix

uint64_t PackedIntMatrix::bytes() const {
  const auto tiles = static_cast<uint64_t>(m_.tiles);
  return tiles * static_cast<uint64_t>(m_.tile_bytes) +
         tiles * static_cast<uint64_t>(m_.param_groups) * kIntTileRows * (sizeof(float) + 1) +
         sizeof(*this);
}

QuantizedMatrix PackedIntMatrix::unpack() const {
  QuantizedMatrix q = make_quantized_matrix(m_.format, m_.rows, m_.cols);
  const int32_t half = 1 << (m_.bits - 1);
  for (int64_t r = 0; r < m_.rows; ++r) {
    for (int64_t c = 0; c < m_.cols; ++c) q.codes[r * m_.cols + c] = get_code(m_, r, c);
    for (int64_t g = 0; g < m_.param_groups; ++g) {
      const int64_t tile = r / kIntTileRows, lane = r % kIntTileRows;
      const uint16_t bits = f32_to_f16(m_.tile_scales(tile, g)[lane]);  // exact: checked at pack
      q.scales[2 * (r * q.groups + g)] = static_cast<uint8_t>(bits & 0xFF);
      q.scales[2 * (r * q.groups + g) + 1] = static_cast<uint8_t>(bits >> 8);
      if (!m_.symmetric) q.zeros[r * q.groups + g] = static_cast<int8_t>(m_.tile_zeros(tile, g)[lane] - half);
    }
  }
  return q;
}

void PackedIntMatrix::decode_row(int64_t r, float* out) const {
  check_rows(m_, 0, r, r + 1);
  const WeightFormatTraits& f = weight_format(m_.format);
  const int64_t group_cols = m_.group_size == 0 ? m_.cols : m_.group_size;
  const int64_t tile = r / kIntTileRows, lane = r % kIntTileRows;
  for (int64_t g = 0; g * group_cols < m_.cols; ++g) {
    GroupParams p;  // as the scalar reference product decodes
    p.scale = m_.tile_scales(tile, g)[lane];
    p.zero = m_.tile_zeros(tile, g)[lane] - (1 << (m_.bits - 1));
    const int64_t end = std::min(m_.cols, (g + 1) * group_cols);
    for (int64_t c = g * group_cols; c < end; ++c) out[c] = f.decode(f, get_code(m_, r, c), p);
  }
}

void PackedIntMatrix::matmul_f32(Isa isa, const float* x, int64_t n_tokens, float* y, int64_t ldy,
                                 int64_t row_begin, int64_t row_end,
                                 const int32_t* row_to_output) const {
  check_rows(m_, n_tokens, row_begin, row_end);
  check_isa(isa, weight_format(m_.format).name);
  if (n_tokens == 0 || row_begin == row_end) return;
  const IntOutput out{y, ldy, row_begin, row_end, row_to_output};
  switch (isa) {
    case Isa::Avx512: return int_matmul_f32_avx512(m_, x, n_tokens, out);
    case Isa::Avx2: return int_matmul_f32_avx2(m_, x, n_tokens, out);
    case Isa::Scalar: return matmul_f32_scalar(m_, x, n_tokens, out);
  }
}

void PackedIntMatrix::matmul_int8_path(Isa isa, Int8DotPath path, const Int8Activations& x,
                                       float* y, int64_t ldy, int64_t row_begin, int64_t row_end,
                                       const int32_t* row_to_output) const {
  const char* name = weight_format(m_.format).name;
  check_rows(m_, x.n_tokens, row_begin, row_end);
  check_isa(isa, name);
  check(path != Int8DotPath::Vnni || isa != Isa::Avx512 || cpu_has_avx512_vnni(), name,
        "this CPU has no AVX-512 VNNI");
  const Int8Prepared prepared = prepare_int8(m_, x);
  if (x.n_tokens == 0 || row_begin == row_end) return;
  const IntOutput out{y, ldy, row_begin, row_end, row_to_output};
  switch (isa) {
    case Isa::Avx512: {
      const bool vnni = path == Int8DotPath::Vnni || (path == Int8DotPath::Auto && cpu_has_avx512_vnni());
      return int_matmul_int8_avx512(m_, prepared, vnni, out);
    }
    case Isa::Avx2: return int_matmul_int8_avx2(m_, prepared, out);
    case Isa::Scalar: return matmul_int8_scalar(m_, prepared, out);
  }
}

// ---- the packer

std::unique_ptr<PackedMatrix> pack_int_matrix(const QuantizedMatrix& q) {
  const WeightFormatTraits& f = q.traits();
  check(f.value_kind == ValueKind::Int && f.scale_type == ScaleType::F16, f.name,
        "not an integer format with f16 scales");
  check(f.bits == 8 || f.bits == 4 || f.bits == 3 || f.bits == 2, f.name, "unsupported bit width");
  check(f.group_size == 0 || f.group_size % 32 == 0, f.name, "group size must be a multiple of 32");
  check(q.rows > 0 && q.cols > 0 && q.groups == groups_per_row(f, q.cols), f.name,
        "inconsistent shape");
  check(q.codes.size() == static_cast<size_t>(q.rows * q.cols) &&
            q.scales.size() == static_cast<size_t>(q.rows * q.groups * 2) &&
            q.zeros.size() == (f.symmetric ? 0u : static_cast<size_t>(q.rows * q.groups)),
        f.name, "array sizes do not match the shape");

  PackedIntLayout m;
  m.format = q.format;
  m.bits = f.bits;
  m.group_size = f.group_size;
  m.symmetric = f.symmetric;
  m.rows = q.rows;
  m.cols = q.cols;
  m.tiles = (q.rows + kIntTileRows - 1) / kIntTileRows;
  m.param_groups = q.groups;
  m.unit_cols = unit_cols_of(f.bits);
  m.unit_bytes = unit_bytes_of(f.bits);
  m.units_per_row = (q.cols + m.unit_cols - 1) / m.unit_cols;
  m.tile_bytes = m.units_per_row * m.unit_bytes;
  m.codes = aligned_zeros<uint8_t>(m.tiles * m.tile_bytes);
  m.scales = aligned_zeros<float>(m.tiles * m.param_groups * kIntTileRows);
  m.zeros = aligned_zeros<uint8_t>(m.tiles * m.param_groups * kIntTileRows);

  const int32_t half = 1 << (f.bits - 1), code_limit = 1 << f.bits;
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const uint8_t code = q.codes[r * q.cols + c];
      check(code < code_limit, f.name,
            "code " + std::to_string(code) + " out of range at row " + std::to_string(r));
      put_code(m, r, c, code);
    }
    for (int64_t g = 0; g < q.groups; ++g) {
      const int64_t i = r * q.groups + g;
      const auto bits = static_cast<uint16_t>(q.scales[2 * i] | (q.scales[2 * i + 1] << 8));
      const float scale = f16_to_f32(bits);
      // Inf/NaN scales are corrupt input; every finite f16 survives f32 and back exactly.
      check(std::isfinite(scale) && f32_to_f16(scale) == bits, f.name,
            "non-finite scale at row " + std::to_string(r));
      const int32_t zero = f.symmetric ? 0 : q.zeros[i];
      check(zero >= int_qmin(f.bits) && zero <= int_qmax(f.bits), f.name,
            "zero point " + std::to_string(zero) + " out of range at row " + std::to_string(r));
      const int64_t tile = r / kIntTileRows, lane = r % kIntTileRows;
      m.scales[(tile * m.param_groups + g) * kIntTileRows + lane] = scale;
      m.zeros[(tile * m.param_groups + g) * kIntTileRows + lane] = static_cast<uint8_t>(half + zero);
    }
  }
  return std::make_unique<PackedIntMatrix>(std::move(m));
}

}  // namespace mpq

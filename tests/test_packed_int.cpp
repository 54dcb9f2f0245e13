// Packed integer weight formats (kernel/packed_int.h): pack/unpack round trips, every SIMD path
// of both products against the scalar reference and against the exact product of the
// dequantized matrix, the int8 reference against an independent int32 computation, the int8
// activation quantizer, row ranges and row maps, and real weights (stories260K).
//
// Error bounds (eps = 2^-24, fp32's unit roundoff):
//   - fp32 activations: every path multiplies weights bit-identical to dequantize() (scale times
//     a small integer is exact in fp32) and sums n = cols products in some order, so
//     |y - Σ w·x (exact)| <= n · eps · Σ|w·x|  (as in tests/test_kernels.cpp).
//   - int8 activations: per kernel group the paths form (w_scale · a_scale) · dot, the SIMD
//     paths from Σ c·q_a and a zero-point term z'·Σq_a; with G groups each path is within
//     (3G + 8) · eps · T of the exact value, T = Σ_g |w_scale · a_scale| (Σ c|q_a| + z'|Σ q_a|).
//   - int8 vs fp32 activations: |x - a_scale·q_a| <= a_scale · (1/2 + 512 eps) per element (see
//     ActivationsQuantizeWithinHalfAStep), so the results differ by at most
//     Σ_i |w_i| · a_scale_i · (1/2 + 512 eps) plus both rounding bounds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "format/weight_format.h"
#include "kernel/packed.h"
#include "kernel/packed_int.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/rtn.h"
#include "kernel_test_util.h"
#include "test_util.h"

namespace {

using mpq::Isa;
using mpq::WeightFormatId;

constexpr double kEps = 0x1p-24;

std::vector<WeightFormatId> int_formats() {
  std::vector<WeightFormatId> ids;
  for (const auto& f : mpq::weight_formats()) {
    if (f.value_kind == mpq::ValueKind::Int) ids.push_back(f.id);
  }
  return ids;
}

using mpq::test::supported_isas;

// An int8-activation path: the ISA and, on AVX-512, the dot product used.
struct Int8Path {
  Isa isa;
  mpq::Int8DotPath dot;
  std::string name;
};

std::vector<Int8Path> int8_paths() {
  std::vector<Int8Path> paths;
  for (Isa isa : supported_isas()) {
    if (isa != Isa::Avx512) {
      paths.push_back({isa, mpq::Int8DotPath::Auto, mpq::isa_name(isa)});
      continue;
    }
    paths.push_back({isa, mpq::Int8DotPath::NoVnni, "avx512-bw"});
    if (mpq::cpu_has_avx512_vnni()) {
      paths.push_back({isa, mpq::Int8DotPath::Vnni, "avx512-vnni"});
    } else {
      std::printf("[ info ] skipping avx512-vnni: not supported by this CPU\n");
    }
  }
  return paths;
}

struct Shape {
  int64_t rows, cols;
};
// Rows not a multiple of the 16-row tile, columns not multiples of 128, 32 or 16.
constexpr Shape kShapes[] = {{1, 32}, {7, 100}, {33, 128}, {64, 200}, {17, 576}, {64, 576}};
constexpr int64_t kTokenCounts[] = {1, 3, 9};

mpq::QuantizedMatrix random_matrix(WeightFormatId format, Shape s, uint64_t seed) {
  const auto w = mpq::test::gaussian(s.rows * s.cols, seed, 0.05f);
  return mpq::quantize_rtn(format, w.data(), s.rows, s.cols);
}

std::vector<float> dequantized(const mpq::QuantizedMatrix& q) {
  std::vector<float> w(q.rows * q.cols);
  mpq::dequantize(q, w.data());
  return w;
}

const mpq::PackedIntMatrix& as_int(const mpq::PackedMatrix& p) {
  return dynamic_cast<const mpq::PackedIntMatrix&>(p);
}

std::string describe(WeightFormatId f, Shape s, int64_t n) {
  return std::string(mpq::weight_format(f).name) + " " + std::to_string(s.rows) + "x" +
         std::to_string(s.cols) + " tokens " + std::to_string(n);
}

// The exact product (double) and the fp32 accumulation bound n·eps·Σ|w·x| of each output.
struct Reference {
  std::vector<double> y, bound;  // [n][rows]
};

Reference exact_product(const std::vector<float>& w, const std::vector<float>& x, int64_t rows,
                        int64_t cols, int64_t n) {
  Reference ref{std::vector<double>(n * rows), std::vector<double>(n * rows)};
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0, abs_sum = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double p = static_cast<double>(w[r * cols + c]) * x[t * cols + c];
        sum += p;
        abs_sum += std::abs(p);
      }
      ref.y[t * rows + r] = sum;
      ref.bound[t * rows + r] = cols * kEps * abs_sum;
    }
  }
  return ref;
}

// The int8 product written independently of the kernels, from the interchange form: per weight
// group (int8_channel: per activation group) an exact int32 dot of signed weight values
// q_w - zero and activation codes, then y += (w_scale · a_scale) · dot in group order -- the
// documented arithmetic of the scalar reference, so the two must agree bit for bit. Also the
// SIMD bound T of the file comment.
struct Int8Reference {
  std::vector<float> y;      // [n][rows]
  std::vector<double> simd;  // [n][rows]: (3G + 8) · eps · T
};

Int8Reference int8_product(const mpq::QuantizedMatrix& q, const mpq::Int8Activations& a) {
  const auto& f = q.traits();
  const int64_t group_cols = f.group_size == 0 ? a.group_size : f.group_size;
  const int64_t groups = (q.cols + group_cols - 1) / group_cols;
  const int32_t half = 1 << (f.bits - 1);
  Int8Reference ref{std::vector<float>(a.n_tokens * q.rows), std::vector<double>(a.n_tokens * q.rows)};
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const int8_t* qa = a.q.data() + t * a.stride;
    for (int64_t r = 0; r < q.rows; ++r) {
      float y = 0.f;
      double terms = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const mpq::GroupParams p = q.params(r, f.group_size == 0 ? 0 : g);
        const int64_t begin = g * group_cols, end = std::min(q.cols, begin + group_cols);
        int32_t dot = 0;
        int64_t code_abs = 0, sum_a = 0;
        for (int64_t c = begin; c < end; ++c) {
          const int32_t code = q.codes[r * q.cols + c];
          dot += (code - half - p.zero) * qa[c];
          code_abs += static_cast<int64_t>(code) * std::abs(qa[c]);
          sum_a += qa[c];
        }
        const float a_scale = a.scales[t * a.groups + begin / a.group_size];
        y += (p.scale * a_scale) * static_cast<float>(dot);
        terms += std::abs(static_cast<double>(p.scale) * a_scale) *
                 (code_abs + static_cast<double>(half + p.zero) * std::abs(sum_a));
      }
      ref.y[t * q.rows + r] = y;
      ref.simd[t * q.rows + r] = (3.0 * groups + 8) * kEps * terms;
    }
  }
  return ref;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Packing

TEST(PackedIntPack, UnpackGivesBackTheExactMatrix) {
  for (WeightFormatId format : int_formats()) {
    for (Shape s : kShapes) {
      SCOPED_TRACE(describe(format, s, 0));
      const mpq::QuantizedMatrix q = random_matrix(format, s, 7);
      const auto packed = mpq::pack_matrix(q);
      EXPECT_EQ(packed->format(), format);
      EXPECT_EQ(packed->rows(), s.rows);
      EXPECT_EQ(packed->cols(), s.cols);
      EXPECT_TRUE(packed->supports_int8_activations());
      // At least the interchange form's information, at most its one-byte-per-code size plus
      // padding to whole tiles and units.
      EXPECT_GE(packed->bytes() * 8, mpq::storage_bits(format, s.rows, s.cols));
      const mpq::QuantizedMatrix back = packed->unpack();
      EXPECT_EQ(back.format, q.format);
      EXPECT_EQ(back.rows, q.rows);
      EXPECT_EQ(back.cols, q.cols);
      EXPECT_EQ(back.groups, q.groups);
      EXPECT_EQ(back.codes, q.codes);
      EXPECT_EQ(back.scales, q.scales);
      EXPECT_EQ(back.zeros, q.zeros);
      EXPECT_EQ(back.tensor_scale, q.tensor_scale);
    }
  }
}

// decode_row (the embedding lookup of a tied quantized head) gives row r of the decoded matrix.
TEST(PackedIntPack, DecodeRowMatchesTheDecodedMatrix) {
  for (WeightFormatId format : int_formats()) {
    for (Shape s : kShapes) {
      SCOPED_TRACE(describe(format, s, 0));
      const mpq::QuantizedMatrix q = random_matrix(format, s, 11);
      std::vector<float> all(static_cast<size_t>(s.rows * s.cols)), row(static_cast<size_t>(s.cols));
      mpq::dequantize(q, all.data());
      const auto packed = mpq::pack_matrix(q);
      for (int64_t r = 0; r < s.rows; ++r) {
        packed->decode_row(r, row.data());
        for (int64_t c = 0; c < s.cols; ++c) ASSERT_EQ(row[c], all[r * s.cols + c]) << r << "," << c;
      }
      EXPECT_THROW(packed->decode_row(s.rows, row.data()), mpq::Error);
    }
  }
}

TEST(PackedIntPack, EveryCodeAndZeroPointSurvives) {
  // All codes and extreme zero points, in every position of a unit (int3's planes included).
  for (WeightFormatId format : int_formats()) {
    const auto& f = mpq::weight_format(format);
    mpq::QuantizedMatrix q = mpq::make_quantized_matrix(format, 19, 301);
    for (int64_t r = 0; r < q.rows; ++r) {
      for (int64_t c = 0; c < q.cols; ++c) q.set_code(r, c, static_cast<uint16_t>((r * 7 + c * 3) % (1 << f.bits)));
      for (int64_t g = 0; g < q.groups; ++g) {
        const int32_t zero = f.symmetric ? 0 : ((r + g) % 2 ? -(1 << (f.bits - 1)) : (1 << (f.bits - 1)) - 1);
        q.set_params(r, g, mpq::group_params_from_scale(f, 0.01f * (1 + r + g), zero, 1.f));
      }
    }
    const mpq::QuantizedMatrix back = mpq::pack_matrix(q)->unpack();
    EXPECT_EQ(back.codes, q.codes) << f.name;
    EXPECT_EQ(back.scales, q.scales) << f.name;
    EXPECT_EQ(back.zeros, q.zeros) << f.name;
  }
}

TEST(PackedIntPack, RejectsInconsistentMatrices) {
  const mpq::QuantizedMatrix good = random_matrix(WeightFormatId::Int4_G32, {3, 64}, 1);
  auto bad_code = good;
  bad_code.codes[5] = 16;
  EXPECT_THROW(mpq::pack_matrix(bad_code), mpq::Error);
  auto bad_zero = good;
  bad_zero.zeros[1] = 8;
  EXPECT_THROW(mpq::pack_matrix(bad_zero), mpq::Error);
  auto bad_scale = good;
  bad_scale.scales[0] = 0x00;
  bad_scale.scales[1] = 0x7E;  // f16 NaN
  EXPECT_THROW(mpq::pack_matrix(bad_scale), mpq::Error);
  auto short_codes = good;
  short_codes.codes.pop_back();
  EXPECT_THROW(mpq::pack_matrix(short_codes), mpq::Error);

  // Products with bad arguments.
  const auto packed = mpq::pack_matrix(good);
  std::vector<float> x(64), y(3);
  EXPECT_THROW(packed->matmul_f32(Isa::Scalar, x.data(), 1, y.data(), 3, 0, 4), mpq::Error);
  EXPECT_THROW(packed->matmul_f32(Isa::Scalar, x.data(), 1, y.data(), 3, 2, 1), mpq::Error);
  mpq::Int8Activations a;
  mpq::quantize_activations_int8(Isa::Scalar, x.data(), 1, 64, a);
  a.cols = 63;
  EXPECT_THROW(packed->matmul_int8(Isa::Scalar, a, y.data(), 3, 0, 3), mpq::Error);
  mpq::quantize_activations_int8(Isa::Scalar, x.data(), 1, 64, a, 16);  // groups < weight groups
  EXPECT_THROW(packed->matmul_int8(Isa::Scalar, a, y.data(), 3, 0, 3), mpq::Error);
}

// ---------------------------------------------------------------------------------------------
// fp32 activations

TEST(PackedIntMatmulF32, EveryIsaMatchesTheDequantizedProduct) {
  const auto isas = supported_isas();
  for (WeightFormatId format : int_formats()) {
    for (Shape s : kShapes) {
      const mpq::QuantizedMatrix q = random_matrix(format, s, 11);
      const auto packed = mpq::pack_matrix(q);
      const std::vector<float> w = dequantized(q);
      for (int64_t n : kTokenCounts) {
        SCOPED_TRACE(describe(format, s, n));
        const auto x = mpq::test::gaussian(n * s.cols, 12);
        const Reference ref = exact_product(w, x, s.rows, s.cols, n);
        std::vector<float> scalar(n * s.rows);
        packed->matmul_f32(Isa::Scalar, x.data(), n, scalar.data(), s.rows, 0, s.rows);
        for (Isa isa : isas) {
          std::vector<float> y(n * s.rows, NAN);
          packed->matmul_f32(isa, x.data(), n, y.data(), s.rows, 0, s.rows);
          for (int64_t i = 0; i < n * s.rows; ++i) {
            ASSERT_LE(std::abs(y[i] - ref.y[i]), ref.bound[i]) << mpq::isa_name(isa) << " output " << i;
            ASSERT_LE(std::abs(y[i] - scalar[i]), 2 * ref.bound[i]) << mpq::isa_name(isa) << " output " << i;
          }
        }
      }
    }
  }
}

TEST(PackedIntMatmulF32, TokensGiveTheSameResultAloneOrInABlock) {
  // Prefill blocks (8 tokens) and decode blocks (1 token) do the same arithmetic per output.
  for (Isa isa : supported_isas()) {
    for (WeightFormatId format : {WeightFormatId::Int8_Channel, WeightFormatId::Int3_G32, WeightFormatId::Int4_G128}) {
      const Shape s{48, 200};
      const auto packed = mpq::pack_matrix(random_matrix(format, s, 3));
      const int64_t n = 11;
      const auto x = mpq::test::gaussian(n * s.cols, 4);
      std::vector<float> all(n * s.rows), one(s.rows);
      packed->matmul_f32(isa, x.data(), n, all.data(), s.rows, 0, s.rows);
      for (int64_t t = 0; t < n; ++t) {
        packed->matmul_f32(isa, x.data() + t * s.cols, 1, one.data(), s.rows, 0, s.rows);
        for (int64_t r = 0; r < s.rows; ++r) {
          ASSERT_EQ(one[r], all[t * s.rows + r]) << mpq::isa_name(isa) << " token " << t << " row " << r;
        }
      }
    }
  }
}

// Row ranges and row maps: outputs of the range land at y[t*ldy + map[r]] and nothing else is
// written; values equal those of the full product.
TEST(PackedIntMatmulF32, RowRangesAndRowMapsWriteOnlyTheirOutputs) {
  const Shape s{45, 130};
  const int64_t n = 5, ldy = 52;
  std::vector<int32_t> map(s.rows);
  for (int64_t r = 0; r < s.rows; ++r) map[r] = static_cast<int32_t>((r * 17 + 3) % ldy);  // 17 ⟂ 52
  for (Isa isa : supported_isas()) {
    for (WeightFormatId format : int_formats()) {
      SCOPED_TRACE(std::string(mpq::isa_name(isa)) + " " + mpq::weight_format(format).name);
      const auto packed = mpq::pack_matrix(random_matrix(format, s, 5));
      const auto x = mpq::test::gaussian(n * s.cols, 6);
      std::vector<float> full(n * s.rows);
      packed->matmul_f32(isa, x.data(), n, full.data(), s.rows, 0, s.rows);
      for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 45}, {5, 29}, {16, 32}, {40, 45}, {3, 4}}) {
        for (bool mapped : {false, true}) {
          std::vector<float> y(n * ldy, -1234.f);
          packed->matmul_f32(isa, x.data(), n, y.data(), ldy, begin, end, mapped ? map.data() : nullptr);
          for (int64_t t = 0; t < n; ++t) {
            std::vector<bool> written(ldy, false);
            for (int64_t r = begin; r < end; ++r) {
              const int64_t o = mapped ? map[r] : r;
              written[o] = true;
              ASSERT_EQ(y[t * ldy + o], full[t * s.rows + r]) << "rows " << begin << ".." << end << " row " << r;
            }
            for (int64_t o = 0; o < ldy; ++o) {
              if (!written[o]) ASSERT_EQ(y[t * ldy + o], -1234.f) << "stray write at " << o;
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// int8 activations

TEST(PackedIntActivations, EveryIsaGivesTheScalarCodes) {
  const auto isas = supported_isas();
  for (int64_t cols : {1, 15, 100, 128, 200, 576}) {
    for (int64_t group : {128, 32, 100}) {
      const int64_t n = 3;
      auto x = mpq::test::heavy_tailed(n * cols, 21, 1.f);
      for (int64_t i = 0; i < std::min<int64_t>(cols, 40); ++i) x[i] = 0.f;  // an all-zero group
      if (cols >= 2 && (cols - 2) / group == (cols - 1) / group) {
        x[n * cols - 1] = 127.f;  // absmax 127 of the last group: 127/absmax = 1, so 2.5 is a
        x[n * cols - 2] = 2.5f;   // tie, rounded to even (2)
      }
      mpq::Int8Activations ref;
      mpq::quantize_activations_int8(Isa::Scalar, x.data(), n, cols, ref, group);
      ASSERT_EQ(ref.groups, (cols + group - 1) / group);
      ASSERT_EQ(ref.stride, ref.groups * group);
      for (Isa isa : isas) {
        mpq::Int8Activations a;
        mpq::quantize_activations_int8(isa, x.data(), n, cols, a, group);
        SCOPED_TRACE(std::string(mpq::isa_name(isa)) + " cols " + std::to_string(cols) + " group " + std::to_string(group));
        EXPECT_EQ(a.q, ref.q);
        EXPECT_EQ(a.scales, ref.scales);
        EXPECT_EQ(a.group_sums, ref.group_sums);
        EXPECT_EQ(a.stride, ref.stride);
      }
    }
  }
}

TEST(PackedIntActivations, QuantizeWithinHalfAStep) {
  const int64_t n = 4, cols = 333, group = 128;
  const auto x = mpq::test::heavy_tailed(n * cols, 22, 0.3f);
  mpq::Int8Activations a;
  mpq::quantize_activations_int8(mpq::best_isa(), x.data(), n, cols, a, group);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t g = 0; g < a.groups; ++g) {
      const float scale = a.scales[t * a.groups + g];
      float absmax = 0.f;
      int32_t sum = 0;
      for (int64_t i = g * group; i < std::min(cols, (g + 1) * group); ++i) absmax = std::max(absmax, std::abs(x[t * cols + i]));
      EXPECT_EQ(scale, absmax / 127.f);
      for (int64_t i = g * group; i < (g + 1) * group; ++i) {
        const int8_t q = a.q[t * a.stride + i];
        sum += q;
        ASSERT_GE(q, -127);
        if (i >= cols) {
          ASSERT_EQ(q, 0) << "padding";
          continue;
        }
        // q = rne(x · fl(127/absmax)): |x/scale - x·inverse| <= 127 · 3 eps, so
        // |x - scale·q| <= scale · (1/2 + 512 eps).
        ASSERT_LE(std::abs(x[t * cols + i] - static_cast<double>(scale) * q), scale * (0.5 + 512 * kEps));
      }
      EXPECT_EQ(sum, a.group_sums[t * a.groups + g]);
    }
  }
}

TEST(PackedIntMatmulInt8, ScalarReferenceEqualsAnInt32Computation) {
  for (WeightFormatId format : int_formats()) {
    for (Shape s : kShapes) {
      const mpq::QuantizedMatrix q = random_matrix(format, s, 31);
      const auto packed = mpq::pack_matrix(q);
      for (int64_t n : kTokenCounts) {
        SCOPED_TRACE(describe(format, s, n));
        const auto x = mpq::test::gaussian(n * s.cols, 32);
        mpq::Int8Activations a;
        mpq::quantize_activations_int8(Isa::Scalar, x.data(), n, s.cols, a);
        const Int8Reference ref = int8_product(q, a);
        std::vector<float> y(n * s.rows);
        packed->matmul_int8(Isa::Scalar, a, y.data(), s.rows, 0, s.rows);
        for (int64_t i = 0; i < n * s.rows; ++i) ASSERT_EQ(y[i], ref.y[i]) << "output " << i;
      }
    }
  }
}

TEST(PackedIntMatmulInt8, EveryPathMatchesTheScalarReferenceAndTheFp32Product) {
  const auto paths = int8_paths();
  for (WeightFormatId format : int_formats()) {
    for (Shape s : kShapes) {
      const mpq::QuantizedMatrix q = random_matrix(format, s, 41);
      const auto owner = mpq::pack_matrix(q);
      const auto& packed = as_int(*owner);
      const std::vector<float> w = dequantized(q);
      for (int64_t n : kTokenCounts) {
        SCOPED_TRACE(describe(format, s, n));
        const auto x = mpq::test::heavy_tailed(n * s.cols, 42, 1.f);
        mpq::Int8Activations a;
        mpq::quantize_activations_int8(mpq::best_isa(), x.data(), n, s.cols, a);
        const Int8Reference ref = int8_product(q, a);
        const Reference f32 = exact_product(w, x, s.rows, s.cols, n);
        // The dequantized activations, for the fp32 rounding bound of Σ w·x̂ and the step bound.
        std::vector<float> xq(n * s.cols);
        std::vector<double> step(n * s.rows, 0.0);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t c = 0; c < s.cols; ++c) {
            const float scale = a.scales[t * a.groups + c / a.group_size];
            xq[t * s.cols + c] = scale * a.q[t * a.stride + c];
            for (int64_t r = 0; r < s.rows; ++r) {
              step[t * s.rows + r] += std::abs(w[r * s.cols + c]) * scale * (0.5 + 512 * kEps);
            }
          }
        }
        const Reference f32q = exact_product(w, xq, s.rows, s.cols, n);
        for (const Int8Path& path : paths) {
          std::vector<float> y(n * s.rows, NAN);
          packed.matmul_int8_path(path.isa, path.dot, a, y.data(), s.rows, 0, s.rows);
          for (int64_t i = 0; i < n * s.rows; ++i) {
            ASSERT_LE(std::abs(y[i] - ref.y[i]), ref.simd[i]) << path.name << " output " << i;
            const double bound = step[i] + f32.bound[i] + f32q.bound[i] + ref.simd[i];
            ASSERT_LE(std::abs(y[i] - f32.y[i]), bound) << path.name << " vs fp32, output " << i;
          }
        }
      }
    }
  }
}

TEST(PackedIntMatmulInt8, RowRangesRowMapsAndTokenBlocks) {
  const Shape s{45, 200};
  const int64_t n = 7, ldy = 50;
  std::vector<int32_t> map(s.rows);
  for (int64_t r = 0; r < s.rows; ++r) map[r] = static_cast<int32_t>((r * 13 + 1) % ldy);
  for (const Int8Path& path : int8_paths()) {
    for (WeightFormatId format : int_formats()) {
      SCOPED_TRACE(path.name + " " + mpq::weight_format(format).name);
      const auto owner = mpq::pack_matrix(random_matrix(format, s, 8));
      const auto& packed = as_int(*owner);
      const auto x = mpq::test::gaussian(n * s.cols, 9);
      mpq::Int8Activations a, one;
      mpq::quantize_activations_int8(Isa::Scalar, x.data(), n, s.cols, a);
      std::vector<float> full(n * s.rows);
      packed.matmul_int8_path(path.isa, path.dot, a, full.data(), s.rows, 0, s.rows);
      for (int64_t t = 0; t < n; ++t) {  // a token alone takes the decode blocks
        std::vector<float> y(s.rows);
        mpq::quantize_activations_int8(Isa::Scalar, x.data() + t * s.cols, 1, s.cols, one);
        packed.matmul_int8_path(path.isa, path.dot, one, y.data(), s.rows, 0, s.rows);
        for (int64_t r = 0; r < s.rows; ++r) ASSERT_EQ(y[r], full[t * s.rows + r]) << "token " << t;
      }
      for (auto [begin, end] : {std::pair<int64_t, int64_t>{5, 29}, {32, 45}, {0, 1}}) {
        std::vector<float> y(n * ldy, -1234.f);
        packed.matmul_int8_path(path.isa, path.dot, a, y.data(), ldy, begin, end, map.data());
        for (int64_t t = 0; t < n; ++t) {
          std::vector<bool> written(ldy, false);
          for (int64_t r = begin; r < end; ++r) {
            written[map[r]] = true;
            ASSERT_EQ(y[t * ldy + map[r]], full[t * s.rows + r]);
          }
          for (int64_t o = 0; o < ldy; ++o) {
            if (!written[o]) ASSERT_EQ(y[t * ldy + o], -1234.f) << "stray write at " << o;
          }
        }
      }
    }
  }
}

// packed_matmul splits rows over threads; every slice runs the same per-row arithmetic.
TEST(PackedIntDriver, ThreadedProductEqualsTheDirectOne) {
  const Shape s{300, 576};
  const int64_t n = 9;
  const auto x = mpq::test::gaussian(n * s.cols, 51);
  std::vector<int32_t> map(s.rows);
  for (int64_t r = 0; r < s.rows; ++r) map[r] = static_cast<int32_t>(s.rows - 1 - r);
  for (WeightFormatId format : {WeightFormatId::Int4_G128, WeightFormatId::Int8_Channel, WeightFormatId::Int2_G64}) {
    SCOPED_TRACE(mpq::weight_format(format).name);
    const auto packed = mpq::pack_matrix(random_matrix(format, s, 52));
    std::vector<float> direct(n * s.rows), threaded(n * s.rows);
    packed->matmul_f32(mpq::best_isa(), x.data(), n, direct.data(), s.rows, 0, s.rows, map.data());
    mpq::packed_matmul(*packed, x.data(), n, threaded.data(), s.rows, mpq::ActivationMode::F32, map.data());
    EXPECT_EQ(threaded, direct);
    mpq::Int8Activations a;
    mpq::quantize_activations_int8(mpq::best_isa(), x.data(), n, s.cols, a);
    packed->matmul_int8(mpq::best_isa(), a, direct.data(), s.rows, 0, s.rows, map.data());
    mpq::packed_matmul(*packed, x.data(), n, threaded.data(), s.rows, mpq::ActivationMode::Int8, map.data());
    EXPECT_EQ(threaded, direct);
  }
}

// packed_matmul_group runs products that share their input as one threaded sequence of tiles,
// with the activations quantized once; each product must come out as it does alone, whatever
// its format (an fp format in int8 mode runs its fp32 product) and row map.
TEST(PackedIntDriver, GroupEqualsTheProductsOneByOne) {
  const int64_t cols = 576, n = 16;
  const auto x = mpq::test::gaussian(n * cols, 61);
  struct Member {
    WeightFormatId format;
    int64_t rows;
    bool reversed;  // write through a reversing row map
  };
  const Member members[] = {{WeightFormatId::Int4_G128, 300, true},
                            {WeightFormatId::Int8_Channel, 200, false},
                            {WeightFormatId::NVFP4, 120, false},
                            {WeightFormatId::Int2_G64, 37, true}};
  for (auto mode : {mpq::ActivationMode::F32, mpq::ActivationMode::Int8}) {
    SCOPED_TRACE(mpq::activation_mode_name(mode));
    std::vector<std::unique_ptr<mpq::PackedMatrix>> packed;
    std::vector<std::vector<int32_t>> maps;
    std::vector<std::vector<float>> grouped, alone;
    std::vector<mpq::PackedProduct> group;
    for (size_t i = 0; i < std::size(members); ++i) {
      const Member& m = members[i];
      packed.push_back(mpq::pack_matrix(random_matrix(m.format, Shape{m.rows, cols}, 62 + i)));
      maps.emplace_back(m.rows);
      for (int64_t r = 0; r < m.rows; ++r) maps.back()[r] = static_cast<int32_t>(m.reversed ? m.rows - 1 - r : r);
      grouped.emplace_back(n * m.rows, -1234.f);
      alone.emplace_back(n * m.rows, -1234.f);
    }
    for (size_t i = 0; i < std::size(members); ++i) {
      const int32_t* map = members[i].reversed ? maps[i].data() : nullptr;
      group.push_back({packed[i].get(), grouped[i].data(), members[i].rows, map, mode});
      mpq::packed_matmul(*packed[i], x.data(), n, alone[i].data(), members[i].rows, mode, map);
    }
    mpq::packed_matmul_group(group, x.data(), n);
    for (size_t i = 0; i < std::size(members); ++i) {
      SCOPED_TRACE(mpq::weight_format(members[i].format).name);
      EXPECT_EQ(grouped[i], alone[i]);
    }
  }
}

TEST(PackedIntDriver, GroupRefusesProductsOfDifferentInputWidths) {
  const auto a = mpq::pack_matrix(random_matrix(WeightFormatId::Int4_G128, Shape{16, 128}, 70));
  const auto b = mpq::pack_matrix(random_matrix(WeightFormatId::Int4_G128, Shape{16, 256}, 71));
  std::vector<float> x(256), ya(16), yb(16);
  const mpq::PackedProduct group[] = {{a.get(), ya.data(), 16}, {b.get(), yb.data(), 16}};
  EXPECT_THROW(mpq::packed_matmul_group(group, x.data(), 1), mpq::Error);
}

// ---------------------------------------------------------------------------------------------
// Real weights: stories260K's layer-0 q (64x64), gate (172x64) and down (64x172) projections.

TEST(PackedIntRealWeights, Stories260KLayersMatchTheDequantizedProduct) {
  const std::string path = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "stories260K not found at " << path;
  mpq::LoadOptions options;
  options.need_tokenizer = false;
  const mpq::Model model = mpq::load_model(path, options);
  const auto paths = int8_paths();
  for (mpq::LinearKind kind : {mpq::LinearKind::Q, mpq::LinearKind::Gate, mpq::LinearKind::Down}) {
    const mpq::LinearWeights& lw = *model.layers[0].at(kind).weights;
    const Shape s{lw.out_features(), lw.in_features()};
    std::vector<float> w(s.rows * s.cols);
    lw.to_f32(w.data());
    const int64_t n = 5;
    const auto x = mpq::test::gaussian(n * s.cols, 61);
    for (WeightFormatId format : int_formats()) {
      SCOPED_TRACE(std::string(mpq::linear_kind_name(kind)) + " " + mpq::weight_format(format).name);
      const mpq::QuantizedMatrix q = mpq::quantize_rtn(format, w.data(), s.rows, s.cols);
      const auto owner = mpq::pack_matrix(q);
      const auto& packed = as_int(*owner);
      EXPECT_EQ(packed.unpack().codes, q.codes);
      const Reference ref = exact_product(dequantized(q), x, s.rows, s.cols, n);
      mpq::Int8Activations a;
      mpq::quantize_activations_int8(mpq::best_isa(), x.data(), n, s.cols, a);
      const Int8Reference ref8 = int8_product(q, a);
      for (Isa isa : supported_isas()) {
        std::vector<float> y(n * s.rows);
        packed.matmul_f32(isa, x.data(), n, y.data(), s.rows, 0, s.rows);
        for (int64_t i = 0; i < n * s.rows; ++i) ASSERT_LE(std::abs(y[i] - ref.y[i]), ref.bound[i]) << mpq::isa_name(isa);
      }
      for (const Int8Path& p : paths) {
        std::vector<float> y(n * s.rows);
        packed.matmul_int8_path(p.isa, p.dot, a, y.data(), s.rows, 0, s.rows);
        for (int64_t i = 0; i < n * s.rows; ++i) ASSERT_LE(std::abs(y[i] - ref8.y[i]), ref8.simd[i]) << p.name;
      }
    }
  }
}

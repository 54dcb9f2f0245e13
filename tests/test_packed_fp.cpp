// The floating-point packed formats (kernel/packed_fp*.cpp) on every instruction set this CPU
// has: exact pack/unpack, every code decoded by every path exactly like the scalar decoder, and
// the products against the scalar reference and against a double-precision product of
// dequantize(), on shapes that are not multiples of the groups or of the vector widths.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <vector>

#include "format/fp8.h"
#include "format/weight_format.h"
#include "kernel/packed.h"
#include "kernel/packed_impl.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/rtn.h"
#include "kernel_test_util.h"
#include "test_util.h"

namespace {

using mpq::Isa;
using mpq::QuantizedMatrix;
using mpq::WeightFormatId;

constexpr WeightFormatId kFpFormats[] = {WeightFormatId::BF16,          WeightFormatId::F16,
                                         WeightFormatId::FP8_E4M3_Channel,
                                         WeightFormatId::FP8_E4M3_B128, WeightFormatId::NVFP4,
                                         WeightFormatId::MXFP4};

const char* name_of(WeightFormatId id) { return mpq::weight_format(id).name; }

using mpq::test::supported_isas;

void expect_same_matrix(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.groups, b.groups);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.zeros, b.zeros);
  EXPECT_EQ(std::bit_cast<uint32_t>(a.tensor_scale), std::bit_cast<uint32_t>(b.tensor_scale));
}

// The product y[t, r] = Σ_i W[r, i] x[t, i] of dequantize(q) in double, and the error bound of
// any fp32 evaluation of it. Every path decodes the weights exactly (tested below), so only
// the fp32 sum differs: with n = cols products each rounded at most once, at most n - 1
// additions on any product's path to the result (whatever the order or the lane split) and at
// most one multiplication by a row scale applied to the sum (the SIMD paths of
// fp8_e4m3_channel: W = s·v with v exact, Σ s·v·x computed as s·Σ v·x),
// |fp32 - exact| <= γ_(n+1) Σ_i |W[r, i] x[t, i]|, γ_m = m u / (1 - m u), u = 2^-24.
struct ExactProduct {
  std::vector<double> y;      // [n_tokens, rows]
  std::vector<double> bound;  // [n_tokens, rows]
};

ExactProduct exact_product(const QuantizedMatrix& q, const float* x, int64_t n_tokens) {
  std::vector<float> w(static_cast<size_t>(q.rows * q.cols));
  mpq::dequantize(q, w.data());
  const double u = std::ldexp(1.0, -24);
  const double gamma = (q.cols + 1) * u / (1 - (q.cols + 1) * u);
  ExactProduct p;
  p.y.resize(static_cast<size_t>(n_tokens * q.rows));
  p.bound.resize(p.y.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < q.rows; ++r) {
      double sum = 0, abs_sum = 0;
      for (int64_t i = 0; i < q.cols; ++i) {
        const double term = static_cast<double>(w[r * q.cols + i]) * x[t * q.cols + i];
        sum += term;
        abs_sum += std::abs(term);
      }
      p.y[t * q.rows + r] = sum;
      p.bound[t * q.rows + r] = gamma * abs_sum;
    }
  }
  return p;
}

QuantizedMatrix random_quantized(WeightFormatId format, int64_t rows, int64_t cols, uint64_t seed) {
  const auto w = mpq::test::heavy_tailed(static_cast<size_t>(rows * cols), seed, 0.02f);
  return mpq::quantize_rtn(format, w.data(), rows, cols);
}

// ---------------------------------------------------------------------------------------------
// Packing

// decode_row (the embedding lookup of a tied quantized head) gives row r of the decoded matrix.
// nvfp4 folds its E4M3 group scale by the tensor scale once at packing, so its products may round
// differently from dequantize's (e2m1 * e4m3) / tensor_scale: one rounding of fp32, 2^-23 relative.
TEST(PackedFpPack, DecodeRowMatchesTheDecodedMatrix) {
  for (WeightFormatId format : kFpFormats) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 16}, {7, 100}, {33, 200}, {5, 1}}) {
      SCOPED_TRACE(std::string(name_of(format)) + " " + std::to_string(rows) + "x" + std::to_string(cols));
      const QuantizedMatrix q = random_quantized(format, rows, cols, 3 + rows);
      std::vector<float> all(static_cast<size_t>(rows * cols)), row(static_cast<size_t>(cols));
      mpq::dequantize(q, all.data());
      const auto packed = mpq::pack_matrix(q);
      for (int64_t r = 0; r < rows; ++r) {
        packed->decode_row(r, row.data());
        for (int64_t c = 0; c < cols; ++c) {
          const float ref = all[r * cols + c];
          ASSERT_LE(std::fabs(row[c] - ref), std::ldexp(std::fabs(ref), -23)) << r << "," << c;
        }
      }
    }
  }
}

TEST(PackedFpPack, UnpackGivesBackTheQuantizedMatrix) {
  for (WeightFormatId format : kFpFormats) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 16}, {7, 100}, {33, 200}, {64, 576}, {5, 1}}) {
      SCOPED_TRACE(std::string(name_of(format)) + " " + std::to_string(rows) + "x" + std::to_string(cols));
      const QuantizedMatrix q = random_quantized(format, rows, cols, 7 + rows);
      const auto packed = mpq::pack_matrix(q);
      EXPECT_EQ(packed->format(), format);
      EXPECT_EQ(packed->rows(), rows);
      EXPECT_EQ(packed->cols(), cols);
      expect_same_matrix(packed->unpack(), q);
    }
  }
}

// Arbitrary codes and stored scales (NaN codes, negative and NaN scales, every E8M0 byte)
// survive too.
TEST(PackedFpPack, UnpackIsExactForArbitraryCodesAndScales) {
  std::mt19937_64 rng(3);
  for (WeightFormatId format : kFpFormats) {
    SCOPED_TRACE(name_of(format));
    QuantizedMatrix q = mpq::make_quantized_matrix(format, 37, 75);
    const int bits = q.traits().bits;
    for (int64_t r = 0; r < q.rows; ++r) {
      for (int64_t c = 0; c < q.cols; ++c) q.set_code(r, c, static_cast<uint16_t>(rng() & ((1u << bits) - 1)));
    }
    for (uint8_t& s : q.scales) s = static_cast<uint8_t>(rng());
    if (q.traits().has_tensor_scale) q.tensor_scale = 1234.5f;
    expect_same_matrix(mpq::pack_matrix(q)->unpack(), q);
  }
}

// bytes(): codes at their bit width, one fp32 per group and row, rows padded to blocks of 16;
// nvfp4 keeps its stored E4M3 bytes only when the folded scales cannot be inverted.
TEST(PackedFpPack, ResidentBytesFollowTheLayout) {
  const int64_t rows = 33, cols = 200, padded = 48;
  const auto bytes_of = [](const QuantizedMatrix& q) { return mpq::pack_matrix(q)->bytes(); };
  EXPECT_EQ(bytes_of(random_quantized(WeightFormatId::BF16, rows, cols, 1)), uint64_t(padded * cols * 2));
  EXPECT_EQ(bytes_of(random_quantized(WeightFormatId::FP8_E4M3_Channel, rows, cols, 1)),
            uint64_t(padded * (cols + 4)));
  EXPECT_EQ(bytes_of(random_quantized(WeightFormatId::FP8_E4M3_B128, rows, cols, 1)),
            uint64_t(padded * (cols + 2 * 4)));
  EXPECT_EQ(bytes_of(random_quantized(WeightFormatId::MXFP4, rows, cols, 1)),
            uint64_t(padded * (cols / 2 + 7 * 4)));
  QuantizedMatrix nv = random_quantized(WeightFormatId::NVFP4, rows, cols, 1);
  EXPECT_EQ(bytes_of(nv), uint64_t(padded * (cols / 2 + 13 * 4)));
  nv.scales[5] = mpq::kE4M3NaN;  // shares its folded value (NaN) with 0xFF: kept as stored
  EXPECT_EQ(bytes_of(nv), uint64_t(padded * (cols / 2 + 13 * 4) + rows * 13));
  expect_same_matrix(mpq::pack_matrix(nv)->unpack(), nv);
}

// A tensor scale so large that small group scales fold to the same fp32 (here 0): the packer
// notices and unpack() is still exact.
TEST(PackedFpPack, Nvfp4FoldThatLosesScalesKeepsTheStoredBytes) {
  QuantizedMatrix q = random_quantized(WeightFormatId::NVFP4, 7, 64, 2);
  q.tensor_scale = 3e38f;
  for (size_t i = 0; i < q.scales.size(); ++i) q.scales[i] = static_cast<uint8_t>(i % 4);  // 0, 2^-9..
  expect_same_matrix(mpq::pack_matrix(q)->unpack(), q);
}

TEST(PackedFpPack, RejectsInconsistentInput) {
  QuantizedMatrix q = random_quantized(WeightFormatId::NVFP4, 3, 40, 4);
  QuantizedMatrix bad = q;
  bad.scales.pop_back();
  EXPECT_THROW(mpq::pack_fp_matrix(bad), mpq::Error);
  bad = q;
  bad.codes[7] = 16;  // E2M1 codes have 4 bits
  EXPECT_THROW(mpq::pack_fp_matrix(bad), mpq::Error);
  bad = q;
  bad.zeros.assign(3 * 3, 0);
  EXPECT_THROW(mpq::pack_fp_matrix(bad), mpq::Error);
  EXPECT_THROW(mpq::pack_fp_matrix(random_quantized(WeightFormatId::Int4_G32, 3, 40, 4)), mpq::Error);

  const auto packed = mpq::pack_matrix(q);
  std::vector<float> x(40), y(3);
  EXPECT_THROW(packed->matmul_f32(Isa::Scalar, x.data(), 1, y.data(), 3, 0, 4), mpq::Error);
  EXPECT_THROW(packed->matmul_f32(Isa::Scalar, x.data(), 1, y.data(), 3, 2, 1), mpq::Error);
  EXPECT_THROW(packed->matmul_f32(Isa::Scalar, x.data(), 1, y.data(), 2, 0, 3), mpq::Error);
}

// ---------------------------------------------------------------------------------------------
// Decoding: every code through every path

// Row r holds one code of interest at column col_of(r) and code 0 elsewhere. With x the identity
// (token t = e_t), y[col_of(r), r] is that code's decoded value plus exact zeros, so it must equal
// dequantize() bit for bit (or both be NaN) on every path; Inf and NaN stay in their own row.
void expect_every_row_decodes_exactly(const QuantizedMatrix& q, const std::vector<int64_t>& col_of) {
  std::vector<float> w(static_cast<size_t>(q.rows * q.cols));
  mpq::dequantize(q, w.data());
  std::vector<float> identity(static_cast<size_t>(q.cols * q.cols), 0.f);
  for (int64_t i = 0; i < q.cols; ++i) identity[i * q.cols + i] = 1.f;
  const auto packed = mpq::pack_matrix(q);
  for (Isa isa : supported_isas()) {
    SCOPED_TRACE(mpq::isa_name(isa));
    std::vector<float> y(static_cast<size_t>(q.cols * q.rows));
    packed->matmul_f32(isa, identity.data(), q.cols, y.data(), q.rows, 0, q.rows);
    int64_t mismatches = 0;
    for (int64_t r = 0; r < q.rows; ++r) {
      const float expected = w[r * q.cols + col_of[r]];
      const float got = y[col_of[r] * q.rows + r];
      const bool same = std::isnan(expected) ? std::isnan(got) : got == expected;
      if (!same && ++mismatches <= 5) {
        ADD_FAILURE() << "row " << r << " code " << q.code(r, col_of[r]) << ": " << got << " != " << expected;
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

// One row per code of `codes`, the code at column (r * stride) % cols; every group of row r
// gets the stored scale scale_bits(r).
template <class ScaleBits>
QuantizedMatrix one_code_per_row(WeightFormatId format, const std::vector<uint16_t>& codes, int64_t cols,
                                 int64_t stride, ScaleBits scale_bits, std::vector<int64_t>& col_of) {
  QuantizedMatrix q = mpq::make_quantized_matrix(format, static_cast<int64_t>(codes.size()), cols);
  col_of.resize(codes.size());
  for (int64_t r = 0; r < q.rows; ++r) {
    col_of[r] = (r * stride) % cols;
    q.set_code(r, col_of[r], codes[r]);
    for (int64_t g = 0; g < q.groups; ++g) {
      mpq::GroupParams p;
      p.scale_bits = scale_bits(r, g);
      q.set_params(r, g, p);
    }
  }
  return q;
}

std::vector<uint16_t> all_codes(int n, bool with_e4m3_nan = true) {
  std::vector<uint16_t> codes;
  for (int c = 0; c < n; ++c) {
    if (with_e4m3_nan || (c & 0x7F) != 0x7F) codes.push_back(static_cast<uint16_t>(c));
  }
  return codes;
}

TEST(PackedFpDecode, EveryHalfCodeMatchesTheScalarDecoder) {
  // 65536 rows of 3 columns: every bf16 / f16 pattern, Inf and NaN included.
  for (WeightFormatId format : {WeightFormatId::BF16, WeightFormatId::F16}) {
    SCOPED_TRACE(name_of(format));
    std::vector<int64_t> col_of;
    const QuantizedMatrix q = one_code_per_row(format, all_codes(65536), 3, 1, [](int64_t, int64_t) { return 0u; }, col_of);
    expect_every_row_decodes_exactly(q, col_of);
  }
}

TEST(PackedFpDecode, EveryE4M3CodeMatchesTheScalarDecoder) {
  // With and without the NaN codes (the kernels patch NaN lanes only when a matrix has them).
  const float scales[] = {1.f, 0.0123f, 3.7e-5f, 5.5f, 1e-30f};
  const auto scale_bits = [&](int64_t r, int64_t g) { return std::bit_cast<uint32_t>(scales[(r + g) % 5]); };
  for (bool with_nan : {true, false}) {
    SCOPED_TRACE(with_nan ? "with NaN codes" : "without NaN codes");
    std::vector<int64_t> col_of;
    expect_every_row_decodes_exactly(
        one_code_per_row(WeightFormatId::FP8_E4M3_Channel, all_codes(256, with_nan), 37, 1, scale_bits, col_of),
        col_of);
    expect_every_row_decodes_exactly(
        one_code_per_row(WeightFormatId::FP8_E4M3_B128, all_codes(256, with_nan), 200, 7, scale_bits, col_of),
        col_of);
  }
}

TEST(PackedFpDecode, EveryE2M1CodeAndGroupScaleMatchesTheScalarDecoder) {
  // 256 rows: row r holds E2M1 code r % 16 (at even and odd columns, in full and short groups)
  // and the group scale byte r: every E4M3 byte (nvfp4, folded with an inexact tensor scale)
  // and every E8M0 byte (mxfp4, 2^-127 .. 2^127 and NaN).
  std::vector<uint16_t> codes(256);
  for (int r = 0; r < 256; ++r) codes[r] = static_cast<uint16_t>(r % 16);
  const auto byte_r = [](int64_t r, int64_t) { return static_cast<uint32_t>(r); };
  for (WeightFormatId format : {WeightFormatId::NVFP4, WeightFormatId::MXFP4}) {
    SCOPED_TRACE(name_of(format));
    std::vector<int64_t> col_of;
    QuantizedMatrix q = one_code_per_row(format, codes, 37, 1, byte_r, col_of);
    if (q.traits().has_tensor_scale) q.tensor_scale = 3.1f;
    expect_every_row_decodes_exactly(q, col_of);
  }
}

// ---------------------------------------------------------------------------------------------
// Products

// y of every ISA over rows [begin, end), written through `row_to_output` (or in place) into a
// y of leading dimension ldy filled with a sentinel, checked against the exact product and the
// scalar path; everything else must keep the sentinel.
void check_product(const QuantizedMatrix& q, const mpq::PackedMatrix& packed, const std::vector<float>& x,
                   int64_t n_tokens, int64_t begin, int64_t end, const std::vector<int32_t>& row_to_output,
                   int64_t ldy) {
  const ExactProduct exact = exact_product(q, x.data(), n_tokens);
  const float sentinel = -12345.f;
  const int32_t* map = row_to_output.empty() ? nullptr : row_to_output.data();
  const auto out = [&](int64_t r) { return map ? map[r] : r; };
  std::vector<float> scalar;
  for (Isa isa : supported_isas()) {
    SCOPED_TRACE(mpq::isa_name(isa));
    std::vector<float> y(static_cast<size_t>(n_tokens * ldy), sentinel);
    packed.matmul_f32(isa, x.data(), n_tokens, y.data(), ldy, begin, end, map);
    if (isa == Isa::Scalar) scalar = y;
    std::vector<bool> written(y.size(), false);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = begin; r < end; ++r) {
        const size_t i = static_cast<size_t>(t * ldy + out(r));
        written[i] = true;
        const double bound = exact.bound[t * q.rows + r];
        ASSERT_LE(std::abs(y[i] - exact.y[t * q.rows + r]), bound) << "token " << t << " row " << r;
        ASSERT_LE(std::abs(y[i] - scalar[i]), 2 * bound) << "token " << t << " row " << r;
      }
    }
    for (size_t i = 0; i < y.size(); ++i) {
      if (!written[i]) ASSERT_EQ(y[i], sentinel) << "wrote outside its rows at " << i;
    }
  }
}

TEST(PackedFpMatmul, EveryIsaMatchesTheScalarPathAndTheDequantizedProduct) {
  for (WeightFormatId format : kFpFormats) {
    for (int64_t rows : {1, 7, 33, 64}) {
      for (int64_t cols : {16, 100, 128, 200, 576}) {
        const QuantizedMatrix q = random_quantized(format, rows, cols, 100 + rows * cols);
        const auto packed = mpq::pack_matrix(q);
        const auto x = mpq::test::gaussian(static_cast<size_t>(9 * cols), 5 + cols);
        for (int64_t n_tokens : {1, 3, 9}) {
          SCOPED_TRACE(std::string(name_of(format)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                       " tokens " + std::to_string(n_tokens));
          check_product(q, *packed, x, n_tokens, 0, rows, {}, rows);
        }
      }
    }
  }
}

TEST(PackedFpMatmul, RowRangesAndRowToOutputScatter) {
  for (WeightFormatId format : kFpFormats) {
    for (int64_t rows : {33, 64}) {
      const int64_t cols = 200;
      const QuantizedMatrix q = random_quantized(format, rows, cols, 9);
      const auto packed = mpq::pack_matrix(q);
      const auto x = mpq::test::gaussian(static_cast<size_t>(9 * cols), 10);
      std::vector<int32_t> permutation(rows);
      std::iota(permutation.begin(), permutation.end(), 3);  // outputs 3 .. rows + 2
      std::shuffle(permutation.begin(), permutation.end(), std::mt19937(rows));
      for (int64_t n_tokens : {1, 3, 9}) {
        SCOPED_TRACE(std::string(name_of(format)) + " rows " + std::to_string(rows) + " tokens " +
                     std::to_string(n_tokens));
        const int64_t ldy = rows + 7;
        check_product(q, *packed, x, n_tokens, 0, rows, permutation, ldy);
        check_product(q, *packed, x, n_tokens, 5, rows - 3, permutation, ldy);
        check_product(q, *packed, x, n_tokens, 5, rows - 3, {}, ldy);
        check_product(q, *packed, x, n_tokens, 16, 32, {}, ldy);
        check_product(q, *packed, x, n_tokens, 7, 7, {}, ldy);
      }
    }
  }
}

// The threaded driver of kernel/packed.h over the fp formats (several row slices, scatter).
TEST(PackedFpMatmul, ThreadedDriverMatchesTheExactProduct) {
  const int64_t rows = 200, cols = 576, n_tokens = 9;
  for (WeightFormatId format : kFpFormats) {
    SCOPED_TRACE(name_of(format));
    const QuantizedMatrix q = random_quantized(format, rows, cols, 11);
    const auto packed = mpq::pack_matrix(q);
    const auto x = mpq::test::gaussian(static_cast<size_t>(n_tokens * cols), 12);
    std::vector<int32_t> reversed(rows);
    for (int64_t r = 0; r < rows; ++r) reversed[r] = static_cast<int32_t>(rows - 1 - r);
    std::vector<float> y(static_cast<size_t>(n_tokens * rows));
    mpq::packed_matmul(*packed, x.data(), n_tokens, y.data(), rows, mpq::ActivationMode::F32, reversed.data());
    const ExactProduct exact = exact_product(q, x.data(), n_tokens);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_LE(std::abs(y[t * rows + reversed[r]] - exact.y[t * rows + r]), exact.bound[t * rows + r]);
      }
    }
  }
}

// Real weights: the first attention projection of the shared stories260K model.
TEST(PackedFpMatmul, RealWeightsOfTheTinyModel) {
  const std::string path = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared model missing: " << path;
  const mpq::Model model = mpq::load_model(path, {.need_tokenizer = false});
  const mpq::LinearWeights& wq = *model.layers[0].at(mpq::LinearKind::Q).weights;
  const int64_t rows = wq.out_features(), cols = wq.in_features();
  std::vector<float> w(static_cast<size_t>(rows * cols));
  wq.to_f32(w.data());
  const auto x = mpq::test::gaussian(static_cast<size_t>(3 * cols), 13);
  for (WeightFormatId format : kFpFormats) {
    SCOPED_TRACE(name_of(format));
    const QuantizedMatrix q = mpq::quantize_rtn(format, w.data(), rows, cols);
    const auto packed = mpq::pack_matrix(q);
    expect_same_matrix(packed->unpack(), q);
    check_product(q, *packed, x, 3, 0, rows, {}, rows);
  }
}

}  // namespace

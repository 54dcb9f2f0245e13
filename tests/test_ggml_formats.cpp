// The ggml block formats (q8_0 ... q2_K, q5_0 ... q4_1, iq4_nl, iq4_xs) as rows of the format
// table, their codecs against llama.cpp, and mxfp4/nvfp4 in ggml's block layouts:
//   - decoding bit-exact with gguf-py (tests/data/gguf_blocks.gguf);
//   - both encoders byte-exact with llama.cpp's own quantizers, with and without an importance
//     matrix (tests/data/ggml_quantize.gguf, made with ggml-quants.c by
//     tools/make_gguf_block_fixtures.py --ggml-src);
//   - every value of an encoded matrix on the nearest level of its stored grid, up to the
//     rounding of the stored scale (the bound is derived at ElementwiseBound);
//   - bytes = bits-per-weight promise; unacceptable shapes refused everywhere;
//   - mxfp4 / nvfp4 <-> ggml MXFP4 / NVFP4 conversions exact.
// Quantizers (rtn_clip's guard, GPTQ over blocks) and the packed runtime: test_ggml_runtime.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "format/ggml_codec.h"
#include "format/ggml_fp4.h"
#include "format/gguf_blocks.h"
#include "format/weight_format.h"
#include "io/compressed_tensors.h"
#include "io/gguf.h"
#include "kernel/packed.h"
#include "mpq/error.h"
#include "quant/gptq.h"
#include "quant/hqq.h"
#include "quant/rtn.h"

namespace mpq {
namespace {

using W = WeightFormatId;

// ggml type id, ggml name, values and bytes per block, the gguf_blocks struct size and the
// storage type the GGUF reader maps the id to: one line per ggml format.
struct GgmlRow {
  W id;
  uint32_t ggml_type;
  const char* ggml_name;
  int block_values, block_bytes;
  size_t struct_bytes;
  DType dtype;
};
const GgmlRow kGgmlRows[] = {
    {W::Q8_0, 8, "Q8_0", 32, 34, sizeof(gguf::BlockQ8_0), DType::Q8_0},
    {W::Q6_K, 14, "Q6_K", 256, 210, sizeof(gguf::BlockQ6_K), DType::Q6_K},
    {W::Q5_K, 13, "Q5_K", 256, 176, sizeof(gguf::BlockQ5_K), DType::Q5_K},
    {W::Q4_K, 12, "Q4_K", 256, 144, sizeof(gguf::BlockQ4_K), DType::Q4_K},
    {W::Q3_K, 11, "Q3_K", 256, 110, sizeof(gguf::BlockQ3_K), DType::Q3_K},
    {W::Q2_K, 10, "Q2_K", 256, 84, sizeof(gguf::BlockQ2_K), DType::Q2_K},
    {W::Q5_0, 6, "Q5_0", 32, 22, sizeof(gguf::BlockQ5_0), DType::Q5_0},
    {W::Q5_1, 7, "Q5_1", 32, 24, sizeof(gguf::BlockQ5_1), DType::Q5_1},
    {W::Q4_0, 2, "Q4_0", 32, 18, sizeof(gguf::BlockQ4_0), DType::Q4_0},
    {W::Q4_1, 3, "Q4_1", 32, 20, sizeof(gguf::BlockQ4_1), DType::Q4_1},
    {W::IQ4_NL, 20, "IQ4_NL", 32, 18, sizeof(gguf::BlockIQ4_NL), DType::IQ4_NL},
    {W::IQ4_XS, 23, "IQ4_XS", 256, 136, sizeof(gguf::BlockIQ4_XS), DType::IQ4_XS},
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const GgmlBlockCodec& codec_of(W id) { return *weight_format(id).ggml; }

TEST(GgmlFormats, EveryGgmlRowIsInTheTableAndMatchesGgml) {
  size_t ggml_rows = 0;
  for (const WeightFormatTraits& f : weight_formats()) ggml_rows += is_ggml_format(f) ? 1 : 0;
  EXPECT_EQ(std::size(kGgmlRows), ggml_rows);
  for (const GgmlRow& e : kGgmlRows) {
    const WeightFormatTraits& f = weight_format(e.id);
    SCOPED_TRACE(f.name);
    ASSERT_TRUE(is_ggml_format(f));
    EXPECT_EQ(lower(f.name), lower(e.ggml_name));  // names are ggml's type names
    const GgmlBlockCodec& c = *f.ggml;
    EXPECT_EQ(c.ggml_type, e.ggml_type);
    EXPECT_STREQ(c.ggml_name, e.ggml_name);
    EXPECT_EQ(c.block_values, e.block_values);
    EXPECT_EQ(c.block_bytes, e.block_bytes);
    EXPECT_EQ(static_cast<size_t>(c.block_bytes), e.struct_bytes);
    EXPECT_EQ(dtype_from_ggml(e.ggml_type), e.dtype);
    EXPECT_EQ(dtype_traits(e.dtype).block_size, c.block_values);
    EXPECT_EQ(dtype_traits(e.dtype).block_bytes, c.block_bytes);
    EXPECT_EQ(c.decode, dtype_traits(e.dtype).to_f32);  // one decoder, shared with the reader
    EXPECT_NE(c.encode, nullptr);
    EXPECT_EQ(c.encode_weighted == nullptr, e.id == W::Q8_0);  // q8_0 has no imatrix search
    EXPECT_EQ(c.search_weights == nullptr, e.id == W::Q8_0);
    EXPECT_NE(c.fit_block, nullptr);
    EXPECT_NE(c.round_value, nullptr);
  }
}

// ---- bytes and shapes

TEST(GgmlFormats, BytesAreWhatBitsPerWeightPromises) {
  for (const GgmlRow& e : kGgmlRows) {
    SCOPED_TRACE(weight_format(e.id).name);
    const int64_t rows = 7, cols = 2 * 256;
    std::vector<float> w(static_cast<size_t>(rows * cols));
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.f, 0.05f);
    for (float& v : w) v = normal(rng);
    const QuantizedMatrix q = quantize_rtn(e.id, w.data(), rows, cols);
    EXPECT_EQ(q.codes.size(), static_cast<size_t>(rows * cols / e.block_values * e.block_bytes));
    EXPECT_TRUE(q.scales.empty());
    EXPECT_TRUE(q.zeros.empty());
    EXPECT_EQ(q.groups, cols / e.block_values);
    EXPECT_EQ(q.block_row_bytes() * rows, static_cast<int64_t>(q.codes.size()));
    EXPECT_EQ(storage_bits(e.id, rows, cols), q.codes.size() * 8);
    EXPECT_DOUBLE_EQ(bits_per_weight(e.id, rows, cols), e.block_bytes * 8.0 / e.block_values);
    EXPECT_EQ(dtype_nbytes(e.dtype, rows * cols), q.codes.size());  // what a GGUF tensor takes
  }
}

// The message names the format and the [rows, cols] shape.
void expect_refused(const std::function<void()>& fn, const std::string& format, const std::string& shape) {
  try {
    fn();
    ADD_FAILURE() << "no throw for " << format << " " << shape;
  } catch (const Error& err) {
    const std::string m = err.what();
    EXPECT_NE(m.find(format), std::string::npos) << m;
    EXPECT_NE(m.find(shape), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(GgmlFormats, UnacceptableShapesAreRefused) {
  // SmolLM2's 576 and Qwen2.5-0.5B's 896 are not multiples of 256; 100 is not of 32.
  for (const GgmlRow& e : kGgmlRows) {
    const WeightFormatTraits& f = weight_format(e.id);
    SCOPED_TRACE(f.name);
    for (const int64_t cols : {576, 896, 100, 33}) {
      const bool ok = cols % e.block_values == 0;
      std::string reason;
      EXPECT_EQ(format_accepts(e.id, 1536, cols, &reason), ok);
      if (ok) continue;
      const std::string shape = "[1536, " + std::to_string(cols) + "]";
      EXPECT_NE(reason.find(shape), std::string::npos) << reason;
      EXPECT_NE(reason.find(f.name), std::string::npos) << reason;
      expect_refused([&] { require_format_accepts(e.id, 1536, cols, "t"); }, f.name, shape);
      expect_refused([&] { (void)storage_bits(e.id, 1536, cols); }, f.name, shape);
      expect_refused([&] { (void)make_quantized_matrix(e.id, 1536, cols); }, f.name, shape);
      const int64_t rows = 3;
      const std::vector<float> w(static_cast<size_t>(rows * cols), 0.5f);
      const std::string small = "[3, " + std::to_string(cols) + "]";
      expect_refused([&] { (void)quantize_rtn(e.id, w.data(), rows, cols); }, f.name, small);
      const std::vector<double> h(static_cast<size_t>(cols * cols), 0.0);
      expect_refused([&] { (void)quantize_gptq(e.id, w.data(), rows, cols, h); }, f.name, small);
    }
    EXPECT_FALSE(format_accepts(e.id, 0, 256));
    EXPECT_TRUE(format_accepts(e.id, 1, 1024));
  }
  // Element formats take any non-empty shape.
  EXPECT_TRUE(format_accepts(W::Int4_G128, 3, 37));
  EXPECT_TRUE(format_accepts(W::NVFP4, 1, 1));
}

TEST(GgmlFormats, OtherPathsRefuseThemWithAClearError) {
  std::vector<float> w(2 * 256, 0.25f);
  const QuantizedMatrix q = quantize_rtn(W::Q4_K, w.data(), 2, 256);
  // HQQ has no update for two-level block scales.
  try {
    (void)quantize_hqq(W::Q4_K, w.data(), 2, 256);
    ADD_FAILURE() << "hqq accepted q4_K";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hqq does not support ggml"), std::string::npos) << e.what();
  }
  // compressed-tensors has no form for them (a GGUF writer does).
  try {
    (void)encode_module("model.layers.0.mlp.down_proj", q);
    ADD_FAILURE() << "compressed-tensors accepted q4_K";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_K is a ggml block type"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)compressed_tensors_format(W::Q8_0), Error);
  EXPECT_THROW((void)compressed_tensors_weight_args(W::IQ4_NL), Error);
  // Element accessors do not apply to blocks; block_row does not apply to elements.
  QuantizedMatrix copy = q;
  EXPECT_THROW((void)copy.code(0, 0), Error);
  EXPECT_THROW(copy.set_code(0, 0, 1), Error);
  EXPECT_THROW((void)copy.params(0, 0), Error);
  const QuantizedMatrix element = make_quantized_matrix(W::Int4_G128, 2, 256);
  EXPECT_THROW((void)element.block_row(0), Error);
  // A block array of the wrong size is not packed or decoded.
  copy.codes.pop_back();
  EXPECT_THROW((void)pack_matrix(copy), Error);
  std::vector<float> out(512);
  EXPECT_THROW(dequantize(copy, out.data()), Error);
}

// ---- decoding: bit-exact with gguf-py

std::vector<float> f32_values(const TensorRecord& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * sizeof(float));
  return v;
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]) && ++mismatches <= 5) {
      ADD_FAILURE() << what << " value " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
  EXPECT_EQ(mismatches, 0) << what;
}

TEST(GgmlFormats, DecodeThroughTheFormatTableIsBitExactWithGgufPy) {
  const GgufFile file(std::string(MPQ_TEST_DATA_DIR) + "/gguf_blocks.gguf");
  for (const GgmlRow& e : kGgmlRows) {
    const std::string name = lower(e.ggml_name);
    SCOPED_TRACE(name);
    const TensorRecord* raw = file.find_tensor(name + ".raw");
    const TensorRecord* expected = file.find_tensor(name + ".expected");
    ASSERT_NE(raw, nullptr);
    ASSERT_NE(expected, nullptr);
    ASSERT_EQ(raw->shape.size(), 2u);
    QuantizedMatrix q = make_quantized_matrix(e.id, raw->shape[0], raw->shape[1]);
    ASSERT_EQ(q.codes.size(), raw->nbytes);
    std::memcpy(q.codes.data(), raw->data, raw->nbytes);
    std::vector<float> got(static_cast<size_t>(q.rows * q.cols));
    dequantize(q, got.data());
    expect_same_bits(got, f32_values(*expected), name);
  }
}

TEST(GgmlFormats, Fp4BlockDecodersAreBitExactWithGgufPy) {
  const GgufFile file(std::string(MPQ_TEST_DATA_DIR) + "/gguf_blocks.gguf");
  for (const char* name : {"mxfp4", "nvfp4"}) {
    SCOPED_TRACE(name);
    const TensorRecord* raw = file.find_tensor(std::string(name) + ".raw");
    const TensorRecord* expected = file.find_tensor(std::string(name) + ".expected");
    ASSERT_NE(raw, nullptr);
    ASSERT_NE(expected, nullptr);
    const std::vector<float> want = f32_values(*expected);
    std::vector<float> got(want.size());
    if (std::string(name) == "mxfp4") {
      gguf::dequantize_mxfp4(raw->data, got.data(), static_cast<int64_t>(got.size()));
    } else {
      gguf::dequantize_nvfp4(raw->data, got.data(), static_cast<int64_t>(got.size()));
    }
    expect_same_bits(got, want, name);
  }
}

// ---- encoding: byte-exact with llama.cpp's quantizers

struct EncoderFixture {
  GgufFile file{std::string(MPQ_TEST_DATA_DIR) + "/ggml_quantize.gguf"};
  std::vector<float> x, imatrix;
  int64_t rows = 0, cols = 0;
  EncoderFixture() {
    const TensorRecord* in = file.find_tensor("input");
    const TensorRecord* imp = file.find_tensor("imatrix");
    check(in != nullptr && imp != nullptr && in->shape.size() == 2, "ggml_quantize.gguf", "missing input");
    rows = in->shape[0];
    cols = in->shape[1];
    x = f32_values(*in);
    imatrix = f32_values(*imp);
  }
  const TensorRecord& bytes(const std::string& name) const {
    const TensorRecord* t = file.find_tensor(name);
    check(t != nullptr, "ggml_quantize.gguf", "missing " + name);
    return *t;
  }
};

// Compares block by block; reports the first few different blocks.
void expect_same_blocks(const std::vector<uint8_t>& got, const TensorRecord& want, int block_bytes, int64_t blocks_per_row,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.nbytes) << what;
  int64_t different = 0;
  for (size_t b = 0; b < got.size() / static_cast<size_t>(block_bytes); ++b) {
    if (std::memcmp(got.data() + b * block_bytes, want.data + b * block_bytes, static_cast<size_t>(block_bytes)) != 0 &&
        ++different <= 3) {
      ADD_FAILURE() << what << ": block " << b % blocks_per_row << " of row " << b / blocks_per_row << " differs";
    }
  }
  EXPECT_EQ(different, 0) << what;
}

TEST(GgmlFormats, EncodersWriteTheBytesLlamaCppWrites) {
  const EncoderFixture fx;
  for (const GgmlRow& e : kGgmlRows) {
    const GgmlBlockCodec& c = codec_of(e.id);
    const std::string name = lower(e.ggml_name);
    SCOPED_TRACE(name);
    const int64_t per_row = fx.cols / c.block_values;
    // Without an importance matrix: the codec's encoder, and quantize_rtn (no clip search).
    std::vector<uint8_t> out(static_cast<size_t>(fx.rows * per_row * c.block_bytes));
    for (int64_t r = 0; r < fx.rows; ++r) {
      c.encode(fx.x.data() + r * fx.cols, out.data() + r * per_row * c.block_bytes, fx.cols);
    }
    expect_same_blocks(out, fx.bytes(name + ".plain"), c.block_bytes, per_row, name + " plain");
    const QuantizedMatrix q = quantize_rtn(e.id, fx.x.data(), fx.rows, fx.cols);
    EXPECT_EQ(q.codes, out);
    // With it: the weighted search (q8_0: llama.cpp ignores the imatrix, so the plain bytes).
    if (c.encode_weighted != nullptr) {
      for (int64_t r = 0; r < fx.rows; ++r) {
        c.encode_weighted(fx.x.data() + r * fx.cols, fx.imatrix.data(), out.data() + r * per_row * c.block_bytes,
                          fx.cols);
      }
    }
    expect_same_blocks(out, fx.bytes(name + ".imatrix"), c.block_bytes, per_row, name + " imatrix");
  }
}

// ---- round-trip error: the bound

// Elementwise bound of the reference encoders, derived from the format. Every value x of a
// sub-block is decoded to x̂, a level of the sub-block's *stored* grid G16 (stored scale d16 and
// offset m16, levels ℓ_k = d16·k − m16, or d16·L_k for the iq4 tables). Then:
//   * types that re-quantize with the stored scales (k-quants): x̂ is the level nearest x, up to
//     the fp32 rounding of (x + m)/d: |x − x̂| <= min_k |x − ℓ_k| + ε, ε = 2^-20·(|x| + span);
//   * types whose codes are chosen with the fp32 scale d32 (q4_0 ... q8_0, iq4_nl; iq4_xs's
//     sub-block scales d32·l): x̂32 is the level of the fp32 grid nearest x, and moving to the
//     stored grid moves level k by |k|·|d16 − d32| + |m16 − m32| <= K·δ_d + δ_m with K the
//     largest |k| (8, 16, 15, 31, 127; 127 for the iq4 levels) and δ = fp16 rounding (to
//     nearest: <= 2^-11 relative, 2^-25 absolute below 2^-14; iq4_xs's sub-block scale d·l moves
//     by |l|·δ_d). Both x̂ and the nearest stored level move by at most that, so
//     |x − x̂| <= min_k |x − ℓ_k| + 2·(K·δ_d + δ_m) + ε.
// Values beyond the grid's ends (clipped by the scale search, or by min/max grids when the fp16
// scale rounds down) are covered by the same min_k: x̂ must then be the end level. A sub-block
// whose stored scale is 0 has a single level. The grid's end levels of value j come from the
// codec's round_value with ±1e30 (it clamps to the end codes); the iq4 levels in between are
// placed by the table, the others evenly.
struct Grid {
  std::vector<double> levels;
};

Grid grid_of(const GgmlBlockCodec& c, const uint8_t* block, int j, bool table) {
  std::vector<uint8_t> copy(block, block + c.block_bytes);
  const double top = c.round_value(copy.data(), j, 1e30f);
  const double bottom = c.round_value(copy.data(), j, -1e30f);
  Grid g;
  if (top == bottom) {
    g.levels = {top};
    return g;
  }
  if (table) {
    // d > 0: top = 113 d, bottom = −127 d; d < 0: top = −127 d, bottom = 113 d.
    const bool positive = std::fabs(top) < std::fabs(bottom);
    const double d = positive ? top / 113.0 : top / -127.0;
    for (int8_t l : gguf::kIq4Levels) g.levels.push_back(d * l);
    return g;
  }
  // Uniform: the number of codes from the type's code range.
  const int n = c.ggml_type == 8 ? 255 : c.ggml_type == 2 || c.ggml_type == 3 || c.ggml_type == 12 ? 16
              : c.ggml_type == 6 || c.ggml_type == 7 || c.ggml_type == 13                         ? 32
              : c.ggml_type == 10                                                                  ? 4
              : c.ggml_type == 11                                                                  ? 8
                                                                                                   : 64;
  for (int k = 0; k < n; ++k) g.levels.push_back(bottom + (top - bottom) * k / (n - 1));
  return g;
}

// K of the bound above (0: codes re-quantized with the stored scales) and whether the type has
// an fp16 offset m.
struct Slack {
  int k;
  bool has_min;
};
Slack slack_of(W id) {
  switch (id) {
    case W::Q4_0: return {8, false};
    case W::Q5_0: return {16, false};
    case W::Q4_1: return {15, true};
    case W::Q5_1: return {31, true};
    case W::Q8_0: return {127, false};
    case W::IQ4_NL:
    case W::IQ4_XS: return {127, false};
    default: return {0, false};
  }
}

double f16_rounding(double v) { return std::max(std::ldexp(std::fabs(v), -11), std::ldexp(1.0, -25)); }

TEST(GgmlFormats, ReferenceEncodersPutEveryValueOnTheNearestStoredLevel) {
  const EncoderFixture fx;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::student_t_distribution<float> t3(3.f);
  // The fixture rows (zero, constant, sparse, mixed scales) and more random ones.
  const int64_t rows = fx.rows + 24, cols = fx.cols;
  std::vector<float> w(fx.x);
  for (int64_t i = 0; i < 24 * cols; ++i) w.push_back(i % 2 ? normal(rng) : 0.02f * t3(rng));
  for (const GgmlRow& e : kGgmlRows) {
    const GgmlBlockCodec& c = codec_of(e.id);
    const Slack slack = slack_of(e.id);
    const bool table = e.id == W::IQ4_NL || e.id == W::IQ4_XS;
    SCOPED_TRACE(weight_format(e.id).name);
    const QuantizedMatrix q = quantize_rtn(e.id, w.data(), rows, cols);
    std::vector<float> decoded(w.size());
    dequantize(q, decoded.data());
    int64_t failures = 0, clipped = 0;
    double worst = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t col = 0; col < cols; ++col) {
        const int64_t b = col / c.block_values;
        const uint8_t* block = q.block_row(r) + b * c.block_bytes;
        const Grid g = grid_of(c, block, static_cast<int>(col % c.block_values), table);
        const double x = w[r * cols + col], xq = decoded[r * cols + col];
        double nearest = 1e300;
        for (double l : g.levels) nearest = std::min(nearest, std::fabs(x - l));
        const auto [lo, hi] = std::minmax_element(g.levels.begin(), g.levels.end());
        if (x < *lo || x > *hi) ++clipped;
        const double d = ggml::load_f16(block);  // d sits first in every type but q2/q3/q6_K (slack 0)
        const double m = slack.has_min ? ggml::load_f16(block + 2) : 0.0;
        double scale_slack = 0.0;
        if (slack.k > 0) {
          // iq4_xs: the sub-block scale is d·l with l = sc − 32, so its rounding is |l|·δ_d.
          const double l = e.id == W::IQ4_XS && d != 0.0 ? std::round((*hi - *lo) / 240.0 / std::fabs(d)) : 1.0;
          scale_slack = 2.0 * (slack.k * l * f16_rounding(d) + (slack.has_min ? f16_rounding(m) : 0.0));
        }
        const double eps = std::ldexp(std::fabs(x) + (*hi - *lo), -20);
        const double bound = nearest + scale_slack + eps;
        worst = std::max(worst, std::fabs(x - xq) - nearest);
        if (std::fabs(x - xq) > bound && ++failures <= 5) {
          ADD_FAILURE() << "row " << r << " col " << col << ": x " << x << " decoded " << xq << ", nearest level at "
                        << nearest << ", bound " << bound;
        }
      }
    }
    EXPECT_EQ(failures, 0);
    std::printf("%-7s clipped %5.2f%%  worst excess over the nearest level %.3g\n", weight_format(e.id).name,
                100.0 * clipped / (rows * cols), worst);
  }
}

// ---- mxfp4 / nvfp4 in ggml's layouts

TEST(GgmlFp4, MxFp4ConvertsBothWaysExactly) {
  const GgufFile file(std::string(MPQ_TEST_DATA_DIR) + "/gguf_blocks.gguf");
  const TensorRecord& raw = *file.find_tensor("mxfp4.raw");
  const TensorRecord& expected = *file.find_tensor("mxfp4.expected");
  const int64_t rows = raw.shape[0], cols = raw.shape[1];
  const QuantizedMatrix q = mxfp4_from_ggml(raw.data, rows, cols);
  std::vector<float> ours(static_cast<size_t>(rows * cols));
  dequantize(q, ours.data());
  const std::vector<float> want = f32_values(expected);
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_EQ(ours[i], want[i]) << i;  // == : −0 and +0 alike
  const std::vector<uint8_t> back = mxfp4_to_ggml(q);
  EXPECT_EQ(back, std::vector<uint8_t>(raw.data, raw.data + raw.nbytes));

  // Ours -> ggml -> ours on quantized random weights; ggml's decoder gives our values.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.f, 0.3f);
  std::vector<float> w(5 * 96);
  for (float& v : w) v = normal(rng);
  const QuantizedMatrix m = quantize_rtn(W::MXFP4, w.data(), 5, 96);
  const std::vector<uint8_t> blocks = mxfp4_to_ggml(m);
  EXPECT_EQ(blocks.size(), 5u * 3 * sizeof(gguf::BlockMXFP4));
  const QuantizedMatrix m2 = mxfp4_from_ggml(blocks.data(), 5, 96);
  EXPECT_EQ(m2.codes, m.codes);
  EXPECT_EQ(m2.scales, m.scales);
  std::vector<float> a(w.size()), b(w.size());
  dequantize(m, a.data());
  gguf::dequantize_mxfp4(blocks.data(), b.data(), static_cast<int64_t>(b.size()));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;

  // Refused: rows that are not whole blocks, a NaN scale either way.
  const QuantizedMatrix short_rows = quantize_rtn(W::MXFP4, w.data(), 5, 48);
  EXPECT_THROW((void)mxfp4_to_ggml(short_rows), Error);
  QuantizedMatrix nan_scale = m;
  nan_scale.scales[4] = 0xFF;
  EXPECT_THROW((void)mxfp4_to_ggml(nan_scale), Error);
  std::vector<uint8_t> bad = blocks;
  bad[0] = 0xFF;
  EXPECT_THROW((void)mxfp4_from_ggml(bad.data(), 5, 96), Error);
}

TEST(GgmlFp4, MxFp4EncodersDifferFromGgmlOnlyAtExactTies) {
  // Same scale rule (OCP: floor(log2 absmax) − 2); ggml rounds a midpoint to the level nearer 0
  // where ours rounds it to the even code.
  const EncoderFixture fx;
  const TensorRecord& ggml_bytes = fx.bytes("mxfp4.plain");
  const QuantizedMatrix theirs = mxfp4_from_ggml(ggml_bytes.data, fx.rows, fx.cols);
  const QuantizedMatrix ours = quantize_rtn(W::MXFP4, fx.x.data(), fx.rows, fx.cols);
  EXPECT_EQ(ours.scales, theirs.scales);
  int64_t ties = 0;
  for (int64_t r = 0; r < fx.rows; ++r) {
    for (int64_t c = 0; c < fx.cols; ++c) {
      if (ours.code(r, c) == theirs.code(r, c)) continue;
      const GroupParams p = ours.params(r, c / 32);
      const float u = std::fabs(fx.x[r * fx.cols + c]) / p.scale;
      const bool midpoint = u == 0.25f || u == 0.75f || u == 1.25f || u == 1.75f || u == 2.5f || u == 3.5f || u == 5.f;
      const bool signed_zero = (ours.code(r, c) & 7) == 0 && (theirs.code(r, c) & 7) == 0;
      EXPECT_TRUE(midpoint || signed_zero) << "row " << r << " col " << c << ": x/scale " << u;
      ++ties;
    }
  }
  std::printf("mxfp4: %lld of %lld codes differ from ggml's (ties, signed zeros)\n", static_cast<long long>(ties),
              static_cast<long long>(fx.rows * fx.cols));
}

TEST(GgmlFp4, NvFp4ConvertsBothWays) {
  // ggml -> ours: values as ggml decodes them (tensor factor 1: bit for bit up to the sign of 0).
  const GgufFile file(std::string(MPQ_TEST_DATA_DIR) + "/gguf_blocks.gguf");
  const TensorRecord& raw = *file.find_tensor("nvfp4.raw");  // I8 bytes [rows, bytes per row]
  const int64_t rows = raw.shape[0], cols = raw.shape[1] / 36 * 64;
  std::vector<uint8_t> blocks(raw.data, raw.data + raw.nbytes);
  EXPECT_THROW((void)nvfp4_from_ggml(blocks.data(), rows, cols), Error);  // the fixture has a 0xFF scale
  for (size_t b = 0; b < blocks.size(); b += 36) {
    for (int s = 0; s < 4; ++s) blocks[b + s] = blocks[b + s] == 0xFF ? 0x00 : blocks[b + s];
  }
  const QuantizedMatrix q = nvfp4_from_ggml(blocks.data(), rows, cols);
  EXPECT_EQ(q.tensor_scale, 1.f);
  std::vector<float> ours(static_cast<size_t>(rows * cols)), theirs(ours.size());
  dequantize(q, ours.data());
  gguf::dequantize_nvfp4(blocks.data(), theirs.data(), static_cast<int64_t>(theirs.size()));
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_EQ(ours[i], theirs[i]) << i;

  // Ours (with a tensor scale) -> ggml blocks + factor 1/T -> ours: codes and scales exact; the
  // values ggml computes, e2m1·e4m3 (exact) times fl(1/T) rounded once more, are ours,
  // e2m1·fl(e4m3/T) rounded once, within 2 roundings: |a − b| <= 2·2^-24·|a| (+ 2^-149 below
  // the normal range).
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.f, 0.05f);
  std::vector<float> w(3 * 128);
  for (float& v : w) v = normal(rng);
  const QuantizedMatrix m = quantize_rtn(W::NVFP4, w.data(), 3, 128);
  ASSERT_NE(m.tensor_scale, 1.f);
  const GgmlNvfp4 g = nvfp4_to_ggml(m);
  EXPECT_EQ(g.blocks.size(), 3u * 2 * 36);
  EXPECT_EQ(g.scale, 1.f / m.tensor_scale);
  const QuantizedMatrix m2 = nvfp4_from_ggml(g.blocks.data(), 3, 128, g.scale);
  EXPECT_EQ(m2.codes, m.codes);
  EXPECT_EQ(m2.scales, m.scales);
  std::vector<float> a(w.size()), b(w.size());
  dequantize(m, a.data());
  gguf::dequantize_nvfp4(g.blocks.data(), b.data(), static_cast<int64_t>(b.size()));
  for (size_t i = 0; i < a.size(); ++i) {
    const float ggml_value = b[i] * g.scale;
    EXPECT_LE(std::fabs(a[i] - ggml_value), 2 * std::ldexp(std::fabs(a[i]), -24) + 0x1p-149f) << i;
  }
  // Refused: rows not whole blocks of 64, a bad factor.
  const QuantizedMatrix cols96 = quantize_rtn(W::NVFP4, w.data(), 4, 96);
  EXPECT_THROW((void)nvfp4_to_ggml(cols96), Error);
  EXPECT_THROW((void)nvfp4_from_ggml(g.blocks.data(), 3, 128, 0.f), Error);
  EXPECT_THROW((void)nvfp4_from_ggml(g.blocks.data(), 3, 128, std::nanf("")), Error);
}

}  // namespace
}  // namespace mpq

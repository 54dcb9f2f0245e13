// The ggml block formats through the quantizers and the packed runtime:
//   - rtn_clip's importance-weighted search never worse than the plain encoder on the weighted
//     error it minimises (block by block);
//   - GPTQ over the block structure: with a diagonal Hessian it is the plain encoder byte for
//     byte (k-quants, whose encoder is fit + re-quantize too); with correlated inputs it beats RTN
//     on the layer-output error tr(ΔW H ΔWᵀ);
//   - the packed product against the scalar reference and the exact product, on odd row counts,
//     1/3/17 tokens, every instruction set this CPU has;
//   - a GGUF model whose Linear tensors stay in their blocks (LoadOptions::keep_gguf_quantized).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "format/ggml_codec.h"
#include "format/weight_format.h"
#include "io/gguf.h"
#include "kernel/packed.h"
#include "kernel_test_util.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/gptq.h"
#include "quant/quantize_model.h"
#include "quant/rtn.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace mpq {
namespace {

using W = WeightFormatId;

std::vector<W> ggml_formats() {
  std::vector<W> v;
  for (const WeightFormatTraits& f : weight_formats()) {
    if (is_ggml_format(f)) v.push_back(f.id);
  }
  return v;
}

std::vector<float> random_weights(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::student_t_distribution<float> t3(3.f);
  std::vector<float> w(static_cast<size_t>(n));
  for (size_t i = 0; i < w.size(); ++i) w[i] = i % 3 == 0 ? 0.02f * t3(rng) : normal(rng);
  return w;
}

// Per-column importance like an imatrix: positive, spread over two orders of magnitude.
std::vector<float> random_importance(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::chi_squared_distribution<float> chi(1.f);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (float& v : imp) v = 0.01f + chi(rng);
  return imp;
}

// ---- rtn_clip: llama.cpp's weighted search, never worse on its own weights

TEST(GgmlQuantizers, WeightedSearchIsNeverWorseOnTheErrorItMinimises) {
  const int64_t rows = 48, cols = 512;
  const std::vector<float> w = random_weights(rows * cols, 1);
  const std::vector<float> imp = random_importance(cols, 2);
  for (W id : ggml_formats()) {
    const GgmlBlockCodec& c = *weight_format(id).ggml;
    if (c.encode_weighted == nullptr) continue;  // q8_0
    SCOPED_TRACE(weight_format(id).name);
    RtnOptions o;
    o.clip_search = true;
    o.importance = imp.data();
    const QuantizedMatrix plain = quantize_rtn(id, w.data(), rows, cols);
    const QuantizedMatrix searched = quantize_rtn(id, w.data(), rows, cols, o);
    std::vector<float> a(w.size()), b(w.size()), sw(static_cast<size_t>(cols));
    dequantize(plain, a.data());
    dequantize(searched, b.data());
    int64_t kept_plain = 0, blocks = 0;
    double total_plain = 0.0, total_searched = 0.0, imp_plain = 0.0, imp_searched = 0.0;
    std::vector<uint8_t> pure(static_cast<size_t>(searched.block_row_bytes()));
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = w.data() + r * cols;
      c.search_weights(x, imp.data(), sw.data(), cols);
      c.encode_weighted(x, imp.data(), pure.data(), cols);
      for (int64_t blk = 0; blk < searched.groups; ++blk) {
        double ep = 0.0, es = 0.0;
        for (int64_t j = blk * c.block_values; j < (blk + 1) * c.block_values; ++j) {
          const double dp = x[j] - a[r * cols + j], ds = x[j] - b[r * cols + j];
          ep += sw[j] * dp * dp;
          es += sw[j] * ds * ds;
          imp_plain += imp[j] * dp * dp;
          imp_searched += imp[j] * ds * ds;
        }
        EXPECT_LE(es, ep) << "row " << r << " block " << blk;
        total_plain += ep;
        total_searched += es;
        ++blocks;
        kept_plain += std::memcmp(searched.block_row(r) + blk * c.block_bytes, pure.data() + blk * c.block_bytes,
                                  static_cast<size_t>(c.block_bytes)) != 0;
      }
    }
    EXPECT_LT(total_searched, total_plain);
    std::printf("%-7s weighted error searched/plain %.3f (importance-only %.3f), plain kept in %lld of %lld blocks\n",
                weight_format(id).name, total_searched / total_plain, imp_searched / imp_plain,
                static_cast<long long>(kept_plain), static_cast<long long>(blocks));
  }
}

TEST(GgmlQuantizers, SearchWithoutImportanceUsesOnesAndQ8_0HasNone) {
  const std::vector<float> w = random_weights(6 * 256, 3);
  const std::vector<float> ones(256, 1.f);
  RtnOptions clip;
  clip.clip_search = true;
  RtnOptions with_ones = clip;
  with_ones.importance = ones.data();
  for (W id : {W::Q4_K, W::Q5_0, W::IQ4_NL}) {
    EXPECT_EQ(quantize_rtn(id, w.data(), 6, 256, clip).codes, quantize_rtn(id, w.data(), 6, 256, with_ones).codes)
        << weight_format(id).name;
  }
  EXPECT_EQ(quantize_rtn(W::Q8_0, w.data(), 6, 256, with_ones).codes, quantize_rtn(W::Q8_0, w.data(), 6, 256).codes);
}

TEST(GgmlQuantizers, NonFiniteResultsAreRefused) {
  // 1e9 / 127 overflows q8_0's fp16 scale: the block would decode to infinities.
  std::vector<float> w(2 * 32, 1.f);
  w[40] = 1e9f;
  try {
    (void)quantize_rtn(W::Q8_0, w.data(), 2, 32);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1 decodes to a non-finite value"), std::string::npos) << e.what();
  }
  std::vector<float> v(256, 0.5f);
  v[100] = std::nanf("");
  EXPECT_THROW((void)quantize_rtn(W::Q4_K, v.data(), 1, 256), Error);
}

// ---- GPTQ over blocks

// A calibration set with correlated features: x = z·M with M a banded mixing matrix (each
// feature a mix of 5 neighbouring sources) and per-feature gains spread over two orders of
// magnitude, so H = XᵀX is far from diagonal and its diagonal uneven.
std::vector<double> correlated_hessian(int64_t cols, int64_t samples, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> log_gain(std::log(0.1), std::log(10.0));
  std::vector<double> gain(static_cast<size_t>(cols));
  for (double& g : gain) g = std::exp(log_gain(rng));
  std::vector<double> h(static_cast<size_t>(cols * cols), 0.0), x(static_cast<size_t>(cols)), z(static_cast<size_t>(cols + 4));
  for (int64_t s = 0; s < samples; ++s) {
    for (double& v : z) v = normal(rng);
    for (int64_t j = 0; j < cols; ++j) {
      x[j] = gain[j] * (z[j] + 0.8 * z[j + 1] + 0.6 * z[j + 2] + 0.4 * z[j + 3] + 0.2 * z[j + 4]);
    }
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j) h[i * cols + j] += x[i] * x[j];
    }
  }
  return h;
}

TEST(GgmlQuantizers, GptqWithADiagonalHessianIsThePlainEncoder) {
  // No correlation: no error feedback, every block fitted from its original values, every value
  // re-quantized on the stored grid: exactly the k-quant encoders (fit + re-quantize too).
  const int64_t rows = 9, cols = 512;
  const std::vector<float> w = random_weights(rows * cols, 4);
  std::vector<double> h(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0 + (i % 7);
  for (W id : {W::Q2_K, W::Q3_K, W::Q4_K, W::Q5_K, W::Q6_K}) {
    for (const bool act_order : {false, true}) {  // any column order: blocks fitted from original values
      GptqOptions o;
      o.act_order = act_order;
      o.block_size = 96;  // lazy batches that cut through super-blocks
      EXPECT_EQ(quantize_gptq(id, w.data(), rows, cols, h, o).codes, quantize_rtn(id, w.data(), rows, cols).codes)
          << weight_format(id).name << (act_order ? " act_order" : "");
    }
  }
}

TEST(GgmlQuantizers, GptqOverBlocksBeatsRtnWithCorrelatedInputs) {
  const int64_t rows = 259, cols = 512;  // 256 + an odd number of rows
  const std::vector<float> w = random_weights(rows * cols, 5);
  const std::vector<double> h = correlated_hessian(cols, 2048, 6);
  std::vector<float> importance(static_cast<size_t>(cols));  // the imatrix: diag(H) / samples
  for (int64_t i = 0; i < cols; ++i) importance[i] = static_cast<float>(h[i * cols + i] / 2048.0);
  for (W id : ggml_formats()) {
    SCOPED_TRACE(weight_format(id).name);
    const double rtn = layer_output_error(w.data(), quantize_rtn(id, w.data(), rows, cols), h);
    GptqStats st;
    const double gptq = layer_output_error(w.data(), quantize_gptq(id, w.data(), rows, cols, h, {}, &st), h);
    EXPECT_DOUBLE_EQ(gptq, st.output_error);
    EXPECT_LT(gptq, rtn);
    // With the importance: rtn_clip (llama.cpp's imatrix search) against GPTQ fitting its blocks
    // with the same search.
    RtnOptions ro;
    ro.clip_search = true;
    ro.importance = importance.data();
    const double rtn_imp = layer_output_error(w.data(), quantize_rtn(id, w.data(), rows, cols, ro), h);
    GptqOptions go;
    go.fit.weights = importance.data();
    const double gptq_imp = layer_output_error(w.data(), quantize_gptq(id, w.data(), rows, cols, h, go), h);
    EXPECT_LT(gptq_imp, rtn_imp);
    std::printf("%-7s output error gptq/rtn %.3f, with importance gptq/rtn_clip %.3f (rtn_clip/rtn %.3f)\n",
                weight_format(id).name, gptq / rtn, gptq_imp / rtn_imp, rtn_imp / rtn);
  }
}

// ---- packed runtime

// y[t, r] = Σ_i W[r, i] x[t, i] in double from dequantize(q), and the error bound of any fp32
// evaluation (every path decodes the weights exactly, with the shared scalar decoder): n = cols
// products each rounded once, at most n − 1 additions on any product's path whatever the order,
// so |fp32 − exact| <= γ_n Σ_i |W[r, i] x[t, i]|, γ_n = n u / (1 − n u), u = 2^-24.
void expect_product_within_bound(const QuantizedMatrix& q, const float* x, int64_t n_tokens, const float* y, int64_t ldy,
                                 int64_t row_begin, int64_t row_end, const int32_t* row_to_output,
                                 const std::string& what) {
  std::vector<float> w(static_cast<size_t>(q.rows * q.cols));
  dequantize(q, w.data());
  const double u = std::ldexp(1.0, -24), gamma = q.cols * u / (1 - q.cols * u);
  int failures = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = row_begin; r < row_end; ++r) {
      double sum = 0, abs_sum = 0;
      for (int64_t i = 0; i < q.cols; ++i) {
        const double term = static_cast<double>(w[r * q.cols + i]) * x[t * q.cols + i];
        sum += term;
        abs_sum += std::fabs(term);
      }
      const int64_t out = row_to_output ? row_to_output[r] : r;
      const double got = y[t * ldy + out];
      if (std::fabs(got - sum) > gamma * abs_sum && ++failures <= 3) {
        ADD_FAILURE() << what << " token " << t << " row " << r << ": " << got << " vs " << sum;
      }
    }
  }
}

TEST(GgmlPacked, ProductsMatchTheReferenceOnEveryIsa) {
  for (W id : ggml_formats()) {
    const GgmlBlockCodec& c = *weight_format(id).ggml;
    const int64_t rows = 37, cols = 2 * c.block_values + (c.block_values == 32 ? 32 : 0);  // 96 or 512
    SCOPED_TRACE(weight_format(id).name);
    const std::vector<float> w = random_weights(rows * cols, 7);
    const QuantizedMatrix q = quantize_rtn(id, w.data(), rows, cols);
    const auto packed = pack_matrix(q);
    EXPECT_EQ(packed->format(), id);
    EXPECT_EQ(packed->rows(), rows);
    EXPECT_EQ(packed->cols(), cols);
    EXPECT_EQ(packed->bytes(), q.codes.size());  // resident = file bytes
    EXPECT_FALSE(packed->supports_int8_activations());
    const QuantizedMatrix back = packed->unpack();
    EXPECT_EQ(back.codes, q.codes);
    EXPECT_EQ(back.groups, q.groups);
    std::vector<float> all(w.size()), row(static_cast<size_t>(cols));
    dequantize(q, all.data());
    for (int64_t r : {int64_t{0}, int64_t{17}, rows - 1}) {
      packed->decode_row(r, row.data());
      EXPECT_TRUE(std::equal(row.begin(), row.end(), all.begin() + r * cols)) << r;
    }
    std::mt19937 rng(8);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<int32_t> reversed(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) reversed[r] = static_cast<int32_t>(rows - 1 - r);
    for (int64_t n_tokens : {1, 3, 17}) {
      std::vector<float> x(static_cast<size_t>(n_tokens * cols));
      for (float& v : x) v = normal(rng);
      std::vector<float> reference(static_cast<size_t>(n_tokens * rows));
      packed->matmul_f32(Isa::Scalar, x.data(), n_tokens, reference.data(), rows, 0, rows);
      for (Isa isa : test::supported_isas()) {
        const std::string what = std::string(isa_name(isa)) + " tokens " + std::to_string(n_tokens);
        std::vector<float> y(reference.size(), std::nanf(""));
        packed->matmul_f32(isa, x.data(), n_tokens, y.data(), rows, 0, rows);
        expect_product_within_bound(q, x.data(), n_tokens, y.data(), rows, 0, rows, nullptr, what);
        if (isa == Isa::Scalar) EXPECT_EQ(y, reference);
        // A row range that is not whole tiles, written through a row map into a wider output.
        std::vector<float> z(static_cast<size_t>(n_tokens * (rows + 3)), -7.f);
        packed->matmul_f32(isa, x.data(), n_tokens, z.data(), rows + 3, 5, 30, reversed.data());
        expect_product_within_bound(q, x.data(), n_tokens, z.data(), rows + 3, 5, 30, reversed.data(), what + " map");
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t o = 0; o < rows + 3; ++o) {
            const bool written = o < rows && reversed[o] >= 0 && (rows - 1 - o) >= 5 && (rows - 1 - o) < 30;
            if (!written) EXPECT_EQ(z[t * (rows + 3) + o], -7.f) << what << " untouched output " << o;
          }
        }
        // The threaded driver (int8 activations asked: these formats run fp32) gives the same.
        std::vector<float> d(reference.size());
        packed_matmul(*packed, x.data(), n_tokens, d.data(), rows, ActivationMode::Int8, nullptr, isa);
        EXPECT_EQ(d, y) << what;
      }
    }
  }
}

}  // namespace
}  // namespace mpq

namespace mpq {
namespace {

// ---- a GGUF model kept in its blocks (LoadOptions::keep_gguf_quantized)

std::vector<float> logits_of(Model& model, const std::vector<int32_t>& ids) {
  KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  return model.forward_all(ids, cache);
}

TEST(GgmlModels, SmolLM2RunsFromItsGgufBlocks) {
  const std::string path = std::string(MPQ_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model file absent: " << path;
  const std::vector<int32_t> ids = {1, 504, 3458, 282, 253, 1345, 28, 2365, 314, 216};
  LoadOptions fp32;
  fp32.need_tokenizer = false;
  Model reference = load_model(path, fp32);
  const std::vector<float> want = logits_of(reference, ids);
  const Linear& q_ref = reference.layers[0].at(LinearKind::Q);
  EXPECT_EQ(q_ref.weights->format_name(), "f32");

  // Kept as q4_1 blocks, decoded runtime: the same fp32 weights through the same sgemm, so the
  // same logits bit for bit (q and k rows moved out of GGUF's interleaved RoPE order like the
  // fp32 ones).
  LoadOptions keep = fp32;
  keep.keep_gguf_quantized = true;
  Model kept = load_model(path, keep);
  const GgufFile file(path);
  for (const DecoderLayer& layer : kept.layers) {
    for (const Linear& lin : layer.linear) EXPECT_EQ(lin.weights->format_name(), "q4_1") << lin.name;
  }
  const TensorRecord* down = file.find_tensor("blk.3.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(kept.layers[3].at(LinearKind::Down).weights->storage_bytes(), down->nbytes);  // memory = file
  EXPECT_EQ(logits_of(kept, ids), want);

  // Decoded when used (--runtime on-use): no resident fp32 copy, the same logits bit for bit.
  LoadOptions on_use = keep;
  on_use.runtime.decode_on_use = true;
  Model streamed = load_model(path, on_use);
  EXPECT_EQ(streamed.layers[3].at(LinearKind::Down).weights->format_name(), "q4_1");
  EXPECT_EQ(logits_of(streamed, ids), want);
  // ... and the same analysis (gradients through the decoded-on-use weights; channel salience
  // against the int4_g128 form kept instead of an fp32 error matrix).
  CalibrationSet set;
  set.sequences = {ids};
  SensitivityOptions so;
  so.methods.fisher = true;
  so.methods.channels = true;
  so.formats = {WeightFormatId::Int4_G128};
  so.progress = false;
  const SensitivityResult a = analyze_sensitivity(reference, set, so);
  const SensitivityResult b = analyze_sensitivity(streamed, set, so);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t t = 0; t < a.tensors.size(); ++t) {
    EXPECT_EQ(a.tensors[t].fisher, b.tensors[t].fisher) << a.tensors[t].name;
    EXPECT_EQ(a.tensors[t].channels, b.tensors[t].channels) << a.tensors[t].name;
  }

  // Packed runtime: the same decoded weights, summed in another order (tiles of 16 rows, vector
  // lanes) through 30 layers. A dot product of length K <= 1536 then moves by ~√K·2^-24 of its
  // magnitude, passed on roughly unamplified by the residual stream and the norms; 1e-4 of the
  // largest logit is an order of magnitude above that, while a wrong block (scale, row order)
  // shows at 1e-2 and above.
  keep.runtime.packed = true;
  keep.runtime.kv_cache = KvCacheType::F32;
  Model packed = load_model(path, keep);
  const std::vector<float> got = logits_of(packed, ids);
  ASSERT_EQ(got.size(), want.size());
  double max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
  std::printf("SmolLM2 q4_1 blocks, packed vs fp32 logits: max |diff| %.3g of max |logit| %.3g\n", max_abs, max_ref);
  EXPECT_LE(max_abs, 1e-4 * max_ref);
}

}  // namespace
}  // namespace mpq

namespace mpq {
namespace {

// ---- a whole model through quantize_model

TEST(GgmlModels, QuantizeModelNamesTheTensorAFormatCannotHold) {
  synth::Spec spec;
  spec.dim = 64;
  spec.ffn = 96;  // every Linear's rows: 64 or 96 values, whole blocks of 32, never of 256
  spec.heads = 4;
  spec.kv_heads = 2;
  spec.head_dim = 16;
  test::TempDir dir;
  synth::write_model(synth::make_model(spec), dir.file("m"));
  Model model = load_model(dir.file("m"), LoadOptions{.need_tokenizer = false});
  QuantizeOptions options;
  options.progress = false;
  auto every = [](WeightFormatId f, Quantizer q) {
    return [f, q](const std::string&, int, LinearKind) { return ModuleChoice::whole(f, q); };
  };
  try {
    (void)quantize_model(model, every(W::Q4_K, Quantizer::Rtn), options);
    ADD_FAILURE() << "q4_K accepted 64-value rows";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj: q4_K stores rows in blocks of 256"),
              std::string::npos)
        << e.what();
  }
  // 32-value types take every tensor; rtn_clip without calibration searches with importance 1.
  for (const auto q : {Quantizer::Rtn, Quantizer::RtnClip}) {
    Model m = load_model(dir.file("m"), LoadOptions{.need_tokenizer = false});
    QuantizeReport report = quantize_model(m, every(W::Q5_0, q), options);
    EXPECT_DOUBLE_EQ(report.bits_per_weight, 5.5);
    EXPECT_EQ(m.layers[1].at(LinearKind::Down).weights->format_name(), "q5_0");
    quantize_output_head(m, W::Q8_0, report);
    EXPECT_EQ(m.lm_head.weights->format_name(), "q8_0");
  }
}

}  // namespace
}  // namespace mpq

// The packed runtime (model/packed_linear.cpp): models quantized to each format run from packed
// weights and give the decoded (fake-quant) reference's logits and perplexity; int8 activations
// cost a little accuracy, measured here; the packed weights give back their stored form; the
// read-bandwidth probe and `mpq bench --json` report what docs/RUNTIME.md promises.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "format/channel_split.h"
#include "kernel/bandwidth.h"
#include "model/packed_linear.h"
#include "mpq/error.h"
#include "mpq/eval.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"
#include "io/model_writer.h"
#include "quant/quantize_model.h"
#include "quant/rtn.h"
#include "packed_runtime_util.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

#define SKIP_WITHOUT_DATA()                                                   \
  if (!fs::exists(kGguf) || !fs::exists(kTiny)) GTEST_SKIP() << "shared data not found: " << kGguf

// The tiny model with every decoder Linear quantized (RTN) as `choice` says, decoded runtime.
mpq::Model quantized_tiny(const mpq::ModuleChoice& choice, mpq::QuantizeReport* report = nullptr) {
  mpq::Model model = mpq::load_model(kGguf);
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::QuantizeReport r =
      mpq::quantize_model(model, [&](const std::string&, int, mpq::LinearKind) { return choice; }, options);
  if (report) *report = std::move(r);
  return model;
}

mpq::ModuleChoice plain(mpq::WeightFormatId f) {
  mpq::ModuleChoice c{};
  c.format = f;
  c.quantizer = mpq::Quantizer::Rtn;
  return c;
}

// Every other output channel of each layer in int8_channel, the rest in int4_g128.
mpq::ModuleChoice split_choice(const mpq::Model& model) {
  mpq::ModuleChoice c = plain(mpq::WeightFormatId::Int4_G128);
  c.split = true;
  c.high_format = mpq::WeightFormatId::Int8_Channel;
  // The row sets must fit every layer: take rows 0, 3, 6, ... below the narrowest layer's width.
  int64_t narrowest = INT64_MAX;
  for (const auto& layer : model.layers) {
    for (const auto& lin : layer.linear) narrowest = std::min(narrowest, lin.weights->out_features());
  }
  for (int32_t r = 0; r < narrowest; r += 3) c.high_rows.push_back(r);
  return c;
}

using mpq::test::set_runtime;

mpq::RuntimeOptions packed(bool int8) {
  mpq::RuntimeOptions r;
  r.packed = true;
  r.int8_activations = int8;
  r.kv_cache = mpq::KvCacheType::F32;  // these tests compare weight paths: the same cache arithmetic
  return r;
}

const std::vector<int32_t>& prompt_tokens() {
  static const std::vector<int32_t> ids = [] {
    mpq::Model m = mpq::load_model(kGguf);
    std::vector<int32_t> t = m.tokenizer->encode("Once upon a time, there was a little girl named Lily. "
                                                 "She liked to play in the park with her dog.",
                                                 true);
    return t;
  }();
  return ids;
}

std::vector<float> logits_of(mpq::Model& model) {
  const auto& ids = prompt_tokens();
  mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  return model.forward_all(ids, cache);
}

double ppl_of(mpq::Model& model) {
  static const std::string text = mpq::test::slurp(kTiny).substr(0, 20000);
  mpq::PplOptions o;
  o.ctx = 128;
  o.max_chunks = 4;
  o.progress = false;
  return mpq::evaluate_perplexity(model, text, kTiny, o).ppl;
}

struct Diff {
  double max_abs = 0;    // max |a - b|
  double max_ref = 0;    // max |a|
};
Diff diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  Diff d;
  for (size_t i = 0; i < a.size(); ++i) {
    d.max_abs = std::max(d.max_abs, std::fabs(static_cast<double>(a[i]) - b[i]));
    d.max_ref = std::max(d.max_ref, std::fabs(static_cast<double>(a[i])));
  }
  return d;
}

// Bound on |packed − decoded| logits with fp32 activations. Both multiply the same decoded weight
// values by the same inputs and differ only in summation order (in-register dequantization and
// lane-wise sums vs sgemm). One dot product of length K then differs by at most ~K·ε·Σ|w·x|
// (ε = 2^-24), in practice ~√K·ε·‖w‖‖x‖; the tiny model has K ≤ 768 and 5 layers whose residual
// stream and RMSNorms pass each difference on roughly unamplified, so relative differences stay
// around 1e-6. 2e-5 of the largest logit leaves an order of magnitude of margin over what we
// measure (~1e-6) while any real kernel error (a wrong scale, zero point or row) shows up at 1e-2
// and above.
constexpr double kF32Rel = 2e-5;

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST(PackedRuntime, PackedLogitsAndPerplexityMatchDecoded) {
  SKIP_WITHOUT_DATA();
  using F = mpq::WeightFormatId;
  for (F f : {F::Int4_G128, F::Int8_Channel, F::Int2_G64, F::NVFP4, F::MXFP4, F::FP8_E4M3_Channel, F::BF16,
              F::Int4Sym_G128}) {
    const char* name = mpq::weight_format(f).name;
    SCOPED_TRACE(name);
    mpq::Model model = quantized_tiny(plain(f));
    const std::vector<float> ref = logits_of(model);
    const double ppl_ref = ppl_of(model);

    set_runtime(model, packed(false));
    EXPECT_EQ(model.layers[0].at(mpq::LinearKind::Q).weights->format_name(), name);
    const std::vector<float> got = logits_of(model);
    const Diff d = diff(ref, got);
    EXPECT_LE(d.max_abs, kF32Rel * d.max_ref) << "max |logit| " << d.max_ref;
    const double ppl = ppl_of(model);
    EXPECT_NEAR(ppl, ppl_ref, 1e-3 * ppl_ref);

    // int8 activations: formats without an int8 kernel keep fp32 activations, bit for bit.
    set_runtime(model, packed(true));
    const std::vector<float> got8 = logits_of(model);
    const Diff d8 = diff(ref, got8);
    const double ppl8 = ppl_of(model);
    const bool int_format = mpq::weight_format(f).value_kind == mpq::ValueKind::Int;
    if (!int_format) {
      EXPECT_EQ(got8, got);
    } else {
      // Per-token, per-128 int8 activations add a relative error of ~1/254 of each group's absmax
      // per value: a few percent of a logit's scale at most (measured 1.6-1.8e-2; 4.8e-2 for
      // int2_g64, whose weights are so coarse that the model is near-random, ppl ~770), and
      // within 0.3% of perplexity for int4/int8 (2.8% for int2_g64). 5% keeps the check meaningful
      // for the broken int2 model without flaking on it.
      EXPECT_LE(d8.max_abs, 0.1 * d8.max_ref);
      EXPECT_NEAR(ppl8, ppl_ref, (f == F::Int2_G64 ? 0.05 : 0.01) * ppl_ref);
    }
    std::printf("[ measured ] %-18s ppl decoded %.4f packed %.4f (rel %.1e, logits rel %.1e) "
                "int8-act %.4f (%+.2f%%, logits rel %.1e)\n",
                name, ppl_ref, ppl, std::fabs(ppl - ppl_ref) / ppl_ref, d.max_abs / d.max_ref, ppl8,
                100.0 * (ppl8 - ppl_ref) / ppl_ref, d8.max_abs / d8.max_ref);
  }
}

// A synthetic gemma3 model (tests/synthetic_model.h: local and global layers, post norms, GeGLU,
// scaled embedding; no shared data needed) quantized to int4_g128 and nvfp4: packed logits against
// the decoded reference, with the bound above (same weights, summation order only), over a prompt
// batch and then token by token (the decode kernels, windowed in the local layers).
TEST(PackedRuntime, Gemma3SyntheticPackedMatchesDecoded) {
  mpq::synth::Spec spec;
  spec.model_type = "gemma3_text";
  spec.layers = 3;
  spec.kv_heads = 1;
  spec.sliding_window = 4;
  spec.theta = 1e6;
  spec.tied = true;
  mpq::test::TempDir dir;
  mpq::synth::write_model(mpq::synth::make_model(spec), dir.path());
  const std::vector<int32_t> ids = mpq::test::random_ids(11, spec.vocab, 5);
  for (mpq::WeightFormatId f : {mpq::WeightFormatId::Int4_G128, mpq::WeightFormatId::NVFP4}) {
    SCOPED_TRACE(mpq::weight_format(f).name);
    mpq::Model model = mpq::load_model(dir.path(), {.need_tokenizer = false});
    mpq::QuantizeOptions options;
    options.progress = false;
    mpq::quantize_model(model, [&](const std::string&, int, mpq::LinearKind) { return plain(f); }, options);
    mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
    const std::vector<float> ref = model.forward_all(ids, cache);
    set_runtime(model, packed(false));
    // The prompt's first 6 tokens as one batch, then one token at a time.
    mpq::KVCache packed_cache = model.make_cache(static_cast<int>(ids.size()));
    std::vector<float> got = model.forward_all(std::span(ids).first(6), packed_cache);
    for (size_t t = 6; t < ids.size(); ++t) {
      const std::vector<float> row = model.forward_all(std::span(ids).subspan(t, 1), packed_cache);
      got.insert(got.end(), row.begin(), row.end());
    }
    const Diff d = diff(ref, got);
    EXPECT_LE(d.max_abs, kF32Rel * d.max_ref) << "max |logit| " << d.max_ref;
  }
}

TEST(PackedRuntime, ChannelSplitMatchesDecoded) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  mpq::Model split = quantized_tiny(split_choice(model));
  ASSERT_NE(split.layers[0].at(mpq::LinearKind::Up).weights->channel_split(), nullptr);
  const std::vector<float> ref = logits_of(split);
  const double ppl_ref = ppl_of(split);

  set_runtime(split, packed(false));
  EXPECT_EQ(split.layers[0].at(mpq::LinearKind::Up).weights->format_name(), "int8_channel+int4_g128");
  const Diff d = diff(ref, logits_of(split));
  EXPECT_LE(d.max_abs, kF32Rel * d.max_ref);
  const double ppl = ppl_of(split);
  EXPECT_NEAR(ppl, ppl_ref, 1e-3 * ppl_ref);

  // Both parts are integer formats: the activations are quantized once and shared.
  set_runtime(split, packed(true));
  const Diff d8 = diff(ref, logits_of(split));
  const double ppl8 = ppl_of(split);
  EXPECT_LE(d8.max_abs, 0.1 * d8.max_ref);
  EXPECT_NEAR(ppl8, ppl_ref, 0.01 * ppl_ref);
  std::printf("[ measured ] int8_channel+int4_g128 ppl decoded %.4f packed %.4f int8-act %.4f (%+.2f%%)\n",
              ppl_ref, ppl, ppl8, 100.0 * (ppl8 - ppl_ref) / ppl_ref);
}

TEST(PackedRuntime, StoredFormRoundTrips) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  const mpq::ModuleChoice split = split_choice(model);
  for (const mpq::ModuleChoice& choice : {plain(mpq::WeightFormatId::NVFP4), plain(mpq::WeightFormatId::Int3_G32),
                                          split}) {
    mpq::Model decoded = quantized_tiny(choice);
    mpq::Model pk = quantized_tiny(choice);
    set_runtime(pk, packed(true));
    for (size_t l = 0; l < decoded.layers.size(); ++l) {
      for (int k = 0; k < mpq::kLinearKinds; ++k) {
        const mpq::LinearWeights& a = *decoded.layers[l].linear[k].weights;
        const mpq::LinearWeights& b = *pk.layers[l].linear[k].weights;
        SCOPED_TRACE(a.format_name() + " " + decoded.layers[l].linear[k].name);
        EXPECT_EQ(a.format_name(), b.format_name());
        EXPECT_EQ(a.storage_bytes(), b.storage_bytes());
        EXPECT_EQ(a.out_features(), b.out_features());
        EXPECT_EQ(a.in_features(), b.in_features());
        std::vector<float> wa(a.out_features() * a.in_features()), wb(wa.size());
        a.to_f32(wa.data());
        b.to_f32(wb.data());
        EXPECT_EQ(wa, wb);
        if (auto qa = a.quantized()) {
          auto qb = b.quantized();
          ASSERT_NE(qb, nullptr);
          EXPECT_EQ(qa->format, qb->format);
          EXPECT_EQ(qa->codes, qb->codes);
          EXPECT_EQ(qa->scales, qb->scales);
          EXPECT_EQ(qa->zeros, qb->zeros);
          EXPECT_EQ(qa->tensor_scale, qb->tensor_scale);
          EXPECT_EQ(b.channel_split(), nullptr);
        } else {
          auto sa = a.channel_split(), sb = b.channel_split();
          ASSERT_NE(sa, nullptr);
          ASSERT_NE(sb, nullptr);
          EXPECT_EQ(b.quantized(), nullptr);
          EXPECT_EQ(sa->high_rows, sb->high_rows);
          EXPECT_EQ(sa->low_rows, sb->low_rows);
          EXPECT_EQ(sa->high.codes, sb->high.codes);
          EXPECT_EQ(sa->high.scales, sb->high.scales);
          EXPECT_EQ(sa->low.codes, sb->low.codes);
          EXPECT_EQ(sa->low.scales, sb->low.scales);
          EXPECT_EQ(sa->low.zeros, sb->low.zeros);
        }
      }
    }
  }
}

// mpq quantize --head-format: the output head quantized too. The tied head stays tied (the file
// holds no separate embedding; rows come from the quantized head), the file loads back to the
// same logits in the decoded runtime, and the packed runtime matches it like any other layer.
TEST(PackedRuntime, QuantizedTiedHeadRoundTripsAndRunsPacked) {
  SKIP_WITHOUT_DATA();
  for (mpq::WeightFormatId head : {mpq::WeightFormatId::Int8_Channel, mpq::WeightFormatId::BF16,
                                   mpq::WeightFormatId::Int4_G32}) {
    SCOPED_TRACE(mpq::weight_format(head).name);
    mpq::QuantizeReport report;
    mpq::Model model = quantized_tiny(plain(mpq::WeightFormatId::Int4_G128), &report);
    ASSERT_TRUE(model.config.tied_embeddings);
    const std::vector<float> before = logits_of(model);
    mpq::quantize_output_head(model, head, report);
    EXPECT_EQ(model.embedding, nullptr);
    EXPECT_EQ(model.lm_head.weights->format_name(), mpq::weight_format(head).name);
    EXPECT_EQ(report.modules.at("lm_head").format, mpq::weight_format(head).name);
    // The embedding is the decoded head, row for row.
    std::vector<float> row(model.config.dim), w(static_cast<size_t>(model.config.vocab_size) * model.config.dim);
    model.lm_head.weights->to_f32(w.data());
    for (int32_t token : {0, 7, model.config.vocab_size - 1}) {
      model.embedding_row(token, row.data());
      EXPECT_TRUE(std::equal(row.begin(), row.end(), w.begin() + int64_t{token} * model.config.dim));
    }
    const std::vector<float> in_memory = logits_of(model);
    // A real change: the logits move, but by a quantization's worth, not to garbage.
    const Diff moved = diff(before, in_memory);
    EXPECT_GT(moved.max_abs, 0);
    EXPECT_LT(moved.max_abs, 0.5 * moved.max_ref);

    mpq::test::TempDir tmp;
    const std::string dir = tmp.path() + "/q";
    mpq::write_model(model, dir, {.report = report.to_json()});
    const auto config = nlohmann::json::parse(mpq::test::slurp(dir + "/config.json"));
    EXPECT_EQ(config["quantization_config"]["mpq"]["modules"]["lm_head"]["format"], mpq::weight_format(head).name);
    EXPECT_TRUE(config["tie_word_embeddings"].get<bool>());
    const std::string st = mpq::test::slurp(dir + "/model.safetensors");
    EXPECT_EQ(st.find("model.embed_tokens.weight"), std::string::npos) << "a tied quantized head is stored once";

    mpq::Model reloaded = mpq::load_model(dir);
    EXPECT_EQ(reloaded.embedding, nullptr);
    EXPECT_EQ(reloaded.parameter_count(), model.parameter_count());
    EXPECT_EQ(logits_of(reloaded), in_memory);
    mpq::LoadOptions o;
    o.runtime = packed(false);
    mpq::Model pk = mpq::load_model(dir, o);
    const Diff d = diff(in_memory, logits_of(pk));
    EXPECT_LE(d.max_abs, kF32Rel * d.max_ref);
  }
}

// Splits where one channel set is empty, odd shapes, and a fp high part with an int low part
// (the int part quantizes its own activations).
TEST(PackedRuntime, SplitEdgeCases) {
  const int64_t rows = 37, cols = 200, n = 3;
  const std::vector<float> w = mpq::test::gaussian(rows * cols, 11, 0.05f);
  const std::vector<float> x = mpq::test::gaussian(n * cols, 12);
  using F = mpq::WeightFormatId;
  auto make = [&](std::vector<int32_t> high_rows, F high_f, F low_f) {
    mpq::ChannelSplit s;
    s.rows = rows;
    s.cols = cols;
    s.low_rows = mpq::complement_rows(high_rows, rows, "test");
    s.high_rows = std::move(high_rows);
    std::vector<float> part;
    auto quantize = [&](const std::vector<int32_t>& rs, F f) {
      part.clear();
      for (int32_t r : rs) part.insert(part.end(), w.begin() + r * cols, w.begin() + (r + 1) * cols);
      return rs.empty() ? mpq::make_quantized_matrix(f, 0, cols)
                        : mpq::quantize_rtn(f, part.data(), static_cast<int64_t>(rs.size()), cols);
    };
    s.high = quantize(s.high_rows, high_f);
    s.low = quantize(s.low_rows, low_f);
    return s;
  };
  std::vector<int32_t> all(rows), some;
  for (int32_t r = 0; r < rows; ++r) all[r] = r;
  for (int32_t r = 1; r < rows; r += 4) some.push_back(r);
  struct Case {
    std::vector<int32_t> high;
    F high_f, low_f;
  };
  for (const Case& c : {Case{{}, F::Int8_Channel, F::Int4_G128}, Case{all, F::Int8_Channel, F::Int2_G32},
                        Case{some, F::FP8_E4M3_B128, F::Int4_G64}, Case{some, F::Int8_Channel, F::MXFP4}}) {
    for (bool int8 : {false, true}) {
      SCOPED_TRACE(std::to_string(c.high.size()) + " high rows, int8 " + std::to_string(int8));
      const mpq::ChannelSplit s = make(c.high, c.high_f, c.low_f);
      const auto ref = mpq::make_split_weights(s);
      const auto pk = mpq::make_split_weights(s, packed(int8));
      std::vector<float> ya(n * rows), yb(n * rows, NAN);
      ref->forward(x.data(), n, ya.data());
      pk->forward(x.data(), n, yb.data());
      const Diff d = diff(ya, yb);
      EXPECT_LE(d.max_abs, (int8 ? 2e-2 : 1e-5) * d.max_ref);  // NaN (a row not written) fails
      EXPECT_EQ(pk->storage_bytes(), ref->storage_bytes());
      const auto back = pk->channel_split();
      EXPECT_EQ(back->high.rows, s.high.rows);
      EXPECT_EQ(back->low.rows, s.low.rows);
      EXPECT_EQ(back->high.format, s.high.format);
      EXPECT_EQ(back->low.format, s.low.format);
      EXPECT_EQ(back->low.codes, s.low.codes);
    }
  }
}

TEST(PackedRuntime, BadInputThrows) {
  mpq::QuantizedMatrix q = mpq::make_quantized_matrix(mpq::WeightFormatId::Int4_G128, 4, 256);
  q.codes.pop_back();
  EXPECT_THROW(mpq::make_quantized_weights(q, packed(false)), mpq::Error);
  mpq::ChannelSplit s;
  s.rows = 4;
  s.cols = 256;
  s.high_rows = {0, 2};
  s.low_rows = {1};  // not the complement
  s.high = mpq::make_quantized_matrix(mpq::WeightFormatId::Int8_Channel, 2, 256);
  s.low = mpq::make_quantized_matrix(mpq::WeightFormatId::Int4_G128, 1, 256);
  EXPECT_THROW(mpq::make_split_weights(s, packed(false)), mpq::Error);
}

// The tiny model in int4_g128 (RTN) written as a quantized directory in `tmp`; its path.
static std::string write_tiny_int4(const mpq::test::TempDir& tmp) {
  const std::string dir = tmp.file("int4");
  mpq::QuantizeReport report;
  mpq::Model model = quantized_tiny(plain(mpq::WeightFormatId::Int4_G128), &report);
  mpq::write_model(model, dir, {.report = report.to_json()});
  return dir;
}

// The KV cache a model makes by default: f16 for a quantized model run from packed weights, f32
// for the decoded reference runtime and for fp weights; an explicit RuntimeOptions::kv_cache wins.
TEST(PackedRuntime, KvCacheDefaultsToF16ForPackedQuantizedModels) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  const std::string dir = write_tiny_int4(tmp);
  auto cache_type = [](const std::string& path, mpq::RuntimeOptions runtime) {
    mpq::LoadOptions o;
    o.need_tokenizer = false;
    o.runtime = runtime;
    const mpq::Model m = mpq::load_model(path, o);
    EXPECT_EQ(m.make_cache(8).type, m.kv_cache_type);
    return m.kv_cache_type;
  };
  mpq::RuntimeOptions packed_auto, decoded_auto, packed_f32, decoded_f16;
  packed_auto.packed = packed_f32.packed = true;
  packed_f32.kv_cache = mpq::KvCacheType::F32;
  decoded_f16.kv_cache = mpq::KvCacheType::F16;
  EXPECT_EQ(cache_type(dir, packed_auto), mpq::KvCacheType::F16);
  EXPECT_EQ(cache_type(dir, decoded_auto), mpq::KvCacheType::F32);
  EXPECT_EQ(cache_type(dir, packed_f32), mpq::KvCacheType::F32);
  EXPECT_EQ(cache_type(dir, decoded_f16), mpq::KvCacheType::F16);
  EXPECT_EQ(cache_type(kGguf, packed_auto), mpq::KvCacheType::F32);  // fp weights
  EXPECT_STREQ(mpq::kv_cache_type_name(mpq::KvCacheType::F16), "f16");
  EXPECT_STREQ(mpq::kv_cache_type_name(mpq::KvCacheType::F32), "f32");
}

TEST(PackedRuntime, ReadBandwidthIsPositive) {
  const double bw = mpq::measure_read_bandwidth(0, int64_t{8} << 20, 3);
  EXPECT_GT(bw, 1e8);   // > 0.1 GB/s on anything
  EXPECT_LT(bw, 1e13);  // < 10 TB/s
  EXPECT_THROW(mpq::measure_read_bandwidth(-1), mpq::Error);
  EXPECT_THROW(mpq::measure_read_bandwidth(1, 1024), mpq::Error);
}

TEST(PackedRuntime, BenchJsonReportsRuntimeAndRoofline) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  const std::string dir = write_tiny_int4(tmp);
  const auto r = mpq::test::run_mpq("bench '" + dir + "' --json --pp 16 --tg-prompt 8 --tg 3 --reps 1 --tg-reps 2 "
                                    "--bw-mib 16 --act int8 --kv-cache f16 --decode-threading per-op",
                                    tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  for (const char* key : {"model", "threads", "pp_tokens", "tg_prompt", "tg_tokens", "pp_tok_s", "tg_tok_s", "pp_runs_s",
                          "tg_runs_s", "runtime", "activations", "kv_cache", "decode_threading", "bandwidth_gb_s", "weight_bytes_per_token",
                          "roofline_fraction", "rss_bytes", "file_bytes"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["runtime"], "packed");
  EXPECT_EQ(j["activations"], "int8");
  EXPECT_EQ(j["kv_cache"], "f16");
  EXPECT_EQ(j["decode_threading"], "per-op");
  EXPECT_EQ(j["tg_tokens"], 3);
  ASSERT_EQ(j["tg_runs_s"].size(), 2u);
  // tg_tok_s is the tokens of a run over the median run time.
  std::vector<double> runs = j["tg_runs_s"];
  std::sort(runs.begin(), runs.end());
  EXPECT_NEAR(j["tg_tok_s"].get<double>(), 3 / (0.5 * (runs[0] + runs[1])), 1e-6 * j["tg_tok_s"].get<double>());
  EXPECT_GT(j["bandwidth_gb_s"].get<double>(), 0);
  EXPECT_GT(j["roofline_fraction"].get<double>(), 0);
  EXPECT_GT(j["rss_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(j["file_bytes"].get<uint64_t>(), 0u);
  // The tiny model's weights read per token: the quantized decoder linears plus the fp32 head.
  mpq::Model back = mpq::load_model(dir, {});
  uint64_t expected = back.lm_head.weights->storage_bytes();
  for (const auto& layer : back.layers) {
    for (const auto& lin : layer.linear) expected += lin.weights->storage_bytes();
  }
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), expected);

  const auto ppl = mpq::test::run_mpq("ppl '" + dir + "' --text '" + kTiny + "' --ctx 64 --chunks 1 --json "
                                      "--runtime decoded",
                                      tmp);
  ASSERT_EQ(ppl.status, 0) << ppl.err;
  const nlohmann::json jp = nlohmann::json::parse(ppl.out);
  EXPECT_EQ(jp["runtime"], "decoded");
  EXPECT_EQ(jp["activations"], "fp32");
  EXPECT_EQ(jp["kv_cache"], "f32");

  // --kv-cache auto (the default): f16 for the packed quantized model.
  const auto ppl_auto = mpq::test::run_mpq("ppl '" + dir + "' --text '" + kTiny + "' --ctx 64 --chunks 1 --json", tmp);
  ASSERT_EQ(ppl_auto.status, 0) << ppl_auto.err;
  EXPECT_EQ(nlohmann::json::parse(ppl_auto.out)["kv_cache"], "f16");

  const auto bad = mpq::test::run_mpq("bench '" + dir + "' --runtime fast", tmp);
  EXPECT_NE(bad.status, 0);
  const auto bad_kv = mpq::test::run_mpq("bench '" + dir + "' --kv-cache f8", tmp);
  EXPECT_NE(bad_kv.status, 0);
  EXPECT_NE(bad_kv.err.find("--kv-cache"), std::string::npos) << bad_kv.err;
  const auto bad_threading = mpq::test::run_mpq("bench '" + dir + "' --decode-threading fast", tmp);
  EXPECT_NE(bad_threading.status, 0);
  EXPECT_NE(bad_threading.err.find("--decode-threading"), std::string::npos) << bad_threading.err;
}

// Sensitivity analysis (calib/sensitivity.h, `mpq analyze`): each method against a direct
// computation on the real stories260K model, the channel summary, the file format and its
// determinism, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "calib/sensitivity.h"
#include "calib/sensitivity_file.h"
#include "format/weight_format.h"
#include "model/backward.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/gptq.h"
#include "quant/rtn.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
const std::string kTiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";

#define SKIP_WITHOUT_DATA()                                                   \
  if (!fs::exists(kGguf) || !fs::exists(kTiny)) GTEST_SKIP() << "shared data not found: " << kGguf

mpq::CalibrationSet small_set(const mpq::Model& model, uint64_t seed = 7) {
  mpq::CalibrationOptions o;
  o.text_paths = {kTiny};
  o.n_samples = 3;
  o.seq_len = 32;
  o.seed = seed;
  o.micro_batch = 2;
  return mpq::sample_calibration(model, o);
}

std::vector<float> dequantized_rtn(mpq::WeightFormatId f, const std::vector<float>& w, int64_t rows, int64_t cols) {
  const mpq::QuantizedMatrix q = mpq::quantize_rtn(f, w.data(), rows, cols);
  std::vector<float> out(w.size());
  mpq::dequantize(q, out.data());
  return out;
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

}  // namespace

TEST(Sensitivity, ParsesMethodsAndFormats) {
  const auto m = mpq::parse_sensitivity_methods("channels,fisher");
  EXPECT_TRUE(m.fisher && m.channels && !m.output);
  EXPECT_EQ(m.names(), (std::vector<std::string>{"fisher", "channels"}));
  EXPECT_THROW(mpq::parse_sensitivity_methods("fisher,bogus"), mpq::Error);
  const auto all = mpq::parse_sensitivity_methods("shapley,kld,output,channels,fisher");
  EXPECT_EQ(all.names(), (std::vector<std::string>{"fisher", "output", "channels", "kld", "shapley"}));
  EXPECT_THROW(mpq::parse_sensitivity_methods(""), mpq::Error);
  try {
    mpq::parse_sensitivity_methods("fisher,bogus");
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown method 'bogus'"), std::string::npos) << e.what();
  }
  const auto d = mpq::default_sensitivity_formats();
  const auto ggml = std::count_if(mpq::weight_formats().begin(), mpq::weight_formats().end(),
                                  [](const auto& f) { return mpq::is_ggml_format(f); });
  EXPECT_EQ(d.size(), mpq::weight_formats().size() - 2 - static_cast<size_t>(ggml));
  EXPECT_EQ(std::count(d.begin(), d.end(), mpq::WeightFormatId::BF16), 0);
  EXPECT_EQ(mpq::parse_format_list("int4_g128,nvfp4"),
            (std::vector<mpq::WeightFormatId>{mpq::WeightFormatId::Int4_G128, mpq::WeightFormatId::NVFP4}));
  EXPECT_THROW(mpq::parse_format_list("int5"), mpq::Error);
  EXPECT_THROW(mpq::parse_format_list("nvfp4,nvfp4"), mpq::Error);
}

TEST(Sensitivity, Sha256KnownAnswers) {
  EXPECT_EQ(mpq::sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(mpq::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 56 bytes: 2 tail blocks
  EXPECT_EQ(mpq::sha256_hex(s.data(), s.size()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

// fisher and channels against per-sequence gradients formed directly with the accumulator.
TEST(Sensitivity, FisherAndChannelsMatchDirectComputation) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  const auto set = small_set(model);
  mpq::SensitivityOptions opt;
  opt.methods = mpq::parse_sensitivity_methods("fisher,channels");
  opt.formats = {mpq::WeightFormatId::Int4_G128, mpq::WeightFormatId::Int2_G32};
  opt.progress = false;
  const mpq::SensitivityResult r = mpq::analyze_sensitivity(model, set, opt);
  ASSERT_EQ(r.tensors.size(), static_cast<size_t>(model.config.n_layers * mpq::kLinearKinds));

  const int layer = 1;
  const mpq::LinearKind kind = mpq::LinearKind::O;
  const mpq::TensorSensitivity& t = r.tensors[layer * mpq::kLinearKinds + static_cast<int>(kind)];
  const int64_t rows = t.rows, cols = t.cols;
  std::vector<float> w(rows * cols);
  model.layers[layer].at(kind).weights->to_f32(w.data());
  std::vector<double> g2(rows * cols, 0.0), sal(rows, 0.0);
  const std::vector<float> q4 = dequantized_rtn(mpq::WeightFormatId::Int4_G128, w, rows, cols);
  for (const auto& seq : set.sequences) {
    mpq::LinearGradients g = mpq::LinearGradients::zeros(model);
    mpq::accumulate_linear_gradients(model, seq, g);
    const std::vector<float>& gw = g.at(layer, kind);
    for (int64_t i = 0; i < rows * cols; ++i) g2[i] += static_cast<double>(gw[i]) * gw[i];
    for (int64_t o = 0; o < rows; ++o) {
      double dot = 0;
      for (int64_t i = 0; i < cols; ++i) dot += static_cast<double>(gw[o * cols + i]) * (q4[o * cols + i] - w[o * cols + i]);
      sal[o] += std::abs(dot + 0.5 * dot * dot);
    }
  }
  for (size_t f = 0; f < opt.formats.size(); ++f) {
    const std::vector<float> q = dequantized_rtn(opt.formats[f], w, rows, cols);
    double fisher = 0;
    for (int64_t i = 0; i < rows * cols; ++i) {
      const double d = static_cast<double>(q[i]) - w[i];
      fisher += 0.5 * g2[i] * d * d;
    }
    ASSERT_GT(fisher, 0);
    EXPECT_LT(rel_diff(t.fisher[f], fisher), 1e-4) << t.fisher[f] << " vs " << fisher;
  }
  EXPECT_GT(t.fisher[1], t.fisher[0]);  // int2 hurts more than int4
  ASSERT_EQ(t.channels.size(), static_cast<size_t>(rows));
  for (int64_t o = 0; o < rows; ++o) EXPECT_NEAR(t.channels[o], sal[o], 1e-4 * sal[o] + 1e-12) << "row " << o;

  // Channel summary: exactly ceil(10%) of all channels in the top set, shares consistent.
  const nlohmann::json s = mpq::channel_summary(r);
  const int64_t n = s["n_channels"], top = s["n_top"];
  EXPECT_EQ(top, static_cast<int64_t>(std::ceil(0.1 * n)));
  EXPECT_NEAR(static_cast<double>(top) / n, 0.1, 0.01);
  int64_t kind_top = 0, kind_total = 0, layer_top = 0;
  for (const auto& [name, e] : s["by_kind"].items()) {
    kind_top += e["top"].get<int64_t>();
    kind_total += e["channels"].get<int64_t>();
  }
  for (const auto& e : s["by_layer"]) layer_top += e["top"].get<int64_t>();
  EXPECT_EQ(kind_top, top);
  EXPECT_EQ(layer_top, top);
  EXPECT_EQ(kind_total, n);
  int64_t above = 0;
  for (const auto& ts : r.tensors)
    for (float v : ts.channels) above += v >= s["threshold"].get<double>();
  EXPECT_GE(above, top);
}

// output against layer_output_error on the H of a no-op sequential calibration.
TEST(Sensitivity, OutputEqualsLayerOutputError) {
  SKIP_WITHOUT_DATA();
  mpq::Model model = mpq::load_model(kGguf);
  const auto set = small_set(model);
  mpq::SensitivityOptions opt;
  opt.methods = mpq::parse_sensitivity_methods("output");
  opt.formats = {mpq::WeightFormatId::Int3_G32, mpq::WeightFormatId::NVFP4};
  opt.progress = false;
  const mpq::SensitivityResult r = mpq::analyze_sensitivity(model, set, opt);

  const int layer = 2;
  const mpq::LinearKind kind = mpq::LinearKind::Down;
  std::vector<double> xtx;
  mpq::run_sequential_calibration(model, set, [&](int l, const mpq::LayerStats& s) {
    if (l == layer) xtx = s.of(kind).xtx;
  });
  const mpq::TensorSensitivity& t = r.tensors[layer * mpq::kLinearKinds + static_cast<int>(kind)];
  std::vector<float> w(t.rows * t.cols);
  model.layers[layer].at(kind).weights->to_f32(w.data());
  for (size_t f = 0; f < opt.formats.size(); ++f) {
    const mpq::QuantizedMatrix q = mpq::quantize_rtn(opt.formats[f], w.data(), t.rows, t.cols);
    const double expected = mpq::layer_output_error(w.data(), q, xtx);
    ASSERT_GT(expected, 0);
    EXPECT_DOUBLE_EQ(t.output[f], expected);
  }
  EXPECT_TRUE(t.fisher.empty());
  EXPECT_TRUE(t.channels.empty());
}

TEST(Sensitivity, CliWritesDeterministicDocumentedFiles) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  fs::create_directories(tmp.file("a"));
  fs::create_directories(tmp.file("b"));
  const std::string common = "analyze '" + kGguf + "' --calib '" + kTiny +
                             "' --calib-samples 2 --calib-len 24 --seed 5 --formats int4_g128,int2_g64,nvfp4 "
                             "--methods fisher,output,channels --threads 2 --out ";
  const auto ra = mpq::test::run_mpq(common + "'" + tmp.file("a/s.json") + "'", tmp);
  ASSERT_EQ(ra.status, 0) << ra.err;
  EXPECT_NE(ra.err.find("ETA"), std::string::npos) << ra.err;
  const auto rb = mpq::test::run_mpq(common + "'" + tmp.file("b/s.json") + "'", tmp);
  ASSERT_EQ(rb.status, 0) << rb.err;
  const std::string ja = mpq::test::slurp(tmp.file("a/s.json")), jb = mpq::test::slurp(tmp.file("b/s.json"));
  const std::string ba = mpq::test::slurp(tmp.file("a/s.bin")), bb = mpq::test::slurp(tmp.file("b/s.bin"));
  ASSERT_FALSE(ja.empty());
  ASSERT_FALSE(ba.empty());
  EXPECT_EQ(ja, jb);
  EXPECT_EQ(ba, bb);
  EXPECT_FALSE(fs::exists(tmp.file("a/s.json.tmp")));
  EXPECT_FALSE(fs::exists(tmp.file("a/s.bin.tmp")));

  const nlohmann::json j = nlohmann::json::parse(ja);
  for (const char* key : {"format", "version", "model", "calibration", "methods", "formats", "gradients",
                          "output_calib_rows", "tensors", "channels", "sidecar"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["format"], "mpq-sensitivity");
  EXPECT_EQ(j["version"], 1);
  for (const char* key : {"path", "identity_source", "sha256", "parameter_count"}) EXPECT_TRUE(j["model"].contains(key)) << key;
  EXPECT_EQ(j["model"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["calibration"]["seed"], 5);
  EXPECT_EQ(j["calibration"]["n_samples"], 2);
  EXPECT_EQ(j["calibration"]["seq_len"], 24);
  EXPECT_EQ(j["formats"].size(), 3u);
  for (const char* key : {"top_fraction", "threshold", "n_channels", "n_top", "by_kind", "by_layer"}) {
    EXPECT_TRUE(j["channels"].contains(key)) << key;
  }
  EXPECT_EQ(j["sidecar"]["file"], "s.bin");
  EXPECT_EQ(j["sidecar"]["bytes"].get<size_t>(), ba.size());
  EXPECT_EQ(j["sidecar"]["sha256"], mpq::sha256_hex(ba.data(), ba.size()));

  // Binary layout: magic, version, header size, payload size; arrays at the recorded offsets.
  ASSERT_GE(ba.size(), 32u);
  EXPECT_EQ(std::memcmp(ba.data(), "MPQSENS\0", 8), 0);
  uint32_t version, header;
  uint64_t payload;
  std::memcpy(&version, ba.data() + 8, 4);
  std::memcpy(&header, ba.data() + 12, 4);
  std::memcpy(&payload, ba.data() + 16, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(header, 32u);
  EXPECT_EQ(payload + 32, ba.size());
  int64_t channels = 0;
  for (const auto& t : j["tensors"]) {
    for (const char* key : {"name", "layer", "kind", "rows", "cols", "bits_per_weight", "fisher", "output", "channels"}) {
      ASSERT_TRUE(t.contains(key)) << key;
    }
    EXPECT_EQ(t["fisher"].size(), 3u);
    EXPECT_EQ(t["output"].size(), 3u);
    EXPECT_DOUBLE_EQ(t["bits_per_weight"]["int4_g128"].get<double>(),
                     mpq::bits_per_weight(mpq::WeightFormatId::Int4_G128, t["rows"], t["cols"]));
    const int64_t off = t["channels"]["offset"], count = t["channels"]["count"];
    EXPECT_EQ(count, t["rows"].get<int64_t>());
    EXPECT_LE(off + 4 * count, static_cast<int64_t>(ba.size()));
    float first;
    std::memcpy(&first, ba.data() + off, 4);
    EXPECT_TRUE(std::isfinite(first) && first >= 0);
    channels += count;
  }
  EXPECT_EQ(channels, j["channels"]["n_channels"].get<int64_t>());
  EXPECT_EQ(32 + 4 * channels, static_cast<int64_t>(ba.size()));
}

TEST(Sensitivity, CliRejectsUnknownMethod) {
  mpq::test::TempDir tmp;
  const auto r = mpq::test::run_mpq("analyze '" + kGguf + "' --methods fisher,bogus --out '" + tmp.file("s.json") + "'", tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--methods: unknown method 'bogus'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.file("s.json")));
}

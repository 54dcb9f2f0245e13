// Quantized models end to end: every format's compressed-tensors encoding round-trips, a
// quantized directory loads back to exactly the model that was written, and damaged directories
// are refused with a clear error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "io/compressed_tensors.h"
#include "io/safetensors.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "io/model_writer.h"
#include "quant/quantize.h"
#include "quant/rtn.h"
#include "mpq/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mpq::test::TempDir;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> dist(4.f);
  std::vector<float> w(rows * cols);
  for (float& x : w) x = 0.05f * dist(rng);
  return w;
}

mpq::Model load_quiet(const std::string& path) { return mpq::load_model(path); }

std::vector<float> logits_of(mpq::Model& model, const std::vector<int32_t>& ids) {
  mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  return model.forward_all(ids, cache);
}

// Quantizes the tiny model with one scheme and writes it to `dir`.
mpq::Model quantize_tiny(const std::string& scheme, const std::string& dir) {
  mpq::Model model = load_quiet(kGguf);
  const mpq::Scheme s = mpq::parse_scheme(scheme);
  mpq::QuantizeOptions options;
  options.progress = false;
  const mpq::Plan plan = mpq::uniform_plan(model, s);
  const auto report = mpq::quantize(model, plan, options);
  mpq::write_model(model, dir, {.report = mpq::quantize_report_json(model, plan, options, report)});
  return model;
}

}  // namespace

TEST(CompressedTensors, EveryFormatRoundTripsThroughItsStoredTensors) {
  // Odd sizes: rows not a multiple of the int32 packing factor, cols not a multiple of any group.
  const int64_t rows = 13, cols = 37;
  const std::vector<float> w = random_matrix(rows, cols, 5);
  for (const auto& f : mpq::weight_formats()) {
    if (mpq::is_ggml_format(f)) continue;  // no compressed-tensors form (test_ggml_formats.cpp)
    SCOPED_TRACE(f.name);
    const mpq::QuantizedMatrix q = mpq::quantize_rtn(f.id, w.data(), rows, cols);
    const auto stored = mpq::encode_module("m", q);
    auto find = [&](const std::string& name) -> const mpq::StoredTensor* {
      for (const auto& t : stored) {
        if (t.name == name) return &t;
      }
      return nullptr;
    };
    const mpq::QuantizedMatrix back = mpq::decode_module("m", f.id, rows, cols, find, "test");
    EXPECT_EQ(back.codes, q.codes);
    EXPECT_EQ(back.scales, q.scales);
    EXPECT_EQ(back.zeros, q.zeros);
    EXPECT_EQ(back.tensor_scale, q.tensor_scale);
  }
}

TEST(CompressedTensors, PackingFollowsTheConvention) {
  // int4: eight codes per int32, first column in the low bits; zero points packed along rows.
  mpq::QuantizedMatrix q = mpq::make_quantized_matrix(mpq::WeightFormatId::Int4_G32, 2, 9);
  for (int64_t c = 0; c < 9; ++c) q.set_code(0, c, static_cast<uint16_t>(c));
  q.zeros = {-3, 5};  // rows 0 and 1, one group each
  const auto stored = mpq::encode_module("m", q);
  const mpq::StoredTensor* packed = nullptr;
  const mpq::StoredTensor* zero = nullptr;
  for (const auto& t : stored) {
    if (t.name == "m.weight_packed") packed = &t;
    if (t.name == "m.weight_zero_point") zero = &t;
  }
  ASSERT_NE(packed, nullptr);
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(packed->shape, (std::vector<int64_t>{2, 2}));
  uint32_t word0, word1, zword;
  std::memcpy(&word0, packed->bytes.data(), 4);
  std::memcpy(&word1, packed->bytes.data() + 4, 4);
  EXPECT_EQ(word0, 0x76543210u);
  EXPECT_EQ(word1, 8u);
  EXPECT_EQ(zero->shape, (std::vector<int64_t>{1, 1}));
  std::memcpy(&zword, zero->bytes.data(), 4);
  EXPECT_EQ(zword, (uint32_t{-3 + 8}) | (uint32_t{5 + 8} << 4));  // offset-binary, row 0 low
}

TEST(QuantizedModel, EveryFormatLoadsBackToTheSameLogits) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
  mpq::Model reference = load_quiet(kGguf);
  const std::vector<float> fp = logits_of(reference, ids);
  for (const auto& f : mpq::weight_formats()) {
    if (mpq::is_ggml_format(f)) continue;  // written as GGUF, not compressed-tensors
    SCOPED_TRACE(f.name);
    TempDir tmp;
    mpq::Model quantized = quantize_tiny(std::string(f.name) + ":rtn", tmp.file("q"));
    mpq::Model loaded = load_quiet(tmp.file("q"));
    EXPECT_EQ(loaded.layers[2].at(mpq::LinearKind::Down).weights->format_name(), f.name);
    // Same stored weights, same arithmetic: identical logits.
    EXPECT_EQ(logits_of(loaded, ids), logits_of(quantized, ids));
    EXPECT_EQ(loaded.tokenizer->encode("Once upon a time", true), reference.tokenizer->encode("Once upon a time", true));
    // And quantization changed something, except where the format holds these weights exactly.
    if (f.bits < 16) EXPECT_NE(logits_of(loaded, ids), fp);
  }
}

TEST(QuantizedModel, DamagedDirectoriesAreRefused) {
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf;
  TempDir tmp;
  const std::string dir = tmp.file("q");
  quantize_tiny("int4_g32:rtn", dir);
  const std::string st = dir + "/model.safetensors";
  auto expect_error = [&](const std::string& path, const std::string& phrase) {
    try {
      load_quiet(path);
      ADD_FAILURE() << "loaded, expected an error containing '" << phrase << "'";
    } catch (const mpq::Error& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    }
  };
  // An unknown format name in config.json.
  {
    TempDir copy;
    fs::copy(dir, copy.file("d"));
    std::ifstream in(copy.file("d") + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config["quantization_config"]["mpq"]["modules"]["model.layers.0.mlp.up_proj"]["format"] = "int5_g7";
    std::ofstream(copy.file("d") + "/config.json") << config.dump();
    expect_error(copy.file("d"), "unknown weight format 'int5_g7'");
  }
  // A scale tensor of the wrong shape (rewritten with one group too many).
  {
    TempDir copy;
    fs::copy(dir, copy.file("d"));
    mpq::SafetensorsFile file(st);
    mpq::SafetensorsWriter w;
    for (const auto& t : file.tensors()) {
      if (t.name == "model.layers.1.self_attn.q_proj.weight_scale") {
        std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
        bytes.resize(bytes.size() + 2 * t.shape[0]);
        w.add(t.name, t.dtype, {t.shape[0], t.shape[1] + 1}, bytes.data(), bytes.size());
      } else {
        w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
      }
    }
    w.write(copy.file("d") + "/model.safetensors");
    expect_error(copy.file("d"), "model.layers.1.self_attn.q_proj.weight_scale");
  }
  // A truncated weights file.
  {
    TempDir copy;
    fs::copy(dir, copy.file("d"));
    fs::resize_file(copy.file("d") + "/model.safetensors", fs::file_size(st) - 100);
    expect_error(copy.file("d"), "model.safetensors");
  }
}

TEST(QuantizedModel, SchemesAreParsedStrictly) {
  EXPECT_EQ(mpq::parse_scheme("int4_g128").name(), "int4_g128:rtn");
  EXPECT_EQ(mpq::parse_scheme("nvfp4:hqq").name(), "nvfp4:hqq");
  EXPECT_THROW(mpq::parse_scheme("int4_g100:rtn"), mpq::Error);
  EXPECT_THROW(mpq::parse_scheme("int4_g128:awq"), mpq::Error);
}

// compressed-tensors interoperability against fixtures written by the compressed-tensors library
// itself (tests/data/ct, made by tools/make_ct_fixtures.py): mpq reads every fixture to exactly
// the library's own decompression, and writes the library's bytes for what it reads back.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "io/compressed_tensors.h"
#include "io/safetensors.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "format/dtype.h"
#include "format/weight_format.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kCt = std::string(MPQ_TEST_DATA_DIR) + "/ct/";

const std::vector<std::string> kFixtures = {"w4a16_asym_g32", "w4a16_sym_g32",  "w8a16_channel",  "w4a16_asym_channel",
                                            "w3a16_asym_g16", "fp8_channel",    "nvfp4a16",       "mxfp4a16",
                                            "mixed_int4_fp8", "mixed_int4_int8"};

std::vector<float> tensor_f32(const mpq::SafetensorsFile& f, const std::string& name) {
  const mpq::SafetensorsTensor* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  std::vector<float> v(t->nbytes / 4);
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

mpq::StoredTensor stored(const mpq::SafetensorsFile& f, const std::string& name) {
  const mpq::SafetensorsTensor* t = f.find(name);
  if (t == nullptr) return {};
  return {name, t->dtype, t->shape, std::vector<uint8_t>(t->data, t->data + t->nbytes)};
}

mpq::Model load_decoded(const std::string& dir) {
  mpq::LoadOptions o;
  o.need_tokenizer = false;
  o.runtime.packed = false;
  return mpq::load_model(dir, o);
}

}  // namespace

// Every fixture loads, and every quantized module decodes to exactly what the library's own
// decompression gives, bit for bit, once cast to the model's dtype as the library casts it: mpq
// keeps the fp32 products (exact here: small integers or E4M3/E2M1 values times f16/bf16/E4M3
// scales), the library rounds them to the model's f16/bf16.
TEST(CtInterop, EveryLibraryFixtureReadsToTheLibrarysOwnDecompression) {
  for (const std::string& name : kFixtures) {
    SCOPED_TRACE(name);
    const mpq::Model model = load_decoded(kCt + name);
    const mpq::SafetensorsFile ref(kCt + name + ".reference.safetensors");
    const std::string dtype = nlohmann::json::parse(mpq::test::slurp(kCt + name + "/config.json"))["dtype"];
    ASSERT_TRUE(dtype == "float16" || dtype == "bfloat16") << dtype;
    int checked = 0;
    const mpq::SafetensorsFile file(kCt + name + "/model.safetensors");
    for (const mpq::Linear* linear : model.linears()) {
      // Modules the config ignores are stored dense and have no reference entry.
      if (file.find(linear->name + ".weight_scale") == nullptr) {
        EXPECT_EQ(ref.find(linear->name + ".weight"), nullptr) << linear->name;
        continue;
      }
      const std::vector<float> want = tensor_f32(ref, linear->name + ".weight");
      std::vector<float> got(want.size());
      ASSERT_EQ(static_cast<size_t>(linear->weights->out_features() * linear->weights->in_features()), want.size());
      linear->weights->to_f32(got.data());
      for (float& v : got) v = dtype == "float16" ? mpq::f16_to_f32(mpq::f32_to_f16(v)) : mpq::bf16_to_f32(mpq::f32_to_bf16(v));
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0) << linear->name << " [" << i << "]: " << got[i] << " vs " << want[i];
      }
      ++checked;
    }
    EXPECT_GE(checked, 13);
  }
}

// Schemes with an exact table format stay quantized (packed runtime, file-sized memory).
TEST(CtInterop, SchemesWithATableFormatStayQuantized) {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"w4a16_asym_g32", "int4_g32"}, {"nvfp4a16", "nvfp4"}, {"mxfp4a16", "mxfp4"}};
  for (const auto& [name, format] : expected) {
    SCOPED_TRACE(name);
    const mpq::Model model = load_decoded(kCt + name);
    for (const mpq::Linear* linear : model.linears()) EXPECT_EQ(linear->weights->format_name(), format);
  }
  // bf16 scales have no table format: decoded to fp32 (exactly, per the test above).
  const mpq::Model fp8 = load_decoded(kCt + "fp8_channel");
  EXPECT_EQ(fp8.linears()[0]->weights->format_name(), "f32");
}

// What mpq reads, it writes back in the library's bytes.
TEST(CtInterop, WritingWhatWasReadGivesTheLibrarysBytes) {
  for (const std::string& name : {"w4a16_asym_g32", "nvfp4a16", "mxfp4a16"}) {
    SCOPED_TRACE(name);
    const mpq::Model model = load_decoded(kCt + name);
    const mpq::SafetensorsFile file(kCt + name + "/model.safetensors");
    for (const mpq::Linear* linear : model.linears()) {
      const auto q = linear->weights->quantized();
      ASSERT_NE(q, nullptr);
      for (const mpq::StoredTensor& t : mpq::encode_module(linear->name, *q)) {
        const mpq::StoredTensor lib = stored(file, t.name);
        EXPECT_EQ(t.dtype, lib.dtype) << t.name;
        EXPECT_EQ(t.shape, lib.shape) << t.name;
        EXPECT_EQ(t.bytes, lib.bytes) << t.name;
      }
    }
  }
}

// 3-bit codes are packed densely (values straddle int32 words): the library's weight_packed of
// the w3a16 fixture, from its unpacked codes.
TEST(CtInterop, ThreeBitCodesArePackedLikeTheLibrary) {
  const mpq::SafetensorsFile ref(kCt + "w3a16_asym_g16.reference.safetensors");
  const mpq::SafetensorsFile file(kCt + "w3a16_asym_g16/model.safetensors");
  for (const std::string m : {"model.layers.0.mlp.gate_proj", "model.layers.1.mlp.down_proj"}) {
    SCOPED_TRACE(m);
    const mpq::SafetensorsTensor* codes = ref.find(m + ".weight_q");
    ASSERT_NE(codes, nullptr);
    const int64_t rows = codes->shape[0], cols = codes->shape[1];
    mpq::QuantizedMatrix q = mpq::make_quantized_matrix(mpq::WeightFormatId::Int3_G32, rows, cols);
    for (int64_t i = 0; i < rows * cols; ++i) q.codes[i] = static_cast<uint8_t>(static_cast<int8_t>(codes->data[i]) + 4);
    for (const mpq::StoredTensor& t : mpq::encode_module(m, q)) {
      if (t.name != m + ".weight_packed") continue;
      const mpq::StoredTensor lib = stored(file, t.name);
      EXPECT_EQ(t.shape, lib.shape);
      EXPECT_EQ(t.bytes, lib.bytes);
    }
  }
}

// A directory with channel-split modules claims no compressed-tensors scheme for them: a reader
// that knows only compressed-tensors refuses it, naming the format.
TEST(CtInterop, ChannelSplitModulesAreRefusedByACompressedTensorsReader) {
  nlohmann::json qc = {{"quant_method", "compressed-tensors"},
                       {"format", "mixed-precision"},
                       {"quantization_status", "compressed"},
                       {"config_groups",
                        {{"group_0", {{"format", "mpq-channel-split"},
                                      {"targets", {"model.layers.0.mlp.down_proj"}},
                                      {"weights", nullptr},
                                      {"input_activations", nullptr},
                                      {"output_activations", nullptr}}}}},
                       {"ignore", {"lm_head"}}};
  try {
    mpq::CtConfig config(qc, "config.json");
    ADD_FAILURE() << "a channel-split group was accepted";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mpq-channel-split"), std::string::npos) << e.what();
  }
}

TEST(CtInterop, SchemesMpqCannotRunAreRefusedByName) {
  const nlohmann::json base = nlohmann::json::parse(mpq::test::slurp(kCt + "w4a16_asym_g32/config.json"))["quantization_config"];
  auto error_of = [](const nlohmann::json& qc) -> std::string {
    try {
      mpq::CtConfig c(qc, "config.json");
    } catch (const mpq::Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of(base), "");
  nlohmann::json qc = base;
  qc["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}};
  EXPECT_NE(error_of(qc).find("input_activations"), std::string::npos) << error_of(qc);
  qc = base;
  qc["sparsity_config"] = {{"format", "sparse-24-bitmask"}};
  EXPECT_NE(error_of(qc).find("sparsity_config"), std::string::npos) << error_of(qc);
  qc = base;
  qc["transform_config"] = {{"config_groups", {{"u", {{"type", "hadamard"}}}}}};
  EXPECT_NE(error_of(qc).find("transform_config"), std::string::npos) << error_of(qc);
  qc = base;
  qc["config_groups"]["group_0"]["weights"]["actorder"] = "group";
  EXPECT_NE(error_of(qc).find("actorder"), std::string::npos) << error_of(qc);
  qc = base;
  qc["config_groups"]["group_0"]["weights"]["num_bitz"] = 4;
  EXPECT_NE(error_of(qc).find("num_bitz"), std::string::npos) << error_of(qc);
  qc = base;
  qc["fancy_new_key"] = 1;
  EXPECT_NE(error_of(qc).find("fancy_new_key"), std::string::npos) << error_of(qc);
}

// The GGUF writer (io/gguf_writer.cpp): a mixed-type GGUF of a real model reads back with the
// project's GGUF reader (types, shapes, alignment, metadata) to the same logits as the quantized
// model in memory; formats with no ggml type are refused by name.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/gguf.h"
#include "io/model_writer.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kGguf = mpq::test::shared_dir() + "/models/stories260K/gguf/stories260K.gguf";
#define SKIP_WITHOUT_DATA() \
  if (!fs::exists(kGguf)) GTEST_SKIP() << "shared data not found: " << kGguf

std::vector<float> logits_of(mpq::Model& model) {
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 370, 429, 260};
  mpq::KVCache cache = model.make_cache(static_cast<int>(ids.size()));
  return model.forward_all(ids, cache);
}

}  // namespace

TEST(GgufWriter, AMixedGgufReadsBackToTheSameModel) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  mpq::Model model = mpq::load_model(kGguf);
  // A mixed plan in llama.cpp's types: q8_0 and q4_0 on the 64-wide rows, q5_1 for v, f16 for
  // down_proj (its rows of 172 are no whole block of 32: llama-quantize falls back to f16 too).
  mpq::Plan plan = mpq::uniform_plan(model, mpq::parse_scheme("q8_0"), mpq::parse_scheme("q8_0"),
                                     mpq::parse_target("llama.cpp"));
  for (auto& [name, entry] : plan.tensors) {
    if (name.ends_with("q_proj") || name.ends_with("up_proj")) entry.format = mpq::WeightFormatId::Q4_0;
    if (name.ends_with("v_proj")) entry.format = mpq::WeightFormatId::Q5_1;
    if (name.ends_with("down_proj")) EXPECT_EQ(entry.format, mpq::WeightFormatId::F16) << "llama.cpp's fallback";
  }
  plan.budget.bytes = 0;
  plan.budget.bits_per_weight = 16;
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::quantize(model, plan, options);
  const std::vector<float> in_memory = logits_of(model);
  const std::string out = tmp.file("m.gguf");
  mpq::write_model(model, out, {.report = {{"test", true}}});

  const mpq::GgufFile file(out);  // validates header, offsets, alignment, overlap
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_string("general.quantized_by"), "mpq");
  EXPECT_TRUE(file.has("tokenizer.ggml.tokens"));
  auto type_of = [&](const std::string& name) { return mpq::dtype_name(file.find_tensor(name)->dtype); };
  EXPECT_EQ(type_of("blk.0.attn_q.weight"), std::string("Q4_0"));
  EXPECT_EQ(type_of("blk.0.attn_k.weight"), std::string("Q8_0"));
  EXPECT_EQ(type_of("blk.0.attn_v.weight"), std::string("Q5_1"));
  EXPECT_EQ(type_of("blk.0.ffn_down.weight"), std::string("F16"));
  EXPECT_EQ(type_of("blk.0.attn_norm.weight"), std::string("F32"));
  EXPECT_EQ(type_of("token_embd.weight"), std::string("Q8_0"));  // the tied head serves as the embedding
  EXPECT_EQ(file.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(file.find_tensor("blk.0.attn_q.weight")->shape, (std::vector<int64_t>{64, 64}));
  // The mapping starts on a page, so data alignment in memory is alignment in the file.
  for (const mpq::TensorRecord& t : file.tensors())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % file.alignment(), 0u) << t.name;
  // The file's model is the model in memory: q/k rows went back to llama.cpp's RoPE order and
  // return; every type decodes to the values the quantized model ran with.
  mpq::Model back = mpq::load_model(out);
  EXPECT_EQ(logits_of(back), in_memory);
}

TEST(GgufWriter, FormatsWithoutAGgmlTypeAreRefusedByName) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  mpq::Model model = mpq::load_model(kGguf);
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::quantize(model, mpq::uniform_plan(model, mpq::parse_scheme("int8_channel")), options);
  try {
    mpq::write_model(model, tmp.file("m.gguf"), {});
    ADD_FAILURE() << "wrote int8_channel as GGUF";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("int8_channel has no GGUF type"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp.file("m.gguf")));
  // The CLI: a scheme llama.cpp cannot run is refused before any work, naming the reason.
  const auto r = mpq::test::run_mpq("quantize '" + kGguf + "' --scheme int4_g32 --out '" + tmp.file("x.gguf") + "'", tmp);
  mpq::test::expect_one_line_error(r, "int4_g32", "ggml type");
}

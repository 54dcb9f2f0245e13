// Targets (plan/target.h): what each engine runs, the fallback of a uniform scheme to formats the
// target accepts, and plans that a target cannot run refused before any work.
#include <gtest/gtest.h>

#include "mpq/error.h"
#include "plan/target.h"
#include "quant/quantize.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace {

using mpq::Engine;
using mpq::WeightFormatId;

}  // namespace

TEST(Target, EachEngineSaysWhatItRuns) {
  const mpq::Target ct = mpq::parse_target("compressed-tensors");
  std::string why;
  EXPECT_TRUE(ct.accepts(WeightFormatId::Int4_G64, 64, 576));
  EXPECT_FALSE(ct.accepts(WeightFormatId::Int4_G128, 64, 576, &why));
  EXPECT_NE(why.find("576"), std::string::npos) << why;
  EXPECT_TRUE(ct.accepts(WeightFormatId::Int8_Channel, 64, 577));  // per channel: any row
  const mpq::Target hf = mpq::parse_target("transformers");
  EXPECT_FALSE(hf.accepts(WeightFormatId::Int4_G64, 64, 576, &why));  // asymmetric
  EXPECT_NE(why.find("asymmetric"), std::string::npos) << why;
  EXPECT_TRUE(hf.accepts(WeightFormatId::Int8_Channel, 64, 576));
  EXPECT_TRUE(hf.accepts(WeightFormatId::NVFP4, 64, 576));
  const mpq::Target vllm = mpq::parse_target("vllm-cpu");
  EXPECT_TRUE(vllm.accepts(WeightFormatId::Int4_G64, 64, 576));
  EXPECT_FALSE(vllm.accepts(WeightFormatId::Int8_Channel, 64, 576, &why));
  EXPECT_FALSE(vllm.accepts(WeightFormatId::Int4_G32, 48, 576, &why));  // 48 rows: not a multiple of 32
  EXPECT_TRUE(vllm.accepts(WeightFormatId::BF16, 48, 577));              // kept weights run dense
  EXPECT_TRUE(vllm.needs_fused_same());
  EXPECT_FALSE(vllm.allows_channel_split());
  EXPECT_TRUE(mpq::parse_target("mpq").allows_channel_split());
  // The intersection: every engine must run it.
  const mpq::Target both = mpq::parse_target("transformers,vllm-cpu");
  EXPECT_FALSE(both.accepts(WeightFormatId::Int4_G64, 64, 576));   // transformers: asymmetric
  EXPECT_FALSE(both.accepts(WeightFormatId::Int8_Channel, 64, 576)); // vllm-cpu: not 4-bit
  EXPECT_EQ(both.name(), "transformers,vllm-cpu");
  EXPECT_THROW(mpq::parse_target("tensorrt"), mpq::Error);
}

TEST(Target, FallbackKeepsTheKindAndTakesTheLargestGroupThatFits) {
  const mpq::Target ct = mpq::parse_target("compressed-tensors");
  EXPECT_EQ(mpq::fallback_format(WeightFormatId::Int4_G128, 64, 576, ct), WeightFormatId::Int4_G64);
  EXPECT_EQ(mpq::fallback_format(WeightFormatId::Int4_G128, 64, 1536, ct), WeightFormatId::Int4_G128);
  EXPECT_EQ(mpq::fallback_format(WeightFormatId::Int3_G128, 64, 96, ct), WeightFormatId::Int3_G32);
  EXPECT_EQ(mpq::fallback_format(WeightFormatId::Int4_G32, 64, 172, ct), std::nullopt);  // nothing divides 172
}

TEST(Target, UniformSchemesFallBackAndPlansTheTargetCannotRunAreRefused) {
  mpq::synth::Spec spec;
  spec.dim = 96;  // 96 = 3 x 32: g64 and g128 do not divide it, g32 does
  spec.ffn = 128;
  spec.heads = 4;
  spec.head_dim = 24;
  mpq::test::TempDir tmp;
  mpq::synth::write_model(mpq::synth::make_model(spec), tmp.file("m"));
  mpq::Model model = mpq::load_model(tmp.file("m"), {.need_tokenizer = false});
  const mpq::Plan plan = mpq::uniform_plan(model, mpq::parse_scheme("int4_g128"), std::nullopt,
                                           mpq::parse_target("compressed-tensors"));
  EXPECT_EQ(plan.target, "compressed-tensors");
  // down_proj has 128 input columns: g128 stays; every other Linear reads 96 columns: g32.
  for (const auto& [name, entry] : plan.tensors) {
    EXPECT_EQ(entry.format, name.ends_with("down_proj") ? WeightFormatId::Int4_G128 : WeightFormatId::Int4_G32) << name;
  }
  EXPECT_EQ(plan.solver["fallbacks"]["int4_g128 -> int4_g32"], 12);  // 2 layers x 6 Linears
  // A plan naming a format its target refuses is refused before any tensor is touched.
  mpq::Plan bad = plan;
  bad.tensors.at("model.layers.0.self_attn.q_proj").format = WeightFormatId::Int4_G128;
  mpq::QuantizeOptions options;
  options.progress = false;
  try {
    mpq::quantize(model, bad, options);
    ADD_FAILURE() << "quantized a plan its target cannot run";
  } catch (const mpq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("do not divide"), std::string::npos) << e.what();
  }
  EXPECT_EQ(model.linears()[0]->weights->format_name(), "f32");
}

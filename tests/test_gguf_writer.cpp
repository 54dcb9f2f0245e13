// The GGUF writer (io/gguf_writer.cpp): a mixed-type GGUF of a real model reads back with the
// project's GGUF reader (types, shapes, alignment, metadata) to the same logits as the quantized
// model in memory; formats with no ggml type are refused by name.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/model_writer.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "plan/llama_types.h"
#include "plan/plan.h"
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

// gguf_fixed_bytes (what a whole-file budget takes as fixed) plus the planned tensors' data,
// each padded to the alignment, plus the report string is the written file's size exactly.
TEST(GgufWriter, FixedBytesPlusPlannedTensorsIsTheFileSize) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  mpq::Model model = mpq::load_model(kGguf);
  const uint64_t fixed = mpq::gguf_fixed_bytes(model);
  mpq::Plan plan = mpq::uniform_plan(model, mpq::parse_scheme("q8_0"), mpq::parse_scheme("q5_0"),
                                     mpq::parse_target("llama.cpp"));
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::quantize(model, plan, options);
  const std::string out = tmp.file("m.gguf");
  mpq::write_model(model, out, {.report = {{"test", true}}});
  const mpq::GgufFile file(out);
  uint64_t planned = 0;
  int n_planned = 0;
  for (const mpq::TensorRecord& t : file.tensors()) {
    if (t.dtype == mpq::DType::F32) continue;  // norms: part of the fixed bytes
    planned += (t.nbytes + 31) / 32 * 32;
    ++n_planned;
  }
  EXPECT_EQ(n_planned, 36);  // 35 Linear tensors and the tied head (token_embd)
  const uint64_t report = file.get_string("mpq.report").size();
  const uint64_t size = fs::file_size(out);
  // The data section starts aligned; the report string moves the header's end by its length,
  // rounded up to the alignment with the rest of the header.
  EXPECT_LE(size, fixed + planned + (report + 31) / 32 * 32);
  EXPECT_GE(size, fixed + planned + report - 32);
}

// A plan budgeting the whole file (mpq plan --file-size, --target llama.cpp) picks the head's
// format, and mpq quantize writes a GGUF no larger than the budget; a budget the planner's
// prediction was wrong about would be refused before writing (max_file_bytes).
TEST(GgufWriter, FileSizePlanFitsAndIsEnforced) {
  SKIP_WITHOUT_DATA();
  mpq::test::TempDir tmp;
  const std::string tiny = mpq::test::shared_dir() + "/text/tinystories-sample/tiny.txt";
  const auto must = [&](const std::string& args) {
    const auto r = mpq::test::run_mpq(args, tmp);
    ASSERT_EQ(r.status, 0) << args << "\n" << r.err;
  };
  must("analyze '" + kGguf + "' --calib '" + tiny +
       "' --calib-samples 4 --calib-len 64 --methods fisher --formats q8_0,q4_0,q5_0,iq4_nl,q4_K,f16 --quiet --out " +
       tmp.file("s.json"));
  const nlohmann::json s = nlohmann::json::parse(mpq::test::slurp(tmp.file("s.json")));
  ASSERT_TRUE(s.contains("head") && s.contains("gguf")) << "the head's costs and the GGUF size record";
  EXPECT_EQ(s["head"]["rows"], 512);
  EXPECT_FALSE(s["head"]["fisher"].contains("q4_K")) << "64-wide rows take no k-quant";
  const uint64_t budget = 280000;
  must("plan " + tmp.file("s.json") + " --method knapsack --target llama.cpp --formats q8_0,q4_0,q5_0,iq4_nl,f16 "
       "--file-size " + std::to_string(budget) + " --out " + tmp.file("p.json") + " --llama-tensor-types " +
       tmp.file("types.txt"));
  const mpq::Plan plan = mpq::read_plan(tmp.file("p.json"));
  ASSERT_TRUE(plan.head.has_value());
  EXPECT_EQ(plan.budget.file_bytes, budget);
  EXPECT_LE(plan.solver["file"]["predicted_file_bytes_at_most"].get<uint64_t>(), budget);
  must("quantize '" + kGguf + "' --plan " + tmp.file("p.json") + " --out " + tmp.file("m.gguf"));
  EXPECT_LE(fs::file_size(tmp.file("m.gguf")), budget);
  const mpq::GgufFile file(tmp.file("m.gguf"));
  std::string head_type = mpq::dtype_name(file.find_tensor("token_embd.weight")->dtype);
  for (char& c : head_type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(head_type, mpq::weight_format(plan.head->format).name) << "the plan's head is the tied embedding";
  // The tensor-type file names every planned tensor once, anchored, in llama.cpp's names.
  const std::string types = mpq::test::slurp(tmp.file("types.txt"));
  EXPECT_NE(types.find("^blk\\.0\\.attn_q\\.weight$="), std::string::npos);
  EXPECT_NE(types.find("^token_embd\\.weight$="), std::string::npos);
  EXPECT_NE(types.find("^blk\\.4\\.ffn_down\\.weight$=f16"), std::string::npos);
  // Too small a file is refused by the planner with the reason.
  const auto r = mpq::test::run_mpq("plan " + tmp.file("s.json") + " --method knapsack --target llama.cpp "
                                    "--formats q8_0,q4_0,f16 --file-size 100000 --out " + tmp.file("p2.json"), tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot hold the model"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.file("p2.json")));
  // The writer's own check: a file over max_file_bytes is refused and nothing is written.
  mpq::Model model = mpq::load_model(kGguf);
  mpq::QuantizeOptions options;
  options.progress = false;
  mpq::quantize(model, plan, options);
  EXPECT_THROW(mpq::write_model(model, tmp.file("small.gguf"), {.max_file_bytes = 1000}), mpq::Error);
  EXPECT_FALSE(fs::exists(tmp.file("small.gguf")));
}

TEST(LlamaTensorTypes, AnchoredPatternsAndRefusals) {
  mpq::Plan plan;
  plan.tensors["model.layers.1.self_attn.q_proj"].format = mpq::WeightFormatId::Q4_0;
  plan.tensors["model.layers.10.mlp.down_proj"].format = mpq::WeightFormatId::BF16;
  plan.head = mpq::Scheme{mpq::WeightFormatId::Q8_0, mpq::Quantizer::Rtn};
  const std::string t = mpq::llama_tensor_types(plan);
  EXPECT_NE(t.find("^blk\\.1\\.attn_q\\.weight$=q4_0\n"), std::string::npos) << t;
  EXPECT_NE(t.find("^blk\\.10\\.ffn_down\\.weight$=bf16\n"), std::string::npos) << t;
  EXPECT_NE(t.find("^output\\.weight$=q8_0\n"), std::string::npos) << t;
  plan.tensors["model.layers.1.self_attn.q_proj"].format = mpq::WeightFormatId::Int4_G128;
  EXPECT_THROW(mpq::llama_tensor_types(plan), mpq::Error) << "int4_g128 has no llama.cpp type";
  plan.tensors["model.layers.1.self_attn.q_proj"].format = mpq::WeightFormatId::Q4_0;
  plan.tensors["model.layers.1.self_attn.q_proj"].split = true;
  EXPECT_THROW(mpq::llama_tensor_types(plan), mpq::Error) << "a channel split has no llama.cpp type";
}

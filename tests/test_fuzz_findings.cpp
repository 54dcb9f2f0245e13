// Regressions for what the fuzz harnesses (fuzz/, scripts/fuzz.sh) found: each test rebuilds the
// malformed input of one finding with the project's writers or a small edit of a valid file, and
// checks that it is now refused with an mpq::Error naming the file (or handled), where before it
// was undefined behaviour, a crash or an exception that was not an mpq::Error.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "calib/sensitivity_file.h"
#include "io/model_writer.h"
#include "model/config.h"
#include "mpq/error.h"
#include "mpq/model.h"
#include "mpq/tokenizer.h"
#include "plan/plan.h"
#include "plan/planner.h"
#include "quant/quantize_model.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using mpq::test::TempDir;

const std::string kData = MPQ_TEST_DATA_DIR;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Runs f, which must throw an mpq::Error whose message holds every needle.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no mpq::Error thrown";
  } catch (const mpq::Error& e) {
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "message '" << e.what() << "' lacks '" << n << "'";
    }
  }
}

// The default synthetic model (tests/synthetic_model.h) quantized to int4_g128 (RTN) and written
// as mpq quantize writes it, to `dir`.
void write_quantized_synthetic(const std::string& dir) {
  const std::string src = dir + "_src";
  mpq::synth::write_model(mpq::synth::make_model({}), src);
  mpq::LoadOptions options;
  options.need_tokenizer = false;
  mpq::Model model = mpq::load_model(src, options);
  mpq::QuantizeOptions qo;
  qo.progress = false;
  mpq::quantize_model(
      model, [](const std::string&, int, mpq::LinearKind) { return mpq::ModuleChoice::whole(mpq::WeightFormatId::Int4_G128, mpq::Quantizer::Rtn); },
      qo);
  mpq::write_model(model, dir, {});
}

// A sensitivity file (S.json + S.bin) of one [4, 8] q_proj with fisher costs and channel
// saliences, written by write_sensitivity_file; returns the S.json path.
std::string write_small_sensitivity(const std::string& dir) {
  mpq::SensitivityResult r;
  r.methods.fisher = true;
  r.methods.channels = true;
  r.formats = {mpq::WeightFormatId::Int8_Channel, mpq::WeightFormatId::Int4_G128};
  mpq::TensorSensitivity t;
  t.name = "model.layers.0.self_attn.q_proj";
  t.rows = 4, t.cols = 8;
  t.fisher = {0.5, 2.0};
  t.channels = {0.1f, 0.4f, 0.2f, 0.3f};
  r.tensors.push_back(t);
  const std::string path = dir + "/S.json";
  mpq::write_sensitivity_file(r, json{{"sha256", "0"}}, {}, path);
  return path;
}

// A plan over one [4, 8] tensor, as mpq plan writes it.
json small_plan_json() {
  return json::parse(R"({"format": "mpq-plan", "version": 1, "method": "knapsack", "cost": "fisher",
                         "budget": {"bits_per_weight": 4.5},
                         "tensors": {"model.layers.0.mlp.up_proj": {"format": "int4_g32", "quantizer": "rtn"}},
                         "unquantized": []})");
}

}  // namespace

// fuzz_tokenizer_json: a token id written as a float. 7.8e47 converted with a plain cast (undefined
// behaviour); 2.0 or 2.5 was truncated to 2 and accepted.
TEST(FuzzFindings, TokenizerJsonIdsMustBeIntegers) {
  TempDir dir;
  const std::string path = dir.path() + "/tokenizer.json";
  const json fixture = json::parse(mpq::test::slurp(kData + "/tok_spm_small/tokenizer.json"));
  for (const json& bad : {json(7.77778e47), json(2.0), json(2.5), json(-3), json("2")}) {
    SCOPED_TRACE(bad.dump());
    json root = fixture;
    root["model"]["vocab"]["</s>"] = bad;  // id 2 in the fixture
    write_text(path, root.dump());
    expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "model.vocab id", "must be an integer"});
    root = fixture;
    root["added_tokens"][2]["id"] = bad;  // </s> again
    write_text(path, root.dump());
    expect_error([&] { mpq::tokenizer_spec_from_hf_json(path); }, {path, "added_tokens id", "must be an integer"});
  }
  write_text(path, fixture.dump());
  EXPECT_EQ(mpq::tokenizer_spec_from_hf_json(path).tokens.size(), 266u);  // the untouched fixture loads
}

// fuzz_plan: "format" holding a number escaped as a bare nlohmann type_error (no file named);
// other fields of the wrong JSON type likewise.
TEST(FuzzFindings, PlanFieldsOfTheWrongTypeNameTheFile) {
  TempDir dir;
  const std::string path = dir.path() + "/plan.json";
  for (const auto& [key, value] : {std::pair<std::string, json>{"format", 137216}, {"method", json::array()},
                                   {"cost", 3}, {"bits_per_weight", "high"}, {"predicted_objective", true}}) {
    SCOPED_TRACE(key);
    json plan = small_plan_json();
    plan[key] = value;
    write_text(path, plan.dump());
    expect_error([&] { mpq::read_plan(path); }, {path});
  }
  write_text(path, small_plan_json().dump());
  EXPECT_EQ(mpq::read_plan(path).tensors.size(), 1u);
}

// fuzz_plan: budgets and counts that are not representable. A float byte count (1e300) and a
// float total_bits were converted with a plain cast (undefined behaviour); -1 bytes became 2^64-1;
// high_channels beyond int32 were truncated when the plan was applied.
TEST(FuzzFindings, PlanNumbersMustBeRepresentable) {
  TempDir dir;
  const std::string path = dir.path() + "/plan.json";
  auto refuses = [&](const json& plan, const std::string& needle) {
    write_text(path, plan.dump());
    expect_error([&] { mpq::read_plan(path); }, {path, needle});
  };
  for (const json& bytes : {json(1e300), json(-1), json(0), json(2.5), json("100")}) {
    SCOPED_TRACE(bytes.dump());
    json plan = small_plan_json();
    plan["budget"] = {{"bytes", bytes}};
    refuses(plan, "budget.bytes");
  }
  for (const json& bits : {json(-4.0), json(0.0)}) {
    json plan = small_plan_json();
    plan["budget"]["bits_per_weight"] = bits;
    refuses(plan, "budget.bits_per_weight");
  }
  json plan = small_plan_json();
  plan["total_bits"] = 1e300;
  refuses(plan, "total_bits");
  plan = small_plan_json();
  plan["weights"] = -5;
  refuses(plan, "weights");
  plan = small_plan_json();
  plan["tensors"]["model.layers.0.mlp.up_proj"] = {
      {"format", "int4_g32"}, {"high_format", "int8_channel"}, {"low_format", "int4_g32"},
      {"high_channels", {1, 4294967297LL}}};
  refuses(plan, "high_channels");
}

// fuzz_plan: a huge bits-per-weight budget (1e300) overflowed the conversion of the bit cap to
// an integer (undefined behaviour; on x86 the cap came out as 0 and the plan was "over budget").
// A cap beyond 64 bits limits nothing.
TEST(FuzzFindings, PlanBudgetBeyondSixtyFourBitsIsNoLimit) {
  mpq::PlanBudget budget;
  budget.bits_per_weight = 1e300;
  EXPECT_EQ(budget.cap_bits(32), std::numeric_limits<uint64_t>::max());
  budget.bits_per_weight = 4.5;
  EXPECT_EQ(budget.cap_bits(32), 144u);
  budget = {};
  budget.bytes = std::numeric_limits<uint64_t>::max() / 4;
  EXPECT_EQ(budget.cap_bits(32), std::numeric_limits<uint64_t>::max());

  TempDir dir;
  const std::string path = dir.path() + "/plan.json";
  json j = small_plan_json();
  j["budget"]["bits_per_weight"] = 1e300;
  write_text(path, j.dump());
  const mpq::Plan plan = mpq::read_plan(path);
  EXPECT_NO_THROW(mpq::validate_plan(plan, {{"model.layers.0.mlp.up_proj", 4, 8}}));
}

// fuzz_hf_config: rope_scaling.original_max_position_embeddings = 2^32 was converted to int with
// a plain cast (undefined behaviour); a fractional one was truncated, a non-positive or an empty
// [low, high) frequency band divided by zero, a rope_theta beyond float range became infinite.
TEST(FuzzFindings, HfConfigRopeNumbersAreChecked) {
  const json base = mpq::synth::make_model({}).config;
  const json llama3 = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  auto refused = [&](const json& config, const std::string& needle) {
    expect_error([&] { mpq::model_config_from_hf(config, "config.json"); }, {"config.json", needle});
  };
  json c = base;
  c["rope_scaling"] = llama3;
  EXPECT_EQ(mpq::model_config_from_hf(c, "config.json").rope_freq_divisors.size(), 4u);  // head_dim 8
  for (const json& original : {json(4294967296LL), json(16.5), json(0), json(-16)}) {
    SCOPED_TRACE(original.dump());
    c["rope_scaling"]["original_max_position_embeddings"] = original;
    refused(c, "original_max_position_embeddings");
  }
  c["rope_scaling"] = llama3;
  c["rope_scaling"]["high_freq_factor"] = 1.0;  // == low_freq_factor
  refused(c, "high_freq_factor");
  c["rope_scaling"] = llama3;
  c["rope_scaling"]["factor"] = 0.0;
  refused(c, "factor");
  c["rope_scaling"] = {{"type", "linear"}, {"factor", -2.0}};
  refused(c, "factor");
  c = base;
  c["rope_theta"] = 1e300;
  refused(c, "rope_theta");
  c = base;
  c["rms_norm_eps"] = 0.0;
  refused(c, "rms_norm_eps");
}

// fuzz_quantized_dir: "split": 3 in quantization_config.mpq.modules escaped load_model as a bare
// nlohmann type_error (no file named).
// A quantized synthetic directory in `tmp` and its config.json, to edit field by field.
struct QuantizedDir {
  std::string dir, config_path;
  json config;
  mpq::LoadOptions options;
  explicit QuantizedDir(const TempDir& tmp) : dir(tmp.path() + "/q"), config_path(dir + "/config.json") {
    write_quantized_synthetic(dir);
    config = json::parse(mpq::test::slurp(config_path));
    options.need_tokenizer = false;
  }
  void expect_refused(const json& edited, std::initializer_list<std::string> needles) const {
    write_text(config_path, edited.dump());
    expect_error([&] { mpq::load_model(dir, options); }, needles);
  }
};

TEST(FuzzFindings, QuantizationConfigOfTheWrongTypeNamesTheFile) {
  TempDir tmp;
  const QuantizedDir q(tmp);
  const json& config = q.config;
  ASSERT_NO_THROW(mpq::load_model(q.dir, q.options));
  const std::string module = "model.layers.0.self_attn.q_proj";
  ASSERT_TRUE(config["quantization_config"]["mpq"]["modules"].contains(module));
  for (const json& split : {json(3), json("yes"), json::array()}) {
    SCOPED_TRACE(split.dump());
    json edited = config;
    edited["quantization_config"]["mpq"]["modules"][module]["split"] = split;
    q.expect_refused(edited, {q.config_path, "split must be true or false"});
  }
}

// fuzz_quantized_dir (the CI smoke run): quantization_config.mpq.layout 1e19 was converted to int
// (undefined behaviour), and so would a compressed-tensors group's num_bits have been.
TEST(FuzzFindings, QuantizationConfigNumbersAreCheckedIntegers) {
  TempDir tmp;
  const QuantizedDir q(tmp);
  const json& config = q.config;
  for (const json& layout : {json(1e19), json(2.5), json(-1)}) {
    SCOPED_TRACE(layout.dump());
    json edited = config;
    edited["quantization_config"]["mpq"]["layout"] = layout;
    q.expect_refused(edited, {q.config_path, "quantization_config.mpq.layout must be an integer"});
  }
  // Another tool's config (no mpq record): the group's num_bits.
  json foreign = config;
  foreign["quantization_config"].erase("mpq");
  ASSERT_TRUE(foreign["quantization_config"].contains("config_groups"));
  foreign["quantization_config"]["format"] = "pack-quantized";
  for (auto& [name, group] : foreign["quantization_config"]["config_groups"].items()) {
    group["format"] = "pack-quantized";
    group["weights"]["num_bits"] = 1e19;
  }
  q.expect_refused(foreign, {q.config_path, "weights.num_bits must be an integer"});
}

// fuzz_sensitivity: "version": "1" (a string) escaped as a bare nlohmann type_error; a channel
// offset near 2^64 (or -4, read as 2^64 - 4) wrapped around in the bounds check and was read
// far outside the sidecar; layer 2^31 - 1 overflowed n_layers = layer + 1; a float row count was
// converted with a plain cast.
TEST(FuzzFindings, SensitivityFileNumbersAreChecked) {
  TempDir tmp;
  const std::string path = write_small_sensitivity(tmp.path());
  const json good = json::parse(mpq::test::slurp(path));
  const mpq::SensitivityInput in = mpq::read_sensitivity_input(path, true);
  ASSERT_EQ(in.tensors.size(), 1u);
  EXPECT_EQ(in.tensors[0].channels, (std::vector<float>{0.1f, 0.4f, 0.2f, 0.3f}));

  auto refused = [&](const json& j, const std::string& needle) {
    write_text(path, j.dump());
    expect_error([&] { mpq::read_sensitivity_input(path, true); }, {path, needle});
  };
  json j = good;
  j["version"] = "1";
  refused(j, "version");
  for (const json& offset : {json(18446744073709551612ULL), json(-4), json(1e300)}) {
    SCOPED_TRACE(offset.dump());
    j = good;
    j["tensors"][0]["channels"]["offset"] = offset;
    refused(j, "channel");
  }
  j = good;
  j["tensors"][0]["layer"] = 2147483647;
  refused(j, "layer");
  j = good;
  j["tensors"][0]["rows"] = 1e300;
  refused(j, "rows");
  j = good;
  j["model"]["n_layers"] = 2.5;
  refused(j, "n_layers");
}

// fuzz_sensitivity (make_plan on what was read): a Shapley section whose "player_kind" or "high"
// is not a string escaped as a bare nlohmann type_error.
TEST(FuzzFindings, SensitivityShapleySectionOfTheWrongTypeNamesTheFile) {
  TempDir tmp;
  const std::string path = write_small_sensitivity(tmp.path());
  json j = json::parse(mpq::test::slurp(path));
  for (const auto& [key, value] : {std::pair<std::string, json>{"player_kind", 1}, {"high", json::array()}}) {
    SCOPED_TRACE(key);
    j["shapley"] = {{"player_kind", "layer"}, {"high", "int8_channel"}, {"low", "int4_g128"}};
    j["shapley"][key] = value;
    write_text(path, j.dump());
    const mpq::SensitivityInput in = mpq::read_sensitivity_input(path, false);
    mpq::PlanRequest request;
    request.method = "bqp";
    request.cost = "shapley";
    request.bits = 6;
    expect_error([&] { mpq::make_plan(in, request); }, {path});
  }
}

// fuzz_llama2c: a checkpoint header whose vocab_size is INT32_MIN was negated in int32 (undefined
// behaviour) while looking for the vocabulary size of its tokenizer.
TEST(FuzzFindings, Llama2cVocabSizeInt32MinIsRefused) {
  TempDir tmp;
  const std::string model = tmp.path() + "/model.bin";
  const int32_t header[7] = {8, 12, 2, 2, 1, INT32_MIN, 16};
  write_text(model, std::string(reinterpret_cast<const char*>(header), sizeof header));
  // A llama2.c tokenizer file of two entries: max_len, then per token score, length, bytes.
  std::string tok;
  auto put = [&](const void* p, size_t n) { tok.append(static_cast<const char*>(p), n); };
  const int32_t max_len = 1, one = 1;
  const float score = 0;
  put(&max_len, 4);
  for (const char* text : {"a", "b"}) {
    put(&score, 4);
    put(&one, 4);
    put(text, 1);
  }
  write_text(tmp.path() + "/tok.bin", tok);
  // The tokenizer loads with its own entry count (the header's vocabulary size is not plausible).
  EXPECT_EQ(mpq::load_tokenizer(model, tmp.path() + "/tok.bin")->vocab_size(), 2);
  mpq::LoadOptions options;
  options.tokenizer_path = tmp.path() + "/tok.bin";
  expect_error([&] { mpq::load_model(model, options); }, {model});
}

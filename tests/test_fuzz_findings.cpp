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

#include "mpq/error.h"
#include "mpq/tokenizer.h"
#include "plan/plan.h"
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
